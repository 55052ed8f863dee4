//! From a detection to what to enforce: the action a detector's settings
//! ask for, made spoof-safe for evidence anyone can forge.

use std::time::Duration;

use ensuresec_common::{
    decisions::{Action as Recorded, Detector},
    features::class,
};

use super::{
    detector::{Action, DetectorConfig},
    evidence::{self, Scope},
    settings::DetectSettings,
};

/// What to write for a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every packet of the source, until `ttl`.
    Ban {
        ttl: Duration,
    },
    /// The source's packets of `limit` held to `pps`, of `drop` dropped.
    Throttle {
        pps: u32,
        limit: u32,
        drop: u32,
        ttl: Duration,
    },
    /// New connections, UDP or ICMP to a destination held to `pps`; or,
    /// with `drop` classes, those classes to the destination dropped (answers
    /// nobody asked for) and the rest untouched.
    Budget {
        pps: u32,
        drop: u32,
        ttl: Duration,
    },
    Alert {
        ttl: Duration,
    },
}

impl Plan {
    /// A SYN flood at a destination of ports the host does not serve: a
    /// budget becomes a filter of the probes to them: nobody is served there, so nothing a
    /// client needs is dropped, and a forged flood below any budget stops.
    pub fn unserved_only(self) -> Plan {
        match self {
            Plan::Budget { ttl, .. } => Plan::Budget {
                pps: 0,
                drop: class::PROBE_UNTRACKED,
                ttl,
            },
            other => other,
        }
    }

    pub fn action(&self) -> Recorded {
        match self {
            Plan::Ban { .. } => Recorded::Ban,
            Plan::Throttle { .. } => Recorded::Throttle,
            Plan::Budget { .. } => Recorded::Budget,
            Plan::Alert { .. } => Recorded::Alert,
        }
    }

