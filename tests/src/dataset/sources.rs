//! The per-source rows: the kernel's per-source table read once a step with
//! the agent's own `Stepper` and feature vector; labelled by who sent the
//! traffic (the scenario's roles).

use anyhow::Result;
use ensuresec_agent::{ml::steps::Stepper, store::decisions::key_addr};
use ensuresec_common::vector;

use super::{About, StepContext, Table, role};

/// Rows kept per step from spoofed sources: a random-source flood creates
/// thousands of one-packet sources a second, which would drown the rest.
pub const SPOOFED_PER_STEP: usize = 50;

#[derive(Default)]
pub(super) struct Sources {
    stepper: Stepper,
}

impl Sources {
    pub(super) fn record(&mut self, ctx: &StepContext, out: &mut Table) -> Result<()> {
        let steps = self.stepper.step(ctx.store, ctx.now_ns, ctx.window_ns)?;
        let mut spoofed = 0;
        let mut order: Vec<usize> = (0..steps.len()).collect();
        fastrand::shuffle(&mut order);
        for i in order {
            let s = &steps[i];
            let address = key_addr(&s.source).to_string();
            let role = role(&address, ctx.scenario);
            // The agent does not score on-link neighbours (see the per-source
            // runner), so neither does the model learn from them.
            if matches!(role, "lab" | "neighbor") {
                continue;
            }
            if role == "spoofed" {
                spoofed += 1;
                if spoofed > SPOOFED_PER_STEP {
                    continue;
                }
            }
            let attack = matches!(role, "attacker" | "spoofed") && ctx.tick.attacking;
            let on_source = ctx.decisions.get(&address).map_or("", |(d, _)| d.as_str());
            let about = About {
                address: &address,
                role,
                attack,
                on_source,
                on_destination: ctx.on_destination,
                packets: s.counts.packets,
            };
            out.push(ctx, about, &vector::of(&s.counts, s.secs));
        }
        Ok(())
    }
}
