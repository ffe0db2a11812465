"""Injected faults against real Envoy. After every fault: Envoy still serves,
`costguard.sessions.active` returns to 0, the recorded spend equals the spend
that was reported before the fault, and the fault is counted in a stat."""
import json
import socket
import struct
import time
from pathlib import Path

import pytest
import requests
from websockets.exceptions import ConnectionClosed

from conftest import Envoy, LdsEnvoy, StatDelta, chat, wait_until
from test_realtime import closed_by, open_session, recv_json, respond, rt_usage

CONFIG = {"pricing": {"gpt-realtime": {"input": 100, "output": 200}, "gpt-5": {"input": 10, "output": 30}},
          "global": {"budget_usd": 1000000}, "session": {"budget_usd": 1000}}
# $1.00 on gpt-realtime (10k in × $100 / 1M) and on gpt-5 (100k in × $10 / 1M)
RT_DOLLAR = rt_usage(10_000, 0)
CHAT_DOLLAR = {"prompt_tokens": 100_000, "completion_tokens": 0}


@pytest.fixture(scope="module")
def envoy(sim):
    e = Envoy(sim.port, CONFIG).wait_ready()
    yield e
    e.stop()


def assert_recovered(envoy, d, spend_before_fault):
    """Envoy serves, no session is left active, and spend is exactly what was reported."""
    d.wait("costguard.cost_micro_usd", spend_before_fault)
    r = requests.get(f"{envoy.url}/healthz", timeout=10)
    assert r.status_code == 200
    wait_until(lambda: envoy.stat("costguard.sessions.active") == 0, what="sessions.active back to 0")
    time.sleep(0.3)  # nothing more may arrive late
    d.wait("costguard.cost_micro_usd", spend_before_fault)


