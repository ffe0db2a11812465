//! openai-sim: a small OpenAI API simulator for costguard's `make run` and
//! integration tests. No API key, no network: it answers like the real API
//! with usage the caller chooses.
//!
//! Endpoints: `POST /v1/chat/completions` (JSON, or SSE with `"stream":true`;
//! the final usage chunk only with `stream_options.include_usage`),
//! `POST /v1/responses` (JSON, or SSE ending in `response.completed`),
//! `POST /v1/embeddings`, `GET /v1/realtime` (WebSocket, see `realtime.rs`).
//! Test hooks: `GET /_sim/requests` (recent request bodies),
//! `GET /_sim/tally` (counters; `reported`: each distinct model and usage
//! reported, with its `count`), `POST /_sim/reset`.
//!
//! Steering headers (all optional):
//! - `x-sim-usage`: the usage JSON object to report, verbatim.
//! - `x-sim-model`: the model to report (default: the request's).
//! - `x-sim-service-tier`: the `service_tier` to report (default: the
//!   request's, `auto` answered as `default`, as OpenAI does).
//! - `x-sim-status`: answer with this status and an OpenAI error body.
//! - `x-sim-body`: `truncated` | `garbage` | `no-usage` (malformed answers).
//! - `x-sim-pad-bytes`: make the generated content this many bytes long.
//! - `x-sim-framing`: `chunked` sends a JSON body chunked, without `content-length`.
//! - `x-sim-chunks`: number of content chunks in a stream (default 3).
//! - `x-sim-delay-ms`: pause before each stream chunk.
//! - `x-sim-reset`: `mid-stream` (drop the connection after the first chunk)
//!   or `after-usage` (drop it right after the usage event, before `[DONE]`).

mod http;
mod realtime;

use http::{Request, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const RECENT_REQUESTS: usize = 200;

#[derive(Default)]
pub struct Tally {
    pub requests: AtomicU64,
    pub ws_opened: AtomicU64,
    pub ws_closed: AtomicU64,
    pub ws_open: AtomicU64,
    /// The usage objects reported in responses that were sent whole, each
    /// distinct (model, usage) once with how many times: a benchmark's
    /// millions of equal responses take one entry, not memory that grows
    /// (and stalls every request while it is copied) as the run goes on.
    pub reported: Mutex<HashMap<(String, String), (Value, u64)>>,
    pub recent: Mutex<Vec<Value>>,
}

impl Tally {
    fn record_request(&self, req: &Request) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let headers: serde_json::Map<String, Value> = req
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() >= RECENT_REQUESTS {
                recent.remove(0);
            }
            recent.push(
                json!({"method": req.method, "path": req.path, "headers": headers, "body": body}),
            );
        }
    }

    pub fn record_usage(&self, model: &str, usage: &Value) {
        let text = usage.to_string();
        if let Ok(mut r) = self.reported.lock() {
            r.entry((model.to_string(), text))
                .or_insert_with(|| (usage.clone(), 0))
                .1 += 1;
        }
    }

    fn to_json(&self) -> Value {
        let reported: Vec<Value> = self
            .reported
            .lock()
            .map(|r| {
                r.iter()
                    .map(|((m, _), (u, count))| json!({"model": m, "usage": u, "count": count}))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "ws_opened": self.ws_opened.load(Ordering::Relaxed),
            "ws_closed": self.ws_closed.load(Ordering::Relaxed),
            "ws_open": self.ws_open.load(Ordering::Relaxed),
            "reported": reported,
        })
    }

    fn reset(&self) {
        if let Ok(mut r) = self.reported.lock() {
            r.clear();
        }
        if let Ok(mut r) = self.recent.lock() {
            r.clear();
        }
    }
}

