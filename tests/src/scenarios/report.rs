//! What a scenario run reports, and the readings it is made of: packets per
//! reason from `ensuresec status`, counters from the metrics page, and the
//! agent's CPU time and peak memory.

use std::collections::BTreeMap;

use anyhow::Result;
use ensuresec_common::reason::Reason;
use serde::Serialize;

use crate::lab::Lab;

/// One source in a report.
#[derive(Debug, Serialize)]
pub struct SourceReport {
    pub address: String,
    pub role: &'static str,
    pub tool: String,
    pub requests: u32,
    pub succeeded: u32,
    pub detected: bool,
    pub detector: Option<String>,
    pub detected_after_s: Option<f64>,
    pub mitigated: bool,
    pub action: Option<String>,
    pub time_to_mitigate_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub about: &'static str,
    pub duration_s: f64,
    pub sources: Vec<SourceReport>,
    pub shoppers_success_rate: f64,
    pub expected_detector: Option<&'static str>,
    pub decisions: Vec<serde_json::Value>,
    /// Packets per reason counted by the XDP program during the run.
    pub packets: BTreeMap<String, u64>,
    /// The agent's CPU time over wall time, and its peak resident memory.
    pub agent_cpu_share: f64,
    pub agent_peak_rss_mib: f64,
    /// Events the agent read from the ring buffer, and events the kernel could
    /// not queue.
    pub ringbuf_events: u64,
    pub ringbuf_dropped: u64,
}

/// A counter's value on the agent's metrics page.
pub(super) fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Packets per reason (those above zero) from `ensuresec status`.
pub fn packets(lab: &Lab) -> Result<BTreeMap<String, u64>> {
    let status: serde_json::Value =
        serde_json::from_str(&lab.ensuresec(&["status", "-o", "json"])?)?;
    Ok(status["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["reason"].as_str()?.to_string(), c["packets"].as_u64()?)))
        .filter(|(_, n)| *n > 0)
        .collect())
}

/// Packets dropped for any reason, from packets per reason.
pub fn dropped(packets: &BTreeMap<String, u64>) -> u64 {
    Reason::ALL
        .iter()
        .filter(|r| r.drops())
        .filter_map(|r| packets.get(r.name()))
        .sum()
}

/// CPU seconds (user + system) in a `stat` file of /proc (a process's or a
/// thread's).
pub fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let ticks = 100.0; // USER_HZ
    let s = std::fs::read_to_string(stat_path).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks)
}

/// CPU seconds (user + system) and peak RSS (MiB) of a process.
pub fn usage(pid: u32) -> (f64, f64) {
    let cpu = cpu_seconds(&format!("/proc/{pid}/stat")).unwrap_or(0.0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0);
    (cpu, rss)
}
