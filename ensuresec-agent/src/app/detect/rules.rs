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

/// A count held against its threshold (`0`: the check is off), with two
/// more numbers for the record.
struct Trip<'c> {
    detector: Detector,
    config: &'c AppDetectorConfig,
    observed: u64,
    threshold: u64,
    extra: [u64; 2],
}

impl Findings<'_, '_> {
    /// Fires `trip` when its threshold is set and reached; `what` words the
    /// evidence. Whether it tripped.
    fn check(
        &mut self,
        state: &mut ClientState,
        trip: Trip<'_>,
        what: impl FnOnce() -> String,
    ) -> bool {
        if trip.threshold == 0 || trip.observed < trip.threshold {
            return false;
        }
        self.fire(state, trip, what());
        true
    }

    fn fire(&mut self, state: &mut ClientState, trip: Trip<'_>, what: String) {
        let Trip {
            detector,
            config,
            observed,
            threshold,
            extra,
        } = trip;
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
            if !s.answered.is_empty() {
                let paths: Vec<&str> = s.answered.iter().map(String::as_str).collect();
                evidence.push_str(&format!(
                    "; answered 2xx (possible exposure) {}",
                    paths.join(" ")
                ));
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
            origin: Default::default(),
            seen_at: now,
        });
    }
}

/// Requests per client against the flood threshold.
fn flood_trip(flood: &AppDetectorConfig, requests: u64, extra: [u64; 2]) -> Trip<'_> {
    Trip {
        detector: Detector::HttpFlood,
        config: flood,
        observed: requests,
        threshold: flood.per_source as u64,
        extra,
    }
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
            let requests = state.requests.add(now, flood.window_secs(), weight) / 10;
            let suspicious = hits.signature.is_some()
                || hits.attack_tool.is_some()
                || *login_failed
                || (400..500).contains(status);
            if suspicious || (flood.per_source > 0 && requests >= flood.per_source as u64) {
                let answered = hits.signature.is_some() && (200..300).contains(status);
                state.note(target, user_agent, answered);
            }
            out.check(state, flood_trip(flood, requests, [0, 0]), || {
                format!(
                    "{requests} requests in {:?} (threshold {}, assets count a tenth)",
                    flood.window, flood.per_source
                )
            });
            if let Some(tool) = hits.attack_tool {
                let c = detectors.get(Detector::AttackTool);
                let n = state.tool_hits.add(now, c.window_secs(), 1);
                out.check(
                    state,
                    Trip {
                        detector: Detector::AttackTool,
                        config: c,
                        observed: n,
                        threshold: c.per_source as u64,
                        extra: [0, 0],
                    },
                    || format!("{n} requests from the attack tool `{tool}`"),
                );
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
            out.check(
                state,
                Trip {
                    detector: Detector::AccountTakeover,
                    config: c,
                    observed: others,
                    threshold: c.distinct as u64,
                    extra: [0, 0],
                },
                || {
                    format!(
                        "a login that worked after failed logins on {others} other accounts in {:?} (threshold {})",
                        c.window, c.distinct
                    )
                },
            );
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
                _ => state.cards.count_other_than(None, now, c.window_secs()),
            };
            let by_probes = Trip {
                detector: Detector::CardTesting,
                config: c,
                observed: probes,
                threshold: c.per_source as u64,
                extra: [cards, 0],
            };
            let tripped = out.check(state, by_probes, || {
                format!(
                    "{probes} declined or small (<= {}) payments with {cards} cards in {:?} (threshold {})",
                    c.small_amount, c.window, c.per_source
                )
            });
            if !tripped {
                let by_cards = Trip {
                    detector: Detector::CardTesting,
                    config: c,
                    observed: cards,
                    threshold: c.distinct as u64,
                    extra: [probes, 1],
                };
                out.check(state, by_cards, || {
                    format!(
                        "payments with {cards} distinct cards in {:?} (threshold {})",
                        c.window, c.distinct
                    )
                });
            }
        }
        Observation::RateLimited => {
            let flood = detectors.get(Detector::HttpFlood);
            let requests = state.requests.add(now, flood.window_secs(), 10) / 10;
            out.check(
                state,
                flood_trip(flood, requests, [1, 0]),
                || {
                    format!(
                        "{requests} requests in {:?}, the server's own rate limit refusing them (threshold {})",
                        flood.window, flood.per_source
                    )
                },
            );
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
    let trip = |observed, threshold, kind| Trip {
        detector: Detector::Scanner,
        config: c,
        observed,
        threshold,
        extra: [kind, 0],
    };
    // A page's own assets (a script under /vendor/, a missing image) say
    // nothing about the client; only a sure signature counts on them.
    let asset = matches!(seen.what, Observation::Request { asset: true, .. });
    let keep = c.window_secs();
    if let Some((id, confidence)) = &hits.signature
        && (!asset || *confidence == Confidence::High)
    {
        if *confidence == Confidence::High {
            out.check(state, trip(1, 1, 1), || {
                format!("a request matching the high-confidence signature `{id}`")
            });
        } else {
            // Distinct signatures: one page visited three times is not
            // three probes.
            let n = state
                .signatures
                .add(Pseudonym::of_label(id), now, keep, c.window_secs());
            out.check(state, trip(n, c.distinct as u64, 2), || {
                format!(
                    "requests matching {n} signatures (last `{id}`) in {:?} (threshold {})",
                    c.window, c.distinct
                )
            });
        }
    }
    // Client errors, but not failed logins (401) or the server's own rate
    // limit (429): those have their own detectors.
    if !asset && (400..500).contains(&status) && status != 401 && status != 429 {
        let n = state.client_errors.add(now, c.window_secs(), 1);
        out.check(state, trip(n, c.per_source as u64, 0), || {
            format!(
                "{n} client errors (4xx) in {:?} (threshold {})",
                c.window, c.per_source
            )
        });
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
    let what = || {
        format!(
            "{failures} failed logins on {accounts} accounts in {:?} (thresholds {} logins, {} accounts)",
            c.window, c.per_source, c.distinct
        )
    };
    let trip = |observed, threshold| Trip {
        detector: Detector::CredentialStuffing,
        config: c,
        observed,
        threshold,
        extra: [failures, accounts],
    };
    if !out.check(state, trip(failures, c.per_source as u64), what) {
        out.check(state, trip(accounts, c.distinct as u64), what);
    }
}
