"""Prices for the models people use now: the table generated from the pinned
LiteLLM catalog, service tiers and long-context tiers read from real
responses, unknown models counted, and a live catalog served by Envoy itself
(a `direct_response` of a file) swapped in without a restart."""
import json
import os
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from conftest import ROOT, Envoy, StatDelta, chat, wait_until

CATALOG = Path(os.environ.get("COSTGUARD_CATALOG", ""))
CHECKER = ROOT / "target" / "release" / "costguard-check-config"
PRICED_MODES = {"chat", "responses", "embedding", "realtime", "audio_transcription", "audio_speech"}

needs_catalog = pytest.mark.skipif(
    not CATALOG.is_file(), reason="COSTGUARD_CATALOG unset: `make integration` fetches the pinned catalog")


def pinned_catalog():
    return json.loads(CATALOG.read_text(), parse_float=Decimal)


@pytest.fixture(scope="module")
def default_envoy(sim):
    e = Envoy(sim.port, {"global": {"budget_usd": 1000000}}).wait_ready()
    yield e
    e.stop()


def usage_chat(prompt, completion):
    return {"prompt_tokens": prompt, "completion_tokens": completion}


# gpt-5.5 in the pinned catalog: $5 / $30 per 1M tokens, flex $2.50 / $15,
# priority $12.50 / $75; above 272k input tokens $10 / $45.
GPT55 = [
    # (service tier the response reports, input tokens, expected µ$ for 1M output tokens)
    ("default", 200_000, 1_000_000 + 30_000_000),
    ("flex", 200_000, 500_000 + 15_000_000),
    ("priority", 200_000, 2_500_000 + 75_000_000),
    ("default", 300_000, 3_000_000 + 45_000_000),  # long context: every token at $10 / $45
    ("flex", 300_000, 1_500_000 + 22_500_000),
]


@pytest.mark.parametrize("tier,prompt,expected", GPT55)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_gpt55_chat_priced_at_the_served_tier(default_envoy, tier, prompt, expected, stream):
    d = StatDelta(default_envoy)
    body = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "service_tier": tier}
    if stream:
        body["stream"] = True
    r = chat(default_envoy, body=body, usage=usage_chat(prompt, 1_000_000))
    assert r.status_code == 200
    if stream:
        assert f'"service_tier":"{tier}"' in r.text
    else:
        assert r.json()["service_tier"] == tier
    d.wait("costguard.cost_micro_usd", expected)
    d.wait("costguard.model.gpt-5.5.cost_micro_usd", expected)
    assert d.get("costguard.usage.unknown_model") == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("tier,expected", [("flex", 15_500_000), ("priority", 77_500_000)])
def test_responses_api_priced_at_the_served_tier(default_envoy, sim, stream, tier, expected):
    d = StatDelta(default_envoy)
    r = requests.post(f"{default_envoy.url}/v1/responses", timeout=30,
                      json={"model": "gpt-5.5-2026-04-23", "input": "hi", "stream": stream},
                      headers={"x-sim-service-tier": tier,
                               "x-sim-usage": json.dumps({"input_tokens": 200_000, "output_tokens": 1_000_000})})
    assert r.status_code == 200
    d.wait("costguard.model.gpt-5.5.cost_micro_usd", expected)


def test_a_priority_request_served_at_standard_costs_standard(default_envoy):
    d = StatDelta(default_envoy)
    body = {"model": "gpt-5.5", "messages": [], "service_tier": "priority"}
    r = chat(default_envoy, body=body, usage=usage_chat(200_000, 1_000_000),
             headers={"x-sim-service-tier": "default"})
    assert r.status_code == 200
    d.wait("costguard.model.gpt-5.5.cost_micro_usd", 31_000_000)


def test_new_models_have_their_own_prices(default_envoy):
    """The defect: gpt-5.4-mini and gpt-realtime-2 were priced as gpt-5 / gpt-realtime."""
    d = StatDelta(default_envoy)
    assert chat(default_envoy, model="gpt-5.4-mini", usage=usage_chat(1_000_000, 1_000_000)).status_code == 200
    d.wait("costguard.model.gpt-5.4-mini.cost_micro_usd", 750_000 + 4_500_000)
    assert d.get("costguard.model.gpt-5.cost_micro_usd") == 0


def test_unknown_models_are_counted_and_logged_once(default_envoy):
    d = StatDelta(default_envoy)
    for _ in range(3):
        assert chat(default_envoy, model="gpt-9-ultra", usage=usage_chat(1_000_000, 0)).status_code == 200
    # unknown_model's default: $10 per 1M input tokens.
    d.wait("costguard.usage.unknown_model", 3)
    d.wait("costguard.model.unknown.cost_micro_usd", 30_000_000)
    wait_until(lambda: '"gpt-9-ultra" has no price' in default_envoy.log(), what="the unknown model logged")
    # Once per VM: at most one line per worker, never one per request.
    assert default_envoy.log().count('"gpt-9-ultra" has no price') <= 2


