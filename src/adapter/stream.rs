//! One HTTP stream: translates Envoy's callbacks for the core's
//! [`HttpExchange`] (and, after a WebSocket upgrade, its [`RealtimeSession`]).

use super::host::{self, Buffer, Map};
use super::shared::{ResetDeadline, Shared};
use crate::http::{
    Admission, FilterState, HttpExchange, RequestBody, HEADER_SESSION_ID, HEADER_SESSION_REMAINING,
};
use crate::money::format_usd;
use crate::realtime::{Phase, RealtimeSession, Rewrite};
use crate::replies::LocalReply;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// A Realtime WebSocket session on this stream.
struct Realtime {
    session: Box<RealtimeSession>,
    /// The upstream answered `101`: frames flow.
    established: bool,
}

pub struct Stream {
    shared: Rc<Shared>,
    context_id: u32,
    exchange: HttpExchange,
    realtime: Option<Realtime>,
}

fn send_reply(reply: &LocalReply) {
    let retry_after = reply.retry_after_s.map(|s| s.to_string());
    let mut headers = vec![("content-type", "application/json")];
    if let Some(r) = &retry_after {
        headers.push(("retry-after", r.as_str()));
    }
    if let Err(e) = host::send_local_response(reply.status, &headers, reply.body.as_bytes()) {
        log::warn!("cannot send the local reply (status {})", e.0);
    }
}

/// The body bytes this callback has (none when the host cannot give them: logged).
fn read_body(buffer: Buffer, body_size: usize) -> Vec<u8> {
    read_body_part(buffer, 0..body_size)
}

/// Bytes `part` of the body chunk: no host call for none.
fn read_body_part(buffer: Buffer, part: std::ops::Range<usize>) -> Vec<u8> {
    if part.is_empty() {
        return Vec::new();
    }
    host::get_buffer(buffer, part.start, part.len()).unwrap_or_else(|e| {
        log::warn!("cannot read a body ({buffer:?}, status {})", e.0);
        Vec::new()
    })
}

fn set_response_header(name: &str, value: &str) {
    if let Err(e) = host::set_header(Map::ResponseHeaders, name, value) {
        log::debug!("cannot set {name}: status {}", e.0);
    }
}

impl Stream {
    pub fn new(shared: Rc<Shared>, context_id: u32) -> Self {
        Stream {
            shared,
            context_id,
            exchange: HttpExchange::new(),
            realtime: None,
        }
    }

    /// The upgrade's answer: a `101` starts the session, anything else drops it.
    fn realtime_established(&mut self) {
        let status = host::get_header(Map::ResponseHeaders, ":status")
            .ok()
            .flatten();
        if status.as_deref() != Some("101") {
            self.realtime = None;
            return;
        }
        let config = &self.shared.config;
        for (name, value) in self.exchange.response_headers_to_set(config) {
            set_response_header(name, &value);
        }
        let Some(rt) = &mut self.realtime else { return };
        rt.established = true;
        if config.response_headers {
            set_response_header(HEADER_SESSION_ID, &rt.session.id);
            set_response_header(HEADER_SESSION_REMAINING, &format_usd(config.session.budget));
        }
        let m = &self.shared.vm.metrics;
        m.sessions_started.inc();
        m.sessions_active.shift(1);
        self.update_reset_deadline();
    }

    /// The WebSocket stream ended, however it ended.
    fn realtime_ended(&mut self) {
        let Some(rt) = self.realtime.take() else {
            return;
        };
        self.shared.vm.set_deadline(self.context_id, None);
        if !rt.established {
            return;
        }
        if self.shared.config.filter_state {
            let spend = format_usd(rt.session.spend);
            for key in [FilterState::CostUsd, FilterState::SessionCostUsd] {
                let _ = host::set_filter_state(key.key(), spend.as_bytes());
            }
        }
        let m = &self.shared.vm.metrics;
        m.sessions_ended.inc();
        if rt.session.aborted() {
            m.sessions_aborted.inc();
        }
        m.sessions_active.shift(-1);
        m.session_cost.record(rt.session.spend);
    }

    /// Tells the root tick when to reset this Realtime stream.
    fn update_reset_deadline(&self) {
        let Some(rt) = &self.realtime else { return };
        let deadline = ResetDeadline {
            at_ms: rt.session.reset_deadline_ms(&self.shared.config.session),
            idle_past_limit: rt.session.phase == Phase::Open,
        };
        self.shared.vm.set_deadline(self.context_id, Some(deadline));
    }

