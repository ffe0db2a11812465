//! The do-nothing filter: every HTTP callback returns Continue.
//!
//! With a plugin configuration `"<host call> <n>"` it becomes a probe: each
//! request makes that host call `n` times and nothing else, so `make bench`
//! can price one host call of each kind costguard makes (the difference to
//! the do-nothing filter, divided by `n`). Without one it does nothing.
//! `"read_all 1"` makes it the metering floor: it reads what any filter that
//! meters must read (both header maps and every body chunk, once) and does
//! nothing with it. `"session_floor 1"` adds what a per-session budget cannot
//! do without: the session's record read at admission and one
//! compare-and-swap settling it when the response ends.
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
}

/// A whole header map as one serialized copy, unparsed: what costguard reads
/// (the SDK's `get_map` would also make two `String`s per header).
fn header_map_bytes(map: MapType) -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size = 0usize;
    // SAFETY: the host allocates `size` bytes through the SDK's exported
    // allocator (Rust's), so the Vec takes ownership of them.
    unsafe {
        if proxy_get_header_map_pairs(map as u32, &mut data, &mut size) == 0 && !data.is_null() {
            return Vec::from_raw_parts(data, size, size);
        }
    }
    Vec::new()
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root(Probe::None, 0)) });
}}

/// A host call costguard makes on the request path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    None,
    /// `proxy_get_current_time_nanoseconds`
    Time,
    /// `proxy_get_header_map_pairs` of the request headers
    GetHeaders,
    /// `proxy_get_buffer_bytes` of the request body
    GetBody,
    /// `proxy_get_shared_data` of a 104-byte record (a session record is 120)
    SharedGet,
    /// `proxy_set_shared_data` of a 104-byte record (no read)
    SharedSet,
    /// `proxy_get_shared_data` + `proxy_set_shared_data` with its CAS
    SharedCas,
    /// `proxy_set_property` (filter state an access log can read)
    SetProperty,
    /// `proxy_replace_header_map_value` on the response headers
    SetHeader,
    /// `proxy_set_header_map_pairs`: the response's headers (read once) and
    /// two more, written in one call (one write for costguard's two headers)
    SetHeaderPairs,
    /// `proxy_remove_header_map_value` on the request headers
    RemoveHeader,
    /// Removing the request's `content-length` (once: the body then goes chunked)
    RemoveContentLength,
    /// `proxy_get_buffer_bytes` of every response body chunk (what metering
    /// a response must read, whatever it then does with the bytes)
    GetResponseBody,
    /// Both header maps and every body chunk of both directions, once each.
    ReadAll,
    /// `ReadAll`, plus the record of the request's `x-session-id` read in the
    /// request headers callback and written back with its CAS when the
    /// response ends (a session's admission and settlement, with no work).
    SessionFloor,
}

/// A session record's size in costguard.
const SESSION_RECORD: [u8; 120] = [7u8; 120];

/// One header's value in a serialized header map (a count, then each pair's
/// key and value lengths, then each key and value followed by a NUL).
fn header_value<'a>(map: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let word = |at: usize| -> Option<usize> {
        let bytes = map.get(at..at + 4)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
    };
    let pairs = word(0)?;
    let mut text = 4 + pairs * 8;
    for i in 0..pairs {
        let (key_len, value_len) = (word(4 + i * 8)?, word(8 + i * 8)?);
        let key = map.get(text..text + key_len)?;
        let value = map.get(text + key_len + 1..text + key_len + 1 + value_len)?;
        if key == name {
            return Some(value);
        }
        text += key_len + value_len + 2;
    }
    None
}

struct Root(Probe, u32);
impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        let mut words = text.split_whitespace();
        self.0 = match words.next() {
            Some("time") => Probe::Time,
            Some("get_headers") => Probe::GetHeaders,
            Some("get_body") => Probe::GetBody,
            Some("shared_get") => Probe::SharedGet,
            Some("shared_set") => Probe::SharedSet,
            Some("shared_cas") => Probe::SharedCas,
            Some("set_property") => Probe::SetProperty,
            Some("set_header") => Probe::SetHeader,
            Some("set_header_pairs") => Probe::SetHeaderPairs,
            Some("remove_header") => Probe::RemoveHeader,
            Some("remove_content_length") => Probe::RemoveContentLength,
            Some("get_response_body") => Probe::GetResponseBody,
            Some("read_all") => Probe::ReadAll,
            Some("session_floor") => Probe::SessionFloor,
            _ => Probe::None,
        };
        self.1 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if matches!(
            self.0,
            Probe::SharedGet | Probe::SharedSet | Probe::SharedCas
        ) {
            let _ = hostcalls::set_shared_data("probe", Some(&[7u8; 104]), None);
        }
        true
    }
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop {
            probe: self.0,
            calls: self.1,
            session_key: None,
        }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    probe: Probe,
    calls: u32,
    /// The session floor's shared-data key for this request's session.
    session_key: Option<String>,
}

