//! A Realtime API WebSocket session: prices each `response.done`, warns at
//! `warn_ratio`, closes with 1008 at the budget or the duration limit, and
//! decides, chunk by chunk, what the bytes in each direction become.
//!
//! Edits happen only at frame boundaries. Server→client: injected events and
//! the Close go right after the frame that crossed a threshold (or before the
//! first frame after a limit), and nothing follows costguard's Close.
//! Client→server: after costguard's Close only Close frames pass (the client's
//! echo); a limit noticed on a client frame replaces that frame with a masked
//! Close to the upstream, whose echoed Close is then rewritten into
//! costguard's own code and reason.

use crate::config::{FailMode, SessionConfig};
use crate::http::budgets::AppliedRule;
use crate::json_scan::JsonScanner;
use crate::json_tail::last_plain_string;
use crate::meter::{event_type, DocumentFacts, CAPTURE_CAP, USAGE_PATHS};
use crate::money::{format_usd, Micros};
use crate::usage::Usage;
use crate::utf8::Utf8Validator;
use crate::ws::{
    close_frame, encode_frame, unmask_into, FrameEvent, FrameHeader, FrameParser,
    CLOSE_POLICY_VIOLATION, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_TEXT,
};

/// The largest server message read for usage (`response.done`); larger ones
/// are counted as parse errors.
pub const MAX_READ_MESSAGE: u64 = 1024 * 1024;
/// How long the client has to answer costguard's Close before the stream is reset.
pub const CLOSE_ANSWER_MS: u64 = 2_000;
/// A session with no frame after its duration limit is reset this much later.
pub const IDLE_RESET_GRACE_MS: u64 = 5_000;

/// Event types whose content matters; every other message is skipped as
/// soon as its `type` has been read.
const READ_TYPES: [&str; 3] = ["response.done", "session.created", "session.updated"];
/// A message's first bytes read for its type (doubling after each piece).
const FIRST_TYPE_PROBE: usize = 128;
/// A message's last bytes read backward for its type: before the forward
/// read, when the bytes read first did not hold it; after it, when it found
/// a type that is read.
const LAST_TYPE_PROBE: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Budget,
    Duration,
    Breaker,
}

impl CloseReason {
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Budget => "Budget exceeded",
            CloseReason::Duration => "Session duration limit",
            CloseReason::Breaker => "Circuit breaker open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    /// costguard sent a Close to the upstream; its echo is to be rewritten.
    ClosingUpstream {
        reason: CloseReason,
        since_ms: u64,
    },
    /// costguard's Close went to the client: nothing more goes to it.
    Closed {
        reason: CloseReason,
        since_ms: u64,
    },
}

/// What happened, for stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Warned,
    BudgetExceeded,
    DurationExceeded,
    BreakerClosed,
    /// A `response.done` without usage.
    UsageMissing,
    /// Malformed usage, an oversized `response.done`, invalid or compressed frames.
    ParseError,
}

/// A budget rule that has run out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOut {
    pub name: String,
    pub spent: Micros,
    pub limit: Micros,
}

/// One response booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booked {
    pub cost: Micros,
    /// A rule of the session this booking exhausted.
    pub exhausted: Option<RuleOut>,
}

/// What the session needs from its host.
pub trait RealtimeEnv {
    /// Books one response's usage (budget rules, global window, stats).
    fn book(&mut self, model: &str, usage: &Usage, rules: &mut [AppliedRule]) -> Booked;
    /// A rule with no room left now, if any (asked before a client message goes on).
    fn exhausted_rule(&mut self, rules: &mut [AppliedRule]) -> Option<RuleOut>;
    /// The breaker is open and `global.close_active_sessions` is set.
    fn breaker_closes_sessions(&self) -> bool;
    fn random_mask(&mut self) -> [u8; 4];
    fn notice(&mut self, notice: Notice);
}

/// What becomes of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    Keep,
    Replace(Vec<u8>),
}

/// Builds the rewritten chunk lazily: untouched chunks are never copied.
struct Edit<'a> {
    chunk: &'a [u8],
    out: Option<Vec<u8>>,
    /// Chunk bytes before this position are decided (kept or dropped).
    decided: usize,
    drop_rest: bool,
}

impl<'a> Edit<'a> {
    fn new(chunk: &'a [u8]) -> Self {
        Edit {
            chunk,
            out: None,
            decided: 0,
            drop_rest: false,
        }
    }
    fn out(&mut self) -> &mut Vec<u8> {
        let decided = self.decided;
        let chunk = self.chunk;
        self.out
            .get_or_insert_with(|| chunk.get(..decided).map(<[u8]>::to_vec).unwrap_or_default())
    }
    fn keep_until(&mut self, at: usize) {
        if at <= self.decided {
            return;
        }
        let part = self.chunk.get(self.decided..at).unwrap_or(&[]);
        if let Some(out) = &mut self.out {
            out.extend_from_slice(part);
        }
        self.decided = at;
    }
    fn drop_until(&mut self, at: usize) {
        if at <= self.decided {
            return;
        }
        self.out();
        self.decided = at;
    }
    fn insert(&mut self, bytes: &[u8]) {
        self.out().extend_from_slice(bytes);
    }
    fn finish(mut self) -> Rewrite {
        if self.drop_rest {
            let end = self.chunk.len();
            self.drop_until(end);
        } else {
            let end = self.chunk.len();
            self.keep_until(end);
        }
        match self.out {
            None => Rewrite::Keep,
            Some(out) => Rewrite::Replace(out),
        }
    }
}

/// Reads server→client text messages for the few events that matter.
struct MessageReader {
    scanner: JsonScanner,
    /// A data message is in progress (no FIN yet).
    in_message: bool,
    /// The current frame is part of a data message.
    data_frame: bool,
    reading: bool,
    /// The message's `type` has been read.
    type_known: bool,
    /// How many bytes to read next while the type is unknown.
    probe: usize,
    bytes: u64,
    oversized: bool,
    utf8: Utf8Validator,
    unmasked: Vec<u8>,
    /// The last bytes of the message so far, while it may be read (its type
    /// unknown or read): how a message ends decides the same way however
    /// chunks cut it.
    tail: MessageTail,
}

/// A message's last [`LAST_TYPE_PROBE`] bytes, kept across chunks.
struct MessageTail {
    bytes: [u8; LAST_TYPE_PROBE],
    len: usize,
}

