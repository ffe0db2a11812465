"""Foundation: costguard loads in real Envoy and prices non-streaming OpenAI
responses exactly, to the micro-dollar, passing every body through unchanged."""
import json

import pytest
import requests

from conftest import Envoy, StatDelta, chat, wait_until

# The seed's own price table (USD per 1M tokens).
SEED_CONFIG = {
    "global": {"budget_usd": 1000000},
    "pricing": {
        "gpt-5": {"input": 10, "output": 30},
        "gpt-5-mini": {"input": 3, "output": 15},
        "gpt-realtime": {"input": 100, "output": 200},
    },
}


@pytest.fixture(scope="module")
def seed_envoy(sim):
    e = Envoy(sim.port, SEED_CONFIG).wait_ready()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def builtin_envoy(sim):
    e = Envoy(sim.port, {"global": {"budget_usd": 1000000}}).wait_ready()
    yield e
    e.stop()


@pytest.mark.parametrize("model,usage,expected_micros", [
    ("gpt-5", {"prompt_tokens": 100_000, "completion_tokens": 200_000}, 7_000_000),
    ("gpt-5-mini", {"prompt_tokens": 500_000, "completion_tokens": 1_000_000}, 16_500_000),
])
def test_seed_examples_priced_exactly(seed_envoy, model, usage, expected_micros):
    d = StatDelta(seed_envoy)
    r = chat(seed_envoy, model=model, usage=usage)
    assert r.status_code == 200
    assert r.json()["usage"]["prompt_tokens"] == usage["prompt_tokens"]
    d.wait("costguard.cost_micro_usd", expected_micros)
    d.wait(f"costguard.model.{model}.cost_micro_usd", expected_micros)
    d.wait(f"costguard.model.{model}.input_tokens", usage["prompt_tokens"])
    d.wait(f"costguard.model.{model}.output_tokens", usage["completion_tokens"])
    d.wait("costguard.requests", 1)


