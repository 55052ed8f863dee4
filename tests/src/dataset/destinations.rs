//! The per-destination rows: each protected address's current window (its
//! ports and CPUs merged) read once a step with the agent's own reader and
//! vector; labelled 1 on the attack's target while the attack tool runs.

use anyhow::Result;
use ensuresec_agent::{clock, ml::destinations, store::decisions::key_addr};
use ensuresec_common::vector;

use super::{About, StepContext, Table};

/// Whether the scenarios' `[[protect]]` blocks cover `ip`.
fn protected(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(a) => a.octets()[..2] == [10, 77],
        std::net::IpAddr::V6(a) => a.segments()[..4] == [0xfd77, 0, 0, 0],
    }
}

pub(super) fn record(ctx: &StepContext, out: &mut Table) -> Result<()> {
    let storefront = &ctx.tick.lab.storefront;
    // Every attack tool aims at the storefront's IPv4 address.
    let target = storefront.v4.to_string();
    let v6 = storefront.v6.to_string();
    // Any per-source threshold decision so far, for comparison.
    let on_source = ctx
        .decisions
        .iter()
        .find(|(target, _)| !target.contains('/'))
        .map_or("", |(_, (d, _))| d.as_str());
    // Read at once, as the agent does (the source table's scan took a while).
    for d in destinations::read(ctx.store, clock::mono_ns(), ctx.window_ns)? {
        let ip = key_addr(&d.addr);
        // The agent scores the protected destinations only (the scenarios'
        // `[[protect]]` prefixes), not multicast groups and the like.
        if !protected(ip) {
            continue;
        }
        let address = ip.to_string();
        // A threshold decision on this address (`10.0.0.1:80/tcp`,
        // `[fd00::1]:*/udp`), for comparison.
        let on_destination = ctx
            .decisions
            .iter()
            .find(|(target, _)| {
                target.starts_with(&format!("{address}:"))
                    || target.starts_with(&format!("[{address}]:"))
            })
            .map_or("", |(_, (d, _))| d.as_str());
        let role = if address == target || address == v6 {
            "storefront"
        } else {
            "host"
        };
        let about = About {
            address: &address,
            role,
            attack: ctx.tick.attacking && address == target,
            on_source,
            on_destination,
            packets: d.window.packets.into(),
        };
        out.push(ctx, about, &vector::destination::of(&d.window, d.secs));
    }
    Ok(())
}
