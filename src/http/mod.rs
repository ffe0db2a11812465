//! One HTTP request/response exchange, decided without the host.
//!
//! [`HttpExchange`] is fed what the adapter reads (request headers, request
//! body, response headers, response body chunks, the end) and answers with
//! what the adapter must do (refuse with a local reply, remove headers,
//! hold or rewrite the request body, set response headers). Everything it
//! needs from the host beyond that — the store, the clock, the prices,
//! randomness, stats and filter state — comes through [`HttpEnv`].
//!
//! The rules, in order:
//! - **Admission**: the breaker (503) first, then for WebSocket upgrades the
//!   `Origin` check (403), for other requests the session (400 for a bad id,
//!   429 over budget). A store that cannot be read admits (fail open) and
//!   says so ([`Event::StoreFailed`]).
//! - **Request**: metered endpoints lose `accept-encoding` (compressed bodies
//!   cannot be metered); a streaming Chat Completions request body is held,
//!   up to [`MAX_REWRITE_BODY`], for the `include_usage` rewrite.
//! - **Response**: usage is read from the body as it passes, never held.
//! - **Settling**: exactly once per exchange, at the body's end or when the
//!   stream ends however it ends: priced usage is booked into the session,
//!   then the stats, then the global window; usage that should be there and
//!   is not is counted and, with `fail_mode: closed`, ends the session.

pub mod budgets;
pub mod endpoint;
pub mod estimate;
pub mod include_usage;

pub use endpoint::{plan_response, Endpoint, ResponsePlan};
pub use include_usage::{inspect_chat_request, Injection, MAX_REWRITE_BODY};

use crate::budget::reservations::Ticket;
use crate::budget::{
    self, GlobalState, GlobalView, SessionHandle, SessionKey, SessionReserve, SessionSlot, Store,
    StoreError,
};
use crate::config::{Config, FailMode, ReservationMode};
use crate::headers::HeaderPairs;
use crate::meter::{Metered, ResponseMeter};
use crate::money::{usd_text, DecimalText, Micros};
use crate::pricing::{price, PriceTable, Priced};
use crate::realtime::{self, RealtimeSession};
use crate::replies::{self, LocalReply};
use crate::store::Seen;
use budgets::AppliedRule;
use estimate::{RequestFacts, RequestReader};
use std::borrow::Cow;
use std::ops::Range;

/// Response headers costguard adds.
pub const HEADER_SESSION_ID: &str = "x-costguard-session-id";
pub const HEADER_SESSION_REMAINING: &str = "x-costguard-session-remaining-usd";
pub const HEADER_BUDGET_REMAINING: &str = "x-costguard-budget-remaining-usd";

/// Filter state costguard writes, readable in access logs as
/// `%FILTER_STATE(wasm.<key>:PLAIN)%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterState {
    SessionId,
    /// This stream's spend, USD.
    CostUsd,
    /// The session's total so far, USD.
    SessionCostUsd,
    /// The least room left among the budget rules that apply, USD.
    BudgetRemainingUsd,
}

impl FilterState {
    pub fn key(self) -> &'static str {
        match self {
            FilterState::SessionId => "costguard.session_id",
            FilterState::CostUsd => "costguard.cost_usd",
            FilterState::SessionCostUsd => "costguard.session_cost_usd",
            FilterState::BudgetRemainingUsd => "costguard.budget_remaining_usd",
        }
    }
}

