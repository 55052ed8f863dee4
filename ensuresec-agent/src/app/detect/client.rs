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
    pub agent: String,
}

fn cut(text: &str) -> String {
    text.chars().take(SAMPLE_CHARS).collect()
}

impl Sample {
    /// Keeps a request's path (its query only as `?…`: it may hold an
    /// account name, a reset key, a search) and the user agent.
    pub fn note(&mut self, target: &str, agent: &str) {
        let path = match target.split_once('?') {
            Some((path, _)) => format!("{}?…", cut(path)),
            None => cut(target),
        };
        if !self.paths.contains(&path) {
            if self.paths.len() == SAMPLE_PATHS {
                self.paths.pop_front();
            }
            self.paths.push_back(path);
        }
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

    /// Notes a suspicious request for the evidence.
    pub fn note(&mut self, path: &str, agent: &str) {
        self.sample
            .get_or_insert_with(Default::default)
            .note(path, agent);
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
