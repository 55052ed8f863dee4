//! What is remembered of one client of one storefront: a few sliding
//! counters, the accounts and cards it used (as pseudonyms), and, once it
//! did something suspicious, a small sample of what for the evidence.

use std::collections::VecDeque;

use ensuresec_common::decisions::Detector;

use super::{
    config::slot,
    window::{Counter, Distinct},
};
use crate::app::pseudonym::Pseudonym;

/// Paths kept for the evidence, and how much of each.
const SAMPLE_PATHS: usize = 3;
const SAMPLE_CHARS: usize = 96;

#[derive(Debug, Default)]
pub struct Sample {
    pub paths: VecDeque<String>,
    /// Probes (signature matches) the shop answered with a success: what
    /// may be exposed.
    pub answered: VecDeque<String>,
    pub agent: String,
}

/// Keeps `path` among the last `SAMPLE_PATHS` distinct ones.
fn keep(list: &mut VecDeque<String>, path: String) {
    if !list.contains(&path) {
        if list.len() == SAMPLE_PATHS {
            list.pop_front();
        }
        list.push_back(path);
    }
}

fn cut(text: &str) -> String {
    text.chars().take(SAMPLE_CHARS).collect()
}

impl Sample {
    /// Keeps a request's path (its query only as `?…`: it may hold an
    /// account name, a reset key, a search) and the user agent.
    pub fn note(&mut self, target: &str, agent: &str, answered: bool) {
        let path = match target.split_once('?') {
            Some((path, _)) => format!("{}?…", cut(path)),
            None => cut(target),
        };
        if answered {
            keep(&mut self.answered, path.clone());
        }
        keep(&mut self.paths, path);
        if self.agent != agent {
            self.agent = cut(agent);
        }
    }
}

#[derive(Debug, Default)]
pub struct ClientState {
    pub first_seen: f64,
    pub last_seen: f64,
    /// Requests, in tenths (an asset counts 1, a page 10).
    pub requests: Counter,
    pub client_errors: Counter,
    /// Distinct medium-confidence signatures matched.
    pub signatures: Distinct,
    pub tool_hits: Counter,
    pub login_failures: Counter,
    pub failed_accounts: Distinct,
    pub card_probes: Counter,
    pub cards: Distinct,
    /// When each application detector last fired, so that it fires once a
    /// window and the engine is not asked again for the same decision.
    fired_at: [f64; Detector::APP.len()],
    pub sample: Option<Box<Sample>>,
}

impl ClientState {
    pub fn new(now: f64) -> Self {
        Self {
            first_seen: now,
            last_seen: now,
            fired_at: [f64::NEG_INFINITY; Detector::APP.len()],
            ..Default::default()
        }
    }

    /// Notes a suspicious request for the evidence; `answered`: a probe
    /// the shop answered with a success.
    pub fn note(&mut self, path: &str, agent: &str, answered: bool) {
        self.sample
            .get_or_insert_with(Default::default)
            .note(path, agent, answered);
    }

    /// Whether `d` may fire now (it did not within `window`); if so, marks it.
    pub fn may_fire(&mut self, d: Detector, now: f64, window: f64) -> bool {
        let at = &mut self.fired_at[slot(d)];
        if now - *at < window {
            return false;
        }
        *at = now;
        true
    }

    pub fn has_fired(&self) -> bool {
        self.fired_at.iter().any(|t| t.is_finite())
    }

    pub fn accounts(&self) -> Vec<Pseudonym> {
        self.failed_accounts.items().collect()
    }
}