impl MessageTail {
    fn new() -> Self {
        MessageTail {
            bytes: [0; LAST_TYPE_PROBE],
            len: 0,
        }
    }

    fn kept(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// The message's last bytes once `data` follows what is kept (into
    /// `scratch` when both are needed).
    fn with<'a>(&'a self, data: &'a [u8], scratch: &'a mut [u8; LAST_TYPE_PROBE]) -> &'a [u8] {
        if data.len() >= LAST_TYPE_PROBE {
            return data.get(data.len() - LAST_TYPE_PROBE..).unwrap_or_default();
        }
        let keep = self.len.min(LAST_TYPE_PROBE - data.len());
        let kept = self.kept();
        let joined = keep + data.len();
        if let (Some(old), Some(to)) = (kept.get(kept.len() - keep..), scratch.get_mut(..joined)) {
            let (head, rest) = to.split_at_mut(keep);
            head.copy_from_slice(old);
            rest.copy_from_slice(data);
        }
        scratch.get(..joined).unwrap_or_default()
    }

    /// Keeps the last bytes once `data` follows: what stays of the kept
    /// bytes moves to the front, `data` (or its end) goes after it.
    fn push(&mut self, data: &[u8]) {
        let data = data
            .get(data.len().saturating_sub(LAST_TYPE_PROBE)..)
            .unwrap_or_default();
        let keep = self.len.min(LAST_TYPE_PROBE - data.len());
        self.bytes.copy_within(self.len - keep..self.len, 0);
        if let Some(to) = self.bytes.get_mut(keep..keep + data.len()) {
            to.copy_from_slice(data);
        }
        self.len = keep + data.len();
    }
}

/// What one complete server message said.
struct MessageFacts {
    facts: DocumentFacts,
    oversized: bool,
    complete: bool,
    /// Its text was valid UTF-8 (as far as it was read).
    valid_utf8: bool,
}

impl MessageReader {
    fn new() -> Self {
        MessageReader {
            scanner: JsonScanner::new(USAGE_PATHS, CAPTURE_CAP),
            in_message: false,
            data_frame: false,
            reading: false,
            type_known: false,
            probe: FIRST_TYPE_PROBE,
            bytes: 0,
            oversized: false,
            utf8: Utf8Validator::new(),
            unmasked: Vec::new(),
            tail: MessageTail::new(),
        }
    }

    /// Returns true when the frame breaks the rules for server frames
    /// (masked, compressed, a message interrupted or continued from nothing).
    fn start(&mut self, h: &FrameHeader) -> bool {
        self.data_frame = !h.is_control();
        let broken = match h.opcode {
            OP_TEXT | OP_BINARY => {
                let interrupted = self.in_message;
                self.in_message = true;
                self.scanner.reset();
                self.utf8 = Utf8Validator::new();
                self.reading = h.opcode == OP_TEXT && !h.is_compressed();
                self.type_known = false;
                self.probe = FIRST_TYPE_PROBE;
                self.tail.len = 0;
                self.bytes = 0;
                self.oversized = false;
                interrupted || h.is_compressed()
            }
            OP_CONTINUATION => !self.in_message,
            _ => false,
        };
        broken || h.mask.is_some()
    }

    fn payload(&mut self, h: &FrameHeader, data: &[u8], offset: u64) {
        if !self.data_frame || !self.reading {
            return;
        }
        self.bytes += data.len() as u64;
        if self.bytes > MAX_READ_MESSAGE {
            self.oversized = true;
            self.reading = false;
            return;
        }
        let data = if h.mask.is_some() {
            self.unmasked.clear();
            unmask_into(data, h.mask, offset, &mut self.unmasked);
            &self.unmasked[..]
        } else {
            data
        };
        // Until the type is known, read in growing pieces: it comes first
        // in practice, so an audio delta (most of a session's bytes) is
        // skipped after its first piece, not scanned to its end. Where the
        // message ends in this data, its type may be read from the end
        // instead (after the first piece, if the message starts here too).
        let mut rest = data;
        let starts_message = self.bytes == data.len() as u64;
        let mut end_unread = h.fin && offset.saturating_add(data.len() as u64) == h.len;
        while !self.type_known && !rest.is_empty() {
            if end_unread && !(starts_message && self.probe == FIRST_TYPE_PROBE) {
                end_unread = false;
                let mut scratch = [0; LAST_TYPE_PROBE];
                if type_written_last_is_skipped(self.tail.with(data, &mut scratch)) {
                    // Not read: what remains of the message is never searched.
                    self.type_known = true;
                    self.reading = false;
                    break;
                }
            }
            let Some((piece, after)) = rest.split_at_checked(rest.len().min(self.probe)) else {
                break;
            };
            self.scanner.feed(piece);
            self.utf8.feed(piece);
            rest = after;
            self.probe = self.probe.saturating_mul(2);
            if let Some(t) = event_type(&self.scanner) {
                self.type_known = true;
                // Not needed: skip the rest unread.
                self.reading = READ_TYPES.contains(&t.as_ref());
            }
        }
        if self.reading {
            self.scanner.feed(rest);
            self.utf8.feed(rest);
            self.tail.push(data);
        }
    }

    /// At a frame's end: the facts of the message it completed, if it is one worth reading.
    fn end(&mut self, h: &FrameHeader) -> Option<MessageFacts> {
        if !self.data_frame || !h.fin || !self.in_message {
            return None;
        }
        self.in_message = false;
        let complete = self.scanner.finish().is_ok();
        // Most messages are audio deltas: their type, borrowed, is all that
        // is read of them. A message whose end shows a type that is not
        // read (a second `type`, in a message that has two) is skipped as
        // it is when its end is read first.
        let wanted = event_type(&self.scanner).is_some_and(|t| READ_TYPES.contains(&t.as_ref()))
            && !(self.reading && type_written_last_is_skipped(self.tail.kept()));
        (wanted && (self.reading || self.oversized)).then(|| MessageFacts {
            facts: DocumentFacts::from_scanner(&self.scanner),
            oversized: self.oversized,
            complete,
            valid_utf8: self.utf8.is_valid(!self.oversized),
        })
    }
}

