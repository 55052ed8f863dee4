//! What the decision engine tells those who follow its decisions (the
//! journal; incidents and notices later): each decision made and each one
//! whose time ran out. Listeners must not block: they queue and return.

use std::sync::Arc;

use ensuresec_common::decisions::DecisionRecord;

use crate::store::decisions::DecisionTarget;

#[derive(Clone, Debug)]
pub enum Outcome {
    Decided {
        target: DecisionTarget,
        record: DecisionRecord,
        /// What it does and why, in words.
        does: String,
        evidence: String,
        /// Where the attack was aimed.
        place: Place,
    },
    Expired {
        target: DecisionTarget,
        record: DecisionRecord,
    },
}

/// Where a decision's attack was aimed, as far as the detector knows.
#[derive(Clone, Debug)]
pub enum Place {
    /// A storefront, named by the application detectors with their findings.
    App(AppContext),
    /// The address the source's traffic went to, or the destination decided on.
    Address(std::net::IpAddr),
    /// Not known (the host's socket table, the per-source model).
    Unknown,
}

impl Place {
    pub fn app(&self) -> Option<&AppContext> {
        match self {
            Place::App(a) => Some(a),
            _ => None,
        }
    }
}

/// What an application decision was made on, beyond its record.
#[derive(Clone, Debug)]
pub struct AppContext {
    pub storefront: Arc<str>,
    /// Counts, sample paths, user agent.
    pub evidence: String,
    /// Pseudonyms of the accounts involved.
    pub accounts: Vec<String>,
}

pub type Listener = Box<dyn Fn(&Outcome) + Send>;

#[derive(Default)]
pub struct Outcomes(Vec<Listener>);

impl Outcomes {
    pub fn subscribe(&mut self, listener: Listener) {
        self.0.push(listener);
    }

    pub fn publish(&self, outcome: Outcome) {
        for listener in &self.0 {
            listener(&outcome);
        }
    }
}
