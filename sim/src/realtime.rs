//! The Realtime API over WebSocket (RFC 6455, no extensions).
//!
//! On connect: `session.created` with the `model` query parameter. For each
//! client `response.create`: `response.created`, some
//! `response.output_audio.delta` events, then `response.done` with usage.
//! Test steering rides in the event's `sim` object:
//! `{"type":"response.create","sim":{"usage":{…},"audio_deltas":2,"delta_bytes":2000,"split_done":false}}`.
//! Faults: `"raw_hex": ["82ff…"]` writes those bytes verbatim before `response.done`;
//! `"end": "reset"` drops the connection (no Close) right after `response.done`,
//! `"end": "reset_before_done"` drops it before.
//! `session.update` with `session.model` answers `session.updated`.

use crate::http::Request;
use crate::Tally;
use base64::Engine;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A server→client frame (unmasked).
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

fn read_exact_or_eof(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = stream.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(false);
        }
        filled += n;
    }
    Ok(true)
}

fn read_frame(stream: &mut TcpStream) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 2];
    if !read_exact_or_eof(stream, &mut head)? {
        return Ok(None);
    }
    let fin = head[0] & 0x80 != 0;
    let opcode = head[0] & 0x0F;
    let masked = head[1] & 0x80 != 0;
    let mut len = u64::from(head[1] & 0x7F);
    if len == 126 {
        let mut b = [0u8; 2];
        if !read_exact_or_eof(stream, &mut b)? {
            return Ok(None);
        }
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        if !read_exact_or_eof(stream, &mut b)? {
            return Ok(None);
        }
        len = u64::from_be_bytes(b);
    }
    if len > MAX_MESSAGE as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut mask = [0u8; 4];
    if masked && !read_exact_or_eof(stream, &mut mask)? {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if !read_exact_or_eof(stream, &mut payload)? {
        return Ok(None);
    }
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

fn default_usage() -> Value {
    json!({"total_tokens": 150, "input_tokens": 100, "output_tokens": 50,
        "input_token_details": {"text_tokens": 40, "audio_tokens": 60, "image_tokens": 0, "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
        "output_token_details": {"text_tokens": 10, "audio_tokens": 40}})
}

pub fn serve(mut stream: TcpStream, req: &Request, tally: &Tally) {
    let Some(key) = req.header("sec-websocket-key") else {
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    let model = req
        .query_param("model")
        .unwrap_or("gpt-realtime")
        .to_string();
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
        accept_key(key)
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    tally.ws_opened.fetch_add(1, Ordering::Relaxed);
    tally.ws_open.fetch_add(1, Ordering::Relaxed);
    let _ = session(&mut stream, model, tally);
    tally.ws_open.fetch_sub(1, Ordering::Relaxed);
    tally.ws_closed.fetch_add(1, Ordering::Relaxed);
}

fn send_event(stream: &mut TcpStream, event: &Value) -> io::Result<()> {
    stream.write_all(&frame(0x1, event.to_string().as_bytes()))
}

fn session(stream: &mut TcpStream, mut model: String, tally: &Tally) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    send_event(
        stream,
        &json!({"type": "session.created", "event_id": "event_sim_0",
            "session": {"id": "sess_sim", "object": "realtime.session", "model": model}}),
    )?;
    let mut message: Vec<u8> = Vec::new();
    let mut responses = 0u64;
    loop {
        let Some(f) = read_frame(stream)? else {
            return Ok(());
        };
        match f.opcode {
            0x8 => {
                // Echo the close code, then end the connection.
                let code = f.payload.get(..2).unwrap_or(&[0x03, 0xE8]).to_vec();
                let _ = stream.write_all(&frame(0x8, &code));
                return Ok(());
            }
            0x9 => stream.write_all(&frame(0xA, &f.payload))?,
            0xA => {}
            0x0..=0x2 => {
                message.extend_from_slice(&f.payload);
                if !f.fin {
                    continue;
                }
                let msg = std::mem::take(&mut message);
                let Ok(event) = serde_json::from_slice::<Value>(&msg) else {
                    continue;
                };
                match event.get("type").and_then(Value::as_str) {
                    Some("response.create") => {
                        responses += 1;
                        if !respond(stream, &event, &model, responses, tally)? {
                            let _ = stream.shutdown(std::net::Shutdown::Both);
                            return Ok(());
                        }
                    }
                    Some("session.update") => {
                        if let Some(m) = event.pointer("/session/model").and_then(Value::as_str) {
                            model = m.to_string();
                        }
                        send_event(
                            stream,
                            &json!({"type": "session.updated", "session": {"id": "sess_sim", "model": model}}),
                        )?;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Answers one `response.create`. Returns false when the connection is to be dropped.
fn respond(
    stream: &mut TcpStream,
    event: &Value,
    model: &str,
    n: u64,
    tally: &Tally,
) -> io::Result<bool> {
    let sim = event.get("sim").cloned().unwrap_or(Value::Null);
    let usage = sim.get("usage").cloned().unwrap_or_else(default_usage);
    let deltas = sim.get("audio_deltas").and_then(Value::as_u64).unwrap_or(2);
    let delta_bytes = sim
        .get("delta_bytes")
        .and_then(Value::as_u64)
        .unwrap_or(2000) as usize;
    let split_done = sim
        .get("split_done")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let delay = Duration::from_millis(sim.get("delay_ms").and_then(Value::as_u64).unwrap_or(0));
    let id = format!("resp_sim_{n}");
    send_event(
        stream,
        &json!({"type": "response.created", "response": {"id": id, "status": "in_progress"}}),
    )?;
    let audio = "A".repeat(delta_bytes);
    for i in 0..deltas {
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        send_event(
            stream,
            &json!({"type": "response.output_audio.delta", "response_id": id, "item_id": "item_sim",
                "output_index": 0, "content_index": i, "delta": audio}),
        )?;
    }
    if let Some(raw) = sim.get("raw_hex").and_then(Value::as_array) {
        for hex in raw.iter().filter_map(Value::as_str) {
            stream.write_all(&decode_hex(hex))?;
        }
    }
    let end = sim.get("end").and_then(Value::as_str).unwrap_or("");
    if end == "reset_before_done" {
        return Ok(false);
    }
    let done = json!({"type": "response.done", "event_id": format!("event_done_{n}"),
        "response": {"id": id, "object": "realtime.response", "status": "completed", "model": model,
            "output": [{"type": "message", "content": [{"type": "output_audio", "transcript": "\"usage\": {} é"}]}],
            "usage": usage}});
    let bytes = frame(0x1, done.to_string().as_bytes());
    if split_done {
        // Several TCP writes, so the frame arrives in pieces.
        for part in bytes.chunks(bytes.len().div_ceil(4).max(1)) {
            stream.write_all(part)?;
            stream.flush()?;
            thread::sleep(Duration::from_millis(20));
        }
    } else {
        stream.write_all(&bytes)?;
    }
    tally.record_usage(model, &usage);
    Ok(end != "reset")
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}