/// What happened, for stats and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Request,
    RejectedCircuitOpen,
    RejectedSessionBudget,
    RejectedOrigin,
    /// A new HTTP session took a free slot.
    SessionTracked,
    SessionEvicted,
    UsageMissing,
    UsageParseError,
    /// A response was priced (stats per model; unknown models).
    Priced(Priced),
    /// The global window as read at a refused admission (for the gauges).
    GlobalSeen(GlobalState),
    /// This booking opened the breaker.
    BreakerTripped(GlobalState),
    /// A session's spend could not be booked: it was evicted meanwhile.
    SessionLost(String),
    /// A budget rule (index in the configuration's rules) refused a call.
    BudgetRejected {
        rule: usize,
    },
    /// Spend booked to a rule.
    BudgetSpend {
        rule: usize,
        cost: Micros,
    },
    /// This VM's outstanding reservations of a rule moved by `change`.
    BudgetReserved {
        rule: usize,
        change: i64,
    },
    /// A key of the rule took a slot: a free one, or one of a key of the
    /// rule with this tag whose window had ended.
    BudgetKeyClaimed {
        rule: usize,
        from_rule_tag: Option<u64>,
    },
    /// A key of the rule found no slot (`budgets_max_keys`).
    BudgetCapacityExhausted {
        rule: usize,
    },
    /// A rule with `scope: fleet` refused a call that this Envoy's own
    /// spend alone would have admitted.
    BudgetFleetRefused {
        rule: usize,
    },
    /// A fleet session (`session.scope: fleet`) has spend to report.
    SessionFleetPending(SessionHandle),
    /// A fleet rule's key has spend to report to the fleet store.
    BudgetFleetPending {
        rule: usize,
        key: crate::budget::rules::RuleKey,
        key_id: String,
    },
    /// The store failed; what was being done goes on without it.
    StoreFailed {
        doing: &'static str,
        error: StoreError,
    },
}

/// What the HTTP path needs from its host.
pub trait HttpEnv {
    fn config(&self) -> &Config;
    /// The prices in use (the configuration's, with the live catalog).
    fn prices(&self) -> &PriceTable;
    fn store(&self) -> &dyn Store;
    /// This VM's view of the global window.
    fn global_view(&self) -> &GlobalView;
    fn now_ms(&self) -> u64;
    fn random_16(&mut self) -> [u8; 16];
    fn event(&mut self, event: Event);
    fn filter_state(&mut self, key: FilterState, value: &str);
}

/// A response header's value: borrowed text, or an amount made on the
/// stack (no allocation per response).
pub enum HeaderText<'a> {
    Borrowed(&'a str),
    Usd(DecimalText),
}

impl std::ops::Deref for HeaderText<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            HeaderText::Borrowed(text) => text,
            HeaderText::Usd(amount) => amount,
        }
    }
}

/// Writes filter state, when the configuration asks for it (`filter_state`):
/// the value is only formatted then.
fn set_state<T: AsRef<str>>(env: &mut dyn HttpEnv, key: FilterState, value: impl FnOnce() -> T) {
    if env.config().filter_state {
        env.filter_state(key, value().as_ref());
    }
}

/// Books a priced response's spend: stats, then the global window (held
/// in the VM and written in batches: [`GlobalView::hold`]).
pub fn book_global(env: &mut dyn HttpEnv, priced: Priced) {
    let now = env.now_ms();
    let cost = priced.cost;
    env.event(Event::Priced(priced));
    let global = &env.config().global;
    let Some(amount) = env.global_view().hold(global, cost, now) else {
        return;
    };
    write_global(env, amount, now);
}

/// Writes held spend to the global window.
pub fn write_global(env: &mut dyn HttpEnv, amount: Micros, now: u64) {
    let fleet = env.config().global_store.is_some();
    let written =
        env.global_view()
            .write_held(env.store(), &env.config().global, amount, now, fleet);
    match written {
        Ok(added) if added.tripped => env.event(Event::BreakerTripped(added.state)),
        Ok(_) => {}
        Err(error) => env.event(Event::StoreFailed {
            doing: "book global spend",
            error,
        }),
    }
}

