//! One straight way from a line to the engine: parse, find the storefront
//! and the client, hash accounts and cards, count, and hand what trips to the
//! decision engine. Every input (followed logs, the event listener, replay)
//! goes through here.

use std::sync::Arc;

use super::{
    client::Client,
    detect::{
        AppDetector, AppFinding, LineAt, Observation, Origin, Seen, Storefront,
        signatures::{self, Signatures},
    },
    metrics::AppMetrics,
    pseudonym::Hasher,
    record::{ErrorKind, EventKind, Record, ShopEvent},
    settings::{AppSettings, LogInput},
};
use crate::clock;

/// Whose clock the detectors count by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeBase {
    /// The host's: live inputs (log timestamps have one-second resolution
    /// and servers' clocks drift).
    Clock,
    /// The lines' own timestamps (replay); a line without one, or one out
    /// of order, counts at the latest time seen.
    Log,
}

/// What became of a line.
#[derive(Debug)]
pub enum LineResult {
    Ok,
    Malformed(super::parse::ParseError),
    TooLong,
    /// No storefront claims it (its Host is not listed).
    Unmapped,
    /// Understood, and about nothing a detector counts.
    Ignored,
    /// From a trusted proxy that names no client: counted, not attributed.
    Unattributed,
}

impl LineResult {
    pub const LABELS: [&'static str; 6] = [
        "ok",
        "malformed",
        "too_long",
        "unmapped",
        "ignored",
        "unattributed",
    ];

    fn slot(&self) -> usize {
        match self {
            LineResult::Ok => 0,
            LineResult::Malformed(_) => 1,
            LineResult::TooLong => 2,
            LineResult::Unmapped => 3,
            LineResult::Ignored => 4,
            LineResult::Unattributed => 5,
        }
    }

    pub fn label(&self) -> &'static str {
        Self::LABELS[self.slot()]
    }
}

pub type Sink = Box<dyn FnMut(AppFinding) + Send>;

pub struct Pipeline {
    settings: Arc<AppSettings>,
    detector: AppDetector,
    signatures: Signatures,
    hasher: Hasher,
    metrics: AppMetrics,
    sink: Sink,
    time: TimeBase,
    latest: f64,
    seen_since_sweep: u32,
    shed_reported: u64,
    /// `ensuresec_log_lines_total` by log, in `LineResult::LABELS` order.
    counters: std::collections::HashMap<String, [prometheus::IntCounter; 6]>,
}

impl Pipeline {
    pub fn metrics(&self) -> &AppMetrics {
        &self.metrics
    }

    /// Judges each storefront by its fail-safe profile while it is on.
    pub fn with_failsafe(mut self, failsafe: &crate::detect::failsafe::Failsafe) -> Self {
        for (i, (_, detectors)) in self.settings.storefronts.iter().enumerate() {
            if let Some((on, profile)) = failsafe.switch(i) {
                self.detector.set_failsafe(i, on, profile.app(detectors));
            }
        }
        self
    }

