//! The journal follows the decision engine: each decision and expiry
//! becomes an entry and a change to the desired state.

use serde_json::json;

use super::{AGENT, Entry, Kind, StateChange, state::DecisionRow, writer::JournalSink};
use crate::{
    clock,
    detect::{
        decide::{action_name, detector_name},
        outcome::{Listener, Outcome},
    },
};

/// What the journal records of an outcome.
pub fn record(outcome: &Outcome) -> (Entry, Vec<StateChange>) {
    match outcome {
        Outcome::Decided {
            target,
            record,
            does,
            evidence,
            place,
        } => {
            let app = place.app();
            let storefront = app.map(|a| a.storefront.to_string());
            let expires_ms = clock::wall_ms_of_mono(record.expires_at_ns);
            let mut entry = Entry::now(Kind::Decision, AGENT)
                .target(target)
                .detail(json!({
                    "does": does,
                    "evidence": evidence,
                    "strikes": record.strikes,
                    "expires": clock::rfc3339_ms(expires_ms),
                    "app_evidence": app.as_ref().map(|a| &a.evidence),
                    "accounts": app.as_ref().map(|a| &a.accounts),
                }));
            entry.detector = Some(detector_name(record.detector).to_string());
            entry.action = Some(action_name(record.action).to_string());
            entry.storefront = storefront.clone();
            // The strikes are in the decision's record; a restored ban
            // puts them back on the offender (the periodic sync keeps the
            // offenders' table too).
            let changes = vec![StateChange::Decision(DecisionRow::of_record(
                target.to_string(),
                record,
                storefront,
            ))];
            (entry, changes)
        }
        Outcome::Expired { target, record } => {
            let mut entry = Entry::now(Kind::Expiry, AGENT).target(target);
            entry.detector = Some(detector_name(record.detector).to_string());
            entry.action = Some(action_name(record.action).to_string());
            (entry, vec![StateChange::DecisionGone(target.to_string())])
        }
    }
}

/// A listener for the engine that queues each outcome for the journal;
/// the journal's thread turns it into rows (off the engine's thread).
pub fn listener(sink: JournalSink) -> Listener {
    Box::new(move |outcome| sink.outcome(outcome.clone()))
}
