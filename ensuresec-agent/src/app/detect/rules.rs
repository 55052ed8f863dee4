//! The rules of the application detectors: what each observation counts,
//! and when a count trips. One window per detector, per client.

use std::sync::Arc;

use ensuresec_common::decisions::Detector;
use ipnet::IpNet;

use super::{
    AppFinding, AppTarget, Observation, Seen,
    client::ClientState,
    config::{AppDetectorConfig, AppDetectors},
    signatures::{Confidence, Hits},
};
use crate::app::pseudonym::Pseudonym;

/// Collects what fired, with the context every finding shares.
pub(super) struct Findings<'s, 'a> {
    pub found: Vec<AppFinding>,
    pub name: Arc<str>,
    pub seen: &'s Seen<'a>,
    pub target: IpNet,
}

impl Findings<'_, '_> {
    #[allow(clippy::too_many_arguments)]
    fn fire(
        &mut self,
        state: &mut ClientState,
        detector: Detector,
        config: &AppDetectorConfig,
        observed: u64,
        threshold: u64,
        extra: [u64; 2],
        what: String,
    ) {
        let now = self.seen.now;
        if !state.may_fire(detector, now, config.window_secs()) {
            return;
        }
        let mut evidence = what;
        if let Some(s) = &state.sample {
            if !s.paths.is_empty() {
                let paths: Vec<&str> = s.paths.iter().map(String::as_str).collect();
                evidence.push_str(&format!("; paths {}", paths.join(" ")));
            }
            if !s.agent.is_empty() {
                evidence.push_str(&format!("; agent {:?}", s.agent));
            }
        }
        let accounts = match &self.seen.what {
            Observation::LoginOk { account: Some(a) } if detector == Detector::AccountTakeover => {
                vec![*a]
            }
            _ => state.accounts(),
        };
        if !accounts.is_empty() {
            let shown: Vec<String> = accounts.iter().take(5).map(|a| a.to_string()).collect();
            evidence.push_str(&format!("; accounts {}", shown.join(" ")));
        }
        if self.seen.client.via_proxy {
            evidence.push_str(
                "; seen only behind a trusted proxy, so XDP cannot drop it: recorded as an alert",
            );
        }
        self.found.push(AppFinding {
            detector,
            storefront: self.name.clone(),
            client: self.seen.client.addr,
            target: AppTarget::Client(self.target),
            via_proxy: self.seen.client.via_proxy,
            observed,
            threshold,
            extra,
            evidence,
            accounts,
            active_for_secs: (now - state.first_seen).max(0.0),
            config: *config,
            read_at_ns: 0,
            seen_at: now,
        });
    }
}

