"""Budget rules (per API key, user, team…) against real Envoy with
--concurrency 2: refusals and their retry-after, windows, models,
reservations under concurrency, Realtime sessions, credentials, capacity."""
import calendar
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import requests

from conftest import Envoy, StatDelta, chat, wait_until
from test_realtime import closed_by, open_session, recv_json, respond, rt_usage

# "m" costs $10 per 1M output tokens and nothing for input: 1,000 output
# tokens are exactly $0.01, and a request asking for max_tokens 1000 reserves
# exactly that.
PRICES = {"m": {"input": 0, "output": 10}, "m-mini": {"input": 0, "output": 10}, "other": {"input": 0, "output": 10},
          "gpt-realtime": {"input": 100, "output": 200}}
RULES = [
    {"name": "key-daily", "key": "header:x-api-key", "limit_usd": 0.05, "window": "day"},
    {"name": "user-monthly", "key": "header:x-user-id", "limit_usd": 0.03, "window": "month"},
    {"name": "team-m", "key": "header:x-team-id", "limit_usd": 0.02, "window": "month", "models": ["m", "m-*"]},
    {"name": "burst", "key": "header:x-burst-key", "limit_usd": 0.02, "window": 60},
    {"name": "bearer", "key": "header:authorization", "limit_usd": 0.02, "window": "day"},
]
CONFIG = {"pricing": PRICES, "global": {"budget_usd": 1000000}, "session": {"budget_usd": 1000},
          "budgets": RULES}


def cents_usage(cents):
    return {"prompt_tokens": 10, "completion_tokens": cents * 1000}


def call(envoy, headers, cents=1, model="m", max_tokens=1000, **kw):
    body = {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]}
    return chat(envoy, usage=cents_usage(cents), headers=headers, body=body, **kw)


def wait_text(seconds):
    """The README's wait format: the two largest units, the second left out when 0."""
    units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")]
    i = next(i for i, (u, _) in enumerate(units) if seconds >= u)
    (big, big_name), text = units[i], ""
    text = f"{seconds // big}{big_name}"
    if i + 1 < len(units):
        small, small_name = units[i + 1]
        if seconds % big // small:
            text += f"{seconds % big // small}{small_name}"
    return text


def next_midnight_utc():
    now = datetime.now(timezone.utc)
    return datetime(now.year, now.month, now.day, tzinfo=timezone.utc).timestamp() + 86_400


def next_month_utc():
    now = datetime.now(timezone.utc)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


@pytest.fixture(scope="module")
def envoy(sim):
    e = Envoy(sim.port, CONFIG).wait_ready()
    yield e
    e.stop()


# The 60-second rule's window is aligned to the minute: the first test of the
# module exhausts it, the last one sees it reset, and the tests between use
# the wait.
BURST = {}


def test_a_60_second_rule_refuses_within_its_window(envoy):
    key = {"x-burst-key": "b1"}
    assert call(envoy, key, cents=2).status_code == 200
    r = call(envoy, key)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "budget_exceeded"
    retry_after = int(r.headers["retry-after"])
    expected = 60 - int(time.time()) % 60
    assert abs(retry_after - expected) <= 2 and 1 <= retry_after <= 60
    assert "this minute" in r.json()["error"]["message"]
    BURST["resets_at"] = time.time() + retry_after


def test_a_key_is_refused_at_its_day_limit_and_others_pass(envoy, sim):
    d = StatDelta(envoy)
    alice = {"x-api-key": "alice", "x-trace": "rules-alice"}
    for remaining in ("0.05", "0.04", "0.03", "0.02", "0.01"):
        r = call(envoy, alice)
        assert r.status_code == 200
        assert r.headers["x-costguard-budget-remaining-usd"] == remaining
    r = call(envoy, alice)
    assert r.status_code == 429
    retry_after = int(r.headers["retry-after"])
    assert abs(retry_after - math.ceil(next_midnight_utc() - time.time())) <= 2
    assert r.json() == {"error": {
        "message": f'Budget "key-daily" exhausted: $0.05 spent of $0.05 this day; resets in {wait_text(retry_after)}.',
        "type": "insufficient_quota", "code": "budget_exceeded"}}
    assert r.headers["content-type"] == "application/json"
    # Never reached the upstream.
    assert sum(1 for q in sim.requests() if q["headers"].get("x-trace") == "rules-alice") == 5
    # Key B and requests without the header pass.
    assert call(envoy, {"x-api-key": "bob"}).status_code == 200
    r = call(envoy, {})
    assert r.status_code == 200 and "x-costguard-budget-remaining-usd" not in r.headers
    d.wait("costguard.budget.key-daily.rejected", 1)
    d.wait("costguard.budget.key-daily.spend_micro_usd", 60_000)
    assert envoy.stat("costguard.budget.key-daily.keys") >= 2