def catalog_with(tmp_path, name, changes):
    """The pinned catalog with `changes` (entry name → entry, None removes) written to `name`."""
    cat = json.loads(CATALOG.read_text())
    for model, entry in changes.items():
        if entry is None:
            cat.pop(model, None)
        else:
            cat[model] = entry
    path = tmp_path / name
    path.write_text(json.dumps(cat))
    return path


def raw_entry(input_text, output_text):
    """An entry whose prices are JSON numbers written exactly as given."""
    return {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": input_text,
            "output_cost_per_token": output_text}


def write_catalog(path, cat):
    """Writes the catalog with its numbers as they were written: they were
    read as "@@<text>@@" strings (parse_float) and are unquoted here."""
    path.write_text(json.dumps(cat).replace('"@@', "").replace('@@"', ""))


def serve(tmp_path, changes):
    """A catalog directory Envoy watches, holding the pinned catalog with `changes`."""
    d = tmp_path / "catalog"
    d.mkdir(exist_ok=True)
    cat = json.loads(CATALOG.read_text(), parse_float=lambda s: f"@@{s}@@")
    cat.update(changes)
    write_catalog(d / "model_prices.json", cat)
    return d / "model_prices.json"


def replace_file(path, text_or_bytes):
    """Moves a new file into place: Envoy's watched directory sees the move."""
    tmp = path.with_name(".next")
    if isinstance(text_or_bytes, bytes):
        tmp.write_bytes(text_or_bytes)
    else:
        tmp.write_text(text_or_bytes)
    tmp.replace(path)


def replace_catalog(path, changes):
    cat = json.loads(CATALOG.read_text(), parse_float=lambda s: f"@@{s}@@")
    cat.update(changes)
    tmp = path.with_name(".next")
    write_catalog(tmp, cat)
    tmp.replace(path)


def live_config(**extra):
    return {"global": {"budget_usd": 1000000}, "session": {"budget_usd": 1000},
            "price_catalog": {"cluster": "prices", "path": "/model_prices.json",
                              "authority": "prices.internal", "refresh_s": 1, "timeout_ms": 5000},
            **extra}


def wait_for_price(envoy, model, usage, expected_micros, consecutive=8):
    """Sends session-less probes (each on a new connection, so both workers
    answer) until `consecutive` of them in a row were priced at `expected_micros`."""
    streak = 0

    def probe():
        nonlocal streak
        d = StatDelta(envoy)
        assert chat(envoy, model=model, usage=usage).status_code == 200
        wait_until(lambda: d.get("costguard.cost_micro_usd") > 0, timeout=10, what="the probe priced")
        cost = d.get(f"costguard.model.{model}.cost_micro_usd")
        streak = streak + 1 if cost == expected_micros else 0
        return streak >= consecutive

    wait_until(probe, timeout=30, interval=0, what=f"{model} priced at {expected_micros} µ$")


@needs_catalog
def test_live_catalog_changes_prices_without_restart_and_keeps_budgets(sim, tmp_path):
    path = serve(tmp_path, {"gpt-live-test": raw_entry("@@1e-06@@", "@@2e-06@@")})
    e = Envoy(sim.port, live_config(), catalog_file=path).wait_ready()
    try:
        pid = e.proc.pid
        # Fetched once and in use: the catalog's extra model is priced.
        wait_until(lambda: e.stat("costguard.pricing.models") >= 100, what="the catalog's models")
        wait_for_price(e, "gpt-live-test", usage_chat(1_000_000, 1_000_000), 3_000_000)
        assert e.stat("costguard.pricing.catalog_age_s") <= 5
        session = {"x-session-id": "live-catalog"}
        r = chat(e, model="gpt-5.5", usage=usage_chat(200_000, 1_000_000), headers=session)
        assert r.status_code == 200 and r.headers["x-costguard-session-remaining-usd"] == "1000"

        # A new file moved into place: gpt-5.5 at $7 / $40 from the next refresh.
        replace_catalog(path, {"gpt-live-test": raw_entry("@@1e-06@@", "@@2e-06@@"),
                               "gpt-5.5": raw_entry("@@7e-06@@", "@@4e-05@@")})
        wait_for_price(e, "gpt-5.5", usage_chat(0, 1_000_000), 40_000_000)
        r = chat(e, model="gpt-5.5", usage=usage_chat(200_000, 1_000_000), headers=session)
        # The session kept the $31 it spent at the old prices.
        assert r.status_code == 200 and r.headers["x-costguard-session-remaining-usd"] == "969"
        r = chat(e, model="gpt-5.5", usage=usage_chat(0, 0), headers=session)
        assert r.headers["x-costguard-session-remaining-usd"] == "927.6"  # 1000 - 31 - 41.40
        assert e.proc.pid == pid and e.proc.poll() is None
        assert e.stat("costguard.pricing.catalog_errors") == 0
    finally:
        e.stop()