/// Whether the last members of a message (`end`: its last bytes) include a
/// `type` that is not read — read backward, so an 8 KB audio delta whose
/// type comes after its audio is skipped without searching the audio for
/// its end. A type written with escapes is left to the forward read.
fn type_written_last_is_skipped(end: &[u8]) -> bool {
    let window = end
        .get(end.len().saturating_sub(LAST_TYPE_PROBE)..)
        .unwrap_or_default();
    last_plain_string(window, b"type")
        .is_some_and(|t| !READ_TYPES.iter().any(|r| r.as_bytes() == t))
}

pub struct RealtimeSession {
    pub id: String,
    pub model: String,
    pub spend: Micros,
    pub warned: bool,
    pub started_ms: u64,
    pub phase: Phase,
    /// The client answered costguard's Close.
    pub client_answered: bool,
    /// A Close frame passed in either direction (or costguard sent one):
    /// the session did not just vanish.
    pub close_seen: bool,
    server: FrameParser,
    reader: MessageReader,
    client: FrameParser,
    /// The frame in progress in each direction is being dropped.
    server_dropping: bool,
    client_dropping: bool,
    parse_error_counted: bool,
    /// The budget rules that apply to the session (from its upgrade request).
    pub rules: Vec<AppliedRule>,
    /// The event that goes to the client before costguard's Close, when the
    /// upstream echoes the Close sent to it.
    closing_event: Option<String>,
}

/// A direction's chunk needs no parsing: everything is dropped (`drop_all`),
/// or the stream stopped being WebSocket and passes as it is (`failed`).
fn passthrough(chunk: &[u8], drop_all: bool, failed: bool) -> Option<Rewrite> {
    if drop_all {
        Some(if chunk.is_empty() {
            Rewrite::Keep
        } else {
            Rewrite::Replace(Vec::new())
        })
    } else if failed {
        Some(Rewrite::Keep)
    } else {
        None
    }
}

/// `{"type":"budget_warning",…}`, money as JSON numbers in USD.
pub fn budget_warning_event(session_id: &str, spend: Micros, budget: Micros) -> String {
    format!(
        r#"{{"type":"budget_warning","session_id":{},"session_cost_usd":{},"budget_usd":{},"remaining_usd":{}}}"#,
        serde_json::Value::String(session_id.to_string()),
        format_usd(spend),
        format_usd(budget),
        format_usd(budget.saturating_sub(spend))
    )
}

pub fn budget_exceeded_event(session_id: &str, spend: Micros, budget: Micros) -> String {
    format!(
        r#"{{"type":"budget_exceeded","session_id":{},"session_cost_usd":{},"budget_usd":{}}}"#,
        serde_json::Value::String(session_id.to_string()),
        format_usd(spend),
        format_usd(budget)
    )
}

/// The `budget_exceeded` event for a budget rule: `budget` names it,
/// `budget_usd` is its limit, `budget_spent_usd` its spend in the window.
pub fn rule_exceeded_event(session_id: &str, spend: Micros, rule: &RuleOut) -> String {
    format!(
        r#"{{"type":"budget_exceeded","session_id":{},"session_cost_usd":{},"budget":{},"budget_usd":{},"budget_spent_usd":{}}}"#,
        serde_json::Value::String(session_id.to_string()),
        format_usd(spend),
        serde_json::Value::String(rule.name.clone()),
        format_usd(rule.limit),
        format_usd(rule.spent)
    )
}

/// A random UUID v4 from 16 random bytes.
pub fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8).unwrap_or(""),
        hex.get(8..12).unwrap_or(""),
        hex.get(12..16).unwrap_or(""),
        hex.get(16..20).unwrap_or(""),
        hex.get(20..32).unwrap_or("")
    )
}

/// The `model` query parameter of an upgrade path.
pub fn model_from_path(path: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "model" && !v.is_empty()).then(|| v.to_string())
    })
}

impl RealtimeSession {
    pub fn new(id: String, model: String, started_ms: u64) -> Self {
        RealtimeSession {
            id,
            model,
            spend: 0,
            warned: false,
            started_ms,
            phase: Phase::Open,
            client_answered: false,
            close_seen: false,
            server: FrameParser::new(),
            reader: MessageReader::new(),
            client: FrameParser::new(),
            server_dropping: false,
            client_dropping: false,
            parse_error_counted: false,
            rules: Vec::new(),
            closing_event: None,
        }
    }

    /// The session ended without any Close handshake: a peer vanished or reset it.
    pub fn aborted(&self) -> bool {
        !self.close_seen && self.phase == Phase::Open
    }

    fn duration_over(&self, cfg: &SessionConfig, now_ms: u64) -> bool {
        now_ms >= self.started_ms + cfg.max_duration_s.saturating_mul(1000)
    }

    /// When the stream must be reset if it still exists: the client's time
    /// to answer a Close, or the idle limit past the duration.
    pub fn reset_deadline_ms(&self, cfg: &SessionConfig) -> u64 {
        match self.phase {
            Phase::Open => {
                self.started_ms + cfg.max_duration_s.saturating_mul(1000) + IDLE_RESET_GRACE_MS
            }
            Phase::ClosingUpstream { since_ms, .. } | Phase::Closed { since_ms, .. } => {
                since_ms + CLOSE_ANSWER_MS
            }
        }
    }

    fn parse_error(&mut self, env: &mut dyn RealtimeEnv) {
        if !self.parse_error_counted {
            self.parse_error_counted = true;
            env.notice(Notice::ParseError);
        }
    }

    /// A limit other than the budget applies now, if any.
    fn limit_now(
        &self,
        cfg: &SessionConfig,
        now_ms: u64,
        env: &dyn RealtimeEnv,
    ) -> Option<CloseReason> {
        if self.duration_over(cfg, now_ms) {
            Some(CloseReason::Duration)
        } else if env.breaker_closes_sessions() {
            Some(CloseReason::Breaker)
        } else {
            None
        }
    }

    fn notice_close(reason: CloseReason, env: &mut dyn RealtimeEnv) {
        env.notice(match reason {
            CloseReason::Budget => Notice::BudgetExceeded,
            CloseReason::Duration => Notice::DurationExceeded,
            CloseReason::Breaker => Notice::BreakerClosed,
        });
    }