/// Books a Realtime response: its budget rules, the stats, the global window.
pub fn book_realtime(
    env: &mut dyn HttpEnv,
    model: &str,
    usage: &crate::usage::Usage,
    rules: &mut [AppliedRule],
) -> realtime::Booked {
    let priced = price(
        env.prices(),
        Some(model),
        None,
        usage,
        crate::pricing::ServiceTier::Standard,
    );
    let cost = priced.cost;
    let now = env.now_ms();
    let exhausted = if rules.is_empty() {
        None
    } else {
        budgets::book(env, rules, cost, now)
    };
    book_global(env, priced);
    realtime::Booked {
        cost,
        exhausted: exhausted.and_then(|e| budgets::rule_out(env.config(), &e)),
    }
}

/// Request headers the adapter must remove before the request goes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoveHeaders {
    /// Compressed responses cannot be metered.
    pub accept_encoding: bool,
    /// The body will be rewritten: its length changes (it goes chunked).
    pub content_length: bool,
    /// Compressed WebSocket frames cannot be metered.
    pub websocket_extensions: bool,
}

impl RemoveHeaders {
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        [
            (self.accept_encoding, "accept-encoding"),
            (self.content_length, "content-length"),
            (self.websocket_extensions, "sec-websocket-extensions"),
        ]
        .into_iter()
        .filter_map(|(remove, name)| remove.then_some(name))
    }
}

/// The decision on a request's headers.
pub enum Admission {
    /// Answer with this reply; the upstream is never called.
    Refuse(LocalReply),
    /// Let it go on.
    Admit {
        remove: RemoveHeaders,
        /// A Realtime WebSocket session starts (if the upstream answers 101).
        realtime: Option<Box<RealtimeSession>>,
    },
}

/// What to do with a request body chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// Let it pass.
    Continue,
    /// Hold it (Envoy buffers) until the request's end.
    Pause,
    /// Read the body bytes there are (all of them, from the start of the
    /// buffer) and call [`HttpExchange::read_request_body`]; they pass.
    Read,
    /// The whole body is here: read it and call [`HttpExchange::rewrite_request_body`].
    Rewrite,
}

/// The HTTP session a request belongs to.
struct HttpSession {
    handle: SessionHandle,
    /// Budget left when the call was admitted.
    remaining: Micros,
    /// The call's reservation.
    ticket: Option<Ticket>,
    /// The session's record as admission read it (the reservation writes
    /// against it rather than reading it again).
    seen: Option<Seen<SessionSlot>>,
}

/// One request/response exchange (see the module docs).
pub struct HttpExchange {
    endpoint: Endpoint,
    holding_body: bool,
    request_model: Option<String>,
    session: Option<HttpSession>,
    meter: Option<ResponseMeter>,
    /// A successful response whose usage cannot be read at all.
    unreadable: bool,
    settled: bool,
    /// The budget rules whose header the request carries.
    rules: Vec<AppliedRule>,
    /// `rules` no longer holds rules the request's model is not limited by.
    rules_filtered: bool,
    /// Reads the request body for the reservation made at its end.
    reader: Option<RequestReader>,
    /// The request's `content-length`: its body is complete (for the
    /// upstream too) at that many bytes, maybe before `end_of_stream`.
    request_length: Option<u64>,
    /// The least room left among the rules that apply, at admission.
    budget_remaining: Option<Micros>,
    /// A rule's key found no slot (counted once per call).
    capacity_reported: bool,
    response_started: bool,
}