@needs_catalog
def test_bad_catalogs_keep_the_last_good_table_and_are_counted(sim, tmp_path):
    path = serve(tmp_path, {"gpt-live-test": raw_entry("@@1e-06@@", "@@2e-06@@")})
    e = Envoy(sim.port, live_config(), catalog_file=path).wait_ready()
    try:
        wait_for_price(e, "gpt-live-test", usage_chat(1_000_000, 1_000_000), 3_000_000, consecutive=4)
        good = CATALOG.read_bytes()
        bad = {
            "malformed": b"<html>502 Bad Gateway</html>",
            "truncated": good[: len(good) // 2],
            "50 MB": b'{"padding": {"notes": "' + b"x" * (50 * 1024 * 1024) + b'"}}',
        }
        for what, body in bad.items():
            errors = e.stat("costguard.pricing.catalog_errors")
            replace_file(path, body)
            slowest = 0.0

            def failed_again():
                nonlocal slowest
                # The data path goes on meanwhile, at the last good prices, unhurried.
                d = StatDelta(e)
                started = time.monotonic()
                assert chat(e, model="gpt-live-test", usage=usage_chat(1_000_000, 1_000_000)).status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                d.wait("costguard.model.gpt-live-test.cost_micro_usd", 3_000_000, timeout=10)
                return e.stat("costguard.pricing.catalog_errors") > errors

            wait_until(failed_again, timeout=40, interval=0.1, what=f"the {what} catalog counted")
            assert slowest < 3.0, f"a request waited {slowest:.2f} s during the {what} catalog"
        assert "keeping the prices in use" in e.log()
        assert e.stat("costguard.pricing.models") >= 100
    finally:
        e.stop()


@needs_catalog
def test_every_catalog_price_converts_exactly():
    """Every price of every OpenAI model in the pinned catalog, as costguard
    resolves it, equals the catalog's decimal (Python's Decimal as the oracle)."""
    cat = pinned_catalog()
    models = {name: e for name, e in cat.items()
              if isinstance(e, dict) and e.get("litellm_provider") == "openai" and "/" not in name
              and e.get("mode") in PRICED_MODES and "input_cost_per_token" in e}
    assert len(models) > 140
    args = [str(CHECKER), "--catalog", str(CATALOG)]
    for name in models:
        args += ["--explain", name]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    explained = {}
    current = None
    for line in out.splitlines():
        if not line.startswith("  "):
            # "<model>: entry …" or "<model>: unknown model…" (model names may hold colons)
            marker = next((m for m in (": entry ", ": unknown model") if m in line), None)
            current = line[: line.index(marker)] if marker else None
            if current:
                explained[current] = {"entry": line}
            continue
        label, _, prices = line.strip().partition(": ")
        explained[current][label] = dict(p.split("=") for p in prices.split() if "=" in p)
    stems = {"input": "input_cost_per_token", "cached_input": "cache_read_input_token_cost",
             "output": "output_cost_per_token", "audio_input": "input_cost_per_audio_token",
             "cached_audio_input": "cache_read_input_audio_token_cost",
             "audio_output": "output_cost_per_audio_token", "image_input": "input_cost_per_image_token",
             "cached_image_input": "cache_read_input_image_token_cost"}
    checked = 0
    for name, e in models.items():
        got = explained[name]
        assert "unknown model" not in got["entry"], name
        tiers = {"standard": "", "flex": "_flex", "priority": "_priority"}
        for tier, suffix in tiers.items():
            for long_prefix, long_suffix in (("", ""), ("above 272000 input tokens, ", "_above_272k_tokens")):
                label = f"{long_prefix}{tier}"
                for key, stem in stems.items():
                    catalog_key = f"{stem}{long_suffix}{suffix}"
                    if catalog_key not in e or f"input_cost_per_token{long_suffix}{suffix}" not in e:
                        continue
                    usd_per_million = Decimal(got[label][key])
                    assert usd_per_million == e[catalog_key] * 1_000_000, (name, catalog_key)
                    checked += 1
    assert checked > 500


def test_check_config_explains_a_model():
    out = subprocess.run([str(CHECKER), "--explain", "gpt-5.5", "--explain", "gpt-6-nova"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert 'gpt-5.5: entry "gpt-5.5" from the built-in table' in out
    assert "flex: input=2.5 cached_input=0.25 output=15" in out
    assert "above 272000 input tokens, standard: input=10" in out
    assert "gpt-6-nova: unknown model" in out
