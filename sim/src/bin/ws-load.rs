//! ws-load: a Realtime WebSocket load generator for `make bench`.
//!
//!   ws-load URL SESSIONS SECONDS [AUDIO_DELTAS] [DELTA_BYTES]
//!
//! Each of SESSIONS threads opens `URL` (ws://host:port/path), then asks the
//! simulator for responses back to back (`response.create` with AUDIO_DELTAS
//! audio deltas of DELTA_BYTES each, then `response.done`) for SECONDS.
//! Prints one JSON line: responses, seconds, and per-response latency
//! percentiles in µs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x5A, 0x17, 0xC3, 0x99];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads one frame's payload (server frames are unmasked).
fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let mut len = u64::from(h[1] & 0x7F);
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b)?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b)?;
        len = u64::from_be_bytes(b);
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)?;
    Ok((h[0] & 0x0F, payload))
}

fn session(
    addr: &str,
    path: &str,
    until: Instant,
    deltas: u64,
    delta_bytes: u64,
) -> std::io::Result<Vec<u32>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        )
        .as_bytes(),
    )?;
    // The 101 response head.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&head).into_owned(),
        ));
    }
    read_frame(&mut s)?; // session.created
    let create = format!(
        r#"{{"type":"response.create","sim":{{"audio_deltas":{deltas},"delta_bytes":{delta_bytes},"usage":{{"total_tokens":30,"input_tokens":10,"output_tokens":20}}}}}}"#
    );
    let request = frame(1, create.as_bytes());
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let start = Instant::now();
        s.write_all(&request)?;
        loop {
            let (op, payload) = read_frame(&mut s)?;
            if op == 1 && payload.windows(15).any(|w| w == b"\"response.done\"") {
                break;
            }
        }
        latencies.push(start.elapsed().as_micros() as u32);
    }
    let _ = s.write_all(&frame(8, &1000u16.to_be_bytes()));
    Ok(latencies)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: ws-load ws://HOST:PORT/PATH SESSIONS SECONDS [AUDIO_DELTAS] [DELTA_BYTES]"
        );
        std::process::exit(2);
    }
    let url = args[1].trim_start_matches("ws://");
    let (addr, path) = url
        .split_once('/')
        .map_or((url, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let sessions: usize = args[2].parse().unwrap_or(8);
    let seconds: u64 = args[3].parse().unwrap_or(5);
    let deltas: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(4);
    let delta_bytes: u64 = args.get(5).and_then(|a| a.parse().ok()).unwrap_or(8000);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..sessions)
        .map(|_| {
            let (addr, path) = (addr.to_string(), path.clone());
            std::thread::spawn(move || session(&addr, &path, until, deltas, delta_bytes))
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        match t.join() {
            Ok(Ok(l)) => all.extend(l),
            _ => errors += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        r#"{{"responses":{},"seconds":{elapsed:.3},"errors":{errors},"p50":{},"p99":{},"p999":{}}}"#,
        all.len(),
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
}