impl Noop {
    fn repeat(&self, probe: Probe, call: impl Fn(u32)) {
        let reads_all = probe == Probe::ReadAll && self.probe == Probe::SessionFloor;
        if self.probe == probe || reads_all {
            for i in 0..self.calls {
                call(i);
            }
        }
    }

    /// The session floor's admission: its session's record, read (created on
    /// the session's first request).
    fn admit_session(&mut self, request_headers: &[u8]) {
        let Some(id) = header_value(request_headers, b"x-session-id") else {
            return;
        };
        let key = format!("s:{}", String::from_utf8_lossy(id));
        if let Ok((None, _)) = hostcalls::get_shared_data(&key) {
            let _ = hostcalls::set_shared_data(&key, Some(&SESSION_RECORD), None);
        }
        self.session_key = Some(key);
    }

    /// The session floor's settlement: one compare-and-swap of the record.
    fn settle_session(&mut self) {
        let Some(key) = self.session_key.take() else {
            return;
        };
        for _ in 0..8 {
            if let Ok((Some(record), cas)) = hostcalls::get_shared_data(&key) {
                if hostcalls::set_shared_data(&key, Some(&record), cas).is_ok() {
                    return;
                }
            }
        }
    }
}

impl Context for Noop {}
impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        self.repeat(Probe::Time, |_| {
            let _ = hostcalls::get_current_time();
        });
        self.repeat(Probe::GetHeaders, |_| {
            std::hint::black_box(header_map_bytes(MapType::HttpRequestHeaders));
        });
        if self.probe == Probe::SessionFloor {
            let headers = header_map_bytes(MapType::HttpRequestHeaders);
            self.admit_session(&headers);
        } else {
            self.repeat(Probe::ReadAll, |_| {
                std::hint::black_box(header_map_bytes(MapType::HttpRequestHeaders));
            });
        }
        self.repeat(Probe::SharedGet, |_| {
            let _ = hostcalls::get_shared_data("probe");
        });
        self.repeat(Probe::SharedSet, |_| {
            let _ = hostcalls::set_shared_data("probe", Some(&[7u8; 104]), None);
        });
        self.repeat(Probe::SharedCas, |_| {
            if let Ok((Some(v), cas)) = hostcalls::get_shared_data("probe") {
                let _ = hostcalls::set_shared_data("probe", Some(&v), cas);
            }
        });
        self.repeat(Probe::SetProperty, |i| {
            let name = format!("probe.p{i}");
            let _ = hostcalls::set_property(vec![name.as_str()], Some(b"0.000123"));
        });
        self.repeat(Probe::RemoveContentLength, |_| {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "content-length");
        });
        self.repeat(Probe::RemoveHeader, |i| {
            let name = format!("x-probe-{i}");
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, &name);
        });
        Action::Continue
    }
    fn on_http_request_body(&mut self, size: usize, _: bool) -> Action {
        self.repeat(Probe::GetBody, |_| {
            let _ = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size);
        });
        if size > 0 {
            self.repeat(Probe::ReadAll, |_| {
                let _ = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size);
            });
        }
        Action::Continue
    }
    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.settle_session();
        }
        self.repeat(Probe::ReadAll, |_| {
            std::hint::black_box(header_map_bytes(MapType::HttpResponseHeaders));
        });
        self.repeat(Probe::SetHeader, |i| {
            let name = format!("x-probe-{i}");
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, &name, Some("0.000123"));
        });
        if self.probe == Probe::SetHeaderPairs {
            let mut pairs = hostcalls::get_map(MapType::HttpResponseHeaders).unwrap_or_default();
            pairs.push(("x-probe-a".into(), "s-1".into()));
            pairs.push(("x-probe-b".into(), "0.000123".into()));
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            self.repeat(Probe::SetHeaderPairs, |_| {
                let _ = hostcalls::set_map(MapType::HttpResponseHeaders, pairs.clone());
            });
        }
        Action::Continue
    }
    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.repeat(Probe::GetResponseBody, |_| {
            let _ = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size);
        });
        if size > 0 {
            self.repeat(Probe::ReadAll, |_| {
                let _ = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size);
            });
        }
        if end_of_stream {
            self.settle_session();
        }
        Action::Continue
    }
}