def test_builtin_prices_with_cached_and_audio_tokens(builtin_envoy):
    d = StatDelta(builtin_envoy)
    usage = {"prompt_tokens": 10_000, "completion_tokens": 1_000,
             "prompt_tokens_details": {"cached_tokens": 4_000, "audio_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 500}}
    assert chat(builtin_envoy, model="gpt-4o", usage=usage).status_code == 200
    # 6,000 × $2.50 + 4,000 × $1.25 (cached) + 1,000 × $10 (reasoning included), per 1M.
    d.wait("costguard.cost_micro_usd", 15_000 + 5_000 + 10_000)
    d.wait("costguard.model.gpt-4o.cached_input_tokens", 4_000)
    d.wait("costguard.model.gpt-4o.input_tokens", 10_000)


def test_dated_model_names_match_longest_prefix(builtin_envoy):
    d = StatDelta(builtin_envoy)
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}
    chat(builtin_envoy, model="gpt-5-mini-2025-08-07", usage=usage)
    chat(builtin_envoy, model="gpt-5-2025-08-07", usage=usage)
    # gpt-5-mini $0.25 + $2.00; gpt-5 $1.25 + $10.00.
    d.wait("costguard.cost_micro_usd", 2_250_000 + 11_250_000)
    d.wait("costguard.model.gpt-5-mini.cost_micro_usd", 2_250_000)
    d.wait("costguard.model.gpt-5.cost_micro_usd", 11_250_000)


def test_unknown_model_priced_by_unknown_model_and_counted(builtin_envoy):
    d = StatDelta(builtin_envoy)
    chat(builtin_envoy, model="mystery-model-9", usage={"prompt_tokens": 100_000, "completion_tokens": 100_000})
    # Default unknown_model: $10 in / $40 out per 1M.
    d.wait("costguard.cost_micro_usd", 1_000_000 + 4_000_000)
    d.wait("costguard.model.unknown.cost_micro_usd", 5_000_000)
    d.wait("costguard.usage.unknown_model", 1)


def test_responses_and_embeddings_apis(builtin_envoy, sim):
    d = StatDelta(builtin_envoy)
    usage = {"input_tokens": 2_000_000, "input_tokens_details": {"cached_tokens": 1_000_000},
             "output_tokens": 100_000, "output_tokens_details": {"reasoning_tokens": 50_000}}
    r = requests.post(f"{builtin_envoy.url}/v1/responses", json={"model": "gpt-4.1", "input": "hi"},
                      headers={"x-sim-usage": json.dumps(usage)}, timeout=30)
    assert r.status_code == 200 and r.json()["object"] == "response"
    # 1M × $2.00 + 1M × $0.50 cached + 100k × $8.00.
    d.wait("costguard.model.gpt-4.1.cost_micro_usd", 2_000_000 + 500_000 + 800_000)
    r = requests.post(f"{builtin_envoy.url}/v1/embeddings", timeout=30,
                      json={"model": "text-embedding-3-small", "input": "hi"},
                      headers={"x-sim-usage": json.dumps({"prompt_tokens": 1_000_000, "total_tokens": 1_000_000})})
    assert r.status_code == 200
    d.wait("costguard.model.text-embedding-3-small.cost_micro_usd", 20_000)
    d.wait("costguard.cost_micro_usd", 3_300_000 + 20_000)


@pytest.mark.parametrize("kind,stat", [
    ("truncated", "costguard.usage.parse_errors"),
    ("garbage", "costguard.usage.parse_errors"),
    ("no-usage", "costguard.usage.missing"),
])
def test_malformed_bodies_pass_through_unchanged_and_are_counted(builtin_envoy, sim, kind, stat):
    d = StatDelta(builtin_envoy)
    headers = {"x-sim-body": kind, "content-type": "application/json"}
    body = json.dumps({"model": "gpt-5", "messages": []})
    direct = requests.post(f"{sim.url}/v1/chat/completions", data=body, headers=headers, timeout=30)
    proxied = requests.post(f"{builtin_envoy.url}/v1/chat/completions", data=body, headers=headers, timeout=30)
    assert proxied.status_code == 200
    assert proxied.content == direct.content
    d.wait(stat, 1)
    assert d.get("costguard.cost_micro_usd") == 0
    # Envoy still serves normally afterwards.
    assert chat(builtin_envoy, model="gpt-5", usage={"prompt_tokens": 8, "completion_tokens": 0}).status_code == 200
    d.wait("costguard.cost_micro_usd", 10)  # 8 × $1.25 / 1M rounds up to 10 µ$


def test_error_responses_cost_nothing(builtin_envoy):
    d = StatDelta(builtin_envoy)
    for status in (429, 500, 400):
        r = chat(builtin_envoy, headers={"x-sim-status": str(status)})
        assert r.status_code == status
        assert "error" in r.json()
    wait_until(lambda: d.get("costguard.requests") == 3, what="3 requests counted")
    assert d.get("costguard.cost_micro_usd") == 0
    assert d.get("costguard.usage.missing") == 0
    assert d.get("costguard.usage.parse_errors") == 0


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_eight_mib_body_priced_and_intact(builtin_envoy, sim, framing):
    """Of a long body with a content-length costguard reads only the head and
    the tail; of a chunked one every chunk: priced the same, passed intact."""
    d = StatDelta(builtin_envoy)
    headers = {"x-sim-pad-bytes": str(8 * 1024 * 1024), "x-sim-framing": framing, "x-sim-usage": json.dumps(
        {"prompt_tokens": 1_000_000, "completion_tokens": 2_000_000})}
    r = chat(builtin_envoy, model="gpt-4.1-mini", headers=headers)
    assert r.status_code == 200
    assert ("content-length" in r.headers) == (framing == "content-length")
    content = r.json()["choices"][0]["message"]["content"]
    assert len(content.encode()) == 8 * 1024 * 1024
    # $0.40 + 2 × $1.60.
    d.wait("costguard.model.gpt-4.1-mini.cost_micro_usd", 3_600_000)


def test_accept_encoding_removed_so_bodies_can_be_metered(builtin_envoy, sim):
    d = StatDelta(builtin_envoy)
    r = chat(builtin_envoy, model="gpt-5-nano", usage={"prompt_tokens": 1_000_000, "completion_tokens": 0},
             headers={"accept-encoding": "gzip, br", "x-trace": "accept-encoding-test"})
    assert r.status_code == 200
    seen = [q for q in sim.requests() if q["headers"].get("x-trace") == "accept-encoding-test"]
    assert seen and "accept-encoding" not in seen[-1]["headers"]
    d.wait("costguard.model.gpt-5-nano.cost_micro_usd", 50_000)


def test_access_log_carries_the_stream_cost(builtin_envoy):
    chat(builtin_envoy, model="o3", usage={"prompt_tokens": 1_000_000, "completion_tokens": 125_000},
         headers={"x-trace": "access-log"})
    # $2.00 + 125k × $8.00 / 1M = $3.00
    entry = wait_until(lambda: [e for e in builtin_envoy.access_log_entries()
                                if e.get("costguard_cost_usd") == "3"], what="access log entry")
    assert entry[-1]["path"] == "/v1/chat/completions"


@pytest.mark.parametrize("config,key", [
    ({"sesion": {}}, "sesion"),
    ({"session": {"budget_usd": -1}}, "session.budget_usd"),
    ({"session": {"warn_ratio": 1.5}}, "session.warn_ratio"),
    ({"pricing": {"gpt-5": {"input": "cheap"}}}, "pricing.gpt-5.input"),
    ({"pricing": {"gpt-5": {"input": 0.0000001}}}, "pricing.gpt-5.input"),
    ({"fail_mode": "sometimes"}, "fail_mode"),
    ({"pricing": {"gpt-5.5": {"input": 5, "above": {"input": 10}}}}, "pricing.gpt-5.5.above_input_tokens"),
    ({"price_catalog": {"path": "/model_prices.json"}}, "price_catalog.cluster"),
    ({"budgets": [{"name": "d", "key": "header:x-api-key", "limit_usd": 1, "window": "week"}]},
     "budgets[0].window"),
    ({"budgets": [{"name": "d", "key": "header:x-a", "limit_usd": 1, "window": "day"},
                  {"name": "d", "key": "header:x-b", "limit_usd": 1, "window": "day"}]}, "budgets[1].name"),
    ({"budgets": [{"name": "d", "key": "x-api-key", "limit_usd": 1, "window": "day"}]}, "budgets[0].key"),
    ("{not json", ""),
])
def test_bad_configuration_is_rejected_naming_the_key(start_envoy, config, key):
    e = start_envoy(plugin_config=config if isinstance(config, str) else json.dumps(config), wait=False)
    # Envoy refuses the listener's filter chain: it exits, or never serves through costguard.
    wait_until(lambda: f"configuration key `{key}`" in e.log() if key else "not valid JSON" in e.log(),
               timeout=60, what=f"a log line naming {key!r}")
    def refused():
        if e.proc.poll() is not None:
            return True
        try:
            return requests.get(f"{e.url}/v1/models", timeout=2).status_code >= 500
        except requests.RequestException:
            return True
    assert wait_until(refused, timeout=60, what="Envoy to refuse the bad plugin")
