//! The application detectors: from what clients do on a storefront (each
//! request, login, payment, as an `Observation`) to `AppFinding`s that the
//! one decision engine turns into decisions. Counting is per storefront and
//! per client network (`ClientRules::group`); memory is bounded by
//! `max_clients`.

mod client;
pub mod config;
mod rules;
pub mod signatures;
mod wave;
mod window;

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use ensuresec_common::decisions::Detector;
use ipnet::IpNet;

use self::{
    client::ClientState,
    config::{AppDetectorConfig, AppDetectors},
    signatures::Hits,
};
use super::{client::Client, pseudonym::Pseudonym};

/// What one line says a client did.
#[derive(Clone, Debug)]
pub enum Observation<'a> {
    Request {
        /// Path and query as sent (kept as a sample for the evidence).
        target: &'a str,
        status: u16,
        user_agent: &'a str,
        asset: bool,
        hits: Hits,
        /// A login attempt the server answered as failed.
        login_failed: bool,
    },
    LoginFailed {
        account: Option<Pseudonym>,
    },
    LoginOk {
        account: Option<Pseudonym>,
    },
    Payment {
        declined: bool,
        card: Option<Pseudonym>,
        amount: Option<f64>,
    },
    /// The server's own rate limit refused a request.
    RateLimited,
    /// Counted as activity only (sign-ups, password resets).
    Other,
}

/// One observation with who and where.
#[derive(Clone)]
pub struct Seen<'a> {
    pub storefront: usize,
    pub client: Client,
    /// Seconds in the input's own time (the log's, or the clock's).
    pub now: f64,
    pub what: Observation<'a>,
}

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppTarget {
    /// One client: its address, or its IPv6 network (`ClientRules::group`).
    Client(IpNet),
    /// The network most clients of a storefront-wide wave share.
    Network(IpNet),
    /// The storefront as a whole, under a wave from many clients.
    Storefront,
}

/// A detection, for the engine to decide on.
#[derive(Clone, Debug)]
pub struct AppFinding {
    pub detector: Detector,
    pub storefront: Arc<str>,
    /// The client whose line decided it (for a wave, the last one counted).
    pub client: IpAddr,
    pub target: AppTarget,
    pub via_proxy: bool,
    pub observed: u64,
    pub threshold: u64,
    pub extra: [u64; 2],
    /// Counts and thresholds, sample paths and user agent, pseudonyms.
    pub evidence: String,
    /// Accounts this client failed on, or the one it took over.
    pub accounts: Vec<Pseudonym>,
    /// How long before the deciding line the client's activity began.
    pub active_for_secs: f64,
    pub config: AppDetectorConfig,
    /// When and where the deciding input was read (set by the pipeline).
    pub origin: Origin,
    /// When, in the input's own time (`Seen::now`), it tripped.
    pub seen_at: f64,
}

/// When a finding's deciding input was read and, for a log line, where it
/// is, so that an operator (and the benchmarks) can find the very line.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// Monotonic ns when it was read.
    pub read_at_ns: u64,
    pub line: Option<LineAt>,
}

/// A line in a log: the log's name (its path), the inode of the file it
/// was read from (after a rotation, no longer the one at that path), and
/// the byte offset where the line starts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineAt {
    pub log: String,
    #[serde(default)]
    pub inode: u64,
    pub offset: u64,
}

pub struct Storefront {
    pub name: Arc<str>,
    pub detectors: AppDetectors,
    /// The fail-safe profile's detectors and its switch (on while one of
    /// the storefront's incidents is open).
    failsafe: Option<(Arc<std::sync::atomic::AtomicBool>, AppDetectors)>,
    /// Storefront-wide waves of failed logins and of declined payments.
    logins: wave::Wave,
    payments: wave::Wave,
}

impl Storefront {
    pub fn new(name: Arc<str>, detectors: AppDetectors) -> Self {
        Self {
            name,
            detectors,
            failsafe: None,
            logins: Default::default(),
            payments: Default::default(),
        }
    }
}

/// The detectors' state for every storefront.
pub struct AppDetector {
    storefronts: Vec<Storefront>,
    group: Box<dyn Fn(IpAddr) -> IpNet + Send>,
    clients: HashMap<(u16, IpNet), ClientState>,
    max_clients: usize,
    /// Clients forgotten early because the table was full.
    pub shed: u64,
    /// How long a quiet client is remembered (the longest window).
    keep: f64,
}

