//! From a detection to a decision, and from a decision to the maps.

use std::time::Duration;

use ensuresec_common::{
    decisions::{
        ACTION_ALERT, ACTION_BAN, ACTION_BUDGET, ACTION_THROTTLE, DecisionKey, DecisionRecord,
        Detector, Offender, SCOPE_SOURCE,
    },
    entry::Target,
    features::{DestKey, Throttle},
    maps::FLAG_BAN,
};

use super::{
    rules::Detection,
    settings::{Action, DetectSettings, DetectorConfig},
};
use crate::{
    clock,
    edit::Op,
    error::Result,
    store::{Writer, decisions::key_addr},
};

/// What to write for a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Ban { ttl: Duration },
    Throttle { pps: u32, ttl: Duration },
    Budget { pps: u32, ttl: Duration },
    Alert { ttl: Duration },
}

impl Plan {
    pub fn action(&self) -> u32 {
        match self {
            Plan::Ban { .. } => ACTION_BAN,
            Plan::Throttle { .. } => ACTION_THROTTLE,
            Plan::Budget { .. } => ACTION_BUDGET,
            Plan::Alert { .. } => ACTION_ALERT,
        }
    }

    fn ttl(&self) -> Duration {
        match self {
            Plan::Ban { ttl }
            | Plan::Throttle { ttl, .. }
            | Plan::Budget { ttl, .. }
            | Plan::Alert { ttl } => *ttl,
        }
    }

    /// Whether it changes what the kernel drops.
    pub fn enforced(&self) -> bool {
        !matches!(self, Plan::Alert { .. })
    }
}

/// The plan for a detection; `strikes` counts this ban of the source.
pub fn plan(
    settings: &DetectSettings,
    config: &DetectorConfig,
    action: Action,
    dry_run: bool,
    strikes: u32,
) -> Plan {
    if dry_run {
        return Plan::Alert {
            ttl: settings.throttle_ttl,
        };
    }
    match action {
        Action::Ban => Plan::Ban {
            ttl: settings.ban_ttl(strikes),
        },
        Action::Throttle => Plan::Throttle {
            pps: config.throttle_pps,
            ttl: settings.throttle_ttl,
        },
        // Budget the destination at the aggregate threshold: traffic beyond it
        // is the attack; what fits keeps being served.
        Action::Budget => Plan::Budget {
            pps: config.aggregate,
            ttl: settings.budget_ttl,
        },
        Action::Alert => Plan::Alert {
            ttl: settings.throttle_ttl,
        },
    }
}