    /// Runs Realtime frames of one direction through the session.
    fn realtime_chunk(&mut self, buffer: Buffer, body_size: usize) {
        let Some(rt) = &mut self.realtime else { return };
        if !rt.established || body_size == 0 {
            return;
        }
        let chunk = match host::get_buffer(buffer, 0, body_size) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("cannot read WebSocket bytes (status {})", e.0);
                return;
            }
        };
        let phase_before = rt.session.phase;
        let config = &self.shared.config;
        let mut env = self.shared.env();
        let now = crate::http::HttpEnv::now_ms(&env);
        let rewrite = match buffer {
            Buffer::HttpResponseBody => {
                rt.session
                    .server_chunk(&chunk, &config.session, config.fail_mode, now, &mut env)
            }
            _ => rt
                .session
                .client_chunk(&chunk, &config.session, now, &mut env),
        };
        let phase_changed = rt.session.phase != phase_before;
        if let Rewrite::Replace(bytes) = rewrite {
            if let Err(e) = host::set_buffer(buffer, 0, body_size, &bytes) {
                log::warn!("cannot rewrite WebSocket bytes (status {})", e.0);
            }
        }
        if phase_changed {
            self.update_reset_deadline();
        }
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One host call for every header this stream needs.
        let headers = host::get_headers(Map::RequestHeaders).unwrap_or_default();
        let shared = Rc::clone(&self.shared);
        let mut env = shared.env();
        match self
            .exchange
            .on_request_headers(&mut env, &headers, end_of_stream)
        {
            Admission::Refuse(reply) => {
                send_reply(&reply);
                Action::Pause
            }
            Admission::Admit { remove, realtime } => {
                for name in remove.names() {
                    if let Err(e) = host::remove_header(Map::RequestHeaders, name) {
                        log::debug!("cannot remove {name}: status {}", e.0);
                    }
                }
                self.realtime = realtime.map(|session| Realtime {
                    session,
                    established: false,
                });
                Action::Continue
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.realtime.is_some() {
            self.realtime_chunk(Buffer::HttpRequestBody, body_size);
            return Action::Continue;
        }
        let decision = self.exchange.on_request_body(body_size, end_of_stream);
        if matches!(decision, RequestBody::Continue | RequestBody::Pause) {
            return if decision == RequestBody::Pause {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        let body = read_body(Buffer::HttpRequestBody, body_size);
        let shared = Rc::clone(&self.shared);
        let mut env = shared.env();
        let outcome = if decision == RequestBody::Rewrite {
            self.exchange.rewrite_request_body(&mut env, &body)
        } else {
            self.exchange
                .read_request_body(&mut env, &body, end_of_stream)
                .map(|()| None)
        };
        match outcome {
            Ok(Some(new_body)) => {
                if let Err(e) = host::set_buffer(Buffer::HttpRequestBody, 0, body_size, &new_body) {
                    log::warn!("cannot rewrite the request body (status {})", e.0);
                }
                Action::Continue
            }
            Ok(None) => Action::Continue,
            Err(reply) => {
                send_reply(&reply);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.realtime.is_some() {
            self.realtime_established();
            return Action::Continue;
        }
        for (name, value) in self.exchange.response_headers_to_set(&self.shared.config) {
            set_response_header(name, &value);
        }
        if !self.exchange.reads_response_headers() {
            return Action::Continue;
        }
        let headers = host::get_headers(Map::ResponseHeaders).unwrap_or_default();
        let shared = Rc::clone(&self.shared);
        let mut env = shared.env();
        self.exchange
            .on_response_headers(&mut env, &headers, end_of_stream);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.realtime.is_some() {
            self.realtime_chunk(Buffer::HttpResponseBody, body_size);
            return Action::Continue;
        }
        if !self.exchange.reads_response_body() {
            return Action::Continue;
        }
        // A long JSON body's middle is not read at all when its length is known.
        let wanted = self.exchange.response_body_wanted(body_size);
        let at = wanted.start;
        let part = read_body_part(Buffer::HttpResponseBody, wanted);
        let shared = Rc::clone(&self.shared);
        let mut env = shared.env();
        self.exchange
            .on_response_body_part(&mut env, body_size, at, part.into(), end_of_stream);
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the body: it arrived whole.
        if self.realtime.is_none() && self.exchange.reads_response_body() {
            let shared = Rc::clone(&self.shared);
            let mut env = shared.env();
            self.exchange.on_response_trailers(&mut env);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // A stream cut before its end (client gone, upstream reset) ends here.
        let shared = Rc::clone(&self.shared);
        let mut env = shared.env();
        self.exchange.on_end(&mut env);
        self.realtime_ended();
    }
}