def frame(opcode, payload, mask=None, rsv=0, length=None):
    n = len(payload) if length is None else length
    head = bytes([0x80 | rsv | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n <= 0xFFFF:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def test_sse_upstream_resets_mid_stream(envoy):
    d = StatDelta(envoy)
    with pytest.raises(requests.RequestException):
        chat(envoy, model="gpt-5", stream=True, usage=CHAT_DOLLAR, headers={"x-sim-reset": "mid-stream"}).content
    d.wait("costguard.usage.missing", 1)
    assert_recovered(envoy, d, 0)


def test_sse_usage_then_upstream_reset_is_priced(envoy):
    d = StatDelta(envoy)
    try:
        chat(envoy, model="gpt-5", stream=True, usage=CHAT_DOLLAR, headers={"x-sim-reset": "after-usage"}).content
    except requests.RequestException:
        pass
    assert_recovered(envoy, d, 1_000_000)
    assert d.get("costguard.usage.missing") == 0


def test_sse_client_disconnects_mid_stream(envoy):
    d = StatDelta(envoy)
    body = json.dumps({"model": "gpt-5", "stream": True, "messages": []}).encode()
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"x-sim-delay-ms: 300\r\nx-sim-chunks: 10\r\nx-sim-usage: " + json.dumps(CHAT_DOLLAR).encode() +
                  b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert b"data: " in s.recv(65536) + s.recv(65536)
        # The client vanishes mid-stream.
    d.wait("costguard.usage.missing", 1)
    assert_recovered(envoy, d, 0)


def test_upstream_errors_cost_nothing(envoy):
    d = StatDelta(envoy)
    for status in (500, 503, 429):
        r = chat(envoy, model="gpt-5", usage=CHAT_DOLLAR, headers={"x-sim-status": str(status)})
        assert r.status_code == status and r.json()["error"]["message"]
    wait_until(lambda: d.get("costguard.requests") >= 3, what="requests counted")
    assert d.get("costguard.usage.missing") == 0 and d.get("costguard.usage.parse_errors") == 0
    assert_recovered(envoy, d, 0)


def test_huge_headers(envoy):
    d = StatDelta(envoy)
    r = chat(envoy, model="gpt-5", usage=CHAT_DOLLAR, headers={"x-padding": "p" * 50_000})
    assert r.status_code == 200
    # Over Envoy's 60 KiB header limit: Envoy itself refuses before costguard runs, and counts it.
    before_4xx = envoy.stats_all().get("http.openai_ingress.downstream_rq_4xx", 0)
    r = chat(envoy, model="gpt-5", usage=CHAT_DOLLAR, headers={"x-padding": "p" * 100_000})
    assert r.status_code == 431
    wait_until(lambda: envoy.stats_all().get("http.openai_ingress.downstream_rq_4xx", 0) == before_4xx + 1,
               what="Envoy's 4xx counter")
    assert_recovered(envoy, d, 1_000_000)


def test_hundred_megabyte_body(envoy):
    d = StatDelta(envoy)
    rss_before = envoy.rss_kib()
    size = 100 * 1000 * 1000
    received = 0
    with requests.post(f"{envoy.url}/v1/chat/completions", stream=True, timeout=300,
                       headers={"x-sim-pad-bytes": str(size), "x-sim-usage": json.dumps(CHAT_DOLLAR)},
                       json={"model": "gpt-5", "messages": []}) as r:
        for block in r.iter_content(1 << 16):
            received += len(block)
    assert received > size
    rss_after = envoy.rss_kib()
    print(f"100 MB body: Envoy RSS {rss_before} KiB -> {rss_after} KiB")
    assert rss_after - rss_before < 32 * 1024
    assert_recovered(envoy, d, 1_000_000)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("body, counted_in", [("truncated", "costguard.usage.parse_errors"),
                                               ("no-usage", "costguard.usage.missing")])
def test_long_json_body_without_usage_at_its_end(envoy, body, counted_in, framing):
    """A JSON body longer than the 64 KiB costguard scans is priced from its
    end, read backward: one cut inside its content (a shorter body: still
    200), or one without usage, is counted as such and costs nothing."""
    d = StatDelta(envoy)
    r = requests.post(f"{envoy.url}/v1/chat/completions", timeout=60,
                      headers={"x-sim-pad-bytes": str(300_000), "x-sim-usage": json.dumps(CHAT_DOLLAR),
                               "x-sim-body": body, "x-sim-framing": framing},
                      json={"model": "gpt-5", "messages": []})
    assert r.status_code == 200 and len(r.content) > 100_000
    d.wait(counted_in, 1)
    assert_recovered(envoy, d, 0)


def test_ws_upstream_resets_after_a_priced_response(envoy, sim):
    d = StatDelta(envoy)
    with open_session(envoy) as ws:
        recv_json(ws)
        respond(ws, RT_DOLLAR)
        ws.send(json.dumps({"type": "response.create", "sim": {"usage": RT_DOLLAR, "end": "reset"}}))
        code, _, _ = closed_by(ws)
    assert code == 1006
    d.wait("costguard.sessions.aborted", 1)
    d.wait("costguard.sessions.ended", 1)
    assert_recovered(envoy, d, 2_000_000)


def test_ws_upstream_resets_before_usage(envoy):
    d = StatDelta(envoy)
    with open_session(envoy) as ws:
        recv_json(ws)
        respond(ws, RT_DOLLAR)
        ws.send(json.dumps({"type": "response.create", "sim": {"usage": RT_DOLLAR, "end": "reset_before_done"}}))
        closed_by(ws)
    d.wait("costguard.sessions.aborted", 1)
    assert_recovered(envoy, d, 1_000_000)


def test_ws_client_vanishes(envoy, sim):
    d = StatDelta(envoy)
    with open_session(envoy) as ws:
        recv_json(ws)
        respond(ws, RT_DOLLAR)
        ws.socket.shutdown(socket.SHUT_RDWR)  # no Close frame: the client is just gone
        ws.socket.close()
    d.wait("costguard.sessions.aborted", 1)
    wait_until(lambda: sim.tally()["ws_open"] == 0, what="the upstream connection to end")
    assert_recovered(envoy, d, 1_000_000)


RESPONSE_DONE = {"type": "response.done", "response": {"usage": RT_DOLLAR}}


# Each case: the bad bytes, then the simulator's own response.done ($1), after a first priced $1.
@pytest.mark.parametrize("name,raw,expected", [
    # A frame length with the most significant bit set: not WebSocket any more, nothing after it is read.
    ("length 2^63", frame(2, b"", length=1 << 63), 1_000_000),
    # A response.done whose transcript is not UTF-8: counted, and still priced (its usage reads).
    ("invalid utf-8", frame(1, json.dumps(RESPONSE_DONE)[:-2].encode() + b',"t":"\xff\xfe"}}'), 3_000_000),
    # Servers must not mask: counted; framing is intact, so the next response.done is priced.
    ("masked server frame", frame(1, b'{"type":"response.output_audio.delta","delta":"AAAA"}', mask=b"\x01\x02\x03\x04"), 2_000_000),
    # RSV1 (permessage-deflate) although no extension was negotiated: counted, unreadable.
    ("compressed frame", frame(1, b"\x00\x01\x02", rsv=0x40), 2_000_000),
])
def test_ws_bad_server_frames(envoy, name, raw, expected):
    d = StatDelta(envoy)
    with open_session(envoy) as ws:
        recv_json(ws)
        respond(ws, RT_DOLLAR)
        ws.send(json.dumps({"type": "response.create", "sim": {"usage": RT_DOLLAR, "raw_hex": [raw.hex()],
                                                               "audio_deltas": 0, "end": "reset"}}))
        try:
            closed_by(ws)
        except AssertionError:
            pass
    d.wait("costguard.usage.parse_errors", 1)
    assert_recovered(envoy, d, expected)


def test_fail_mode_closed_for_cut_streams_and_missing_realtime_usage(start_envoy):
    e = start_envoy({**CONFIG, "fail_mode": "closed"})
    # A stream cut before its usage closes its HTTP session.
    with pytest.raises(requests.RequestException):
        chat(e, model="gpt-5", stream=True, usage=CHAT_DOLLAR,
             headers={"x-sim-reset": "mid-stream", "x-session-id": "cut"}).content
    e.wait_stat("costguard.usage.missing", 1)
    assert chat(e, model="gpt-5", usage=CHAT_DOLLAR, headers={"x-session-id": "cut"}).status_code == 429
    # A response.done without usage ends a Realtime session.
    with open_session(e) as ws:
        recv_json(ws)
        ws.send(json.dumps({"type": "response.create", "sim": {"usage": None}}))
        code, reason, seen = closed_by(ws)
    assert (code, reason) == (1008, "Budget exceeded")
    assert seen[-1]["type"] == "budget_exceeded"
    e.wait_stat("costguard.usage.missing", 2)
    e.wait_stat("costguard.sessions.active", 0)


def test_config_reload_keeps_budgets(sim, tmp_path):
    """A changed plugin configuration (pushed through LDS) rebuilds costguard's plugin;
    budgets in shared data survive it."""
    e = LdsEnvoy(sim.port, {**CONFIG, "session": {"budget_usd": 5}}, tmp_path)
    try:
        e.wait_ready().wait_serving()
        r = chat(e, model="gpt-5", usage={"prompt_tokens": 200_000, "completion_tokens": 0},
                 headers={"x-session-id": "reload"})
        assert r.headers["x-costguard-session-remaining-usd"] == "5"
        spent_before = wait_until(lambda: e.stat("costguard.cost_micro_usd"), what="cost")
        e.push({**CONFIG, "session": {"budget_usd": 10}})
        # $2 spent before the reload; the new budget is $10: $8 left.
        r = wait_until(lambda: (lambda r: r if r.headers.get("x-costguard-session-remaining-usd") == "8" else None)(
            chat(e, model="gpt-5", usage={"prompt_tokens": 1, "completion_tokens": 0},
                 headers={"x-session-id": "reload"})), timeout=30, what="the new budget to apply")
        assert r.status_code == 200
        assert e.stat("costguard.cost_micro_usd") >= spent_before
    finally:
        e.stop()
