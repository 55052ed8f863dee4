//! `ensuresec status`: what is attached, what is listed, what was dropped.

use anyhow::Result;
use ensuresec_common::{
    maps::{FLAG_ALLOW, FLAGS_BLOCKING, PortBitmap},
    ports::allows,
    reason::Reason,
};
use serde::Serialize;

pub use super::status_journal::{JournalStatus, ResponseStatus};
use super::status_journal::{journal_status, response_status};
use crate::{
    attach::{link_target, mode_name},
    cli::OutputFormat,
    clock,
    detect::state::DetectState,
    ml::{model::Subject, state::MlState},
    output,
    pins::{PinDir, agent_pid},
    store::{MapMemory, Store},
};

#[derive(Serialize)]
pub struct Status {
    pub pin_dir: String,
    /// Feature extraction and trip wires in the kernel (the agent turns them
    /// on when `[[protect]]` blocks are configured).
    pub detection: bool,
    /// What the running agent detects: its protected prefixes (`None` while
    /// it starts, or with no agent).
    pub detecting: Option<DetectState>,
    /// Pid of the running agent, if any.
    pub agent_pid: Option<u32>,
    /// The running agent's anomaly model, when `[ml]` is configured.
    pub anomaly_model: Option<MlState>,
    pub aggregate_model: Option<MlState>,
    pub interfaces: Vec<IfaceStatus>,
    pub port_policy: PortPolicyStatus,
    pub lists: Vec<ListCount>,
    pub counters: Vec<CounterRow>,
    /// Trip events the kernel sent the agent, and those it had no room for.
    pub events_sent: u64,
    pub events_dropped: u64,
    /// The journal the desired state is restored from (`None` when there is
    /// none yet in the state directory).
    pub journal: Option<JournalStatus>,
    /// Open incidents and the storefronts whose fail-safe profile is on.
    pub response: Option<ResponseStatus>,
    /// The running agent's own health (`None` with no agent).
    pub health: Option<crate::health::Health>,
    /// Kernel memory of every pinned map, and their sum.
    pub maps: Vec<MapMemory>,
    pub maps_kernel_bytes: u64,
}

#[derive(Serialize)]
pub struct IfaceStatus {
    pub iface: String,
    pub ifindex: Option<u32>,
    pub mode: &'static str,
    pub program_id: Option<u32>,
    pub link_id: Option<u32>,
    /// "attached", or "interface gone" for a link whose device disappeared.
    pub state: &'static str,
}

#[derive(Serialize)]
pub struct PortPolicyStatus {
    pub enabled: bool,
    pub tcp: String,
    pub udp: String,
}

#[derive(Serialize)]
pub struct ListCount {
    pub list: &'static str,
    pub family: &'static str,
    pub kind: &'static str,
    pub entries: usize,
    /// Blocks whose TTL has passed but that the agent has not swept yet.
    pub expired: usize,
    pub capacity: u32,
}

#[derive(Serialize)]
pub struct CounterRow {
    pub verdict: &'static str,
    pub reason: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// "22,80,8000-8100" for the ports set in a bitmap.
pub fn port_ranges(bits: &PortBitmap) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut port = 0u32;
    while port <= 65535 {
        if allows(bits, port as u16) {
            let start = port;
            while port < 65535 && allows(bits, (port + 1) as u16) {
                port += 1;
            }
            out.push(if start == port {
                start.to_string()
            } else {
                format!("{start}-{port}")
            });
        }
        port += 1;
    }
    out.join(",")
}

