//! Just enough HTTP/1.1 for the simulator: keep-alive requests with
//! `content-length` or chunked bodies, fixed and chunked responses.

use serde_json::Value;
use std::io::{self, Read, Write};
use std::net::TcpStream;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn header_num(&self, name: &str) -> Option<u64> {
        self.header(name).and_then(|v| v.trim().parse().ok())
    }
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
    pub fn query_param(&self, name: &str) -> Option<&str> {
        let query = self.path.split_once('?')?.1;
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
    }
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
    }
}

/// Reads requests from one connection, keeping bytes that arrive early.
pub struct RequestReader {
    buf: Vec<u8>,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl RequestReader {
    pub fn new() -> Self {
        RequestReader { buf: Vec::new() }
    }

    fn fill(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        let mut tmp = [0u8; 16 * 1024];
        let n = stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n > 0)
    }

    /// The next request, or None when the peer closed the connection.
    pub fn read(&mut self, stream: &mut TcpStream) -> io::Result<Option<Request>> {
        let (head_len, method, path, headers) = loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hdrs);
            match req.parse(&self.buf).map_err(|e| bad(&e.to_string()))? {
                httparse::Status::Complete(n) => {
                    let headers = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect::<Vec<_>>();
                    break (
                        n,
                        req.method.unwrap_or("").to_string(),
                        req.path.unwrap_or("").to_string(),
                        headers,
                    );
                }
                httparse::Status::Partial => {
                    if self.buf.len() > MAX_HEAD {
                        return Err(bad("request head too large"));
                    }
                    if !self.fill(stream)? {
                        return Ok(None);
                    }
                }
            }
        };
        self.buf.drain(..head_len);
        let mut req = Request {
            method,
            path,
            headers,
            body: Vec::new(),
        };
        let chunked = req
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        if chunked {
            req.body = self.read_chunked(stream)?;
        } else if let Some(len) = req.header_num("content-length") {
            let len = len as usize;
            if len > MAX_BODY {
                return Err(bad("body too large"));
            }
            while self.buf.len() < len {
                if !self.fill(stream)? {
                    return Err(bad("body cut short"));
                }
            }
            req.body = self.buf.drain(..len).collect();
        }
        Ok(Some(req))
    }

    fn read_chunked(&mut self, stream: &mut TcpStream) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                if !self.fill(stream)? {
                    return Err(bad("chunked body cut short"));
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
            self.buf.drain(..line_end + 2);
            if body.len() + size > MAX_BODY {
                return Err(bad("body too large"));
            }
            while self.buf.len() < size + 2 {
                if !self.fill(stream)? {
                    return Err(bad("chunk cut short"));
                }
            }
            if size == 0 {
                // Skip (empty) trailers.
                self.buf.drain(..2);
                return Ok(body);
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        101 => "Switching Protocols",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &Value) -> Self {
        Response {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    pub fn write(&self, stream: &mut TcpStream) -> io::Result<()> {
        let head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(&self.body)?;
        stream.flush()
    }
}

pub fn write_stream_head(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n",
        reason(status)
    );
    stream.write_all(head.as_bytes())?;
    stream.flush()
}

/// One chunk of a chunked body; an empty one ends the body.
pub fn write_chunk(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    stream.write_all(&out)?;
    stream.flush()
}
