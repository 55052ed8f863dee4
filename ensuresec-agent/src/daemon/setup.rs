//! The agent's set-up and upkeep of the maps: the config's allowlist and
//! port policy, attaching interfaces, the expiry sweep.

use std::{collections::HashSet, sync::Mutex};

use anyhow::Result;
use aya::Ebpf;
use ensuresec_common::{entry::Target, maps::FLAG_ALLOW_FROM_CONFIG, ports::bitmap};

use crate::{
    attach, census, clock,
    config::Validated,
    edit::Op,
    metrics::{AgentMetrics, ListSnapshot},
    store::{EditSummary, Store},
};

/// Makes the config's allowlist the set of config-owned allow entries.
pub(super) fn reconcile_allowlist(store: &Store, config: &Validated) -> Result<EditSummary> {
    let w = store.write()?;
    let wanted: HashSet<Target> = config.allowlist.iter().copied().collect();
    let now_secs = clock::unix_secs();
    let mut edits: Vec<(Target, Op)> = wanted
        .iter()
        .map(|t| {
            (
                *t,
                Op::Allow {
                    from_config: true,
                    now_secs,
                },
            )
        })
        .collect();
    for l in w.entries()? {
        if l.entry.flags & FLAG_ALLOW_FROM_CONFIG != 0 && !wanted.contains(&l.target) {
            edits.push((l.target, Op::UnallowConfig));
        }
    }
    let summary = w.edit(&edits)?;
    tracing::info!(
        entries = wanted.len(),
        added = summary.added,
        removed = summary.removed,
        "allowlist from the config applied"
    );
    Ok(summary)
}

pub(super) fn apply_port_policy(store: &Store, config: &Validated) -> Result<()> {
    let policy = &config.raw.port_policy;
    store.write()?.set_port_policy(
        policy.enabled,
        &bitmap(&config.tcp_ports),
        &bitmap(&config.udp_ports),
    )?;
    if policy.enabled {
        tracing::info!(tcp = ?policy.tcp, udp = ?policy.udp, "port policy on");
    }
    Ok(())
}

/// Attaches every configured interface not yet attached by this agent.
pub(super) fn attach_all(
    bpf: &mut Ebpf,
    store: &Store,
    config: &Validated,
    done: &mut HashSet<String>,
) {
    for iface in &config.raw.interfaces {
        if done.contains(&iface.name) {
            continue;
        }
        match store
            .write()
            .and_then(|w| attach::attach(bpf, &w, &iface.name, iface.mode))
        {
            Ok(a) => {
                let how = if a.replaced {
                    "adopted (program replaced in place)"
                } else {
                    "attached"
                };
                tracing::info!(iface = %a.iface, mode = a.mode, "{how}");
                done.insert(iface.name.clone());
            }
            Err(e) => {
                tracing::error!(iface = %iface.name, error = %e, "cannot attach; retrying at each sweep")
            }
        }
    }
    // An interface that disappeared must be attached again when it comes back.
    done.retain(|name| matches!(attach::link_target(store.pins(), name), Ok(Some(_))));
}

/// Removes expired blocks and refreshes the list gauges.
/// Reading every entry takes a while with a million of them, so it is done
/// without the write lock (writers, the detection thread's bans among them,
/// are not held up); the lock is taken for the writes only. Expiring is safe
/// on entries read earlier: it removes only parts whose time has passed.
pub(super) fn sweep(
    store: &Store,
    snapshot: &Mutex<ListSnapshot>,
    metrics: &AgentMetrics,
) -> Result<()> {
    let now_ns = clock::mono_ns();
    let census = census::take(&store.entries()?, now_ns);
    let w = store.write()?;
    if w.recount_exact(w.exact_v4.count()?, w.exact_v6.count()?)? {
        tracing::warn!("corrected the exact tables' key counts (a writer was stopped part-way)");
    }
    if !census.expired.is_empty() {
        let edits: Vec<(Target, Op)> = census
            .expired
            .iter()
            .map(|t| (*t, Op::Expire { now_ns }))
            .collect();
        w.edit(&edits)?;
        metrics.expired_removed.inc_by(edits.len() as u64);
        tracing::info!(count = edits.len(), "removed expired blocks");
    }
    let counts = census.counts;
    let caps = store.capacities;
    *snapshot.lock().expect("snapshot lock") = ListSnapshot {
        counts,
        capacities: vec![
            ("ipv4", "exact", caps.exact_v4),
            ("ipv4", "cidr", caps.cidr_v4),
            ("ipv6", "exact", caps.exact_v6),
            ("ipv6", "cidr", caps.cidr_v6),
        ],
    };
    metrics.sweeps.inc();
    Ok(())
}
