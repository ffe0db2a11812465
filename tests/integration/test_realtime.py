"""Realtime API WebSocket sessions through real Envoy (--concurrency 2) with a
real WebSocket client: pricing of response.done, the in-band warning, the
1008 close at the budget and the duration limit, Origin and breaker checks."""
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import Envoy, StatDelta, wait_until

SEED = {"pricing": {"gpt-realtime": {"input": 100, "output": 200}}, "global": {"budget_usd": 1000000}}


def rt_usage(input_tokens, output_tokens, audio_in=0, audio_out=0):
    return {"total_tokens": input_tokens + output_tokens, "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {"text_tokens": input_tokens - audio_in, "audio_tokens": audio_in,
                                    "image_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": output_tokens - audio_out, "audio_tokens": audio_out}}


# 5k in × $100 + 8k out × $200 per 1M = $2.10
USAGE_2_10 = rt_usage(5_000, 8_000)


def open_session(envoy, model="gpt-realtime", headers=None, **kw):
    return connect(f"ws://127.0.0.1:{envoy.port}/v1/realtime?model={model}",
                   additional_headers=headers or {}, open_timeout=30, max_size=None, **kw)


def recv_json(ws, timeout=30):
    return json.loads(ws.recv(timeout=timeout))


def respond(ws, usage, **sim):
    """Asks the simulator for one response; returns the events up to response.done."""
    ws.send(json.dumps({"type": "response.create", "sim": {"usage": usage, **sim}}))
    events = []
    while True:
        e = recv_json(ws)
        events.append(e)
        if e["type"] == "response.done":
            return events


def closed_by(ws, timeout=30):
    """Reads until the connection closes; returns (close code, reason, events seen before)."""
    seen = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            seen.append(json.loads(ws.recv(timeout=deadline - time.monotonic())))
    except ConnectionClosed as e:
        rcvd = e.rcvd
        return (rcvd.code if rcvd else 1006), (rcvd.reason if rcvd else ""), seen
    raise AssertionError("connection stayed open")


@pytest.fixture(scope="module")
def envoy(sim):
    e = Envoy(sim.port, SEED).wait_ready()
    yield e
    e.stop()


def test_seed_flow_warning_then_1008_at_the_budget(envoy, sim):
    d = StatDelta(envoy)
    with open_session(envoy) as ws:
        sid = ws.response.headers["x-costguard-session-id"]
        assert len(sid) == 36 and sid[14] == "4"
        assert ws.response.headers["x-costguard-session-remaining-usd"] == "5"
        assert recv_json(ws)["type"] == "session.created"
        respond(ws, USAGE_2_10)                                   # $2.10
        respond(ws, USAGE_2_10)                                   # $4.20 ≥ 80% of $5
        warning = recv_json(ws)
        assert warning == {"type": "budget_warning", "session_id": sid, "session_cost_usd": 4.2,
                           "budget_usd": 5, "remaining_usd": 0.8}
        respond(ws, USAGE_2_10)                                   # $6.30 ≥ $5
        code, reason, after = closed_by(ws)
    assert after[0] == {"type": "budget_exceeded", "session_id": sid, "session_cost_usd": 6.3, "budget_usd": 5}
    assert len(after) == 1
    assert (code, reason) == (1008, "Budget exceeded")
    # The upstream connection ends too.
    wait_until(lambda: sim.tally()["ws_open"] == 0, what="simulator connection to end")
    d.wait("costguard.sessions.ended", 1)
    d.wait("costguard.cost_micro_usd", 6_300_000)
    d.wait("costguard.model.gpt-realtime.cost_micro_usd", 6_300_000)
    d.wait("costguard.sessions.started", 1)
    d.wait("costguard.sessions.warned", 1)
    d.wait("costguard.sessions.budget_exceeded", 1)
    assert envoy.stat("costguard.sessions.active") == 0
    entry = wait_until(lambda: [x for x in envoy.access_log_entries() if x["costguard_session_id"] == sid],
                       what="access log entry")
    assert entry[-1]["costguard_session_cost_usd"] == "6.3"


def test_realtime_seed_example_with_large_audio_and_split_frames(envoy):
    d = StatDelta(envoy)
    with open_session(envoy) as ws:
        recv_json(ws)
        # 150 KB audio frames interleaved with response.done frames written in pieces.
        for _ in range(2):
            events = respond(ws, rt_usage(5_000, 5_000), audio_deltas=4, delta_bytes=150_000, split_done=True)
            deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
            assert len(deltas) == 4 and all(len(e["delta"]) == 150_000 for e in deltas)
    d.wait("costguard.cost_micro_usd", 2 * 1_500_000)
    # The seed's $12.50 example, priced exactly (it ends that session at once).
    with open_session(envoy) as ws:
        recv_json(ws)
        respond(ws, rt_usage(25_000, 50_000), audio_deltas=2, delta_bytes=200_000, split_done=True)
        code, reason, _ = closed_by(ws)
        assert (code, reason) == (1008, "Budget exceeded")
    d.wait("costguard.cost_micro_usd", 2 * 1_500_000 + 12_500_000)


def test_audio_tokens_at_audio_prices(start_envoy):
    e = start_envoy({"global": {"budget_usd": 1000000}, "session": {"budget_usd": 1000}})
    with open_session(e) as ws:
        recv_json(ws)
        # gpt-realtime: 600k text in × $4 + 400k audio in × $32 + 100k text out × $16 + 200k audio out × $64
        respond(ws, rt_usage(1_000_000, 300_000, audio_in=400_000, audio_out=200_000))
    e.wait_stat("costguard.cost_micro_usd", 2_400_000 + 12_800_000 + 1_600_000 + 12_800_000)
    e.wait_stat("costguard.model.gpt-realtime.audio_input_tokens", 400_000)
    e.wait_stat("costguard.model.gpt-realtime.audio_output_tokens", 200_000)