    /// Server→client bytes.
    pub fn server_chunk(
        &mut self,
        chunk: &[u8],
        cfg: &SessionConfig,
        fail_mode: FailMode,
        now_ms: u64,
        env: &mut dyn RealtimeEnv,
    ) -> Rewrite {
        // After costguard's Close nothing more goes to the client.
        if let Some(r) = passthrough(
            chunk,
            matches!(self.phase, Phase::Closed { .. }),
            self.server.failed(),
        ) {
            return r;
        }
        let mut edit = Edit::new(chunk);
        let mut parser = std::mem::take(&mut self.server);
        parser.feed(chunk, |event| match event {
            FrameEvent::Start { header, at } => {
                self.close_seen |= header.opcode == OP_CLOSE;
                if let Some(p) = at {
                    if let Phase::ClosingUpstream { reason, .. } = self.phase {
                        edit.keep_until(p);
                        if header.opcode == OP_CLOSE {
                            // The upstream's echo becomes costguard's own Close.
                            if let Some(event) = self.closing_event.take() {
                                edit.insert(&encode_frame(OP_TEXT, event.as_bytes(), None));
                            }
                            edit.insert(&close_frame(CLOSE_POLICY_VIOLATION, reason.text(), None));
                            edit.drop_rest = true;
                            self.phase = Phase::Closed {
                                reason,
                                since_ms: now_ms,
                            };
                            return false;
                        }
                        self.server_dropping = true;
                    } else if let Some(reason) = self.limit_now(cfg, now_ms, env) {
                        edit.keep_until(p);
                        edit.insert(&close_frame(CLOSE_POLICY_VIOLATION, reason.text(), None));
                        edit.drop_rest = true;
                        self.phase = Phase::Closed {
                            reason,
                            since_ms: now_ms,
                        };
                        Self::notice_close(reason, env);
                        return false;
                    }
                }
                if self.reader.start(&header) {
                    self.parse_error(env);
                }
                true
            }
            FrameEvent::Payload {
                header,
                data,
                offset,
            } => {
                self.reader.payload(&header, data, offset);
                true
            }
            FrameEvent::End { header, at } => {
                if std::mem::replace(&mut self.server_dropping, false) {
                    edit.drop_until(at);
                    return true;
                }
                let Some(msg) = self.reader.end(&header) else {
                    return true;
                };
                self.on_message(msg, at, &mut edit, cfg, fail_mode, now_ms, env)
            }
            FrameEvent::Error(_) => {
                self.parse_error(env);
                false
            }
        });
        self.server = parser;
        edit.finish()
    }

    #[allow(clippy::too_many_arguments)]
    fn on_message(
        &mut self,
        msg: MessageFacts,
        at: usize,
        edit: &mut Edit<'_>,
        cfg: &SessionConfig,
        fail_mode: FailMode,
        now_ms: u64,
        env: &mut dyn RealtimeEnv,
    ) -> bool {
        if !msg.valid_utf8 {
            // Priced all the same when its usage reads: the upstream billed it.
            self.parse_error(env);
        }
        let event_type = msg.facts.event_type.as_deref().unwrap_or("");
        if event_type != "response.done" {
            if let Some(model) = msg.facts.model {
                self.model = model;
            }
            return true;
        }
        let mut rule_out = None;
        let over = match (&msg.facts.usage, msg.oversized) {
            (Some(Ok(usage)), false) => {
                let booked = env.book(&self.model, usage, &mut self.rules);
                self.spend = self.spend.saturating_add(booked.cost);
                rule_out = booked.exhausted;
                cfg.reaches_budget(self.spend) || rule_out.is_some()
            }
            (usage, oversized) => {
                let malformed = oversized || matches!(usage, Some(Err(_))) || !msg.complete;
                env.notice(if malformed {
                    Notice::ParseError
                } else {
                    Notice::UsageMissing
                });
                fail_mode == FailMode::Closed
            }
        };
        if !self.warned && (cfg.reaches_warning(self.spend) || (over && rule_out.is_none())) {
            self.warned = true;
            edit.keep_until(at);
            let event = budget_warning_event(&self.id, self.spend, cfg.budget);
            edit.insert(&encode_frame(OP_TEXT, event.as_bytes(), None));
            env.notice(Notice::Warned);
        }
        if over {
            edit.keep_until(at);
            let event = match &rule_out {
                Some(rule) => rule_exceeded_event(&self.id, self.spend, rule),
                None => budget_exceeded_event(&self.id, self.spend, cfg.budget),
            };
            edit.insert(&encode_frame(OP_TEXT, event.as_bytes(), None));
            edit.insert(&close_frame(
                CLOSE_POLICY_VIOLATION,
                CloseReason::Budget.text(),
                None,
            ));
            edit.drop_rest = true;
            self.phase = Phase::Closed {
                reason: CloseReason::Budget,
                since_ms: now_ms,
            };
            env.notice(Notice::BudgetExceeded);
            return false;
        }
        true
    }

