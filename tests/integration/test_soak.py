"""Soak: a steady mix of HTTP JSON, SSE and Realtime WebSocket sessions for
SOAK_SECONDS (20 s in `make test`, longer with `make soak`) on
--concurrency 2. No errors, bounded Envoy memory, and exact totals: the
simulator's own tally of the usage it reported, priced here with the same
table, equals costguard's `costguard.cost_micro_usd`."""
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import StatDelta, wait_until
from test_realtime import open_session, recv_json, respond, rt_usage

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "20"))
# Envoy may grow this much after warm-up (connection pools, stats, allocator caches).
RSS_GROWTH_BOUND_KIB = 24 * 1024

# µ$ per 1M tokens: (input, cached_input, output, audio_input, cached_audio_input, audio_output)
PRICES = {
    "gpt-5": (1_250_000, 125_000, 10_000_000, 1_250_000, 125_000, 10_000_000),
    "gpt-4o-mini": (150_000, 75_000, 600_000, 150_000, 75_000, 600_000),
    "gpt-realtime": (4_000_000, 400_000, 16_000_000, 32_000_000, 400_000, 64_000_000),
}
CONFIG = {
    "session": {"budget_usd": 1_000_000},
    "global": {"budget_usd": 1_000_000_000},
    "pricing": {m: dict(zip(["input", "cached_input", "output", "audio_input", "cached_audio_input", "audio_output"],
                            [p / 1e6 for p in prices])) for m, prices in PRICES.items()},
}


def take(rest, part):
    t = min(part or 0, rest)
    return t, rest - t


def price(model, u):
    """The cost rule of the README, independently: disjoint parts, one rounding up per response."""
    p_in, p_cached, p_out, p_ain, p_cain, p_aout = PRICES[model]
    details = u.get("input_token_details") or u.get("input_tokens_details") or u.get("prompt_tokens_details") or {}
    out_details = u.get("output_token_details") or u.get("completion_tokens_details") or {}
    rest = u.get("input_tokens", u.get("prompt_tokens", 0))
    cached, rest = take(rest, details.get("cached_tokens"))
    cached_audio = min(((details.get("cached_tokens_details") or {}).get("audio_tokens") or 0), cached)
    cached_text = cached - cached_audio
    audio, rest = take(rest, (details.get("audio_tokens") or 0) - cached_audio)
    text = rest
    out = u.get("output_tokens", u.get("completion_tokens", 0))
    audio_out, text_out = take(out, out_details.get("audio_tokens"))
    numerator = (text * p_in + cached_text * p_cached + audio * p_ain + cached_audio * p_cain +
                 text_out * p_out + audio_out * p_aout)
    return -(-numerator // 1_000_000)


def test_soak(start_envoy, sim):
    envoy = start_envoy(CONFIG)
    sim.reset()
    d = StatDelta(envoy)
    stop_at = time.monotonic() + SOAK_SECONDS
    warm_until = time.monotonic() + min(3.0, SOAK_SECONDS / 4)
    errors = []
    counts = {"json": 0, "sse": 0, "responses": 0, "ws": 0}
    lock = threading.Lock()
    rss = {}

    def chat_usage(rng):
        return {"prompt_tokens": rng.randint(10, 50_000), "completion_tokens": rng.randint(0, 5_000),
                "prompt_tokens_details": {"cached_tokens": rng.randint(0, 10), "audio_tokens": 0}}

    def one(kind, rng, worker):
        if kind == "json":
            r = requests.post(f"{envoy.url}/v1/chat/completions", timeout=30,
                              headers={"x-sim-usage": json.dumps(chat_usage(rng)),
                                       "x-session-id": f"soak-{worker}-{rng.randint(0, 20)}"},
                              json={"model": rng.choice(["gpt-5", "gpt-4o-mini"]), "messages": []})
            assert r.status_code == 200, r.text
        elif kind == "sse":
            r = requests.post(f"{envoy.url}/v1/chat/completions", timeout=30,
                              headers={"x-sim-usage": json.dumps(chat_usage(rng)), "x-sim-chunks": "20"},
                              json={"model": "gpt-4o-mini", "stream": True, "messages": []})
            assert r.status_code == 200 and "[DONE]" in r.text
        elif kind == "responses":
            usage = {"input_tokens": rng.randint(1, 9_999), "input_tokens_details": {"cached_tokens": 3},
                     "output_tokens": rng.randint(1, 999)}
            r = requests.post(f"{envoy.url}/v1/responses", timeout=30, json={"model": "gpt-5", "input": "x",
                              "stream": rng.random() < 0.5}, headers={"x-sim-usage": json.dumps(usage)})
            assert r.status_code == 200
        else:
            with open_session(envoy) as ws:
                recv_json(ws)
                for _ in range(3):
                    respond(ws, rt_usage(rng.randint(100, 3_000), rng.randint(100, 3_000),
                                         audio_in=50, audio_out=60), audio_deltas=2, delta_bytes=20_000)

    def worker(i):
        rng = random.Random(i)
        while time.monotonic() < stop_at:
            kind = rng.choice(["json", "json", "sse", "responses", "ws"])
            try:
                one(kind, rng, i)
                with lock:
                    counts[kind] += 1
            except Exception as e:  # noqa: BLE001 — every failure is reported below
                errors.append(f"{kind}: {e!r}")
            if "warm" not in rss and time.monotonic() > warm_until:
                rss.setdefault("warm", envoy.rss_kib())

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(worker, range(6)))
    rss["end"] = envoy.rss_kib()
    print(f"soak {SOAK_SECONDS:.0f}s: {counts}; Envoy RSS after warm-up {rss.get('warm')} KiB, "
          f"at the end {rss['end']} KiB")
    assert errors == []
    assert all(n > 0 for n in counts.values()), counts

    reported = sim.tally()["reported"]
    # Each distinct (model, usage) once, with how many responses reported it.
    expected = sum(price(r["model"], r["usage"]) * r["count"] for r in reported)
    d.wait("costguard.cost_micro_usd", expected)
    wait_until(lambda: envoy.stat("costguard.sessions.active") == 0, what="sessions to end")
    d.wait("costguard.sessions.ended", counts["ws"])
    assert d.get("costguard.usage.missing") == 0
    assert d.get("costguard.usage.parse_errors") == 0
    assert rss["end"] - rss.get("warm", rss["end"]) < RSS_GROWTH_BOUND_KIB
