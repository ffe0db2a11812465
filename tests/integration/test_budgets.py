"""Budgets against real Envoy with --concurrency 2: per-session budgets in
shared data, the global window's circuit breaker, and what clients see."""
import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import Envoy, StatDelta, chat, wait_until

# gpt-5 at $10 per 1M input tokens: 100k tokens = $1.00.
SEED = {"pricing": {"gpt-5": {"input": 10, "output": 30}}, "global": {"budget_usd": 1000000}}


def usd_input(dollars_times_100):
    """Usage costing exactly that many cents on SEED's gpt-5."""
    return {"prompt_tokens": dollars_times_100 * 1_000, "completion_tokens": 0}


@pytest.fixture(scope="module")
def envoy(sim):
    e = Envoy(sim.port, SEED).wait_ready()
    yield e
    e.stop()


def call(envoy, session, cents, trace=None, header="x-session-id"):
    headers = {header: session}
    if trace:
        headers["x-trace"] = trace
    return chat(envoy, model="gpt-5", usage=usd_input(cents), headers=headers)


def upstream_calls(sim, trace):
    return sum(1 for q in sim.requests() if q["headers"].get("x-trace") == trace)


def test_seed_session_scenario(envoy, sim):
    d = StatDelta(envoy)
    remaining = []
    for cents in (200, 200, 150):
        r = call(envoy, "seed-session", cents, trace="seed-session")
        assert r.status_code == 200
        assert r.headers["x-costguard-session-id"] == "seed-session"
        remaining.append(r.headers["x-costguard-session-remaining-usd"])
    assert remaining == ["5", "3", "1"]
    d.wait("costguard.cost_micro_usd", 5_500_000)
    # $5.50 of $5.00: the next call is refused and never reaches the upstream.
    r = call(envoy, "seed-session", 100, trace="seed-session")
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "session_budget_exceeded"
    assert r.json()["error"]["type"] == "insufficient_quota"
    assert upstream_calls(sim, "seed-session") == 3
    d.wait("costguard.rejected.session_budget", 1)
    # Another session is unaffected.
    r = call(envoy, "seed-other", 100)
    assert r.status_code == 200 and r.headers["x-costguard-session-remaining-usd"] == "5"


def test_exactly_the_budget_is_refused(envoy):
    assert call(envoy, "exact-5", 500).status_code == 200
    wait_until(lambda: call(envoy, "exact-5", 1).status_code == 429, what="refusal at $5.00 of $5.00")


def test_requests_without_the_header_belong_to_no_session(envoy):
    r = chat(envoy, model="gpt-5", usage=usd_input(900))
    assert r.status_code == 200
    assert "x-costguard-session-id" not in r.headers


def raw_request(envoy, header_value: bytes):
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=10) as s:
        body = b'{"model":"gpt-5"}'
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"x-session-id: " + header_value + b"\r\ncontent-length: " + str(len(body)).encode() +
                  b"\r\nconnection: close\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("value", [b"a" * 257, b"tab\there"])
def test_invalid_session_ids_get_400(envoy, value):
    status, body = raw_request(envoy, value)
    assert status == 400
    assert json.loads(body)["error"]["code"] == "invalid_session_id"
    assert raw_request(envoy, b"b" * 256)[0] == 200


def test_credential_header_is_hashed_everywhere(start_envoy, sim):
    e = start_envoy({**SEED, "session": {"id_header": "authorization"}})
    secret = "Bearer sk-test-SECRET-123456789"
    r = call(e, secret, 100, header="authorization")
    assert r.status_code == 200
    sid = r.headers["x-costguard-session-id"]
    assert sid.startswith("h:") and "SECRET" not in sid
    assert call(e, secret, 100, header="authorization").headers["x-costguard-session-id"] == sid
    entries = wait_until(lambda: [x for x in e.access_log_entries() if x["costguard_session_id"] == sid][1:] and
                         [x for x in e.access_log_entries() if x["costguard_session_id"] == sid],
                         what="two access log entries")
    assert "SECRET" not in e.access_log.read_text()
    assert "SECRET" not in requests.get(f"{e.admin}/stats", timeout=10).text
    assert entries[-1]["costguard_session_cost_usd"] == "2"


def test_access_log_shows_session_and_costs(envoy):
    call(envoy, "logged-session", 125)
    call(envoy, "logged-session", 250)
    wait_until(lambda: len([x for x in envoy.access_log_entries()
                            if x["costguard_session_id"] == "logged-session"]) == 2, what="two entries")
    entries = [x for x in envoy.access_log_entries() if x["costguard_session_id"] == "logged-session"]
    assert [(x["costguard_cost_usd"], x["costguard_session_cost_usd"]) for x in entries] == \
        [("1.25", "1.25"), ("2.5", "3.75")]