    pub fn ttl(&self) -> Duration {
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

/// The plan for `detector`'s detection; `strikes` counts this ban of the
/// source.
pub fn plan(
    settings: &DetectSettings,
    detector: Detector,
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
    let evidence = evidence::of(detector);
    let scoped = |scope: Scope, pps: u32| {
        let (limit, drop) = match scope {
            Scope::Limit => (evidence.classes, 0),
            Scope::Drop => (0, evidence.classes),
        };
        Plan::Throttle {
            pps,
            limit,
            drop,
            ttl: settings.throttle_ttl,
        }
    };
    match action {
        // A spoof-safe ban holds the class to the detector's own threshold:
        // what the detector calls normal still passes, so a shopper whose
        // address is forged in a flood at that rate keeps connecting. A
        // horizon detector's threshold is a count over minutes, not a rate:
        // its `throttle_pps` holds the class.
        Action::Ban if evidence.spoofable && settings.raw.spoof_safe => {
            let pps = if config.per_source > 0 && !Detector::HORIZON.contains(&detector) {
                config.per_source
            } else {
                config.throttle_pps
            };
            scoped(evidence.scope, pps)
        }
        Action::Ban => Plan::Ban {
            ttl: settings.ban_ttl(strikes),
        },
        Action::Throttle => scoped(Scope::Limit, config.throttle_pps),
        // Evidence no client sends (reflected answers, unsolicited
        // SYN-ACKs) is filtered out at the destination: shoppers never
        // notice. Otherwise budget the destination at the aggregate
        // threshold: traffic beyond it is the attack; what fits keeps being
        // served.
        Action::Budget if evidence.scope == Scope::Drop => Plan::Budget {
            pps: 0,
            drop: evidence.classes,
            ttl: settings.budget_ttl,
        },
        Action::Budget => Plan::Budget {
            pps: config.aggregate,
            drop: 0,
            ttl: settings.budget_ttl,
        },
        Action::Alert => Plan::Alert {
            ttl: settings.throttle_ttl,
        },
    }
}

#[cfg(test)]
mod tests {
    use ensuresec_common::features::class;

    use super::*;
    use crate::detect::settings::{DetectSection, Detectors};

    fn settings(section: DetectSection) -> DetectSettings {
        DetectSettings::validate(&section, &[], &Default::default()).unwrap()
    }

    fn plan_of(s: &DetectSettings, d: Detector, action: Action, strikes: u32) -> Plan {
        let detectors = Detectors::default();
        plan(s, d, detectors.get(d), action, false, strikes)
    }

    #[test]
    fn forgeable_evidence_is_answered_on_its_class_only() {
        let s = settings(DetectSection::default());
        assert_eq!(
            plan_of(&s, Detector::SynFlood, Action::Ban, 1),
            Plan::Throttle {
                pps: 200,
                limit: class::SYN,
                drop: 0,
                ttl: Duration::from_secs(600)
            }
        );
        assert_eq!(
            plan_of(&s, Detector::Reflection, Action::Ban, 1),
            Plan::Throttle {
                pps: 100,
                limit: 0,
                drop: class::UDP_SERVICE,
                ttl: Duration::from_secs(600)
            }
        );
    }

    #[test]
    fn a_horizon_count_is_no_rate_to_hold_a_class_to() {
        let s = settings(DetectSection::default());
        // 30 SYNs over minutes: new connections held to ten a second.
        assert_eq!(
            plan_of(&s, Detector::SlowSyn, Action::Ban, 1),
            Plan::Throttle {
                pps: 10,
                limit: class::SYN,
                drop: 0,
                ttl: Duration::from_secs(600)
            }
        );
        assert_eq!(
            plan_of(&s, Detector::SlowScan, Action::Ban, 1),
            Plan::Throttle {
                pps: 100,
                limit: 0,
                drop: class::PROBE_UNTRACKED,
                ttl: Duration::from_secs(600)
            }
        );
    }

    #[test]
    fn an_explicit_throttle_uses_its_rate() {
        let s = settings(DetectSection::default());
        assert_eq!(
            plan_of(&s, Detector::SynFlood, Action::Throttle, 1),
            Plan::Throttle {
                pps: 100,
                limit: class::SYN,
                drop: 0,
                ttl: Duration::from_secs(600)
            }
        );
    }

    #[test]
    fn proven_sources_are_banned_and_bans_escalate() {
        let s = settings(DetectSection::default());
        assert_eq!(
            plan_of(&s, Detector::HalfOpen, Action::Ban, 1),
            Plan::Ban {
                ttl: Duration::from_secs(600)
            }
        );
        assert_eq!(
            plan_of(&s, Detector::HalfOpen, Action::Ban, 3),
            Plan::Ban {
                ttl: Duration::from_secs(86400)
            }
        );
    }

    #[test]
    fn without_spoof_safety_a_ban_is_a_ban() {
        let s = settings(DetectSection {
            spoof_safe: false,
            ..DetectSection::default()
        });
        assert_eq!(
            plan_of(&s, Detector::SynFlood, Action::Ban, 2),
            Plan::Ban {
                ttl: Duration::from_secs(3600)
            }
        );
    }

    #[test]
    fn dry_run_only_alerts() {
        let s = settings(DetectSection::default());
        let d = Detectors::default();
        let p = plan(
            &s,
            Detector::SynFlood,
            d.get(Detector::SynFlood),
            Action::Ban,
            true,
            1,
        );
        assert!(!p.enforced());
        assert_eq!(p.action(), Recorded::Alert);
    }

    #[test]
    fn budgets_use_the_aggregate_threshold() {
        let s = settings(DetectSection::default());
        assert_eq!(
            plan_of(&s, Detector::SynFlood, Action::Budget, 0),
            Plan::Budget {
                pps: 5000,
                drop: 0,
                ttl: Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn answers_nobody_asked_for_are_filtered_at_the_destination() {
        let s = settings(DetectSection::default());
        for (d, classes) in [
            (Detector::Reflection, class::UDP_SERVICE),
            (Detector::SynAckReflection, class::SYNACK),
        ] {
            assert_eq!(
                plan_of(&s, d, Action::Budget, 0),
                Plan::Budget {
                    pps: 0,
                    drop: classes,
                    ttl: Duration::from_secs(300)
                }
            );
        }
    }
}