    pub fn new(
        settings: Arc<AppSettings>,
        hasher: Hasher,
        metrics: AppMetrics,
        time: TimeBase,
        sink: Sink,
    ) -> Self {
        let storefronts = settings
            .storefronts
            .iter()
            .map(|(name, detectors)| Storefront::new(name.clone(), *detectors))
            .collect();
        let rules = settings.clients.clone();
        Self {
            detector: AppDetector::new(
                storefronts,
                move |a| rules.group(a),
                settings.section.max_clients,
            ),
            signatures: settings.signatures(),
            settings,
            hasher,
            metrics,
            sink,
            time,
            latest: 0.0,
            seen_since_sweep: 0,
            shed_reported: 0,
            counters: Default::default(),
        }
    }

    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }

    /// Reads one line of `input` (without its newline), which starts at byte
    /// `offset` of the file with inode `inode`, and counts the result.
    pub fn line(&mut self, input: &LogInput, line: &[u8], inode: u64, offset: u64) -> LineResult {
        let read_at_ns = clock::mono_ns();
        let result = match input.parser.parse(line) {
            Err(e) => LineResult::Malformed(e),
            Ok(record) => {
                let origin = || Origin {
                    read_at_ns,
                    line: Some(LineAt {
                        log: input.name.clone(),
                        inode,
                        offset,
                    }),
                };
                self.record(record, input.storefront, origin)
            }
        };
        self.count(&input.name, &result);
        result
    }

    /// A line too long to keep (skipped up to its newline by the reader).
    pub fn too_long(&mut self, input: &LogInput) {
        self.count(&input.name, &LineResult::TooLong);
    }

    /// A shop event from the listener.
    pub fn event(&mut self, event: ShopEvent) -> LineResult {
        let read_at_ns = clock::mono_ns();
        let result = self.on_event(event, None, &|| Origin {
            read_at_ns,
            line: None,
        });
        self.count("events", &result);
        result
    }

    /// Counts a line; each log's counters are looked up once, not per line.
    fn count(&mut self, log: &str, result: &LineResult) {
        let slot = result.slot();
        if let Some(counters) = self.counters.get(log) {
            counters[slot].inc();
            return;
        }
        let counters = LineResult::LABELS.map(|l| self.metrics.lines.with_label_values(&[log, l]));
        counters[slot].inc();
        self.counters.insert(log.to_string(), counters);
    }

    fn now(&mut self, logged: Option<f64>) -> f64 {
        match self.time {
            TimeBase::Clock => clock::mono_ns() as f64 / 1e9,
            TimeBase::Log => {
                if let Some(t) = logged {
                    self.latest = self.latest.max(t);
                }
                self.latest
            }
        }
    }

    fn record(
        &mut self,
        record: Record<'_>,
        default: Option<usize>,
        origin: impl Fn() -> Origin,
    ) -> LineResult {
        match record {
            Record::Request(r) => {
                let Some(storefront) = r
                    .host
                    .as_deref()
                    .and_then(|h| self.settings.storefront_of_host(h))
                    .or(default)
                else {
                    return LineResult::Unmapped;
                };
                let Some(client) = self
                    .settings
                    .clients
                    .resolve(r.peer, r.forwarded_for.as_deref())
                else {
                    return LineResult::Unattributed;
                };
                let path = r.path();
                let hits = self.signatures.check(&r.target, &r.user_agent);
                if hits.generic_client.is_some() {
                    self.metrics
                        .library_requests
                        .with_label_values(&[&self.settings.storefronts[storefront].0])
                        .inc();
                }
                let login_failed = r.method.eq_ignore_ascii_case("POST")
                    && self.settings.section.login_paths.iter().any(|p| p == path)
                    && self
                        .settings
                        .section
                        .login_failure_status
                        .contains(&r.status);
                let now = self.now(r.time);
                let what = Observation::Request {
                    target: &r.target,
                    status: r.status,
                    user_agent: &r.user_agent,
                    asset: signatures::is_asset(path),
                    hits,
                    login_failed,
                };
                self.observe(storefront, client, now, what, &origin);
                LineResult::Ok
            }
            Record::Error(e) => {
                let Some(storefront) = e
                    .host
                    .and_then(|h| self.settings.storefront_of_host(h))
                    .or(default)
                else {
                    return LineResult::Unmapped;
                };
                let Some(client) = self.settings.clients.direct(e.client) else {
                    return LineResult::Unattributed;
                };
                let what = match e.kind {
                    ErrorKind::UserNotFound { user } | ErrorKind::PasswordMismatch { user } => {
                        Observation::LoginFailed {
                            account: Some(self.hasher.hash(user)),
                        }
                    }
                    ErrorKind::LimitingRequests => Observation::RateLimited,
                };
                let now = self.now(e.time);
                self.observe(storefront, client, now, what, &origin);
                LineResult::Ok
            }
            Record::Event(event) => self.on_event(event, default, &origin),
            Record::Other => LineResult::Ignored,
        }
    }

    fn on_event(
        &mut self,
        e: ShopEvent,
        default: Option<usize>,
        origin: &dyn Fn() -> Origin,
    ) -> LineResult {
        let storefront = match &e.storefront {
            Some(name) => self.settings.storefront_named(name),
            None => default.or((self.settings.storefronts.len() == 1).then_some(0)),
        };
        let Some(storefront) = storefront else {
            return LineResult::Unmapped;
        };
        // The shop names the client it saw; a trusted proxy's address there
        // means the shop did not see through it.
        let Some(client) = self.settings.clients.direct(e.ip) else {
            return LineResult::Unattributed;
        };
        let account = e.account.as_deref().map(|a| self.hasher.hash(a));
        let card = e.card.as_deref().map(|c| self.hasher.hash(c));
        let what = match e.kind {
            EventKind::LoginFailed => Observation::LoginFailed { account },
            EventKind::LoginOk => Observation::LoginOk { account },
            EventKind::PaymentDeclined | EventKind::PaymentOk => Observation::Payment {
                declined: e.kind == EventKind::PaymentDeclined,
                card,
                amount: e.amount.filter(|a| a.is_finite()),
            },
            EventKind::Signup | EventKind::PasswordReset => Observation::Other,
        };
        let now = self.now(Some(e.time.unix_timestamp_nanos() as f64 / 1e9));
        self.observe(storefront, client, now, what, &origin);
        LineResult::Ok
    }

    fn observe(
        &mut self,
        storefront: usize,
        client: Client,
        now: f64,
        what: Observation<'_>,
        origin: &dyn Fn() -> Origin,
    ) {
        let found = self.detector.observe(&Seen {
            storefront,
            client,
            now,
            what,
        });
        for mut f in found {
            f.origin = origin();
            (self.sink)(f);
        }
        self.seen_since_sweep += 1;
        if self.seen_since_sweep >= 1 << 16 {
            self.tick_at(now);
        }
    }

    /// Forgets idle clients and refreshes the gauges; called about once a
    /// second by the inputs.
    pub fn tick(&mut self) {
        let now = self.now(None);
        self.tick_at(now);
    }

    fn tick_at(&mut self, now: f64) {
        self.seen_since_sweep = 0;
        self.detector.forget_idle(now);
        self.metrics.clients.set(self.detector.clients() as i64);
        let shed = self.detector.shed;
        self.metrics.clients_shed.inc_by(shed - self.shed_reported);
        self.shed_reported = shed;
    }
}