/// What a storefront-wide wave calls for: a storefront-wide alert, and
/// when most of its clients share a network, a decision on that network.
pub(super) fn wave_findings(
    storefront: &Arc<str>,
    seen: &Seen<'_>,
    detector: Detector,
    config: &AppDetectorConfig,
    surge: &super::wave::Surge,
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
        read_at_ns: 0,
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
            threshold: super::wave::MIN_SOURCES as u64,
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

/// Counts one observation and fires what it trips.
pub(super) fn count(
    state: &mut ClientState,
    detectors: &AppDetectors,
    seen: &Seen<'_>,
    out: &mut Findings<'_, '_>,
    keep: f64,
) {
    let now = seen.now;
    match &seen.what {
        Observation::Request {
            target,
            status,
            user_agent,
            asset,
            hits,
            login_failed,
        } => {
            let flood = detectors.get(Detector::HttpFlood);
            let weight = if *asset { 1 } else { 10 };
            let tenths = state.requests.add(now, flood.window_secs(), weight);
            let suspicious = hits.signature.is_some()
                || hits.attack_tool.is_some()
                || *login_failed
                || (400..500).contains(status);
            if suspicious {
                state.note(target, user_agent);
            }
            let limit = flood.per_source as u64 * 10;
            if flood.per_source > 0 && tenths >= limit {
                state.note(target, user_agent);
                out.fire(
                    state,
                    Detector::HttpFlood,
                    flood,
                    tenths / 10,
                    flood.per_source as u64,
                    [0, 0],
                    format!(
                        "{} requests in {:?} (threshold {}, assets count a tenth)",
                        tenths / 10,
                        flood.window,
                        flood.per_source
                    ),
                );
            }
            if let Some(tool) = hits.attack_tool {
                let c = detectors.get(Detector::AttackTool);
                let n = state.tool_hits.add(now, c.window_secs(), 1);
                if c.per_source > 0 && n >= c.per_source as u64 {
                    out.fire(
                        state,
                        Detector::AttackTool,
                        c,
                        n,
                        c.per_source as u64,
                        [0, 0],
                        format!("{n} requests from the attack tool `{tool}`"),
                    );
                }
            }
            scan(state, detectors, seen, out, *status, hits);
            if *login_failed {
                login_failure(state, detectors, now, None, out, keep);
            }
        }
        Observation::LoginFailed { account } => {
            login_failure(state, detectors, now, *account, out, keep)
        }
        Observation::LoginOk {
            account: Some(account),
        } => {
            let c = detectors.get(Detector::AccountTakeover);
            let others =
                state
                    .failed_accounts
                    .count_other_than(Some(*account), now, c.window_secs());
            if c.distinct > 0 && others >= c.distinct as u64 {
                out.fire(
                    state,
                    Detector::AccountTakeover,
                    c,
                    others,
                    c.distinct as u64,
                    [0, 0],
                    format!(
                        "a login that worked after failed logins on {others} other accounts in {:?} (threshold {})",
                        c.window, c.distinct
                    ),
                );
            }
        }
        Observation::Payment {
            declined,
            card,
            amount,
        } => {
            let c = detectors.get(Detector::CardTesting);
            let small = amount.is_some_and(|a| a <= c.small_amount);
            let probes = if *declined || small {
                state.card_probes.add(now, c.window_secs(), 1)
            } else {
                state.card_probes.value(now, c.window_secs())
            };
            let cards = match card {
                // Cards that were declined: a shopper whose second card
                // works has tried two, not three.
                Some(card) if *declined => state.cards.add(*card, now, keep, c.window_secs()),
                Some(_) => state.cards.count_other_than(None, now, c.window_secs()),
                None => state.cards.count_other_than(None, now, c.window_secs()),
            };
            if c.per_source > 0 && probes >= c.per_source as u64 {
                out.fire(
                    state,
                    Detector::CardTesting,
                    c,
                    probes,
                    c.per_source as u64,
                    [cards, 0],
                    format!(
                        "{probes} declined or small (<= {}) payments with {cards} cards in {:?} (threshold {})",
                        c.small_amount, c.window, c.per_source
                    ),
                );
            } else if c.distinct > 0 && cards >= c.distinct as u64 {
                out.fire(
                    state,
                    Detector::CardTesting,
                    c,
                    cards,
                    c.distinct as u64,
                    [probes, 1],
                    format!(
                        "payments with {cards} distinct cards in {:?} (threshold {})",
                        c.window, c.distinct
                    ),
                );
            }
        }
        Observation::RateLimited => {
            let flood = detectors.get(Detector::HttpFlood);
            let tenths = state.requests.add(now, flood.window_secs(), 10);
            if flood.per_source > 0 && tenths >= flood.per_source as u64 * 10 {
                out.fire(
                    state,
                    Detector::HttpFlood,
                    flood,
                    tenths / 10,
                    flood.per_source as u64,
                    [1, 0],
                    format!(
                        "{} requests in {:?}, the server's own rate limit refusing them (threshold {})",
                        tenths / 10,
                        flood.window,
                        flood.per_source
                    ),
                );
            }
        }
        Observation::LoginOk { account: None } | Observation::Other => {}
    }
}

fn scan(
    state: &mut ClientState,
    detectors: &AppDetectors,
    seen: &Seen<'_>,
    out: &mut Findings<'_, '_>,
    status: u16,
    hits: &Hits,
) {
    let c = detectors.get(Detector::Scanner);
    let now = seen.now;
    // A page's own assets (a script under /vendor/, a missing image) say
    // nothing about the client; only a sure signature counts on them.
    let asset = matches!(seen.what, Observation::Request { asset: true, .. });
    let keep = c.window_secs();
    if let Some((id, confidence)) = &hits.signature
        && (!asset || *confidence == Confidence::High)
    {
        match confidence {
            Confidence::High => out.fire(
                state,
                Detector::Scanner,
                c,
                1,
                1,
                [1, 0],
                format!("a request matching the high-confidence signature `{id}`"),
            ),
            Confidence::Medium => {
                // Distinct signatures: one page visited three times is not
                // three probes.
                let n = state
                    .signatures
                    .add(Pseudonym::of_label(id), now, keep, c.window_secs());
                if c.distinct > 0 && n >= c.distinct as u64 {
                    out.fire(
                        state,
                        Detector::Scanner,
                        c,
                        n,
                        c.distinct as u64,
                        [2, 0],
                        format!(
                            "requests matching {n} signatures (last `{id}`) in {:?} (threshold {})",
                            c.window, c.distinct
                        ),
                    );
                }
            }
        }
    }
    // Client errors, but not failed logins (401) or the server's own rate
    // limit (429): those have their own detectors.
    if !asset && (400..500).contains(&status) && status != 401 && status != 429 {
        let n = state.client_errors.add(now, c.window_secs(), 1);
        if c.per_source > 0 && n >= c.per_source as u64 {
            out.fire(
                state,
                Detector::Scanner,
                c,
                n,
                c.per_source as u64,
                [0, 0],
                format!(
                    "{n} client errors (4xx) in {:?} (threshold {})",
                    c.window, c.per_source
                ),
            );
        }
    }
}

fn login_failure(
    state: &mut ClientState,
    detectors: &AppDetectors,
    now: f64,
    account: Option<Pseudonym>,
    out: &mut Findings<'_, '_>,
    keep: f64,
) {
    let c = detectors.get(Detector::CredentialStuffing);
    let failures = state.login_failures.add(now, c.window_secs(), 1);
    let accounts = match account {
        Some(a) => state.failed_accounts.add(a, now, keep, c.window_secs()),
        None => state
            .failed_accounts
            .count_other_than(None, now, c.window_secs()),
    };
    let by_count = c.per_source > 0 && failures >= c.per_source as u64;
    let by_accounts = c.distinct > 0 && accounts >= c.distinct as u64;
    if by_count || by_accounts {
        let (observed, threshold) = if by_count {
            (failures, c.per_source as u64)
        } else {
            (accounts, c.distinct as u64)
        };
        out.fire(
            state,
            Detector::CredentialStuffing,
            c,
            observed,
            threshold,
            [failures, accounts],
            format!(
                "{failures} failed logins on {accounts} accounts in {:?} (thresholds {} logins, {} accounts)",
                c.window, c.per_source, c.distinct
            ),
        );
    }
}