    /// Client→server bytes.
    pub fn client_chunk(
        &mut self,
        chunk: &[u8],
        cfg: &SessionConfig,
        now_ms: u64,
        env: &mut dyn RealtimeEnv,
    ) -> Rewrite {
        // After costguard's Close to the upstream nothing more goes there.
        if let Some(r) = passthrough(
            chunk,
            matches!(self.phase, Phase::ClosingUpstream { .. }),
            self.client.failed(),
        ) {
            return r;
        }
        let mut edit = Edit::new(chunk);
        let mut parser = std::mem::take(&mut self.client);
        parser.feed(chunk, |event| match event {
            FrameEvent::Start { header, at } => {
                self.close_seen |= header.opcode == OP_CLOSE;
                let Some(p) = at else { return true };
                if matches!(self.phase, Phase::Closed { .. }) {
                    if header.opcode == OP_CLOSE {
                        self.client_answered = true;
                    } else {
                        // After costguard's Close only the client's Close goes on.
                        edit.keep_until(p);
                        self.client_dropping = true;
                    }
                    return true;
                }
                let mut limit = self.limit_now(cfg, now_ms, env);
                let starts_message = matches!(header.opcode, OP_TEXT | OP_BINARY);
                if limit.is_none() && starts_message && !self.rules.is_empty() {
                    // A message (maybe a `response.create`) while a rule is out: not forwarded.
                    if let Some(rule) = env.exhausted_rule(&mut self.rules) {
                        self.closing_event = Some(rule_exceeded_event(&self.id, self.spend, &rule));
                        limit = Some(CloseReason::Budget);
                    }
                }
                if let Some(reason) = limit {
                    edit.keep_until(p);
                    edit.insert(&close_frame(
                        CLOSE_POLICY_VIOLATION,
                        reason.text(),
                        Some(env.random_mask()),
                    ));
                    edit.drop_rest = true;
                    self.phase = Phase::ClosingUpstream {
                        reason,
                        since_ms: now_ms,
                    };
                    Self::notice_close(reason, env);
                    return false;
                }
                true
            }
            FrameEvent::End { at, .. } => {
                if std::mem::replace(&mut self.client_dropping, false) {
                    edit.drop_until(at);
                }
                true
            }
            FrameEvent::Payload { .. } => true,
            FrameEvent::Error(_) => {
                self.parse_error(env);
                false
            }
        });
        self.client = parser;
        edit.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::pricing::cost_micros;
    use crate::ws::OP_PING;

    struct Env {
        config: Config,
        notices: Vec<Notice>,
        breaker: bool,
        /// A budget rule that is out (for the next booking, or asked).
        rule_out: Option<RuleOut>,
    }

    impl RealtimeEnv for Env {
        fn book(&mut self, model: &str, usage: &Usage, _rules: &mut [AppliedRule]) -> Booked {
            Booked {
                cost: cost_micros(usage, self.config.prices.lookup(model).prices()),
                exhausted: self.rule_out.clone(),
            }
        }
        fn exhausted_rule(&mut self, _rules: &mut [AppliedRule]) -> Option<RuleOut> {
            self.rule_out.clone()
        }
        fn breaker_closes_sessions(&self) -> bool {
            self.breaker
        }
        fn random_mask(&mut self) -> [u8; 4] {
            [1, 2, 3, 4]
        }
        fn notice(&mut self, n: Notice) {
            self.notices.push(n);
        }
    }

    const SEED: &str = r#"{"pricing":{"gpt-realtime":{"input":100,"output":200}}}"#;

    fn env(json: &str) -> Env {
        Env {
            config: Config::parse(json.as_bytes()).unwrap(),
            notices: vec![],
            breaker: false,
            rule_out: None,
        }
    }

    fn text(s: &str) -> Vec<u8> {
        encode_frame(OP_TEXT, s.as_bytes(), None)
    }

    /// `response.done` costing `input`/`output` tokens.
    fn done(input: u64, output: u64) -> Vec<u8> {
        text(&format!(
            r#"{{"type":"response.done","response":{{"id":"r","status":"completed","output":[{{"transcript":"usage"}}],"usage":{{"total_tokens":{},"input_tokens":{input},"output_tokens":{output},"input_token_details":{{"text_tokens":{input},"audio_tokens":0,"cached_tokens":0}},"output_token_details":{{"text_tokens":{output},"audio_tokens":0}}}}}}}}"#,
            input + output
        ))
    }

    fn audio_delta(n: usize) -> Vec<u8> {
        text(&format!(
            r#"{{"type":"response.output_audio.delta","delta":"{}"}}"#,
            "A".repeat(n)
        ))
    }

    /// Parses what the client received: (opcode, payload) per frame.
    fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut p = FrameParser::new();
        let mut out: Vec<(u8, Vec<u8>)> = vec![];
        p.feed(bytes, |e| {
            match e {
                FrameEvent::Start { header, .. } => out.push((header.opcode, vec![])),
                FrameEvent::Payload {
                    header,
                    data,
                    offset,
                } => {
                    if let Some(last) = out.last_mut() {
                        unmask_into(data, header.mask, offset, &mut last.1);
                    }
                }
                _ => {}
            }
            true
        });
        out
    }

    fn apply(r: Rewrite, chunk: &[u8]) -> Vec<u8> {
        match r {
            Rewrite::Keep => chunk.to_vec(),
            Rewrite::Replace(v) => v,
        }
    }

    fn feed_server(
        s: &mut RealtimeSession,
        e: &mut Env,
        stream: &[u8],
        splits: &[usize],
        now: u64,
    ) -> Vec<u8> {
        let mut out = vec![];
        let mut last = 0;
        let mut bounds = splits.to_vec();
        bounds.push(stream.len());
        for b in bounds {
            let chunk = &stream[last..b];
            let cfg = e.config.session.clone();
            let fm = e.config.fail_mode;
            out.extend(apply(s.server_chunk(chunk, &cfg, fm, now, e), chunk));
            last = b;
        }
        out
    }

