//! From a plan to the maps: a decision's record is written first, so that no
//! mitigation is ever in the kernel without the record that lifts it, then
//! the kernel side. Lifting removes what the decision added, and only that.

use ensuresec_common::{
    decisions::{Action, DecisionKey, DecisionRecord, Detector, Offender, SCOPE_SOURCE},
    entry::Target,
    features::{DestKey, Throttle},
    maps::FLAG_BAN,
};

use super::{evidence, plan::Plan, rules::Detection};
use crate::{
    clock,
    edit::Op,
    error::{Error, Result},
    store::{Writer, decisions::DecisionTarget},
};

/// Whether the live decision `current` already does all that `plan` would.
pub fn covers(current: &DecisionRecord, plan: &Plan) -> bool {
    match (Action::from_id(current.action), plan) {
        (Some(Action::Ban), _) => true,
        (
            Some(Action::Throttle),
            Plan::Throttle {
                limit, drop, pps, ..
            },
        ) => {
            let dropped = current.drop_classes;
            let limited = current.limit_classes | dropped;
            // A plan that only drops has no say in the rate (see `apply`).
            let rate_held = limit & !dropped == 0 || *pps >= current.rate;
            drop & !dropped == 0 && limit & !limited == 0 && rate_held
        }
        (Some(Action::Throttle | Action::Budget), Plan::Alert { .. }) => true,
        (Some(action), _) => action == plan.action(),
        (None, _) => false,
    }
}

fn dest_key(key: &DecisionKey) -> DestKey {
    DestKey::new(key.addr, key.port, key.proto)
}

/// Writes a decision. A throttle on a source that already has one (another
/// class of its packets tripped another detector) is merged with it: the
/// union of the classes, the lower rate, the later end.
pub fn apply(
    store: &Writer,
    key: &DecisionKey,
    detection: &Detection,
    plan: Plan,
    strikes: u32,
    first_seen_ns: u64,
) -> Result<DecisionRecord> {
    let now = clock::mono_ns();
    let mut record = DecisionRecord {
        detector: detection.detector as u32,
        action: plan.action() as u32,
        strikes,
        rate: 0,
        limit_classes: 0,
        drop_classes: 0,
        created_secs: clock::unix_secs(),
        first_seen_ns,
        decided_ns: now,
        expires_at_ns: now + plan.ttl().as_nanos() as u64,
        evidence: [
            detection.observed,
            detection.threshold,
            detection.extra[0],
            detection.extra[1],
        ],
        storefront_id: detection.storefront_id,
        _pad: 0,
    };
    let previous = store.decision(key)?.filter(|r| r.expires_at_ns > now);
    if let Plan::Throttle {
        pps, limit, drop, ..
    } = plan
    {
        (record.rate, record.limit_classes, record.drop_classes) = (pps, limit, drop);
        if let Some(current) = previous.filter(|r| r.action == Action::Throttle as u32) {
            // The first detection stays the decision's headline; the
            // classes of the new one are added. One rate holds every limited
            // class: a source flooding in several is held to the lowest of
            // their thresholds in all of them. A plan that only drops has no
            // say in the rate.
            record.detector = current.detector;
            record.evidence = current.evidence;
            record.created_secs = current.created_secs;
            record.rate = match (current.limit_classes, limit) {
                (0, _) => pps,
                (_, 0) => current.rate,
                _ => pps.min(current.rate),
            };
            record.limit_classes |= current.limit_classes;
            record.drop_classes |= current.drop_classes;
            record.expires_at_ns = record.expires_at_ns.max(current.expires_at_ns);
            record.first_seen_ns = current.first_seen_ns.min(first_seen_ns);
        }
    }
    if let Plan::Budget { pps, drop, .. } = plan {
        record.rate = pps;
        record.drop_classes = drop;
    }
    store.set_decision(key, &record).map_err(|e| {
        // A full hash map refuses a new key with E2BIG.
        if e.errno() == Some(libc::E2BIG) {
            Error::DecisionsFull
        } else {
            e
        }
    })?;
    // A decision of another kind in force (a throttle the ban now replaces)
    // is taken out of the kernel first: one record, one mitigation.
    if let Some(p) = previous.filter(|p| p.action != record.action) {
        unenforce(store, key, &p)?;
    }
    if let Err(e) = enforce(store, key, &record, plan) {
        // Not (wholly) in the kernel: take back what was written, and the
        // record must not say it is.
        unenforce(store, key, &record).ok();
        let undo = match previous {
            Some(p) => store.set_decision(key, &p),
            None => store.remove_decision(key).map(|_| ()),
        };
        if let Err(u) = undo {
            tracing::error!(error = %u, "could not take back the record of a failed decision");
        }
        return Err(e);
    }
    Ok(record)
}