def test_model_from_session_updated(envoy):
    d = StatDelta(envoy)
    with open_session(envoy, model="gpt-realtime-mini") as ws:
        recv_json(ws)
        ws.send(json.dumps({"type": "session.update", "session": {"model": "gpt-realtime"}}))
        assert recv_json(ws)["type"] == "session.updated"
        respond(ws, rt_usage(1_000, 0))
    d.wait("costguard.model.gpt-realtime.cost_micro_usd", 100_000)


def test_duration_limit_while_the_client_talks(start_envoy, sim):
    e = start_envoy({**SEED, "session": {"max_duration_s": 2}})
    start = time.monotonic()
    with open_session(e) as ws:
        recv_json(ws)
        code = reason = None
        try:
            while time.monotonic() - start < 10:
                ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 4000}))
                time.sleep(0.1)
        except ConnectionClosed:
            pass
        code, reason, _ = closed_by(ws, timeout=10)
    elapsed = time.monotonic() - start
    assert (code, reason) == (1008, "Session duration limit")
    assert 2 <= elapsed <= 4.5, elapsed
    e.wait_stat("costguard.sessions.duration_exceeded", 1)
    e.wait_stat("costguard.sessions.active", 0)


def test_silent_session_is_reset_after_the_grace(start_envoy):
    e = start_envoy({**SEED, "session": {"max_duration_s": 2}})
    start = time.monotonic()
    with open_session(e) as ws:
        recv_json(ws)
        code, _, _ = closed_by(ws, timeout=20)
    elapsed = time.monotonic() - start
    assert code == 1006
    # 2 s + 5 s grace, plus one tick and Envoy's delayed close.
    assert 7 <= elapsed <= 10.5, elapsed
    e.wait_stat("costguard.sessions.duration_exceeded", 1)
    e.wait_stat("costguard.sessions.active", 0)


def test_foreign_origin_is_refused(start_envoy):
    e = start_envoy({**SEED, "allowed_origins": ["https://app.example"]})
    with pytest.raises(InvalidStatus) as refused:
        open_session(e, headers={"Origin": "https://evil.example"})
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["error"]["code"] == "origin_not_allowed"
    with open_session(e, headers={"Origin": "https://app.example"}) as ws:
        assert recv_json(ws)["type"] == "session.created"
    e.wait_stat("costguard.rejected.origin", 1)


def test_upgrade_refused_while_the_breaker_is_open(start_envoy):
    e = start_envoy({**SEED, "global": {"budget_usd": 1, "window_s": 3600, "cooldown_s": 300}})
    with open_session(e) as ws:
        recv_json(ws)
        respond(ws, USAGE_2_10)
    e.wait_stat("costguard.circuit_breaker.trips", 1)
    with pytest.raises(InvalidStatus) as refused:
        open_session(e)
    assert refused.value.response.status_code == 503
    assert int(refused.value.response.headers["retry-after"]) > 0
    assert json.loads(refused.value.response.body)["error"]["code"] == "circuit_open"


def test_breaker_trip_closes_active_sessions(start_envoy):
    e = start_envoy({**SEED, "session": {"budget_usd": 100},
                     "global": {"budget_usd": 3, "window_s": 3600, "cooldown_s": 300, "close_active_sessions": True}})
    with open_session(e) as bystander, open_session(e) as spender:
        recv_json(bystander)
        recv_json(spender)
        respond(spender, USAGE_2_10)
        respond(spender, USAGE_2_10)  # $4.20 ≥ $3: trips
        e.wait_stat("costguard.circuit_breaker.trips", 1)
        time.sleep(1.2)  # let every worker's tick see the breaker (at most 1 s late)
        bystander.send(json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"}))
        code, reason, _ = closed_by(bystander)
        assert (code, reason) == (1008, "Circuit breaker open")


def test_fifty_concurrent_sessions_isolated_with_exact_totals(envoy, sim):
    d = StatDelta(envoy)

    def session(i):
        with open_session(envoy) as ws:
            recv_json(ws)
            for _ in range(2):
                respond(ws, rt_usage(1_000 + i, 2_000), audio_deltas=1, delta_bytes=1_000)
            return ws.response.headers["x-costguard-session-id"]

    with ThreadPoolExecutor(max_workers=25) as pool:
        ids = list(pool.map(session, range(50)))
    assert len(set(ids)) == 50
    expected = sum(2 * ((1_000 + i) * 100 + 2_000 * 200) for i in range(50))
    d.wait("costguard.cost_micro_usd", expected)
    d.wait("costguard.sessions.ended", 50)
    assert envoy.stat("costguard.sessions.active") == 0
    assert d.get("costguard.sessions.warned") == 0
    wait_until(lambda: sim.tally()["ws_open"] == 0, what="simulator connections to end")


def test_compression_offer_is_stripped_so_frames_stay_readable(envoy):
    d = StatDelta(envoy)
    with open_session(envoy, compression="deflate") as ws:
        assert "sec-websocket-extensions" not in ws.response.headers
        recv_json(ws)
        respond(ws, rt_usage(1_000, 0))
    d.wait("costguard.cost_micro_usd", 100_000)