pub fn gather(pins: &PinDir) -> Result<Status> {
    let store = Store::open(pins)?;
    let records = store.iface_records()?;
    let interfaces = pins
        .linked_ifaces()
        .into_iter()
        .map(|iface| {
            let target = link_target(pins, &iface).ok().flatten();
            let mode = target
                .and_then(|t| records.iter().find(|(i, _)| *i == t.ifindex))
                .map_or("unknown", |(_, r)| mode_name(r.mode));
            IfaceStatus {
                ifindex: target.map(|t| t.ifindex),
                program_id: target.map(|t| t.program_id),
                link_id: target.map(|t| t.link_id),
                state: if target.is_some() {
                    "attached"
                } else {
                    "interface gone"
                },
                mode,
                iface,
            }
        })
        .collect();
    let (enabled, tcp, udp) = store.port_policy()?;
    let now = clock::mono_ns();
    let entries = store.entries()?;
    let caps = store.capacities;
    let mut lists = Vec::new();
    for (list, flag) in [("block", FLAGS_BLOCKING), ("allow", FLAG_ALLOW)] {
        for (family, kind, capacity) in [
            ("ipv4", "exact", caps.exact_v4),
            ("ipv4", "cidr", caps.cidr_v4),
            ("ipv6", "exact", caps.exact_v6),
            ("ipv6", "cidr", caps.cidr_v6),
        ] {
            let matching = entries.iter().filter(|l| {
                l.entry.flags & flag != 0 && l.target.family() == family && l.target.kind() == kind
            });
            let (mut count, mut expired) = (0, 0);
            for l in matching {
                count += 1;
                if flag == FLAGS_BLOCKING && !l.entry.blocks_at(now) {
                    expired += 1;
                }
            }
            lists.push(ListCount {
                list,
                family,
                kind,
                entries: count,
                expired,
                capacity,
            });
        }
    }
    let counters = store
        .counters()?
        .into_iter()
        .zip(Reason::ALL)
        .map(|(c, r)| CounterRow {
            verdict: r.verdict(),
            reason: r.name(),
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect();
    let pid = agent_pid(pins);
    let (events_dropped, events_sent) = store.event_stats()?;
    // Best effort: the rest of the status stands without it.
    let maps = store.map_memory().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "reading the maps' kernel memory");
        Vec::new()
    });
    Ok(Status {
        maps_kernel_bytes: maps.iter().map(|m| m.kernel_bytes).sum(),
        maps,
        events_sent,
        events_dropped,
        journal: None,
        response: None,
        detection: store.detect_config()?.enabled != 0,
        detecting: pid.and_then(|pid| crate::detect::state::read(pins, pid)),
        pin_dir: pins.root().display().to_string(),
        agent_pid: pid,
        health: pid
            .and_then(|pid| crate::health::read(pins, pid))
            .map(stale),
        anomaly_model: pid.and_then(|_| model_state(pins, Subject::Source)),
        aggregate_model: pid.and_then(|_| model_state(pins, Subject::Destination)),
        interfaces,
        port_policy: PortPolicyStatus {
            enabled,
            tcp: port_ranges(&tcp),
            udp: port_ranges(&udp),
        },
        lists,
        counters,
    })
}

fn model_state(pins: &PinDir, subject: Subject) -> Option<MlState> {
    crate::ml::state::read(&crate::ml::state::path(pins, subject))
}

/// A health the agent stopped writing says so: the agent is stuck.
fn stale(mut h: crate::health::Health) -> crate::health::Health {
    let age = clock::unix_ms().saturating_sub(h.written_ms);
    if age > (3 * h.every_ms).max(30_000) {
        h.issues.push(crate::health::Issue {
            what: "agent_stuck".into(),
            detail: format!(
                "the agent has not reported for {} s (every {} s before); the kernel keeps enforcing",
                age / 1000,
                h.every_ms / 1000
            ),
        });
    }
    h
}

pub fn print(pins: &PinDir, state_dir: &std::path::Path, format: OutputFormat) -> Result<()> {
    let mut s = gather(pins)?;
    s.journal = journal_status(state_dir);
    s.response = response_status(state_dir);
    if format == OutputFormat::Json {
        output::print(format, &s, Vec::new());
        return Ok(());
    }
    super::status_text::print(&s, state_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ensuresec_common::ports::{PortRange, bitmap};

    #[test]
    fn port_ranges_round_trip() {
        let ranges: Vec<PortRange> = ["0", "22", "80-81", "65535"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(port_ranges(&bitmap(&ranges)), "0,22,80-81,65535");
        assert_eq!(port_ranges(&bitmap(&[])), "");
    }
}
