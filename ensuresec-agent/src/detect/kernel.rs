//! The kernel side of detection: windows, trip wires and tracked ports, and
//! the SYN cookies a spoofed SYN flood needs.

use ensuresec_common::{decisions::Detector, features::DetectConfig, ports::bitmap};

use super::settings::DetectSettings;
use crate::{error::Result, store::Store};

/// A spoofed SYN flood fills the listen queue with half-open connections
/// nobody completes; SYN cookies let the kernel answer without keeping them.
/// Linux enables them under pressure by default (1); an administrator may
/// have turned them off (0), in which case the agent turns them back on.
pub fn ensure_syncookies() {
    let path = "/proc/sys/net/ipv4/tcp_syncookies";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "0") {
        match std::fs::write(path, "1") {
            Ok(()) => tracing::warn!("SYN flood from many sources: turned tcp_syncookies on"),
            Err(e) => tracing::error!(error = %e, "could not turn tcp_syncookies on"),
        }
    }
}

/// Configures the kernel side of detection (windows, trip wires, tracked
/// ports). Trip wires are per CPU, and a source's packets spread over the
/// receive queues: each CPU trips at its share of the wire, so that a scan
/// or flood spread over every CPU still trips. A share has a floor, so that
/// on a many-CPU host an ordinary client's first packets trip nothing.
pub fn configure(store: &Store, settings: &DetectSettings) -> Result<()> {
    // Every online CPU runs XDP (whatever the agent's own affinity or quota).
    let cpus = aya::util::online_cpus()
        .map(|c| c.len())
        .unwrap_or(1)
        .max(1) as u32;
    let share = |total: u32, floor: u32| total.div_ceil(cpus).max(floor.min(total)).max(1);
    let raw = &settings.raw;
    // A horizon wire first trips at half the lowest threshold of any block,
    // so that the agent looks while the count grows; it is off (0) when no
    // block counts it.
    let first_horizon_trip = |d: Detector, floor: u32| {
        settings
            .protect
            .iter()
            .map(|(_, ds)| ds.get(d).per_source)
            .filter(|&n| n > 0)
            .min()
            .map_or(0, |n| share(n.div_ceil(2), floor))
    };
    let w = store.write()?;
    w.set_tracked_ports(&bitmap(&settings.tcp_ports), &bitmap(&settings.udp_ports))?;
    w.set_detect_config(&DetectConfig {
        enabled: 1,
        window_ns: settings.window.as_nanos() as u64,
        trip_packets: share(raw.trip_packets, 16),
        trip_ports: share(raw.trip_ports, 3),
        trip_dsts: share(raw.trip_hosts, 2),
        trip_dst_packets: share(raw.trip_dst_packets, 256),
        cpus,
        horizon_ns: settings.horizon.as_nanos() as u64,
        trip_horizon_syns: first_horizon_trip(Detector::SlowSyn, 4),
        trip_horizon_ports: first_horizon_trip(Detector::SlowScan, 3),
        trip_openings: first_horizon_trip(Detector::ServiceScan, 2),
        ..DetectConfig::default()
    })
}

/// Turns detection off in the kernel (no `[[protect]]` block).
pub fn disable(store: &Store) -> Result<()> {
    store.write()?.set_detect_config(&DetectConfig::default())
}