fn main() {
    let mut port: u16 = 8080;
    let mut host = String::from("127.0.0.1");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--host" => host = args.next().unwrap_or(host),
            "-h" | "--help" => {
                println!("usage: openai-sim [--host ADDR] [--port N]   (port 0 picks a free one; the port is printed)");
                return;
            }
            other => {
                eprintln!("openai-sim: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let listener = match TcpListener::bind((host.as_str(), port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("openai-sim: cannot listen on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    println!("openai-sim listening on {host}:{port}");
    let _ = std::io::stdout().flush();
    let tally = Arc::new(Tally::default());
    for stream in listener.incoming().flatten() {
        let tally = Arc::clone(&tally);
        thread::spawn(move || serve_connection(stream, &tally));
    }
}

fn serve_connection(mut stream: TcpStream, tally: &Tally) {
    let _ = stream.set_nodelay(true);
    let mut reader = http::RequestReader::new();
    loop {
        let req = match reader.read(&mut stream) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        if !req.path.starts_with("/_sim/") {
            tally.record_request(&req);
        }
        if req.path_only() == "/v1/realtime" && req.is_websocket_upgrade() {
            realtime::serve(stream, &req, tally);
            return;
        }
        let keep_going = handle(&req, &mut stream, tally).unwrap_or_default();
        if !keep_going || req.wants_close() {
            return;
        }
    }
}

/// Answers one request. Returns whether the connection may be reused.
fn handle(req: &Request, stream: &mut TcpStream, tally: &Tally) -> std::io::Result<bool> {
    match (req.method.as_str(), req.path_only()) {
        ("GET", "/_sim/requests") => {
            let recent = tally
                .recent
                .lock()
                .map(|r| Value::Array(r.clone()))
                .unwrap_or(Value::Null);
            Response::json(200, &recent).write(stream)?;
        }
        ("GET", "/_sim/tally") => Response::json(200, &tally.to_json()).write(stream)?,
        ("POST", "/_sim/reset") => {
            tally.reset();
            Response::json(200, &json!({"ok": true})).write(stream)?;
        }
        ("GET", "/healthz") => Response::json(200, &json!({"ok": true})).write(stream)?,
        ("POST", "/v1/chat/completions") => return api_call(req, stream, tally, Api::Chat),
        ("POST", "/v1/responses") => return api_call(req, stream, tally, Api::Responses),
        ("POST", "/v1/embeddings") => return api_call(req, stream, tally, Api::Embeddings),
        _ => Response::json(
            404,
            &error_body("invalid_request_error", "not_found", "Unknown endpoint"),
        )
        .write(stream)?,
    }
    Ok(true)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Responses,
    Embeddings,
}

fn error_body(kind: &str, code: &str, message: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn default_usage(api: Api) -> Value {
    match api {
        Api::Chat => json!({"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}),
        Api::Responses => json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 30}),
        Api::Embeddings => json!({"prompt_tokens": 8, "total_tokens": 8}),
    }
}

fn content_text(pad_bytes: usize) -> String {
    if pad_bytes == 0 {
        return "Hello from the simulator. The \"usage\": {\"prompt_tokens\": 999999} here is only text.".into();
    }
    // Pad with a mix that includes multi-byte UTF-8 and JSON-looking text.
    let unit = "lorem \"usage\" {ipsum} [dolor] é世界 ";
    let mut s = String::with_capacity(pad_bytes + unit.len());
    while s.len() < pad_bytes {
        s.push_str(unit);
    }
    while s.len() > pad_bytes {
        s.pop();
    }
    s
}

/// A Chat Completions stream chunk, its fields in the order the API writes
/// them (`id` first, `choices` and `usage` last): consecutive chunks then
/// share a long prefix, as real streams do.
fn chat_chunk(model: &str, tier: &str, choices: &str, usage: Option<&Value>) -> String {
    let usage = usage
        .map(|u| format!(r#","usage":{u}"#))
        .unwrap_or_default();
    format!(
        r#"{{"id":"chatcmpl-sim","object":"chat.completion.chunk","created":1700000000,"model":{},"service_tier":{},"choices":{choices}{usage}}}"#,
        json!(model),
        json!(tier)
    )
}

fn api_call(
    req: &Request,
    stream: &mut TcpStream,
    tally: &Tally,
    api: Api,
) -> std::io::Result<bool> {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    if let Some(status) = req
        .header("x-sim-status")
        .and_then(|s| s.parse::<u16>().ok())
    {
        let (kind, code) = match status {
            429 => ("insufficient_quota", "rate_limit_exceeded"),
            400..=499 => ("invalid_request_error", "invalid_request"),
            _ => ("server_error", "server_error"),
        };
        Response::json(status, &error_body(kind, code, "Simulated error")).write(stream)?;
        return Ok(true);
    }
    let model = req
        .header("x-sim-model")
        .map(str::to_string)
        .or_else(|| {
            body.get("model")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "gpt-4o-mini".into());
    let usage = match req.header("x-sim-usage") {
        Some(u) => serde_json::from_str(u).unwrap_or_else(|_| default_usage(api)),
        None => default_usage(api),
    };
    let pad = req.header_num("x-sim-pad-bytes").unwrap_or(0) as usize;
    let malformed = req.header("x-sim-body").unwrap_or("");
    let tier = service_tier(req, &body);
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if streaming && api != Api::Embeddings {
        let answer = Answer {
            model: &model,
            usage: &usage,
            tier: &tier,
        };
        return stream_call(req, stream, tally, api, &body, &answer, pad);
    }
    let text = content_text(pad);
    let mut doc = match api {
        Api::Chat => {
            json!({"id": "chatcmpl-sim", "object": "chat.completion", "created": 1_700_000_000u64,
            "model": model, "service_tier": tier, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"}], "usage": usage})
        }
        Api::Responses => {
            json!({"id": "resp_sim", "object": "response", "created_at": 1_700_000_000u64,
            "status": "completed", "model": model, "service_tier": tier, "output": [{"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": text}]}], "usage": usage})
        }
        Api::Embeddings => json!({"object": "list", "data": [{"object": "embedding", "index": 0,
            "embedding": [0.0023, -0.0093, 0.0158]}], "model": model, "usage": usage}),
    };
    if malformed == "no-usage" {
        if let Some(o) = doc.as_object_mut() {
            o.remove("usage");
        }
    }
    let mut bytes = serde_json::to_vec(&doc).unwrap_or_default();
    match malformed {
        "truncated" => bytes.truncate(bytes.len() / 2),
        "garbage" => bytes = b"<html>upstream exploded</html>".to_vec(),
        _ => {}
    }
    if req.header("x-sim-framing") == Some("chunked") {
        http::write_stream_head(stream, 200, "application/json")?;
        for piece in bytes.chunks(64 * 1024) {
            http::write_chunk(stream, piece)?;
        }
        http::write_chunk(stream, b"")?;
    } else {
        Response {
            status: 200,
            content_type: "application/json",
            body: bytes,
        }
        .write(stream)?;
    }
    if malformed.is_empty() {
        tally.record_usage(&model, &usage);
    }
    Ok(true)
}

/// The service tier to report: `x-sim-service-tier`, else the request's
/// (`auto` is served as `default`), else `default`.
fn service_tier(req: &Request, body: &Value) -> String {
    let requested = body.get("service_tier").and_then(Value::as_str);
    match req.header("x-sim-service-tier").or(requested) {
        None | Some("auto") => "default".to_string(),
        Some(t) => t.to_string(),
    }
}

/// What a streamed answer reports.
struct Answer<'a> {
    model: &'a str,
    usage: &'a Value,
    tier: &'a str,
}

fn stream_call(
    req: &Request,
    stream: &mut TcpStream,
    tally: &Tally,
    api: Api,
    body: &Value,
    answer: &Answer<'_>,
    pad: usize,
) -> std::io::Result<bool> {
    let Answer { model, usage, tier } = *answer;
    let chunks = req.header_num("x-sim-chunks").unwrap_or(3).max(1) as usize;
    let delay = Duration::from_millis(req.header_num("x-sim-delay-ms").unwrap_or(0));
    let reset = req.header("x-sim-reset").unwrap_or("");
    let malformed = req.header("x-sim-body").unwrap_or("");
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let text = content_text(pad.max(chunks));
    let piece_len = text.len().div_ceil(chunks);
    let mut pieces: Vec<String> = Vec::with_capacity(chunks);
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let mut cut = piece_len.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head.to_string());
        rest = tail;
    }

    http::write_stream_head(stream, 200, "text/event-stream")?;
    let send = |event: &str, stream: &mut TcpStream| -> std::io::Result<()> {
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        http::write_chunk(stream, event.as_bytes())
    };
    match api {
        Api::Chat => {
            for (i, piece) in pieces.iter().enumerate() {
                let choices = format!(
                    r#"[{{"index":0,"delta":{{"content":{}}},"finish_reason":null}}]"#,
                    json!(piece)
                );
                let chunk =
                    chat_chunk(model, tier, &choices, include_usage.then_some(&Value::Null));
                send(&format!("data: {chunk}\n\n"), stream)?;
                if i == 0 && reset == "mid-stream" {
                    return Ok(false);
                }
            }
            if include_usage {
                let final_chunk = chat_chunk(model, tier, "[]", Some(usage));
                let event = if malformed == "truncated" {
                    format!("data: {}\n\n", &final_chunk[..final_chunk.len() / 2])
                } else {
                    format!("data: {final_chunk}\n\n")
                };
                send(&event, stream)?;
                if malformed.is_empty() {
                    tally.record_usage(model, usage);
                }
            }
        }
        Api::Responses | Api::Embeddings => {
            let created = json!({"type": "response.created", "sequence_number": 0,
                "response": {"id": "resp_sim", "status": "in_progress", "model": model, "usage": null}});
            send(
                &format!("event: response.created\ndata: {created}\n\n"),
                stream,
            )?;
            for (i, piece) in pieces.iter().enumerate() {
                let delta = json!({"type": "response.output_text.delta", "sequence_number": i + 1,
                    "item_id": "msg_sim", "output_index": 0, "content_index": 0, "delta": piece});
                send(
                    &format!("event: response.output_text.delta\ndata: {delta}\n\n"),
                    stream,
                )?;
                if i == 0 && reset == "mid-stream" {
                    return Ok(false);
                }
            }
            let completed = json!({"type": "response.completed", "sequence_number": pieces.len() + 1,
                "response": {"id": "resp_sim", "status": "completed", "model": model,
                "service_tier": tier, "output": [{"type": "message", "content": [{"type": "output_text", "text": "…"}]}],
                "usage": usage}});
            send(
                &format!("event: response.completed\ndata: {completed}\n\n"),
                stream,
            )?;
            tally.record_usage(model, usage);
        }
    }
    if reset == "after-usage" {
        return Ok(false);
    }
    if api == Api::Chat {
        send("data: [DONE]\n\n", stream)?;
    }
    http::write_chunk(stream, b"")?;
    Ok(true)
}