    #[test]
    fn seed_flow_warns_then_closes_at_the_budget() {
        let mut e = env(SEED);
        let mut s = RealtimeSession::new("sess-1".into(), "gpt-realtime".into(), 0);
        let mut stream = text(r#"{"type":"session.created","session":{"model":"gpt-realtime"}}"#);
        // $2.10 each: 5k in × $100 + 8k out × $200 = 0.5 + 1.6.
        for _ in 0..3 {
            stream.extend(audio_delta(150_000));
            stream.extend(done(5_000, 8_000));
        }
        stream.extend(audio_delta(10)); // after the Close: dropped
        let split_points: Vec<usize> = (1..stream.len()).step_by(4099).collect();
        let out = feed_server(&mut s, &mut e, &stream, &split_points, 1_000);
        let got = frames(&out);
        let texts: Vec<String> = got
            .iter()
            .filter(|(op, _)| *op == OP_TEXT)
            .map(|(_, p)| String::from_utf8_lossy(p).chars().take(40).collect())
            .collect();
        assert_eq!(texts.len(), 1 + 3 * 2 + 2);
        assert_eq!(
            String::from_utf8_lossy(&got[5].1),
            r#"{"type":"budget_warning","session_id":"sess-1","session_cost_usd":4.2,"budget_usd":5,"remaining_usd":0.8}"#
        );
        assert_eq!(
            String::from_utf8_lossy(&got[8].1),
            r#"{"type":"budget_exceeded","session_id":"sess-1","session_cost_usd":6.3,"budget_usd":5}"#
        );
        assert_eq!(got[9].0, OP_CLOSE);
        assert_eq!(got[9].1, [&[0x03, 0xF0][..], b"Budget exceeded"].concat());
        assert_eq!(got.len(), 10, "nothing after the Close");
        assert_eq!(s.spend, 6_300_000);
        assert_eq!(e.notices, vec![Notice::Warned, Notice::BudgetExceeded]);
        assert!(matches!(
            s.phase,
            Phase::Closed {
                reason: CloseReason::Budget,
                ..
            }
        ));
        // Later server bytes are dropped whole.
        assert_eq!(
            s.server_chunk(
                &done(1, 1),
                &e.config.session.clone(),
                FailMode::Open,
                2_000,
                &mut e
            ),
            Rewrite::Replace(vec![])
        );
    }

    #[test]
    fn same_result_at_every_split() {
        let mut stream = text(r#"{"type":"session.updated","session":{"model":"gpt-realtime"}}"#);
        stream.extend(done(5_000, 8_000));
        stream.extend(encode_frame(OP_PING, b"", None));
        stream.extend(done(5_000, 8_000));
        stream.extend(done(5_000, 8_000));
        let mut want: Option<Vec<u8>> = None;
        for split in 0..stream.len() {
            let mut e = env(SEED);
            let mut s = RealtimeSession::new("x".into(), "other".into(), 0);
            let out = feed_server(&mut s, &mut e, &stream, &[split], 0);
            assert_eq!(s.spend, 6_300_000, "split {split}");
            match &want {
                None => want = Some(out),
                Some(w) => assert_eq!(&out, w, "split {split}"),
            }
        }
    }

    #[test]
    fn realtime_seed_example_is_exact() {
        let mut e = env(SEED);
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        feed_server(&mut s, &mut e, &done(25_000, 50_000), &[], 0);
        assert_eq!(s.spend, 12_500_000);
    }

    #[test]
    fn model_comes_from_session_events() {
        let mut e = env(
            r#"{"pricing":{"cheap":{"input":1,"output":1},"dear":{"input":100,"output":100}}}"#,
        );
        let mut s = RealtimeSession::new("x".into(), "cheap".into(), 0);
        let mut stream = text(r#"{"type":"session.created","session":{"model":"dear"}}"#);
        stream.extend(done(10_000, 0));
        feed_server(&mut s, &mut e, &stream, &[7], 0);
        assert_eq!(s.model, "dear");
        assert_eq!(s.spend, 1_000_000);
    }

    #[test]
    fn duration_limit_from_a_server_frame() {
        let mut e = env(r#"{"session":{"max_duration_s":2}}"#);
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        let before = audio_delta(5);
        assert_eq!(feed_server(&mut s, &mut e, &before, &[], 1_999), before);
        let out = feed_server(&mut s, &mut e, &audio_delta(5), &[], 2_000);
        assert_eq!(
            frames(&out),
            vec![(
                OP_CLOSE,
                [&[0x03, 0xF0][..], b"Session duration limit"].concat()
            )]
        );
        assert_eq!(e.notices, vec![Notice::DurationExceeded]);
        assert_eq!(
            s.reset_deadline_ms(&e.config.session),
            2_000 + CLOSE_ANSWER_MS
        );
    }

    #[test]
    fn duration_limit_from_a_client_frame_rewrites_the_upstream_echo() {
        let mut e = env(r#"{"session":{"max_duration_s":2}}"#);
        let cfg = e.config.session.clone();
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        let client_frame = encode_frame(
            OP_TEXT,
            br#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#,
            Some([5, 6, 7, 8]),
        );
        assert_eq!(
            s.client_chunk(&client_frame, &cfg, 1_000, &mut e),
            Rewrite::Keep
        );
        let Rewrite::Replace(to_upstream) = s.client_chunk(&client_frame, &cfg, 2_500, &mut e)
        else {
            panic!()
        };
        let f = frames(&to_upstream);
        assert_eq!(
            f,
            vec![(
                OP_CLOSE,
                [&[0x03, 0xF0][..], b"Session duration limit"].concat()
            )]
        );
        assert_eq!(to_upstream[1] & 0x80, 0x80, "masked towards the upstream");
        // More client bytes are dropped; the upstream's audio and echo are rewritten.
        assert_eq!(
            s.client_chunk(&client_frame, &cfg, 2_600, &mut e),
            Rewrite::Replace(vec![])
        );
        let mut from_upstream = audio_delta(100);
        from_upstream.extend(close_frame(1000, "", None));
        let out = feed_server(&mut s, &mut e, &from_upstream, &[], 2_700);
        assert_eq!(
            frames(&out),
            vec![(
                OP_CLOSE,
                [&[0x03, 0xF0][..], b"Session duration limit"].concat()
            )]
        );
        assert_eq!(e.notices, vec![Notice::DurationExceeded]);
        assert!(matches!(
            s.phase,
            Phase::Closed {
                reason: CloseReason::Duration,
                ..
            }
        ));
    }

    fn a_rule() -> AppliedRule {
        AppliedRule {
            rule: 0,
            key: crate::budget::rules::RuleKey::new("key-daily", b"k"),
            key_id: None,
            handle: None,
        }
    }

    fn key_daily_out() -> RuleOut {
        RuleOut {
            name: "key-daily".into(),
            spent: 20_010_000,
            limit: 20_000_000,
        }
    }

    #[test]
    fn a_rule_exhausted_by_a_response_closes_the_session_naming_it() {
        let mut e = env(SEED);
        let mut s = RealtimeSession::new("sess-1".into(), "gpt-realtime".into(), 0);
        s.rules = vec![a_rule()];
        e.rule_out = Some(key_daily_out());
        let out = feed_server(&mut s, &mut e, &done(1000, 0), &[], 10);
        let f = frames(&out);
        assert_eq!(f.len(), 3, "response.done, budget_exceeded, Close");
        assert_eq!(
            String::from_utf8(f[1].1.clone()).unwrap(),
            r#"{"type":"budget_exceeded","session_id":"sess-1","session_cost_usd":0.1,"budget":"key-daily","budget_usd":20,"budget_spent_usd":20.01}"#
        );
        assert_eq!(
            f[2],
            (OP_CLOSE, [&[0x03, 0xF0][..], b"Budget exceeded"].concat())
        );
        assert_eq!(e.notices, vec![Notice::BudgetExceeded]);
    }

    #[test]
    fn a_client_message_while_a_rule_is_out_is_not_forwarded() {
        let mut e = env(SEED);
        let cfg = e.config.session.clone();
        let mut s = RealtimeSession::new("sess-1".into(), "gpt-realtime".into(), 0);
        s.rules = vec![a_rule()];
        let create = encode_frame(
            OP_TEXT,
            br#"{"type":"response.create"}"#,
            Some([1, 2, 3, 4]),
        );
        assert_eq!(s.client_chunk(&create, &cfg, 5, &mut e), Rewrite::Keep);
        // Another request of the key spent the rest meanwhile.
        e.rule_out = Some(key_daily_out());
        let Rewrite::Replace(to_upstream) = s.client_chunk(&create, &cfg, 6, &mut e) else {
            panic!("forwarded")
        };
        assert_eq!(
            frames(&to_upstream),
            vec![(OP_CLOSE, [&[0x03, 0xF0][..], b"Budget exceeded"].concat())]
        );
        // The upstream's echo becomes the event and costguard's Close.
        let out = feed_server(&mut s, &mut e, &close_frame(1000, "", None), &[], 7);
        let f = frames(&out);
        assert_eq!(f.len(), 2);
        assert!(String::from_utf8(f[0].1.clone())
            .unwrap()
            .contains(r#""budget":"key-daily""#));
        assert_eq!(f[1].0, OP_CLOSE);
        assert_eq!(e.notices, vec![Notice::BudgetExceeded]);
    }

    #[test]
    fn after_the_close_only_the_clients_close_goes_upstream() {
        let mut e = env(SEED);
        let cfg = e.config.session.clone();
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        feed_server(&mut s, &mut e, &done(50_000, 0), &[], 0); // $5.00: over
        assert!(matches!(s.phase, Phase::Closed { .. }));
        let mut client = encode_frame(
            OP_TEXT,
            br#"{"type":"response.create"}"#,
            Some([1, 1, 1, 1]),
        );
        let echo = close_frame(1008, "Budget exceeded", Some([2, 2, 2, 2]));
        client.extend(&echo);
        assert_eq!(
            s.client_chunk(&client, &cfg, 10, &mut e),
            Rewrite::Replace(echo)
        );
        assert!(s.client_answered);
    }

    #[test]
    fn breaker_with_close_active_sessions() {
        let mut e = env(SEED);
        e.breaker = true;
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        let out = feed_server(&mut s, &mut e, &audio_delta(3), &[], 0);
        assert_eq!(
            frames(&out),
            vec![(
                OP_CLOSE,
                [&[0x03, 0xF0][..], b"Circuit breaker open"].concat()
            )]
        );
        assert_eq!(e.notices, vec![Notice::BreakerClosed]);
    }

    #[test]
    fn missing_or_malformed_usage_and_fail_modes() {
        let no_usage =
            text(r#"{"type":"response.done","response":{"status":"cancelled","usage":null}}"#);
        let mut e = env("{}");
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        assert_eq!(feed_server(&mut s, &mut e, &no_usage, &[], 0), no_usage);
        assert_eq!(e.notices, vec![Notice::UsageMissing]);

        let mut e = env(r#"{"fail_mode":"closed"}"#);
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        let out = feed_server(&mut s, &mut e, &no_usage, &[], 0);
        assert_eq!(frames(&out).last().map(|f| f.0), Some(OP_CLOSE));
        assert_eq!(
            e.notices,
            vec![Notice::UsageMissing, Notice::Warned, Notice::BudgetExceeded]
        );

        let bad = text(r#"{"type":"response.done","response":{"usage":{"input_tokens":-3}}}"#);
        let mut e = env("{}");
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        feed_server(&mut s, &mut e, &bad, &[], 0);
        assert_eq!(e.notices, vec![Notice::ParseError]);
    }

    #[test]
    fn a_type_written_late_is_still_read_and_audio_after_its_type_is_not() {
        // `type` after 20 KB of another field: read on, priced at any split.
        let late = text(&format!(
            r#"{{"event_id":"{}","type":"response.done","response":{{"usage":{{"input_tokens":1000,"output_tokens":0}}}}}}"#,
            "e".repeat(20_000)
        ));
        for splits in [vec![], vec![3], vec![130], vec![10_000, 20_050]] {
            let mut e = env("{}");
            let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
            feed_server(&mut s, &mut e, &late, &splits, 0);
            assert!(s.spend > 0, "splits {splits:?}: {:?}", e.notices);
            assert!(e.notices.is_empty(), "{:?}", e.notices);
        }
        // What follows an audio delta's type is never read: not even bytes
        // that are not UTF-8 or not JSON make it a parse error.
        let mut delta = br#"{"type":"response.output_audio.delta","delta":"AAAA"#.to_vec();
        delta.extend_from_slice(&[b'A'; 300]);
        delta.extend_from_slice(b"\xff\xfe}}}");
        let mut frame = vec![0x81, 126];
        frame.extend_from_slice(&(delta.len() as u16).to_be_bytes());
        frame.extend_from_slice(&delta);
        let mut e = env("{}");
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        assert_eq!(feed_server(&mut s, &mut e, &frame, &[], 0), frame);
        assert!(e.notices.is_empty(), "{:?}", e.notices);
    }

    #[test]
    fn a_type_written_last_is_read_from_the_message_end() {
        // Past the first probe, bytes that are not UTF-8, then the type.
        // Read from the end where the chunk that ends the message holds the
        // type, and skipped: the bytes between are never read. Otherwise
        // read forward to the type.
        let tail = |type_and_more: &str| {
            let mut message = format!(r#"{{"delta":"{}"#, "A".repeat(4_000)).into_bytes();
            message.extend_from_slice(b"\xff\xfe\",\"item_id\":\"i\",");
            message.extend_from_slice(type_and_more.as_bytes());
            message.push(b'}');
            encode_frame(OP_TEXT, &message, None)
        };
        let read_through = |frame: &[u8], splits: &[usize]| {
            let mut e = env("{}");
            let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
            assert_eq!(feed_server(&mut s, &mut e, frame, splits, 0), frame);
            // Audio is never a parse error, however it was read.
            let audio = !frame.windows(7).any(|w| w == b"session");
            assert!(!audio || e.notices.is_empty(), "{:?}", e.notices);
            !s.reader.utf8.is_valid(false)
        };
        for skipped in [
            r#""type":"response.output_audio.delta""#,
            r#""type" : "response.output_audio.delta" , "event_id":"e" "#,
        ] {
            let frame = tail(skipped);
            assert!(!read_through(&frame, &[]), "{skipped}");
            assert!(!read_through(&frame, &[2_000]), "{skipped}");
            assert!(!read_through(&frame, &[2_000, 3_000]), "{skipped}");
            // The type's start is not in the last chunk.
            assert!(read_through(&frame, &[frame.len() - 10]), "{skipped}");
        }
        // A type that is read, or one written with escapes: read forward.
        for forward in [
            r#""type":"session.updated""#,
            r#""type":"response.output\u005faudio.delta""#,
        ] {
            assert!(read_through(&tail(forward), &[]), "{forward}");
        }
        // A response.done whose type comes last is priced, whole or split.
        let late = text(&format!(
            r#"{{"event_id":"{}","response":{{"usage":{{"input_tokens":1000,"output_tokens":0}}}},"type":"response.done"}}"#,
            "e".repeat(300)
        ));
        for splits in [vec![], vec![200]] {
            let mut e = env("{}");
            let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
            feed_server(&mut s, &mut e, &late, &splits, 0);
            assert!(s.spend > 0, "splits {splits:?}: {:?}", e.notices);
        }
    }

    #[test]
    fn a_message_with_two_types_is_read_alike_however_it_is_cut() {
        // Its type is read, but its end shows one that is not, to a backward
        // reading (the message is not JSON: its last object never closes,
        // so the forward read has that `type` nested): the end decides, as
        // it does when the end is read first — here, when the second frame
        // arrives whole before the first frame's bytes told the type.
        let message = r#"{"type":"response.done","response":{"usage":{"input_tokens":1000,"output_tokens":0}},"x":{"type":"response.output_audio.delta"}"#;
        let (first, rest) = message.split_at(20);
        let mut two_frames = encode_frame(OP_TEXT, first.as_bytes(), None);
        two_frames[0] &= 0x7f;
        two_frames.extend(encode_frame(OP_CONTINUATION, rest.as_bytes(), None));
        for frames in [text(message), two_frames] {
            for cut in 0..frames.len() {
                let mut e = env("{}");
                let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
                let splits = if cut == 0 { vec![] } else { vec![cut] };
                feed_server(&mut s, &mut e, &frames, &splits, 0);
                assert_eq!(s.spend, 0, "cut at {cut}");
            }
        }
        // Without the second type, the same message is priced.
        let one = message.replace(r#""type":"response.output_audio.delta""#, "");
        let mut e = env("{}");
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        feed_server(&mut s, &mut e, &text(&one), &[50], 0);
        assert!(s.spend > 0);
    }

    proptest::proptest! {
        /// What a message's tail keeps is its last bytes, however they came.
        #[test]
        fn a_message_tail_is_its_last_bytes(
            pieces in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..300), 0..8),
        ) {
            let mut tail = MessageTail::new();
            let mut all = Vec::new();
            for piece in &pieces {
                let mut scratch = [0; LAST_TYPE_PROBE];
                all.extend_from_slice(piece);
                let last = &all[all.len().saturating_sub(LAST_TYPE_PROBE)..];
                proptest::prop_assert_eq!(tail.with(piece, &mut scratch), last);
                tail.push(piece);
                proptest::prop_assert_eq!(tail.kept(), last);
            }
        }
    }

    #[test]
    fn oversized_response_done_is_a_parse_error_and_large_audio_is_skipped() {
        let big = text(&format!(
            r#"{{"type":"response.done","response":{{"output":"{}","usage":{{"input_tokens":1}}}}}}"#,
            "x".repeat(MAX_READ_MESSAGE as usize)
        ));
        let mut e = env("{}");
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        feed_server(&mut s, &mut e, &big, &[100_000], 0);
        assert_eq!(e.notices, vec![Notice::ParseError]);
        // A 2 MiB audio delta is not a parse error: it is skipped after its type.
        let mut e = env("{}");
        feed_server(&mut s, &mut e, &audio_delta(2 << 20), &[], 0);
        assert!(e.notices.is_empty());
    }

    #[test]
    fn invalid_or_compressed_frames_count_once_and_pass() {
        let mut e = env("{}");
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        let mut compressed = text("xyz");
        compressed[0] |= 0x40;
        assert_eq!(feed_server(&mut s, &mut e, &compressed, &[], 0), compressed);
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(feed_server(&mut s, &mut e, &huge, &[], 0), huge);
        assert_eq!(e.notices, vec![Notice::ParseError]);
    }

    #[test]
    fn invalid_utf8_or_masked_server_frames_are_parse_errors_but_still_priced() {
        let mut e = env(SEED);
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        let mut payload = br#"{"type":"response.done","response":{"output":"bad "#.to_vec();
        payload.extend_from_slice(b"\xff\xfe");
        payload.extend_from_slice(br#"","usage":{"input_tokens":1000,"output_tokens":0}}}"#);
        feed_server(
            &mut s,
            &mut e,
            &encode_frame(OP_TEXT, &payload, None),
            &[],
            0,
        );
        assert_eq!(s.spend, 100_000);
        assert_eq!(e.notices, vec![Notice::ParseError]);

        let mut e = env(SEED);
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        let masked = encode_frame(
            OP_TEXT,
            br#"{"type":"response.done","response":{"usage":{"input_tokens":1000}}}"#,
            Some([9, 9, 9, 9]),
        );
        feed_server(&mut s, &mut e, &masked, &[5], 0);
        assert_eq!(s.spend, 100_000);
        assert_eq!(e.notices, vec![Notice::ParseError]);
    }

    #[test]
    fn sessions_without_any_close_are_aborted() {
        let mut e = env(SEED);
        let cfg = e.config.session.clone();
        let mut s = RealtimeSession::new("x".into(), "gpt-realtime".into(), 0);
        feed_server(&mut s, &mut e, &done(1, 1), &[], 0);
        assert!(s.aborted());
        s.client_chunk(&close_frame(1000, "", Some([1, 2, 3, 4])), &cfg, 0, &mut e);
        assert!(!s.aborted());
    }

    #[test]
    fn uuid_and_query_model() {
        let id = uuid_v4([0xFF; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(
            model_from_path("/v1/realtime?model=gpt-realtime&x=1").as_deref(),
            Some("gpt-realtime")
        );
        assert_eq!(model_from_path("/v1/realtime"), None);
        assert_eq!(model_from_path("/v1/realtime?model="), None);
    }
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn a_session_is_small() {
        let size = std::mem::size_of::<super::RealtimeSession>();
        // Inline state, the scanner's capture slots included (~320 bytes);
        // heap: id, model, and the captured values.
        assert!(size < 1280, "RealtimeSession is {size} bytes");
    }
}
