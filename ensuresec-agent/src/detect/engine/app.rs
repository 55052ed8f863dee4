//! Decisions on the application detectors' findings: the same allowlist,
//! dry run, escalation and records as the network detectors', on the
//! client's address or (IPv6) network, naming the storefront.

use std::sync::Arc;

use ensuresec_common::decisions::{DecisionRecord, SCOPE_SOURCE};

use super::{Engine, Layer};
use crate::{
    app::detect::{AppFinding, AppTarget},
    detect::{
        app_evidence::AppEvidence,
        decide::{self, covers},
        detector::{Action, DetectorConfig},
        outcome::{AppContext, Place},
        plan::{Plan, plan},
        rules::Detection,
        settings::DetectSettings,
    },
    error::Result,
    store::{Writer, decisions::DecisionTarget},
};

/// An application finding's decision target: the client, its IPv6
/// network, a network most of a wave's clients share, or the storefront
/// (`storefront_id`, its name's id).
pub fn app_target(f: &AppFinding, storefront_id: u32) -> DecisionTarget {
    match f.target {
        AppTarget::Client(net) | AppTarget::Network(net) => DecisionTarget::network(net),
        AppTarget::Storefront => DecisionTarget::storefront(storefront_id),
    }
}

/// What an application finding on `target` calls for at its `strikes`-th
/// offence, before the allowlist and the maps have their say. Replay
/// decides with it.
pub fn plan_app(
    settings: &DetectSettings,
    f: &AppFinding,
    target: &DecisionTarget,
    strikes: u32,
) -> Plan {
    // XDP sees the proxy's packets, not the client's: record only. A
    // storefront as a whole is never dropped.
    let action = if f.via_proxy || f.target == AppTarget::Storefront {
        Action::Alert
    } else {
        f.config.action
    };
    let config = DetectorConfig {
        per_source: f.config.per_source,
        aggregate: 0,
        action,
        aggregate_action: Action::Alert,
        throttle_pps: f.config.throttle_pps,
        dry_run: f.config.dry_run,
    };
    let dry_run = f.config.dry_run.unwrap_or(settings.dry_run);
    let mut plan = plan(settings, f.detector, &config, action, dry_run, strikes);
    // The kernel holds rates per address: a network is banned instead.
    if target.0.scope != SCOPE_SOURCE && matches!(plan, Plan::Throttle { .. }) {
        plan = Plan::Ban {
            ttl: settings.ban_ttl(strikes),
        };
    }
    plan
}

impl Engine {
    pub(super) fn take_app(&mut self) {
        let Some(inbox) = &self.app else {
            return;
        };
        for finding in inbox.take() {
            if let Err(e) = self.decide_app(&finding) {
                self.failed(&e, "deciding on an application finding");
            }
        }
    }

    fn decide_app(&mut self, f: &AppFinding) -> Result<()> {
        self.metrics
            .detections
            .with_label_values(&[f.detector.name(), &f.storefront])
            .inc();
        // One writer for the whole decision: the storefront's name, once
        // interned, cannot be freed before the record that uses it.
        let store = self.store.clone();
        let w = store.write()?;
        let storefront_id = self.storefront_id(&w, &f.storefront)?;
        let target = app_target(f, storefront_id);
        let key = target.0;
        let strikes = self.store.offender(&key.addr)?.map_or(0, |o| o.strikes) + 1;
        let plan = plan_app(&self.settings, f, &target, strikes);
        if self.live(&key)?.is_some_and(|r| covers(&r, &plan)) {
            return Ok(());
        }
        let checked = match f.target {
            AppTarget::Client(_) => Some(f.client),
            AppTarget::Network(net) => Some(net.network()),
            AppTarget::Storefront => None,
        };
        if let Some(addr) = checked
            && let Some(allow) = self.allow.covering(&self.store, addr)?
        {
            tracing::info!(client = %addr, storefront = %f.storefront, detector = f.detector.name(), allowlist = %allow, "detection on an allowlisted client: no decision");
            return Ok(());
        }
        let detection = Detection {
            detector: f.detector,
            observed: f.observed,
            threshold: f.threshold,
            extra: f.extra,
            storefront_id,
        };
        let first_seen_ns = f
            .origin
            .read_at_ns
            .saturating_sub((f.active_for_secs * 1e9) as u64);
        let record: DecisionRecord =
            decide::apply(&w, &key, &detection, plan, strikes, first_seen_ns)?;
        drop(w);
        tracing::warn!(
            storefront = %f.storefront,
            client = %f.client,
            evidence = %f.evidence,
            "application detection"
        );
        if let Some(file) = &mut self.app_evidence {
            let evidence = AppEvidence {
                storefront: f.storefront.to_string(),
                detector: f.detector.name().to_string(),
                text: f.evidence.clone(),
                accounts: f.accounts.iter().map(|a| a.to_string()).collect(),
                decided_secs: record.created_secs,
                line: f.origin.line.clone(),
            };
            file.record(target.to_string(), evidence);
        }
        self.log_decision(
            &target,
            &plan,
            &record,
            Layer::App,
            f.origin.read_at_ns,
            Place::App(AppContext {
                storefront: f.storefront.clone(),
                evidence: f.evidence.clone(),
                accounts: f.accounts.iter().map(|a| a.to_string()).collect(),
            }),
        );
        Ok(())
    }

    /// Writes the evidence of application decisions, if any changed,
    /// keeping only the decisions still in force.
    pub(super) fn flush_evidence(&mut self) {
        let store = self.store.clone();
        if let Some(file) = &mut self.app_evidence {
            file.flush(|t| {
                t.parse::<DecisionTarget>()
                    .ok()
                    .and_then(|t| store.decision(&t.0).ok().flatten())
                    .is_some_and(|r| r.expires_at_ns > crate::clock::mono_ns())
            });
        }
    }

    pub(super) fn intern_storefronts(&mut self, names: &[Arc<str>]) -> Result<()> {
        let store = self.store.clone();
        let w = store.write()?;
        let mut reasons = w.reasons()?;
        for name in names {
            let id = w.intern_reason(&mut reasons, name, || w.reason_ids_in_use())?;
            self.storefront_ids.insert(name.clone(), id);
        }
        Ok(())
    }

    /// The storefront's id in `ES_REASONS`, interning its name when new or
    /// when the id no longer holds it (the CLI frees unused texts).
    fn storefront_id(&mut self, w: &Writer, name: &Arc<str>) -> Result<u32> {
        if let Some(id) = self.storefront_ids.get(name)
            && w.reason_text(*id)?.as_deref() == Some(&**name)
        {
            return Ok(*id);
        }
        let mut reasons = w.reasons()?;
        let id = w.intern_reason(&mut reasons, name, || w.reason_ids_in_use())?;
        self.storefront_ids.insert(name.clone(), id);
        Ok(id)
    }
}