def test_a_month_rule_resets_on_the_first_of_next_month(envoy):
    user = {"x-user-id": "u1"}
    for _ in range(3):
        assert call(envoy, user).status_code == 200
    r = call(envoy, user)
    assert r.status_code == 429
    assert abs(int(r.headers["retry-after"]) - math.ceil(next_month_utc() - time.time())) <= 2
    assert "this month" in r.json()["error"]["message"]


def test_a_rule_with_models_counts_only_them(envoy):
    d = StatDelta(envoy)
    team = {"x-team-id": "t1"}
    # "other" is not limited by the team's rule and not counted in it.
    for _ in range(5):
        assert call(envoy, team, model="other").status_code == 200
    assert call(envoy, team, model="m").status_code == 200
    assert call(envoy, team, model="m-mini", cents=1).status_code == 200
    r = call(envoy, team, model="m")
    assert r.status_code == 429 and '"team-m"' in r.json()["error"]["message"]
    assert call(envoy, team, model="other").status_code == 200
    d.wait("costguard.budget.team-m.spend_micro_usd", 20_000)


def test_a_body_read_as_it_passes_is_refused_at_its_end(envoy, sim):
    """Responses API bodies are not held (only Chat bodies are, for the
    include_usage rewrite): the rule with models decides when the body has
    passed, and a refusal then still keeps the call from the upstream."""
    team = {"x-team-id": "t-responses", "x-trace": "rules-responses"}

    def respond_call():
        return requests.post(f"{envoy.url}/v1/responses", timeout=30, headers={
            **team, "x-sim-usage": json.dumps({"input_tokens": 0, "output_tokens": 1000})},
            json={"model": "m", "input": "hi", "max_output_tokens": 1000})
    assert [respond_call().status_code for _ in range(2)] == [200, 200]
    r = respond_call()
    assert r.status_code == 429 and '"team-m"' in r.json()["error"]["message"]
    # The upstream got the refused request's headers at most, never a request to answer.
    assert sum(1 for q in sim.requests() if q["headers"].get("x-trace") == "rules-responses") == 2


def parallel_streams(envoy, key, n=100):
    """n concurrent streaming requests of one key, each $0.01 and ≥ 0.6 s long."""
    body = {"model": "m", "max_tokens": 1000, "stream": True, "messages": [{"role": "user", "content": "hi"}]}

    def one(_):
        r = chat(envoy, body=body, usage=cents_usage(1), headers={**key, "x-sim-delay-ms": "200"})
        return r.status_code, r.text
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("mode", ["estimate", "off"])
def test_concurrent_requests_of_one_key(start_envoy, mode):
    # $0.20: room for exactly 20 requests of $0.01.
    config = {**CONFIG, "budgets": [{"name": "k", "key": "header:x-api-key", "limit_usd": 0.2, "window": "day"}],
              "reservation": {"mode": mode}}
    e = start_envoy(config)
    d = StatDelta(e)
    results = parallel_streams(e, {"x-api-key": "hammer"})
    admitted = sum(1 for status, _ in results if status == 200)
    refused = [t for status, t in results if status == 429]
    assert admitted + len(refused) == 100
    assert all(json.loads(t)["error"]["code"] == "budget_exceeded" for t in refused)
    d.wait("costguard.budget.k.spend_micro_usd", admitted * 10_000)
    spend = admitted * 10_000
    print(f"reservation {mode}: {admitted} of 100 admitted, ${spend / 1e6} spent of $0.20")
    if mode == "estimate":
        # At most one request's cost past the limit, and no fewer than 18 admitted.
        assert 18 <= admitted and spend <= 200_000 + 10_000
        # Every reservation was replaced: none outstanding.
        wait_until(lambda: e.stat("costguard.budget.k.reserved_micro_usd") == 0, what="reservations released")
    else:
        # Admission on committed spend alone: the requests in flight all pass.
        assert spend > 200_000 + 10_000


