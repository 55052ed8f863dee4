//! Storefront-wide waves: failed logins (or declined payments) from many
//! clients, each under its own threshold. A wave is the storefront's count in
//! one window reaching both the detector's `aggregate` floor and several
//! times its baseline (the windows before, attack windows left out), from at
//! least `MIN_SOURCES` clients. While it lasts, the storefront's per-source
//! thresholds tighten; when most of its sources share one network (an IPv4
//! /24, an IPv6 /48), that network is the decision's target.

use std::{collections::HashMap, sync::Arc};

use ensuresec_common::decisions::Detector;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{AppFinding, AppTarget, Seen, config::AppDetectorConfig};

/// A wave is this many times the baseline at least.
const SPIKE: f64 = 5.0;
/// ... from at least this many clients.
pub const MIN_SOURCES: usize = 5;
/// Clients remembered per window (enough to see a shared network).
const SOURCES_KEPT: usize = 4096;
/// A network is "shared" when it holds this share of the wave's clients.
const SHARED: f64 = 0.5;

/// What a wave looks like when it is found.
#[derive(Clone, Debug, PartialEq)]
pub struct Surge {
    pub count: u64,
    pub baseline: f64,
    pub sources: usize,
    /// The network most sources share, and how many of them it holds.
    pub shared: Option<(IpNet, usize)>,
}

#[derive(Debug, Default)]
pub struct Wave {
    window_start: f64,
    count: u64,
    /// Clients by their group (an IPv6 client's /64 is one client).
    sources: HashMap<IpNet, u32>,
    /// Failures per window before this one (an average, attack windows out).
    baseline: Option<f64>,
    /// The wave holds until then (renewed while it goes on).
    active_until: f64,
    /// Already reported for this wave.
    reported: bool,
}

/// The network a client's wave is grouped by.
fn network_of(client: IpNet) -> IpNet {
    match client {
        IpNet::V4(n) => IpNet::V4(
            Ipv4Net::new(n.addr(), 24.min(n.prefix_len()))
                .expect("valid")
                .trunc(),
        ),
        IpNet::V6(n) => IpNet::V6(
            Ipv6Net::new(n.addr(), 48.min(n.prefix_len()))
                .expect("valid")
                .trunc(),
        ),
    }
}

impl Wave {
    pub fn active(&self, now: f64) -> bool {
        now < self.active_until
    }

    fn roll(&mut self, now: f64, window: f64) {
        if self.window_start == 0.0 {
            self.window_start = now;
            return;
        }
        if now - self.window_start < window {
            return;
        }
        // A window of the wave itself is not what normal looks like.
        if !self.reported {
            let done = self.count as f64;
            self.baseline = Some(match self.baseline {
                None => done,
                Some(b) => 0.8 * b + 0.2 * done,
            });
        }
        let windows = ((now - self.window_start) / window).floor();
        // Quiet windows in between count as zeros.
        if windows > 1.0
            && let Some(b) = &mut self.baseline
        {
            *b *= 0.8f64.powf(windows - 1.0);
        }
        self.window_start += windows * window;
        self.count = 0;
        self.sources.clear();
        if !self.active(now) {
            self.reported = false;
        }
    }

    /// Counts one failure by `client`; a `Surge` the first time a wave is
    /// seen (once per wave).
    pub fn count(&mut self, client: IpNet, now: f64, window: f64, floor: u32) -> Option<Surge> {
        self.roll(now, window);
        self.count += 1;
        if self.sources.len() < SOURCES_KEPT || self.sources.contains_key(&client) {
            *self.sources.entry(client).or_default() += 1;
        }
        if floor == 0 {
            return None;
        }
        let baseline = self.baseline.unwrap_or(0.0);
        let surging = self.count >= floor as u64
            && self.count as f64 >= SPIKE * baseline
            && self.sources.len() >= MIN_SOURCES;
        if !surging {
            return None;
        }
        self.active_until = now + window;
        if std::mem::replace(&mut self.reported, true) {
            return None;
        }
        Some(Surge {
            count: self.count,
            baseline,
            sources: self.sources.len(),
            shared: self.shared(),
        })
    }

