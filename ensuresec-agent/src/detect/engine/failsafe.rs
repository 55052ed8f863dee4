//! The engine's side of fail-safe protection: the responder says when a
//! storefront's profile goes on or off; the engine flips its switch (the
//! detectors read it) and budgets the storefront's new connections while it
//! is on, renewing the budgets it made until the profile goes off.

use std::{net::IpAddr, sync::Arc};

use ensuresec_common::decisions::{Action as Recorded, DecisionKey, SCOPE_DESTINATION};

use super::*;
use crate::{
    detect::{
        failsafe::Failsafe,
        outcome::{AppContext, Outcome},
        plan::Plan,
    },
    store::decisions::addr_key,
};

/// What the responder asks of the engine.
#[derive(Clone, Debug)]
pub struct FailsafeCommand {
    pub storefront: usize,
    pub on: bool,
    /// Why, in words (the incident that turned it on).
    pub why: String,
}

impl Engine {
    /// Takes the responder's fail-safe commands, in order.
    pub fn with_failsafe(
        mut self,
        failsafe: Arc<Failsafe>,
        commands: Receiver<FailsafeCommand>,
    ) -> Self {
        self.failsafe = Some((failsafe, commands));
        self
    }

    /// The detectors for traffic to `dst`: its protected block's, tightened
    /// while its storefront's fail-safe profile is on.
    pub(super) fn detectors_for(&self, dst: IpAddr) -> Option<Detectors> {
        let base = self.settings.detectors_for(dst)?;
        Some(
            self.failsafe
                .as_ref()
                .and_then(|(f, _)| f.network(dst, base))
                .unwrap_or(*base),
        )
    }

    pub(super) fn take_failsafe(&mut self) {
        let Some((failsafe, rx)) = &self.failsafe else {
            return;
        };
        let failsafe = failsafe.clone();
        let commands: Vec<FailsafeCommand> = rx.try_iter().collect();
        for c in commands {
            if !failsafe.set(c.storefront, c.on) {
                continue;
            }
            tracing::warn!(storefront = failsafe.name(c.storefront), on = c.on, why = %c.why, "fail-safe profile");
            let result = if c.on {
                self.budget_storefront(&failsafe, c.storefront, &c.why)
            } else {
                self.unbudget_storefront(&failsafe, c.storefront)
            };
            if let Err(e) = result {
                self.failed(&e, "the fail-safe budgets");
            }
        }
    }

    /// The budget keys of storefront `i`: each of its addresses and
    /// profile ports (an untracked port's budget is the address's port 0).
    fn budget_keys(&self, failsafe: &Failsafe, i: usize) -> Vec<DecisionKey> {
        let Some(profile) = failsafe.profile(i) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for addr in failsafe.exact_addresses(i) {
            for &port in &profile.ports {
                let tracked = self
                    .settings
                    .tcp_ports
                    .iter()
                    .any(|r| (r.first..=r.last).contains(&port));
                let key = DecisionKey::new(
                    addr_key(addr),
                    if tracked { port } else { 0 },
                    libc::IPPROTO_TCP as u8,
                    SCOPE_DESTINATION,
                );
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    fn budget_storefront(&mut self, failsafe: &Failsafe, i: usize, why: &str) -> Result<()> {
        let Some(rate) = failsafe.profile(i).and_then(|p| p.new_connections) else {
            return Ok(());
        };
        for key in self.budget_keys(failsafe, i) {
            // A budget a detector set (lower, or a filter) stays.
            if self.live(&key)?.is_some() {
                continue;
            }
            self.failsafe_budget(failsafe, i, &key, rate, why)?;
        }
        Ok(())
    }

    fn failsafe_budget(
        &mut self,
        failsafe: &Failsafe,
        i: usize,
        key: &DecisionKey,
        rate: u32,
        why: &str,
    ) -> Result<()> {
        let detection = Detection {
            detector: Detector::Failsafe,
            observed: rate as u64,
            threshold: rate as u64,
            extra: [0; 2],
            storefront_id: 0,
        };
        let plan = Plan::Budget {
            pps: rate,
            drop: 0,
            ttl: self.settings.budget_ttl,
        };
        let record = decide::apply(
            &self.store.write()?,
            key,
            &detection,
            plan,
            0,
            clock::mono_ns(),
        )?;
        self.log_decision(
            &DecisionTarget(*key),
            &plan,
            &record,
            Layer::Network,
            record.first_seen_ns,
            Place::App(AppContext {
                storefront: failsafe.name(i).into(),
                evidence: why.to_string(),
                accounts: Vec::new(),
            }),
        );
        Ok(())
    }

    /// Lifts the budgets the profile made (a detector's stay).
    fn unbudget_storefront(&mut self, failsafe: &Failsafe, i: usize) -> Result<()> {
        for key in self.budget_keys(failsafe, i) {
            let Some(record) = self.live(&key)? else {
                continue;
            };
            if record.detector != Detector::Failsafe as u32 {
                continue;
            }
            decide::lift(&self.store.write()?, &key, &record, decide::Lift::Expired)?;
            self.outcomes.publish(Outcome::Expired {
                target: DecisionTarget(key),
                record,
            });
        }
        Ok(())
    }

    /// Renews, while a profile is on, the budgets it made that near their
    /// end; one an operator lifted stays lifted.
    pub(super) fn renew_failsafe(&mut self) -> Result<()> {
        let Some((failsafe, _)) = &self.failsafe else {
            return Ok(());
        };
        let failsafe = failsafe.clone();
        let half = self.settings.budget_ttl.as_nanos() as u64 / 2;
        let now = clock::mono_ns();
        for i in 0..failsafe.len() {
            if !failsafe.is_on(i) {
                continue;
            }
            let Some(rate) = failsafe.profile(i).and_then(|p| p.new_connections) else {
                continue;
            };
            for key in self.budget_keys(&failsafe, i) {
                let Some(record) = self.live(&key)? else {
                    continue;
                };
                if record.detector == Detector::Failsafe as u32
                    && record.action == Recorded::Budget as u32
                    && record.expires_at_ns.saturating_sub(now) < half
                {
                    self.failsafe_budget(
                        &failsafe,
                        i,
                        &key,
                        rate,
                        "renewed while the incident lasts",
                    )?;
                }
            }
        }
        Ok(())
    }
}