/// Writes a decision: the kernel side first, then its record.
pub fn apply(
    store: &Writer,
    key: &DecisionKey,
    detection: &Detection,
    plan: Plan,
    strikes: u32,
    first_seen_ns: u64,
) -> Result<DecisionRecord> {
    let now = clock::mono_ns();
    let expires_at_ns = now + plan.ttl().as_nanos() as u64;
    let mut rate = 0;
    match plan {
        Plan::Ban { .. } => {
            let target = Target::of_addr(key_addr(&key.addr));
            let now_secs = clock::unix_secs();
            store.edit(&[(
                target,
                Op::Ban {
                    expires_at_ns,
                    now_secs,
                },
            )])?;
            store.set_offender(
                &key.addr,
                &Offender {
                    strikes,
                    _pad: 0,
                    last_secs: now_secs,
                },
            )?;
        }
        Plan::Throttle { pps, .. } => {
            rate = pps;
            store.set_throttle(
                &key.addr,
                &Throttle {
                    rate_pps: pps,
                    burst: pps.max(1),
                    expires_at_ns,
                },
            )?;
        }
        Plan::Budget { pps, .. } => {
            rate = pps;
            store.set_budget(
                &DestKey {
                    addr: key.addr,
                    port: key.port,
                    proto: key.proto,
                    _pad: 0,
                },
                &Throttle {
                    rate_pps: pps,
                    burst: pps.max(1),
                    expires_at_ns,
                },
            )?;
        }
        Plan::Alert { .. } => {}
    }
    let record = DecisionRecord {
        detector: detection.detector as u32,
        action: plan.action(),
        strikes,
        rate,
        created_secs: clock::unix_secs(),
        first_seen_ns,
        decided_ns: clock::mono_ns(),
        expires_at_ns,
        evidence: [
            detection.observed,
            detection.threshold,
            detection.extra[0],
            detection.extra[1],
        ],
    };
    store.set_decision(key, &record)?;
    Ok(record)
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

/// Lifts a decision: removes what it put in the kernel, and only that (an
/// operator's block of the same address stays), and its record.
pub fn lift(store: &Writer, key: &DecisionKey, record: &DecisionRecord, why: Lift) -> Result<()> {
    match record.action {
        ACTION_BAN => {
            let target = Target::of_addr(key_addr(&key.addr));
            if store
                .entries_for(&target)?
                .is_some_and(|e| e.flags & FLAG_BAN != 0)
            {
                store.edit(&[(target, Op::Unban)])?;
            }
        }
        ACTION_THROTTLE => {
            store.remove_throttle(&key.addr)?;
        }
        ACTION_BUDGET => {
            store.remove_budget(&DestKey {
                addr: key.addr,
                port: key.port,
                proto: key.proto,
                _pad: 0,
            })?;
        }
        _ => {}
    }
    if why == Lift::ByHand && key.scope == SCOPE_SOURCE {
        store.remove_offender(&key.addr)?;
    }
    store.remove_decision(key)?;
    Ok(())
}

/// Name of an action for listings and metrics.
pub fn action_name(action: u32) -> &'static str {
    match action {
        ACTION_BAN => "ban",
        ACTION_THROTTLE => "throttle",
        ACTION_BUDGET => "budget",
        _ => "alert",
    }
}

/// Name of a detector id.
pub fn detector_name(id: u32) -> &'static str {
    Detector::from_id(id).map_or("unknown", Detector::name)
}

/// A decision's evidence in words: "5200 >= 5000 per window", or for the
/// anomaly model "score 12.5 > 0.0073: log_pps 60 %, syn_share 30 %, ...".
pub fn describe_evidence(r: &DecisionRecord) -> String {
    if r.detector == Detector::Ml as u32 {
        let (score, threshold, top) = crate::ml::evidence::unpack(&r.evidence);
        return format!(
            "score {score:.4} > {threshold:.4}: {}",
            crate::ml::runner::describe_top(&top)
        );
    }
    format!("{} >= {} per window", r.evidence[0], r.evidence[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::settings::{DetectSection, Detectors};

    fn settings() -> DetectSettings {
        DetectSettings::validate(&DetectSection::default(), &[], &Default::default()).unwrap()
    }

    #[test]
    fn bans_escalate() {
        let s = settings();
        let d = Detectors::default();
        assert_eq!(
            plan(&s, &d.syn_flood, Action::Ban, false, 1),
            Plan::Ban {
                ttl: Duration::from_secs(600)
            }
        );
        assert_eq!(
            plan(&s, &d.syn_flood, Action::Ban, false, 3),
            Plan::Ban {
                ttl: Duration::from_secs(86400)
            }
        );
    }

    #[test]
    fn dry_run_only_alerts() {
        let s = settings();
        let d = Detectors::default();
        let p = plan(&s, &d.syn_flood, Action::Ban, true, 1);
        assert!(!p.enforced());
        assert_eq!(p.action(), ACTION_ALERT);
    }

    #[test]
    fn budgets_use_the_aggregate_threshold() {
        let s = settings();
        let d = Detectors::default();
        assert_eq!(
            plan(&s, &d.syn_flood, Action::Budget, false, 0),
            Plan::Budget {
                pps: 5000,
                ttl: Duration::from_secs(300)
            }
        );
    }
}