def test_response_headers_and_filter_state_can_be_turned_off(start_envoy):
    """Options that cost a host call each: off, nothing is added to responses or
    the access log, and budgets hold all the same."""
    e = start_envoy({**SEED, "response_headers": False, "filter_state": False})
    for _ in range(2):
        r = call(e, "quiet-session", 250, trace="quiet")
        assert r.status_code == 200
        assert not [h for h in r.headers if h.lower().startswith("x-costguard-")], dict(r.headers)
    r = call(e, "quiet-session", 1)
    assert r.status_code == 429 and r.json()["error"]["code"] == "session_budget_exceeded"
    e.wait_stat("costguard.cost_micro_usd", 5_000_000)
    entries = wait_until(lambda: e.access_log_entries()[2:] and e.access_log_entries(), what="three entries")
    for entry in entries:
        values = {k: v for k, v in entry.items() if k.startswith("costguard_")}
        assert values and all(v in (None, "-") for v in values.values()), entry


def test_fail_mode_closed_stops_a_session_whose_usage_is_missing(start_envoy):
    e = start_envoy({**SEED, "fail_mode": "closed"})
    r = chat(e, model="gpt-5", headers={"x-session-id": "no-usage", "x-sim-body": "no-usage"})
    assert r.status_code == 200
    e.wait_stat("costguard.usage.missing", 1)
    assert call(e, "no-usage", 1).status_code == 429
    assert call(e, "other", 1).status_code == 200


def test_breaker_trips_refuses_and_recovers(start_envoy, sim):
    window_s, cooldown_s = 4, 1
    e = start_envoy({**SEED, "global": {"budget_usd": 1, "window_s": window_s, "cooldown_s": cooldown_s}})
    # Start early in a window so the trip and refusal happen in the same one.
    wait_until(lambda: time.time() % window_s < 1.0, timeout=window_s + 1, interval=0.02, what="window start")
    assert call(e, "breaker", 60).status_code == 200
    assert call(e, "breaker", 60).status_code == 200  # $1.20 ≥ $1.00: trips
    e.wait_stat("costguard.circuit_breaker.trips", 1)
    r = chat(e, model="gpt-5", usage=usd_input(1), headers={"x-trace": "while-open"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "circuit_open"
    assert r.json()["error"]["type"] == "server_error"
    assert 1 <= int(r.headers["retry-after"]) <= window_s
    assert upstream_calls(sim, "while-open") == 0
    wait_until(lambda: e.stat("costguard.rejected.circuit_open") >= 1, what="a breaker rejection counted")
    e.wait_stat("costguard.circuit_breaker.open", 1)
    e.wait_stat("costguard.global.window_spend_micro_usd", 1_200_000)
    # Closes at the next window (≥ cooldown after opening); then serves again.
    started = time.monotonic()
    wait_until(lambda: chat(e, model="gpt-5", usage=usd_input(1)).status_code == 200,
               timeout=window_s + cooldown_s + 5, interval=0.2, what="breaker to close")
    assert time.monotonic() - started <= window_s + cooldown_s + 5
    e.wait_stat("costguard.circuit_breaker.open", 0, timeout=5)
    e.wait_stat("costguard.circuit_breaker.trips", 1)


def test_many_sessions_in_parallel_exact_totals(envoy):
    d = StatDelta(envoy)
    sessions, calls = 100, 3

    def one(i):
        return call(envoy, f"par-{i // calls}", 1 + (i % 7)).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(one, range(sessions * calls)))
    assert codes == [200] * (sessions * calls)
    expected = sum(1 + (i % 7) for i in range(sessions * calls)) * 10_000
    d.wait("costguard.cost_micro_usd", expected)
    d.wait("costguard.model.gpt-5.cost_micro_usd", expected)


def test_parallel_calls_on_one_session_lose_nothing(envoy):
    d = StatDelta(envoy)
    cost_cents = 10

    def one(_):
        return call(envoy, "hot-session", cost_cents).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(one, range(100)))
    admitted = codes.count(200)
    assert admitted + codes.count(429) == 100
    recorded = admitted * cost_cents * 10_000
    d.wait("costguard.cost_micro_usd", recorded)
    r = call(envoy, "hot-session", cost_cents)
    if recorded >= 5_000_000:
        assert r.status_code == 429
        spent = re.search(r"\$([0-9.]+) spent", r.json()["error"]["message"]).group(1)
        assert round(float(spent) * 1_000_000) == recorded
    else:
        assert r.status_code == 200
        assert r.headers["x-costguard-session-remaining-usd"] == f"{(5_000_000 - recorded) / 1e6:g}"


def test_idle_sessions_are_dropped(start_envoy):
    e = start_envoy({**SEED, "session": {"idle_ttl_s": 2, "max_tracked": 64}})
    assert call(e, "idle", 500).status_code == 200
    wait_until(lambda: call(e, "idle", 1).status_code == 429, what="session over budget")
    e.wait_stat("costguard.http_sessions.tracked", 1)
    # No request for idle_ttl_s: the sweep drops it and the session starts afresh.
    e.wait_stat("costguard.http_sessions.tracked", 0, timeout=15)
    r = call(e, "idle", 1)
    assert r.status_code == 200 and r.headers["x-costguard-session-remaining-usd"] == "5"


def test_sessions_are_bounded_and_evictions_counted(start_envoy):
    e = start_envoy({**SEED, "session": {"max_tracked": 8}})
    for i in range(20):
        assert call(e, f"bounded-{i}", 1).status_code == 200
    wait_until(lambda: e.stat("costguard.http_sessions.evicted") == 12, what="12 evictions")
    e.wait_stat("costguard.http_sessions.tracked", 8)
