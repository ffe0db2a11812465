"""Streaming: SSE responses are priced as they pass, chunk by chunk, with
`stream_options.include_usage` injected into streaming Chat Completions."""
import json
import time

import pytest
import requests

from conftest import Envoy, StatDelta, chat, wait_until

CONFIG = {"global": {"budget_usd": 1000000}}
USAGE = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000,
         "prompt_tokens_details": {"cached_tokens": 200_000}}
# gpt-4o-mini: 800k × $0.15 + 200k × $0.075 + 1M × $0.60
USAGE_COST = 120_000 + 15_000 + 600_000


@pytest.fixture(scope="module")
def envoy(sim):
    e = Envoy(sim.port, CONFIG).wait_ready()
    yield e
    e.stop()


def sent_to_upstream(sim, trace):
    seen = [q for q in sim.requests() if q["headers"].get("x-trace") == trace]
    assert seen, f"simulator never saw {trace}"
    return seen[-1]


def sse_events(resp):
    return [json.loads(line[len("data: "):]) for line in resp.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_include_usage_injected_and_stream_priced(envoy, sim):
    d = StatDelta(envoy)
    r = chat(envoy, model="gpt-4o-mini", usage=USAGE, stream=True, headers={"x-trace": "inject"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    upstream = sent_to_upstream(sim, "inject")
    assert upstream["body"]["stream_options"] == {"include_usage": True}
    assert upstream["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert "content-length" not in upstream["headers"]
    events = sse_events(r)
    assert events[-1]["choices"] == [] and events[-1]["usage"]["prompt_tokens"] == 1_000_000
    assert r.text.rstrip().endswith("data: [DONE]")
    d.wait("costguard.model.gpt-4o-mini.cost_micro_usd", USAGE_COST)
    assert d.get("costguard.usage.missing") == 0


def test_explicit_include_usage_false_is_overridden(envoy, sim):
    d = StatDelta(envoy)
    body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": False},
            "messages": [{"role": "user", "content": "é世界"}], "temperature": 0.25}
    chat(envoy, body=body, usage=USAGE, headers={"x-trace": "override"})
    upstream = sent_to_upstream(sim, "override")["body"]
    assert upstream == {**body, "stream_options": {"include_usage": True}}
    d.wait("costguard.cost_micro_usd", USAGE_COST)


def test_chunked_request_body_is_rewritten_too(envoy, sim):
    d = StatDelta(envoy)
    raw = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": []}).encode()
    r = requests.post(f"{envoy.url}/v1/chat/completions", data=iter([raw[:10], raw[10:]]), timeout=30,
                      headers={"x-trace": "chunked", "x-sim-usage": json.dumps(USAGE)})
    assert r.status_code == 200
    assert sent_to_upstream(sim, "chunked")["body"]["stream_options"] == {"include_usage": True}
    d.wait("costguard.cost_micro_usd", USAGE_COST)


def test_without_injection_the_stream_has_no_usage_and_is_counted_missing(start_envoy, sim):
    e = start_envoy({"inject_stream_usage": False})
    r = chat(e, model="gpt-4o-mini", stream=True, headers={"x-trace": "no-inject"})
    assert r.status_code == 200
    assert "stream_options" not in sent_to_upstream(sim, "no-inject")["body"]
    e.wait_stat("costguard.usage.missing", 1)
    assert e.stat("costguard.cost_micro_usd") == 0


def test_responses_api_stream_priced(envoy):
    d = StatDelta(envoy)
    usage = {"input_tokens": 1_000_000, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 500_000}
    r = requests.post(f"{envoy.url}/v1/responses", json={"model": "gpt-5", "input": "hi", "stream": True},
                      headers={"x-sim-usage": json.dumps(usage)}, timeout=30)
    assert "event: response.completed" in r.text
    d.wait("costguard.model.gpt-5.cost_micro_usd", 1_250_000 + 5_000_000)


def test_chunks_reach_the_client_as_they_are_written(envoy):
    d = StatDelta(envoy)
    delay_s, chunks = 0.4, 6
    start = time.monotonic()
    arrivals = []
    with requests.post(f"{envoy.url}/v1/chat/completions", stream=True, timeout=60,
                       headers={"x-sim-delay-ms": str(int(delay_s * 1000)), "x-sim-chunks": str(chunks),
                                "x-sim-usage": json.dumps(USAGE)},
                       json={"model": "gpt-4o-mini", "stream": True, "messages": []}) as r:
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                arrivals.append(time.monotonic() - start)
    # chunks content events + the usage chunk + [DONE], each written delay_s apart.
    assert len(arrivals) == chunks + 2
    spread = arrivals[-1] - arrivals[0]
    print(f"first event after {arrivals[0]:.3f}s, last after {arrivals[-1]:.3f}s")
    # Nothing is held back: the first event arrives long before the last.
    assert spread >= (chunks + 1) * delay_s * 0.6
    d.wait("costguard.cost_micro_usd", USAGE_COST)


def test_fifty_megabyte_stream_priced_in_bounded_memory(envoy):
    d = StatDelta(envoy)
    size = 50 * 1000 * 1000
    rss_before = envoy.rss_kib()
    received = 0
    with requests.post(f"{envoy.url}/v1/chat/completions", stream=True, timeout=300,
                       headers={"x-sim-pad-bytes": str(size), "x-sim-chunks": "2000",
                                "x-sim-usage": json.dumps(USAGE)},
                       json={"model": "gpt-4o-mini", "stream": True, "messages": []}) as r:
        for block in r.iter_content(chunk_size=1 << 16):
            received += len(block)
    rss_after = envoy.rss_kib()
    print(f"streamed {received / 1e6:.1f} MB; Envoy RSS {rss_before} KiB -> {rss_after} KiB")
    assert received > size
    d.wait("costguard.cost_micro_usd", USAGE_COST)
    # The stream is 50 MB; Envoy (and costguard in it) holds far less.
    assert rss_after - rss_before < 16 * 1024


@pytest.mark.parametrize("reset,priced", [("mid-stream", False), ("after-usage", True)])
def test_streams_cut_by_the_upstream(envoy, reset, priced):
    d = StatDelta(envoy)
    try:
        requests.post(f"{envoy.url}/v1/chat/completions", timeout=30,
                      headers={"x-sim-reset": reset, "x-sim-usage": json.dumps(USAGE)},
                      json={"model": "gpt-4o-mini", "stream": True, "messages": []}).content
    except requests.RequestException:
        pass  # the client sees the cut
    if priced:
        d.wait("costguard.cost_micro_usd", USAGE_COST)
        assert d.get("costguard.usage.missing") == 0
    else:
        d.wait("costguard.usage.missing", 1)
        assert d.get("costguard.cost_micro_usd") == 0


def test_malformed_usage_chunk_counted_as_parse_error(envoy):
    d = StatDelta(envoy)
    r = chat(envoy, model="gpt-4o-mini", stream=True, usage=USAGE, headers={"x-sim-body": "truncated"})
    assert r.status_code == 200
    d.wait("costguard.usage.parse_errors", 1)
    assert d.get("costguard.cost_micro_usd") == 0


def test_request_body_over_the_rewrite_cap_passes_unchanged(envoy, sim):
    d = StatDelta(envoy)
    big = "x" * (600 * 1024)
    r = chat(envoy, body={"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": big}]},
             headers={"x-trace": "big-body"})
    assert r.status_code == 200
    upstream = sent_to_upstream(sim, "big-body")
    assert "stream_options" not in upstream["body"]
    assert upstream["body"]["messages"][0]["content"] == big
    d.wait("costguard.usage.missing", 1)