impl Default for HttpExchange {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpExchange {
    pub fn new() -> Self {
        HttpExchange {
            endpoint: Endpoint::Other,
            holding_body: false,
            request_model: None,
            session: None,
            meter: None,
            unreadable: false,
            settled: false,
            rules: Vec::new(),
            rules_filtered: false,
            reader: None,
            request_length: None,
            budget_remaining: None,
            capacity_reported: false,
            response_started: false,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The request's headers: admit or refuse, and what to change.
    pub fn on_request_headers(
        &mut self,
        env: &mut dyn HttpEnv,
        headers: &HeaderPairs,
        end_of_stream: bool,
    ) -> Admission {
        env.event(Event::Request);
        self.endpoint = Endpoint::classify(headers.get_str(":path").unwrap_or(""));
        let now = env.now_ms();
        if let Err(reply) = self.check_breaker(env, now) {
            self.settled = true;
            return Admission::Refuse(reply);
        }
        let is_upgrade = headers
            .get_str("upgrade")
            .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
        if is_upgrade {
            return self.admit_upgrade(env, headers, now);
        }
        let admitted = self
            .open_session(env, headers, now)
            .and_then(|()| self.check_rules(env, headers, now));
        if let Err(reply) = admitted {
            self.settled = true;
            return Admission::Refuse(reply);
        }
        let mut remove = RemoveHeaders::default();
        if self.endpoint == Endpoint::Other {
            return Admission::Admit {
                remove,
                realtime: None,
            };
        }
        if self.session.is_some() || !self.rules.is_empty() {
            if end_of_stream {
                if let Err(reply) = self.reserve(env, RequestFacts::default()) {
                    return Admission::Refuse(reply);
                }
            } else {
                self.reader = Some(RequestReader::new());
                self.request_length = headers.content_length();
            }
        }
        remove.accept_encoding = headers.get("accept-encoding").is_some();
        let wants_rewrite = self.endpoint == Endpoint::ChatCompletions
            && env.config().inject_stream_usage
            && !end_of_stream;
        if wants_rewrite {
            let length = headers
                .content_length()
                .and_then(|l| usize::try_from(l).ok());
            if length.is_none_or(|l| l <= MAX_REWRITE_BODY) {
                // A rewritten body has another length, and the headers go
                // upstream before the body is read (pausing the headers stops
                // the body callbacks too): the body goes chunked.
                remove.content_length = length.is_some();
                self.holding_body = true;
            }
        }
        Admission::Admit {
            remove,
            realtime: None,
        }
    }

    fn check_breaker(&mut self, env: &mut dyn HttpEnv, now: u64) -> Result<(), LocalReply> {
        match env.global_view().for_admission(env.store(), now) {
            Ok(state) => {
                if let Some(open_ms) = state.open_for_ms(now) {
                    env.event(Event::RejectedCircuitOpen);
                    env.event(Event::GlobalSeen(state));
                    return Err(replies::circuit_open(budget::retry_after_s(open_ms)));
                }
            }
            Err(error) => env.event(Event::StoreFailed {
                doing: "read the global window",
                error,
            }),
        }
        Ok(())
    }

    /// A WebSocket upgrade: the Origin check, then a Realtime session of its own.
    fn admit_upgrade(
        &mut self,
        env: &mut dyn HttpEnv,
        headers: &HeaderPairs,
        now: u64,
    ) -> Admission {
        let origins = &env.config().allowed_origins;
        let origin = headers.get_str("origin");
        let allowed = origins.is_empty() || origin.is_some_and(|o| origins.iter().any(|a| a == o));
        if !allowed {
            env.event(Event::RejectedOrigin);
            self.settled = true;
            return Admission::Refuse(replies::origin_not_allowed());
        }
        let remove = RemoveHeaders {
            websocket_extensions: true,
            ..RemoveHeaders::default()
        };
        // Realtime sessions settle themselves; the exchange has nothing to meter.
        self.settled = true;
        if self.endpoint != Endpoint::Realtime {
            return Admission::Admit {
                remove,
                realtime: None,
            };
        }
        let path = headers.get_str(":path").unwrap_or("");
        let model = realtime::model_from_path(path);
        // The rules that apply to the upgrade limit the session: checked now, booked per response.
        let mut rules = match budgets::rule_keys(&env.config().budgets.rules, headers) {
            Ok(rules) => rules,
            Err(reply) => return Admission::Refuse(reply),
        };
        let config = env.config();
        rules.retain(|a| {
            config
                .budgets
                .rules
                .get(a.rule)
                .is_some_and(|r| r.applies_to(model.as_deref()))
        });
        match budgets::admit(env, &mut rules, 0, now, &mut false) {
            Ok(least) => self.note_budget_remaining(env, least),
            Err(reply) => return Admission::Refuse(reply),
        }
        for a in &mut rules {
            a.handle = None;
        }
        let id = realtime::uuid_v4(env.random_16());
        set_state(env, FilterState::SessionId, || id.as_str());
        let mut session = RealtimeSession::new(id, model.unwrap_or_default(), now);
        session.rules = rules;
        Admission::Admit {
            remove,
            realtime: Some(Box::new(session)),
        }
    }

    /// The budget rules whose header the request carries; those that apply
    /// whatever the model are checked now (the others once the body names
    /// the model). Refused: `400 invalid_budget_key`, `429 budget_exceeded`
    /// or `budget_capacity`.
    fn check_rules(
        &mut self,
        env: &mut dyn HttpEnv,
        headers: &HeaderPairs,
        now: u64,
    ) -> Result<(), LocalReply> {
        if env.config().budgets.rules.is_empty() {
            return Ok(());
        }
        self.rules = budgets::rule_keys(&env.config().budgets.rules, headers)?;
        let config = env.config();
        let is_general = |a: &AppliedRule| {
            config
                .budgets
                .rules
                .get(a.rule)
                .is_some_and(|r| !r.is_per_model())
        };
        if self.endpoint == Endpoint::Other {
            // Nothing names a model: only the rules for every model apply.
            self.rules.retain(is_general);
            self.rules_filtered = true;
        }
        let mut general: Vec<AppliedRule> = self
            .rules
            .iter()
            .filter(|a| is_general(a))
            .cloned()
            .collect();
        let least = budgets::admit(env, &mut general, 0, now, &mut self.capacity_reported)?;
        self.note_budget_remaining(env, least);
        Ok(())
    }

    fn note_budget_remaining(&mut self, env: &mut dyn HttpEnv, least: Option<Micros>) {
        if let Some(remaining) = least {
            self.budget_remaining = Some(remaining);
            set_state(env, FilterState::BudgetRemainingUsd, || usd_text(remaining));
        }
    }

    /// The request's body has been read: reserve its estimate against the
    /// session and every rule that applies (`reservation.mode: off`: check
    /// them). Refused: what was reserved is released and the exchange is
    /// settled (nothing more is booked for it).
    fn reserve(&mut self, env: &mut dyn HttpEnv, facts: RequestFacts) -> Result<(), LocalReply> {
        let now = env.now_ms();
        let reservation = env.config().budgets.reservation;
        let amount = match reservation.mode {
            ReservationMode::Estimate if !self.response_started => {
                facts.estimate(env.prices(), reservation.default_output_tokens)
            }
            _ => 0,
        };
        // The body's model is the request's (moved: the estimate has read it).
        self.request_model = facts.model;
        self.filter_rules(env);
        if self.response_started {
            // Too late to refuse: the response is on its way; it is booked when it ends.
            return Ok(());
        }
        if let (Some(session), true) = (&mut self.session, amount > 0) {
            let cfg = &env.config().session;
            let seen = session.seen.take();
            match budget::reserve_session(env.store(), cfg, &session.handle, seen, amount, now) {
                Ok(SessionReserve::Reserved(ticket)) => session.ticket = Some(ticket),
                Ok(SessionReserve::NoRoom { spend }) => {
                    let reply = replies::session_budget_exceeded(spend, cfg.budget);
                    env.event(Event::RejectedSessionBudget);
                    self.settled = true;
                    return Err(reply);
                }
                Ok(SessionReserve::Lost) => {}
                Err(error) => env.event(Event::StoreFailed {
                    doing: "reserve session budget",
                    error,
                }),
            }
        }
        match budgets::admit(
            env,
            &mut self.rules,
            amount,
            now,
            &mut self.capacity_reported,
        ) {
            Ok(least) => {
                self.note_budget_remaining(env, least);
                Ok(())
            }
            Err(reply) => {
                self.settle_session(env, 0, now);
                self.settled = true;
                Err(reply)
            }
        }
    }

    /// Drops the rules the request's model is not limited by (once).
    fn filter_rules(&mut self, env: &mut dyn HttpEnv) {
        if std::mem::replace(&mut self.rules_filtered, true) {
            return;
        }
        let model = self.request_model.as_deref();
        let config = env.config();
        self.rules.retain(|a| {
            config
                .budgets
                .rules
                .get(a.rule)
                .is_some_and(|r| r.applies_to(model))
        });
    }

    /// The request's session (`session.id_header`), if it has one.
    fn open_session(
        &mut self,
        env: &mut dyn HttpEnv,
        headers: &HeaderPairs,
        now: u64,
    ) -> Result<(), LocalReply> {
        // Read under the configuration's borrow, then report: no copy of it per request.
        let cfg = &env.config().session;
        let Some(value) = headers.get(&cfg.id_header) else {
            return Ok(());
        };
        let key = SessionKey::from_header(value, cfg.id_header_is_credential)
            .map_err(|_| replies::invalid_session_id(&cfg.id_header))?;
        let budget = cfg.budget;
        let opened = budget::open_session(env.store(), cfg, &key, now)
            .map(|open| (open.state.has_no_room(cfg, now), open));
        let (over, open) = match opened {
            Ok(o) => o,
            Err(error) => {
                env.event(Event::StoreFailed {
                    doing: "read session state",
                    error,
                });
                return Ok(());
            }
        };
        if open.took_free_slot {
            env.event(Event::SessionTracked);
        }
        if open.evicted {
            env.event(Event::SessionEvicted);
        }
        set_state(env, FilterState::SessionId, || key.display_id.as_str());
        if over {
            env.event(Event::RejectedSessionBudget);
            set_state(env, FilterState::SessionCostUsd, || {
                usd_text(open.state.spend)
            });
            return Err(replies::session_budget_exceeded(open.state.spend, budget));
        }
        self.session = Some(HttpSession {
            handle: open.handle,
            remaining: budget.saturating_sub(open.state.spend),
            ticket: None,
            seen: open.seen,
        });
        Ok(())
    }

    /// A request body chunk: held for the rewrite, read for the
    /// reservation, or passed.
    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> RequestBody {
        let read = if self.reader.is_some() {
            RequestBody::Read
        } else {
            RequestBody::Continue
        };
        if !self.holding_body {
            return read;
        }
        if body_size > MAX_REWRITE_BODY {
            // Too large to hold: headers and body go on as they are.
            self.holding_body = false;
            return read;
        }
        if !end_of_stream {
            return RequestBody::Pause;
        }
        self.holding_body = false;
        RequestBody::Rewrite
    }

    /// Request body bytes passing (see [`RequestBody::Read`]); at the end,
    /// the reservation (refused: answer with the reply instead).
    pub fn read_request_body(
        &mut self,
        env: &mut dyn HttpEnv,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<(), LocalReply> {
        let Some(reader) = &mut self.reader else {
            return Ok(());
        };
        reader.feed(chunk);
        // Decide before the body's last byte goes on: with a content-length
        // the upstream has the whole request then, even without the end.
        let complete = end_of_stream
            || self
                .request_length
                .is_some_and(|length| reader.body_bytes() >= length);
        if !complete || self.settled {
            return Ok(());
        }
        let facts = self
            .reader
            .take()
            .map(RequestReader::finish)
            .unwrap_or_default();
        self.reserve(env, facts)
    }

    /// The whole held request body: notes its model, reserves (refused:
    /// answer with the reply instead), and returns the body to send
    /// instead, if it changes.
    pub fn rewrite_request_body(
        &mut self,
        env: &mut dyn HttpEnv,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, LocalReply> {
        let request = inspect_chat_request(body);
        // The scan above read what the reader would have: no second one.
        if self.reader.take().is_some() && !self.settled {
            self.reserve(env, request.facts)?;
        } else {
            self.request_model = request.facts.model;
        }
        Ok(match request.injection {
            Injection::Rewritten(new_body) => Some(new_body),
            _ => None,
        })
    }

    /// Response headers to set (before anything else of the response);
    /// none with `response_headers: false`.
    pub fn response_headers_to_set(
        &self,
        config: &Config,
    ) -> impl Iterator<Item = (&'static str, HeaderText<'_>)> {
        let enabled = config.response_headers;
        let session = self.session.iter().filter(move |_| enabled).flat_map(|s| {
            [
                (
                    HEADER_SESSION_ID,
                    HeaderText::Borrowed(s.handle.key.display_id.as_str()),
                ),
                (
                    HEADER_SESSION_REMAINING,
                    HeaderText::Usd(usd_text(s.remaining)),
                ),
            ]
        });
        let budget = self
            .budget_remaining
            .filter(|_| enabled)
            .map(|r| (HEADER_BUDGET_REMAINING, HeaderText::Usd(usd_text(r))));
        session.chain(budget)
    }

    /// Whether [`Self::on_response_headers`] needs the response's headers.
    pub fn reads_response_headers(&self) -> bool {
        self.endpoint != Endpoint::Other && !self.settled
    }

    /// The response's headers: how its body will be metered.
    pub fn on_response_headers(
        &mut self,
        env: &mut dyn HttpEnv,
        headers: &HeaderPairs,
        end_of_stream: bool,
    ) {
        self.response_started = true;
        if !self.reads_response_headers() {
            return;
        }
        let status = headers
            .get_str(":status")
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0);
        let plan = plan_response(
            self.endpoint,
            status,
            headers.get_str("content-type"),
            headers.get_str("content-encoding"),
        );
        match plan {
            ResponsePlan::Meter(kind) => {
                let mut meter = ResponseMeter::new(kind);
                // A metered body is not encoded: this is its length. (One
                // that ends at another is not priced, and is counted.)
                if let Some(len) = headers.content_length() {
                    meter.declare_len(len);
                }
                self.meter = Some(meter);
            }
            ResponsePlan::Unreadable => self.unreadable = true,
            ResponsePlan::Ignore => {}
        }
        if end_of_stream {
            self.settle(env, true);
        }
    }

    /// Whether response body chunks must be read.
    pub fn reads_response_body(&self) -> bool {
        self.meter.is_some() && !self.settled
    }

    /// Which bytes of the next response body chunk, `chunk_len` long, must
    /// be read (none once nothing is metered): a long JSON body of a
    /// declared length is read only at its head and its tail.
    pub fn response_body_wanted(&self, chunk_len: usize) -> Range<usize> {
        match &self.meter {
            Some(meter) if !self.settled => meter.wanted(chunk_len),
            _ => 0..0,
        }
    }

    /// A response body chunk (owned: a long JSON body's tail is kept without a copy).
    pub fn on_response_body<'c>(
        &mut self,
        env: &mut dyn HttpEnv,
        chunk: impl Into<Cow<'c, [u8]>>,
        end_of_stream: bool,
    ) {
        let chunk = chunk.into();
        self.on_response_body_part(env, chunk.len(), 0, chunk, end_of_stream);
    }

    /// A response body chunk, `chunk_len` long, of which `part` was read
    /// from byte `at` on ([`Self::response_body_wanted`]).
    pub fn on_response_body_part(
        &mut self,
        env: &mut dyn HttpEnv,
        chunk_len: usize,
        at: usize,
        part: Cow<'_, [u8]>,
        end_of_stream: bool,
    ) {
        if let Some(meter) = &mut self.meter {
            meter.feed_part(chunk_len, at, part);
        }
        if end_of_stream {
            self.settle(env, true);
        }
    }

    /// The response's trailers: its body arrived whole.
    pub fn on_response_trailers(&mut self, env: &mut dyn HttpEnv) {
        self.settle(env, true);
    }

    /// The stream ended, however it ended (`on_log`): settles what is left
    /// (a body not ended by now was cut).
    pub fn on_end(&mut self, env: &mut dyn HttpEnv) {
        self.settle(env, false);
    }

    /// Settles the response's usage, exactly once. `ended`: its body arrived whole.
    fn settle(&mut self, env: &mut dyn HttpEnv, ended: bool) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        self.holding_body = false;
        if self.unreadable {
            return self.usage_unavailable(env, false);
        }
        let Some(mut meter) = self.meter.take() else {
            // Nothing to meter: what was reserved is released.
            return self.settle_budgets(env, 0);
        };
        let metered = if ended {
            meter.finish()
        } else {
            meter.finish_cut()
        };
        match metered {
            Metered::Usage { model, usage, tier } => {
                let priced = price(
                    env.prices(),
                    model.as_deref(),
                    self.request_model.as_deref(),
                    &usage,
                    tier,
                );
                self.book(env, priced);
            }
            Metered::Missing => self.usage_unavailable(env, false),
            Metered::Malformed => self.usage_unavailable(env, true),
        }
    }

    /// Books a priced response: the session's spend and the budget rules',
    /// then the stats and the global window.
    fn book(&mut self, env: &mut dyn HttpEnv, priced: Priced) {
        set_state(env, FilterState::CostUsd, || usd_text(priced.cost));
        self.settle_budgets(env, priced.cost);
        book_global(env, priced);
    }

    /// Replaces the session's and the rules' reservations by `cost` (0:
    /// released), once.
    fn settle_budgets(&mut self, env: &mut dyn HttpEnv, cost: Micros) {
        let now = env.now_ms();
        self.settle_session(env, cost, now);
        self.filter_rules(env);
        if !self.rules.is_empty() {
            budgets::settle(env, &mut self.rules, cost, now, &mut self.capacity_reported);
            self.rules.clear();
        }
    }

    fn settle_session(&mut self, env: &mut dyn HttpEnv, cost: Micros, now: u64) {
        let Some(session) = &mut self.session else {
            return;
        };
        let ticket = session.ticket.take();
        if cost == 0 && ticket.is_none() {
            return;
        }
        let ticket = ticket.unwrap_or_default();
        let fleet = env.config().session.fleet;
        match budget::settle_session(env.store(), &session.handle, ticket, cost, fleet, now) {
            Ok(added) if !added.lost => {
                if cost > 0 {
                    set_state(env, FilterState::SessionCostUsd, || {
                        usd_text(added.after.spend)
                    });
                    if fleet {
                        env.event(Event::SessionFleetPending(session.handle.clone()));
                    }
                }
            }
            Ok(_) => env.event(Event::SessionLost(session.handle.key.display_id.clone())),
            Err(error) => env.event(Event::StoreFailed {
                doing: "book session spend",
                error,
            }),
        }
    }

    /// Usage that should have been there was not: count it, and with
    /// `fail_mode: closed` treat the session as over budget.
    fn usage_unavailable(&mut self, env: &mut dyn HttpEnv, malformed: bool) {
        self.settle_budgets(env, 0);
        env.event(if malformed {
            Event::UsageParseError
        } else {
            Event::UsageMissing
        });
        if env.config().fail_mode != FailMode::Closed {
            return;
        }
        if let Some(session) = &self.session {
            let now = env.now_ms();
            if let Err(error) = budget::mark_session_over(env.store(), &session.handle, now) {
                env.event(Event::StoreFailed {
                    doing: "close the session",
                    error,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