/// Puts a recorded decision back into new maps (a restore after a reboot or
/// an upgrade): the record, then its kernel side, as `apply` writes them.
pub fn restore(store: &Writer, key: &DecisionKey, record: &DecisionRecord) -> Result<()> {
    let ttl =
        std::time::Duration::from_nanos(record.expires_at_ns.saturating_sub(clock::mono_ns()));
    let plan = match Action::from_id(record.action) {
        Some(Action::Ban) => Plan::Ban { ttl },
        Some(Action::Throttle) => Plan::Throttle {
            pps: record.rate,
            limit: record.limit_classes,
            drop: record.drop_classes,
            ttl,
        },
        Some(Action::Budget) => Plan::Budget {
            pps: record.rate,
            drop: record.drop_classes,
            ttl,
        },
        Some(Action::Alert) => Plan::Alert { ttl },
        None => {
            return Err(Error::NotListed(
                format!("action {}", record.action),
                "actions this build knows",
            ));
        }
    };
    store.set_decision(key, record)?;
    if let Err(e) = enforce(store, key, record, plan) {
        unenforce(store, key, record).ok();
        store.remove_decision(key).ok();
        return Err(e);
    }
    Ok(())
}

/// What a ban on a source or source network lists.
fn list_target(key: &DecisionKey) -> Result<Target> {
    DecisionTarget(*key).list_target().ok_or_else(|| {
        Error::NotListed(
            DecisionTarget(*key).to_string(),
            "list of sources a ban can drop",
        )
    })
}

/// The kernel side of a recorded decision.
fn enforce(store: &Writer, key: &DecisionKey, record: &DecisionRecord, plan: Plan) -> Result<()> {
    match plan {
        Plan::Ban { .. } => {
            let target = list_target(key)?;
            // The decision's own time: a restored ban keeps when it began.
            let now_secs = record.created_secs;
            store.edit(&[(
                target,
                Op::Ban {
                    expires_at_ns: record.expires_at_ns,
                    now_secs,
                },
            )])?;
            store.set_offender(
                &key.addr,
                &Offender {
                    strikes: record.strikes,
                    _pad: 0,
                    last_secs: now_secs,
                },
            )?;
        }
        Plan::Throttle { .. } => store.set_throttle(
            &key.addr,
            &Throttle {
                rate_pps: record.rate,
                burst: record.rate.max(1),
                expires_at_ns: record.expires_at_ns,
                limit_classes: record.limit_classes,
                drop_classes: record.drop_classes,
            },
        )?,
        Plan::Budget { .. } => store.set_budget(
            &dest_key(key),
            &Throttle {
                rate_pps: record.rate,
                burst: record.rate.max(1),
                expires_at_ns: record.expires_at_ns,
                limit_classes: 0,
                drop_classes: record.drop_classes,
            },
        )?,
        Plan::Alert { .. } => {}
    }
    Ok(())
}

/// Why a decision is lifted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lift {
    /// Its time is up: the source keeps its strikes for the next ban.
    Expired,
    /// An operator lifted it (`decisions rm`, `block rm`): a false positive,
    /// so the source's strikes are forgotten too.
    ByHand,
}

/// Takes a decision's mitigation out of the kernel, and only that: an
/// operator's block of the same address stays.
fn unenforce(store: &Writer, key: &DecisionKey, record: &DecisionRecord) -> Result<()> {
    match Action::from_id(record.action) {
        Some(Action::Ban) => {
            let target = list_target(key)?;
            if store
                .entries_for(&target)?
                .is_some_and(|e| e.flags & FLAG_BAN != 0)
            {
                store.edit(&[(target, Op::Unban)])?;
            }
        }
        Some(Action::Throttle) => {
            store.remove_throttle(&key.addr)?;
        }
        Some(Action::Budget) => {
            store.remove_budget(&dest_key(key))?;
        }
        Some(Action::Alert) | None => {}
    }
    Ok(())
}

/// Lifts a decision: removes what it put in the kernel, and its record.
pub fn lift(store: &Writer, key: &DecisionKey, record: &DecisionRecord, why: Lift) -> Result<()> {
    unenforce(store, key, record)?;
    if why == Lift::ByHand && key.scope == SCOPE_SOURCE {
        store.remove_offender(&key.addr)?;
    }
    store.remove_decision(key)?;
    Ok(())
}

/// Name of an action id, for listings and metrics.
pub fn action_name(id: u32) -> &'static str {
    Action::from_id(id).map_or("unknown", Action::name)
}

/// Name of a detector id.
pub fn detector_name(id: u32) -> &'static str {
    Detector::from_id(id).map_or("unknown", Detector::name)
}