impl AppDetector {
    pub fn new(
        storefronts: Vec<Storefront>,
        group: impl Fn(IpAddr) -> IpNet + Send + 'static,
        max_clients: usize,
    ) -> Self {
        let keep = storefronts
            .iter()
            .map(|s| s.detectors.longest_window().as_secs_f64())
            .fold(1.0, f64::max);
        Self {
            storefronts,
            group: Box::new(group),
            clients: HashMap::new(),
            max_clients: max_clients.max(1),
            shed: 0,
            keep,
        }
    }

    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    pub fn storefront_names(&self) -> impl Iterator<Item = &str> {
        self.storefronts.iter().map(|s| &*s.name)
    }

    /// Forgets clients quiet for longer than every window.
    pub fn forget_idle(&mut self, now: f64) {
        let keep = self.keep;
        self.clients.retain(|_, c| now - c.last_seen < keep);
    }

    /// Makes room for one more client: the idle ones first, then (a flood of
    /// new addresses) an eighth of those that never tripped anything.
    fn make_room(&mut self, now: f64) {
        self.forget_idle(now);
        if self.clients.len() < self.max_clients {
            return;
        }
        let eighth = (self.max_clients / 8).max(1);
        let before = self.clients.len();
        let mut budget = eighth;
        self.clients.retain(|_, c| {
            if budget > 0 && !c.has_fired() {
                budget -= 1;
                return false;
            }
            true
        });
        if self.clients.len() == before {
            // All of them tripped something (a flood of one-request tools):
            // the decisions are made; their counters go.
            let mut budget = eighth;
            self.clients.retain(|_, _| {
                if budget > 0 {
                    budget -= 1;
                    return false;
                }
                true
            });
        }
        self.shed += (before - self.clients.len()) as u64;
    }

    /// Storefront `i` is judged by `tight` while `on` is set.
    pub fn set_failsafe(
        &mut self,
        i: usize,
        on: Arc<std::sync::atomic::AtomicBool>,
        tight: AppDetectors,
    ) {
        if let Some(front) = self.storefronts.get_mut(i) {
            front.failsafe = Some((on, tight));
        }
    }

    pub fn observe(&mut self, seen: &Seen<'_>) -> Vec<AppFinding> {
        let Some(front) = self.storefronts.get_mut(seen.storefront) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        let (now, addr) = (seen.now, seen.client.addr);
        let target = (self.group)(addr);
        let mut detectors = match &front.failsafe {
            Some((on, tight)) if on.load(std::sync::atomic::Ordering::Relaxed) => *tight,
            _ => front.detectors,
        };
        let waves = [
            (
                Detector::CredentialStuffing,
                &mut front.logins,
                seen.what.is_failed_login(),
            ),
            (
                Detector::CardTesting,
                &mut front.payments,
                seen.what.is_declined_payment(),
            ),
        ];
        for (detector, wave, counted) in waves {
            let config = *detectors.get(detector);
            if counted
                && let Some(surge) = wave.count(target, now, config.window_secs(), config.aggregate)
            {
                found.extend(wave::findings(&front.name, seen, detector, &config, &surge));
            }
            // Under a wave, each client of the storefront is held to less.
            if wave.active(now) {
                detectors.set(detector, config.tightened());
            }
        }
        let name = front.name.clone();
        let key = (seen.storefront as u16, target);
        if !self.clients.contains_key(&key) && self.clients.len() >= self.max_clients {
            self.make_room(now);
        }
        let keep = self.keep;
        let state = self
            .clients
            .entry(key)
            .or_insert_with(|| ClientState::new(now));
        if now - state.last_seen >= keep {
            *state = ClientState::new(now);
        }
        state.last_seen = state.last_seen.max(now);
        let mut out = rules::Findings {
            found,
            name,
            seen,
            target,
        };
        rules::count(state, &detectors, seen, &mut out, keep);
        out.found
    }
}

impl Observation<'_> {
    fn is_failed_login(&self) -> bool {
        matches!(
            self,
            Observation::LoginFailed { .. }
                | Observation::Request {
                    login_failed: true,
                    ..
                }
        )
    }

    fn is_declined_payment(&self) -> bool {
        matches!(self, Observation::Payment { declined: true, .. })
    }
}

#[cfg(test)]
mod tests;