    fn shared(&self) -> Option<(IpNet, usize)> {
        let mut by_net: HashMap<IpNet, usize> = HashMap::new();
        for addr in self.sources.keys() {
            *by_net.entry(network_of(*addr)).or_default() += 1;
        }
        let (net, n) = by_net.into_iter().max_by_key(|(_, n)| *n)?;
        (n >= MIN_SOURCES && n as f64 >= SHARED * self.sources.len() as f64).then_some((net, n))
    }
}

/// What a storefront-wide wave calls for: a storefront-wide alert, and
/// when most of its clients share a network, a decision on that network.
pub(super) fn findings(
    storefront: &Arc<str>,
    seen: &Seen<'_>,
    detector: Detector,
    config: &AppDetectorConfig,
    surge: &Surge,
) -> Vec<AppFinding> {
    let what = match detector {
        Detector::CardTesting => "declined payments",
        _ => "failed logins",
    };
    let tight = config.tightened();
    let base = AppFinding {
        detector,
        storefront: storefront.clone(),
        client: seen.client.addr,
        target: AppTarget::Storefront,
        via_proxy: false,
        observed: surge.count,
        threshold: config.aggregate as u64,
        extra: [surge.sources as u64, surge.baseline.round() as u64],
        evidence: format!(
            "a storefront-wide wave: {} {what} from {} clients in {:?} (floor {}, {:.1} a window before); each client is held to {} (and {} distinct) while it lasts",
            surge.count,
            surge.sources,
            config.window,
            config.aggregate,
            surge.baseline,
            tight.per_source,
            tight.distinct
        ),
        accounts: Vec::new(),
        active_for_secs: 0.0,
        config: AppDetectorConfig {
            action: crate::detect::detector::Action::Alert,
            ..*config
        },
        origin: Default::default(),
        seen_at: seen.now,
    };
    let mut out = vec![base.clone()];
    if let Some((net, n)) = surge.shared {
        out.push(AppFinding {
            target: AppTarget::Network(net),
            // Seen through a proxy, the network's packets come from the
            // proxy: recorded, not dropped.
            via_proxy: seen.client.via_proxy,
            observed: n as u64,
            threshold: MIN_SOURCES as u64,
            evidence: format!(
                "{n} of the {} clients of a storefront-wide wave of {what} are in {net}",
                surge.sources
            ),
            config: *config,
            ..base
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpNet {
        IpNet::from(std::net::IpAddr::from(n.to_be_bytes()))
    }

    #[test]
    fn a_wave_is_many_sources_far_above_the_baseline() {
        let mut w = Wave::default();
        // A normal hour: a failed login a minute from anyone.
        for i in 0..60 {
            assert_eq!(
                w.count(ip(0x0a00_0000 + i), i as f64 * 60.0, 300.0, 50),
                None
            );
        }
        // Then 20 hosts from all over, each trying every 10 s.
        let mut surge = None;
        for round in 0..10 {
            for h in 0..20u32 {
                let t = 3600.0 + round as f64 * 10.0 + h as f64 * 0.1;
                if let Some(s) = w.count(ip(0xc600_0000 + (h << 12)), t, 300.0, 50) {
                    assert!(surge.is_none(), "reported once");
                    surge = Some((t, s));
                }
            }
        }
        let (t, s) = surge.expect("the wave is found");
        assert!(t < 3630.0, "within the first 30 s: {t}");
        assert_eq!(s.shared, None, "sources from many networks");
        assert!(w.active(t + 100.0));
        assert!(!w.active(t + 1000.0));
    }

    #[test]
    fn a_wave_from_one_network_names_it_and_one_busy_client_is_no_wave() {
        let mut w = Wave::default();
        let mut found = None;
        for i in 0..60u32 {
            found = found.or(w.count(ip(0xcb00_7100 + i % 30), i as f64, 300.0, 50));
        }
        let s = found.expect("a wave");
        assert_eq!(s.shared, Some(("203.0.113.0/24".parse().unwrap(), 30)));
        let mut one = Wave::default();
        for i in 0..200 {
            assert_eq!(
                one.count(ip(1), i as f64, 300.0, 50),
                None,
                "one client is the per-source detector's"
            );
        }
    }
}