/// What a decision does, in words: "drops reflected_udp", "limits syn to
/// 100/s", "limits new connections to 5000/s".
pub fn describe_action(r: &DecisionRecord) -> String {
    match Action::from_id(r.action) {
        Some(Action::Throttle) => {
            let mut parts = Vec::new();
            if r.drop_classes != 0 {
                parts.push(format!(
                    "drops {}",
                    evidence::class_names(r.drop_classes).join("+")
                ));
            }
            if r.limit_classes != 0 {
                parts.push(format!(
                    "limits {} to {}/s",
                    evidence::class_names(r.limit_classes).join("+"),
                    r.rate
                ));
            }
            parts.join(", ")
        }
        Some(Action::Budget) if r.drop_classes != 0 => format!(
            "drops {} to it",
            evidence::class_names(r.drop_classes).join("+")
        ),
        Some(Action::Budget) => format!("limits new connections to {}/s", r.rate),
        Some(Action::Ban) => "drops everything".into(),
        Some(Action::Alert) | None => "records only".into(),
    }
}

/// A decision's evidence in words: "5200 >= 5000 per window", or for the
/// anomaly model "score 12.5 > 0.0073: log_pps 60 %, syn_share 30 %, ...".
pub fn describe_evidence(r: &DecisionRecord) -> String {
    if r.detector == Detector::Failsafe as u32 {
        return "the storefront's fail-safe profile, while its incident is open".into();
    }
    if let Some(subject) = crate::ml::model::Subject::of_detector(r.detector) {
        let (score, threshold, top) = crate::ml::evidence::unpack(&r.evidence);
        return format!(
            "score {score:.4} > {threshold:.4}: {}",
            crate::ml::evidence::describe_top(subject, &top)
        );
    }
    let span = if Detector::HORIZON.iter().any(|d| *d as u32 == r.detector) {
        "over the horizon"
    } else {
        "per window"
    };
    let mut text = format!("{} >= {} {span}", r.evidence[0], r.evidence[1]);
    // At a destination the kernel also names the top source port and the
    // packets that were their source's first.
    let aggregate = [
        Detector::SynFlood,
        Detector::Reflection,
        Detector::SynAckReflection,
    ]
    .iter()
    .any(|d| *d as u32 == r.detector);
    if aggregate && r.evidence[2..] != [0, 0] {
        text += &format!(
            "; top source port {}, {} packets from new sources",
            r.evidence[2], r.evidence[3]
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ensuresec_common::features::class;

    use super::*;

    fn throttle(limit: u32, drop: u32, rate: u32) -> DecisionRecord {
        DecisionRecord {
            action: Action::Throttle as u32,
            limit_classes: limit,
            drop_classes: drop,
            rate,
            ..Default::default()
        }
    }

    fn plan(limit: u32, drop: u32, pps: u32) -> Plan {
        Plan::Throttle {
            pps,
            limit,
            drop,
            ttl: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_throttle_covers_what_it_already_drops_or_limits() {
        let current = throttle(class::SYN, class::UDP_SERVICE, 100);
        assert!(covers(&current, &plan(class::SYN, 0, 100)));
        assert!(covers(&current, &plan(0, class::UDP_SERVICE, 100)));
        assert!(!covers(&current, &plan(class::ICMP, 0, 100)), "a new class");
        assert!(
            !covers(&current, &plan(0, class::SYN, 100)),
            "dropping, not limiting"
        );
        assert!(!covers(&current, &plan(class::SYN, 0, 50)), "a lower rate");
        assert!(
            covers(&current, &plan(0, class::UDP_SERVICE, 50)),
            "a plan that only drops has no say in the rate"
        );
        assert!(
            covers(&current, &plan(class::UDP_SERVICE, 0, 50)),
            "limiting what is already dropped"
        );
        let ban = DecisionRecord {
            action: Action::Ban as u32,
            ..Default::default()
        };
        assert!(covers(&ban, &plan(class::ALL, 0, 1)));
    }

    #[test]
    fn a_filter_covers_an_alert_and_an_alert_covers_no_filter() {
        let ttl = Duration::from_secs(1);
        let record = |action: Action| DecisionRecord {
            action: action as u32,
            ..Default::default()
        };
        let budget = Plan::Budget {
            pps: 0,
            drop: class::UDP_SERVICE,
            ttl,
        };
        let alert = Plan::Alert { ttl };
        assert!(covers(&record(Action::Budget), &alert));
        assert!(!covers(&record(Action::Alert), &budget));
        assert!(covers(&record(Action::Alert), &alert));
    }

    #[test]
    fn actions_read_as_words() {
        assert_eq!(
            describe_action(&throttle(class::SYN, class::UDP_SERVICE, 100)),
            "drops reflected_udp, limits syn to 100/s"
        );
    }
}
