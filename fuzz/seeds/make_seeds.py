#!/usr/bin/env python3
"""Writes the committed seed corpus (fuzz/corpus/<target>/). Each input
starts with 4 bytes that choose chunk sizes, then the body."""
import json
import struct
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "corpus"


def frame(opcode, payload, mask=None, fin=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    m = 0x80 if mask else 0
    n = len(payload)
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


def text(obj, **kw):
    return frame(1, json.dumps(obj).encode(), **kw)


CHAT = json.dumps({"id": "c", "model": "gpt-5-2025-08-07", "choices": [{"message": {"content": 'say "usage": {}'}}],
                   "usage": {"prompt_tokens": 1000, "completion_tokens": 20,
                             "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 5},
                             "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 2}}}).encode()
RESPONSES = json.dumps({"object": "response", "model": "gpt-4.1", "usage": {
    "input_tokens": 7, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 9}}).encode()
SSE_CHAT = (b"data: " + json.dumps({"model": "gpt-4o-mini", "choices": [{"delta": {"content": "h\xc3\xa9"}}],
                                     "usage": None}).encode() + b"\r\n\r\n: ping\r\n\r\n"
            b"data: " + json.dumps({"model": "gpt-4o-mini", "choices": [],
                                     "usage": {"prompt_tokens": 10, "completion_tokens": 20}}).encode() +
            b"\r\n\r\ndata: [DONE]\r\n\r\n")
SSE_RESPONSES = (b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n"
                 b"event: response.completed\ndata: {\"type\":\"response.completed\",\n"
                 b"data: \"response\":{\"model\":\"gpt-5\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}}\n\n")
RT_USAGE = {"total_tokens": 15000, "input_tokens": 5000, "output_tokens": 10000,
            "input_token_details": {"text_tokens": 1000, "audio_tokens": 4000, "cached_tokens": 500,
                                    "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 400}},
            "output_token_details": {"text_tokens": 2000, "audio_tokens": 8000}}
WS_SERVER = (text({"type": "session.created", "session": {"model": "gpt-realtime"}}) +
             text({"type": "response.output_audio.delta", "delta": "A" * 300}) +
             frame(9, b"") +
             frame(1, b'{"type":"response.do', fin=False) + frame(10, b"p") +
             frame(0, json.dumps({"x": 1}).encode()[:0] + b'ne","response":' +
                   json.dumps({"usage": RT_USAGE}).encode() + b"}") +
             text({"type": "response.done", "response": {"usage": RT_USAGE}}) * 3 +
             frame(8, b"\x03\xe8bye"))
WS_CLIENT = (text({"type": "session.update", "session": {"model": "gpt-realtime"}}, mask=b"abcd") +
             text({"type": "input_audio_buffer.append", "audio": "A" * 200}, mask=b"wxyz") +
             text({"type": "response.create"}, mask=b"1234") + frame(8, b"\x03\xe8", mask=b"5678"))
CONFIG = json.dumps({"session": {"budget_usd": 5.0, "warn_ratio": 0.8, "max_duration_s": 1800,
                                 "id_header": "x-session-id", "idle_ttl_s": 3600, "max_tracked": 100000},
                     "global": {"budget_usd": 100.0, "window_s": 3600, "cooldown_s": 300,
                                "close_active_sessions": False},
                     "pricing": {"gpt-5": {"input": 1.25, "cached_input": 0.125, "output": 10.0}},
                     "unknown_model": {"input": 10.0, "output": 40.0}, "allowed_origins": ["https://a.example"],
                     "inject_stream_usage": True, "fail_mode": "open",
                     "global_store": {"rls_cluster": "rls", "usd_per_hit": 0.00001}}).encode()

CATALOG = json.dumps({
    "sample_spec": {"litellm_provider": "one of the providers", "notes": "a } and { in \" text"},
    "gpt-5.5": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 5e-06,
                "cache_read_input_token_cost": 5e-07, "output_cost_per_token": 3e-05,
                "input_cost_per_token_flex": 2.5e-06, "output_cost_per_token_flex": 1.5e-05,
                "input_cost_per_token_priority": 1.25e-05, "output_cost_per_token_priority": 7.5e-05,
                "input_cost_per_token_above_272k_tokens": 1e-05, "output_cost_per_token_above_272k_tokens": 4.5e-05,
                "supported_endpoints": ["/v1/chat/completions"]},
    "gpt-realtime-2": {"litellm_provider": "openai", "mode": "realtime", "input_cost_per_token": 4e-06,
                       "output_cost_per_token": 2.4e-05, "input_cost_per_audio_token": 3.2e-05,
                       "output_cost_per_audio_token": 6.4e-05},
    "claude-x": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06},
}).encode()

def chunk_event(content, finish="null", extra=""):
    return ('{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini",'
            '"choices":[{"index":0,"delta":{"content":%s},"finish_reason":%s}],"usage":null%s}'
            % (json.dumps(content), finish, extra)).encode()


# Similar events, one per line: differing in plain text, in escaped text, in
# an obfuscation string, in structure.
EVENTS = b"\n".join([
    chunk_event("Hello"), chunk_event(" world"), chunk_event(" wor\"ld", extra=',"obfuscation":"ab"'),
    chunk_event("!", extra=',"obfuscation":"abcdef"'), chunk_event("", finish='"stop"'),
    b'{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":20}}',
    chunk_event("a\nb"), chunk_event("tail")[:-9], b"[DONE]",
    b'{"type":"response.output_text.delta","sequence_number":9,"delta":"Hi","obfuscation":"abc"}',
    b'{"type":"response.output_text.delta","sequence_number":10,"delta":" there","obfuscation":"a"}',
    b'{"type":"response.output_text.delta","sequence_number":"11","delta":"!","obfuscation":"a"}',
])

SIZES = [b"\x00\x00\x00\x00", b"\x07\x01\x80\x03", b"\xff\xff\xff\xff", b"\x02\x10\x40\x05"]
SEEDS = {
    "sse": [SSE_CHAT, SSE_RESPONSES],
    "json_body": [CHAT, RESPONSES, CHAT[: len(CHAT) // 2]],
    "ws_server": [WS_SERVER],
    "ws_client": [WS_CLIENT],
    "config": [CONFIG, b"{}", b'{"session":{"warn_ratio":2}}'],
    "split_invariance": [CHAT, SSE_CHAT, SSE_RESPONSES, WS_SERVER],
    "catalog": [CATALOG, CATALOG[: len(CATALOG) // 2], b"{}"],
    "event_scan": [EVENTS],
}

for target, bodies in SEEDS.items():
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    for body in bodies:
        for sizes in (SIZES if target != "config" else [b""]):
            (d / f"seed-{n:02d}").write_bytes(sizes + body)
            n += 1
print("seeds written to", OUT)