def test_realtime_session_is_closed_when_its_key_runs_out(envoy):
    d = StatDelta(envoy)
    key = {"x-api-key": "voice-key"}
    # $0.05 a day: a response of 500 output tokens at $200/1M is $0.10.
    with open_session(envoy, headers=key) as ws:
        assert ws.response.headers["x-costguard-budget-remaining-usd"] == "0.05"
        assert recv_json(ws)["type"] == "session.created"
        ws.send(json.dumps({"type": "response.create", "sim": {"usage": rt_usage(0, 500)}}))
        code, reason, seen = closed_by(ws)
    assert (code, reason) == (1008, "Budget exceeded")
    exceeded = [e for e in seen if e["type"] == "budget_exceeded"]
    assert exceeded and exceeded[0]["budget"] == "key-daily"
    assert exceeded[0]["budget_usd"] == 0.05 and exceeded[0]["budget_spent_usd"] == 0.1
    d.wait("costguard.sessions.budget_exceeded", 1)
    r = call(envoy, key)
    assert r.status_code == 429 and '"key-daily"' in r.json()["error"]["message"]
    # A new session of the key is refused at the upgrade.
    r = requests.get(f"{envoy.url}/v1/realtime?model=gpt-realtime",
                     headers={**key, "connection": "Upgrade", "upgrade": "websocket",
                              "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status_code == 429


def test_a_client_message_after_the_key_ran_out_is_not_forwarded(envoy, sim):
    key = {"x-api-key": "voice-key-2"}
    with open_session(envoy, headers=key) as ws:
        assert recv_json(ws)["type"] == "session.created"
        respond(ws, rt_usage(0, 100))  # $0.02
        # HTTP requests of the same key spend the rest meanwhile.
        for _ in range(3):
            assert call(envoy, key).status_code == 200
        ws.send(json.dumps({"type": "response.create", "sim": {"usage": rt_usage(0, 100)}}))
        code, reason, seen = closed_by(ws)
    assert (code, reason) == (1008, "Budget exceeded")
    assert [e["budget"] for e in seen if e["type"] == "budget_exceeded"] == ["key-daily"]
    assert not any(e["type"] == "response.done" for e in seen), "the response.create was not forwarded"


def test_credential_keys_never_appear_raw(envoy):
    secret = "sk-test-d0n0tleak-4242"
    auth = {"authorization": f"Bearer {secret}"}
    for _ in range(2):
        assert call(envoy, auth).status_code == 200
    r = call(envoy, auth)
    assert r.status_code == 429
    assert secret not in r.text and secret not in json.dumps(dict(r.headers))
    entries = wait_until(lambda: [x for x in envoy.access_log_entries()
                                  if x.get("costguard_budget_remaining_usd") == "0.01"],
                         what="access log entry with the budget's remaining room")
    assert entries
    prom = wait_until(lambda: (lambda t: t if 'costguard_budget_spend_micro_usd{budget="bearer"} 20000' in t else None)(
        requests.get(f"{envoy.admin}/stats/prometheus", timeout=10).text), what="the bearer rule's spend, labelled")
    stats = requests.get(f"{envoy.admin}/stats", timeout=10).text
    for text in (stats, prom, envoy.access_log.read_text(), envoy.log()):
        assert secret not in text and "d0n0tleak" not in text


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
def test_a_full_key_table(start_envoy, fail_mode):
    config = {**CONFIG, "fail_mode": fail_mode, "budgets_max_keys": 2,
              "budgets": [{"name": "k", "key": "header:x-api-key", "limit_usd": 1, "window": "day"}]}
    e = start_envoy(config)
    d = StatDelta(e)
    for key in ("a", "b"):
        assert call(e, {"x-api-key": key}).status_code == 200
    r = call(e, {"x-api-key": "c"})
    if fail_mode == "closed":
        assert r.status_code == 429 and r.json()["error"]["code"] == "budget_capacity"
    else:
        assert r.status_code == 200
    # Once per call, whether it was refused or admitted without a slot.
    d.wait("costguard.budget.capacity_exhausted", 1)
    # The live keys keep their budgets (never evicted).
    r = call(e, {"x-api-key": "a"})
    assert r.status_code == 200 and r.headers["x-costguard-budget-remaining-usd"] == "0.99"
    assert e.stat("costguard.budget.k.keys") == 2


def test_a_60_second_rule_resets_after_its_window(envoy):
    assert BURST, "runs after test_a_60_second_rule_refuses_within_its_window"
    wait_until(lambda: time.time() >= BURST["resets_at"] + 0.5, timeout=70, interval=0.2,
               what="the burst rule's window to end")
    r = call(envoy, {"x-burst-key": "b1"})
    assert r.status_code == 200 and r.headers["x-costguard-budget-remaining-usd"] == "0.02"
