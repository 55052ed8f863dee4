//! `ensuresec explain ADDR`: every reason an address is treated as it is
//! right now, from the maps (what the kernel enforces) and the journal (who
//! decided, on what evidence): allow and block entries, covering prefixes
//! included; the agent's decisions on it, its networks and, when it is a
//! storefront address, on it as a destination; its strikes; the port
//! policy. Each with when it ends and the command that lifts it.

use std::net::IpAddr;

use ensuresec_common::{
    decisions::{
        Action, DecisionKey, DecisionRecord, SCOPE_DESTINATION, SCOPE_PREFIX, SCOPE_SOURCE,
    },
    entry::{Target, normalize_addr},
    maps::{FLAG_ALLOW, FLAG_ALLOW_FROM_CONFIG, FLAG_BAN, FLAG_BLOCK},
};
use serde::Serialize;

use crate::{
    clock,
    detect::decide::{describe_action, describe_evidence, detector_name},
    error::Result,
    journal::{Journal, Kind},
    store::{
        Listed, Store,
        decisions::{DecisionTarget, addr_key, key_addr},
    },
};

#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub address: String,
    /// What the kernel does with the address's packets now, in words.
    pub verdict: String,
    pub reasons: Vec<Reason>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Reason {
    /// `allow`, `block`, `ban`, `throttle`, `budget`, `alert`, `strikes`,
    /// `port_policy`.
    pub kind: &'static str,
    /// The entry or decision that applies: the address, a network covering
    /// it, the address as a destination.
    pub target: String,
    /// `operator`, `config` or `agent`.
    pub owner: &'static str,
    pub does: String,
    /// The operator's reason, or the detector and its evidence.
    pub why: Option<String>,
    /// Who: the operator's user, the import, the detector.
    pub by: Option<String>,
    pub since: Option<String>,
    /// RFC 3339; `None`: until lifted.
    pub ends: Option<String>,
    pub seconds_left: Option<u64>,
    /// The command that lifts it.
    pub lift: Option<String>,
}

fn ends(expires_at_ns: u64, now_ns: u64) -> (Option<String>, Option<u64>) {
    match clock::remaining(expires_at_ns, now_ns) {
        None => (None, None),
        Some(left) => (
            Some(clock::rfc3339(clock::unix_secs() + left.as_secs())),
            Some(left.as_secs()),
        ),
    }
}

/// Who put an entry there, from the journal: the user of the newest such
/// change, or the import that set it.
fn added_by(journal: Option<&Journal>, target: &str, kinds: &[Kind]) -> Option<String> {
    let journal = journal?;
    if let Ok(Some(row)) = journal.list_row(target)
        && let Some(op) = row.operation
        && let Ok(Some(op)) = journal.operation(op)
    {
        return Some(format!(
            "{} (operation {}: {})",
            op.actor, op.id, op.command
        ));
    }
    let entry = journal.latest_about(target, kinds).ok().flatten()?;
    Some(format!(
        "{} at {}",
        entry.entry.actor,
        clock::rfc3339_ms(entry.entry.at_ms)
    ))
}

/// The application evidence the journal kept for a decision on `target`.
fn app_evidence(journal: Option<&Journal>, target: &str) -> Option<String> {
    let row = journal?
        .latest_about(target, &[Kind::Decision])
        .ok()
        .flatten()?;
    let text = row.entry.detail.get("app_evidence")?.as_str()?.to_string();
    Some(match row.entry.storefront {
        Some(s) => format!("{text} (storefront {s})"),
        None => text,
    })
}

fn decision_reason(
    key: &DecisionKey,
    record: &DecisionRecord,
    journal: Option<&Journal>,
    now_ns: u64,
) -> Reason {
    let target = DecisionTarget(*key).to_string();
    let kind = match Action::from_id(record.action) {
        Some(Action::Ban) => "ban",
        Some(Action::Throttle) => "throttle",
        Some(Action::Budget) => "budget",
        _ => "alert",
    };
    let mut why = format!(
        "{}: {}",
        detector_name(record.detector),
        describe_evidence(record)
    );
    if record.strikes > 0 {
        why += &format!("; strike {}", record.strikes);
    }
    if let Some(app) = app_evidence(journal, &target) {
        why += &format!("; {app}");
    }
    let (ends, seconds_left) = ends(record.expires_at_ns, now_ns);
    Reason {
        kind,
        owner: "agent",
        does: describe_action(record),
        why: Some(why),
        by: Some(format!(
            "the agent's {} detector",
            detector_name(record.detector)
        )),
        since: Some(clock::rfc3339(record.created_secs)),
        ends,
        seconds_left,
        lift: Some(format!("ensuresec decisions rm {target}")),
        target,
    }
}

fn list_reasons(
    l: &Listed,
    store: &Store,
    journal: Option<&Journal>,
    now_ns: u64,
    out: &mut Vec<Reason>,
) -> Result<()> {
    let target = l.target.to_string();
    let e = &l.entry;
    if e.flags & FLAG_ALLOW != 0 {
        let config = e.flags & FLAG_ALLOW_FROM_CONFIG != 0;
        out.push(Reason {
            kind: "allow",
            target: target.clone(),
            owner: if config { "config" } else { "operator" },
            does: "never dropped: the allowlist wins over every block and decision".into(),
            by: if config {
                Some("the agent's config (allowlist.entries)".into())
            } else {
                added_by(journal, &target, &[Kind::Allow])
            },
            since: Some(clock::rfc3339(e.added_at_secs)),
            lift: Some(if config {
                "remove it from allowlist.entries in the agent's config and restart the agent"
                    .into()
            } else {
                format!("ensuresec allow rm {target}")
            }),
            ..Default::default()
        });
    }
    if e.flags & FLAG_BLOCK != 0 && (e.expires_at_ns == 0 || e.expires_at_ns > now_ns) {
        let (ends, seconds_left) = ends(e.expires_at_ns, now_ns);
        out.push(Reason {
            kind: "block",
            target: target.clone(),
            owner: "operator",
            does: "drops everything from it".into(),
            why: store.reason_text(e.reason_id)?,
            by: added_by(journal, &target, &[Kind::Block, Kind::Reconcile]),
            since: Some(clock::rfc3339(e.added_at_secs)),
            ends,
            seconds_left,
            lift: Some(format!("ensuresec block rm {target}")),
        });
    }
    if e.flags & FLAG_BAN != 0 && e.ban_expires_at_ns > now_ns {
        // The ban's decision says why; one without is lifted from the list.
        let key = match l.target {
            Target::V4(_) | Target::V6(_) => l.target.addr().map(|a| DecisionTarget::source(a).0),
            Target::Net4(n) => Some(DecisionTarget::network(n.into()).0),
            Target::Net6(n) => Some(DecisionTarget::network(n.into()).0),
        };
        match key.and_then(|k| store.decision(&k).ok().flatten().map(|r| (k, r))) {
            Some((k, r)) => out.push(decision_reason(&k, &r, journal, now_ns)),
            None => {
                let (ends, seconds_left) = ends(e.ban_expires_at_ns, now_ns);
                out.push(Reason {
                    kind: "ban",
                    target: target.clone(),
                    owner: "agent",
                    does: "drops everything from it".into(),
                    why: Some("an automatic ban whose decision record is gone".into()),
                    ends,
                    seconds_left,
                    lift: Some(format!("ensuresec block rm {target}")),
                    ..Default::default()
                });
            }
        }
    }
    Ok(())
}

/// Everything that applies to `addr` now.
pub fn explain(store: &Store, journal: Option<&Journal>, addr: IpAddr) -> Result<Explanation> {
    let addr = normalize_addr(addr);
    let now_ns = clock::mono_ns();
    let mut reasons = Vec::new();
    // The address's own entry first, then its networks, narrowest first.
    let own = Target::of_addr(addr);
    let mut covering: Vec<Listed> = store
        .entries_for(&own)?
        .map(|entry| Listed { target: own, entry })
        .into_iter()
        .collect();
    let mut networks: Vec<Listed> = store
        .prefix_entries()?
        .into_iter()
        .filter(|l| l.target.contains(addr))
        .collect();
    networks.sort_by_key(|l| std::cmp::Reverse(l.target.prefix_len()));
    covering.extend(networks);
    for l in &covering {
        list_reasons(l, store, journal, now_ns, &mut reasons)?;
    }
    // Decisions not on the lists: throttles and alerts on it or its
    // networks, budgets and alerts on it as a destination.
    let key = addr_key(addr);
    for (k, r) in store.decisions()? {
        if r.expires_at_ns <= now_ns || r.action == Action::Ban as u32 {
            continue;
        }
        let about = match k.scope {
            SCOPE_SOURCE | SCOPE_DESTINATION => k.addr == key,
            SCOPE_PREFIX => DecisionTarget(k)
                .list_target()
                .is_some_and(|t| t.contains(addr)),
            _ => false,
        };
        if about {
            reasons.push(decision_reason(&k, &r, journal, now_ns));
        }
    }
    if let Some(j) = journal {
        reasons.extend(failsafe_reasons(j, addr)?);
    }
    if let Some(o) = store.offender(&key)? {
        reasons.push(Reason {
            kind: "strikes",
            target: key_addr(&key).to_string(),
            owner: "agent",
            does: format!("{} earlier ban(s): its next ban is escalated", o.strikes),
            since: Some(clock::rfc3339(o.last_secs)),
            lift: Some(format!(
                "ensuresec decisions rm {} (while a decision is in force) forgets them",
                key_addr(&key)
            )),
            ..Default::default()
        });
    }
    let (enabled, tcp, udp) = store.port_policy()?;
    if enabled {
        reasons.push(Reason {
            kind: "port_policy",
            target: "every source".into(),
            owner: "config",
            does: format!(
                "TCP to ports other than {} and UDP to ports other than {} dropped",
                crate::commands::status::port_ranges(&tcp),
                crate::commands::status::port_ranges(&udp)
            ),
            lift: Some("port_policy in the agent's config".into()),
            ..Default::default()
        });
    }
    Ok(Explanation {
        address: addr.to_string(),
        verdict: verdict(&reasons),
        reasons,
    })
}

/// A storefront served on `addr` held to its fail-safe profile (the
/// journal's newest switch of each storefront names its addresses).
fn failsafe_reasons(journal: &Journal, addr: IpAddr) -> Result<Vec<Reason>> {
    let on = journal.failsafe_switches()?;
    Ok(on
        .into_iter()
        .filter(|r| r.entry.kind == Kind::FailsafeOn)
        .filter(|r| {
            r.entry.detail["addresses"].as_array().is_some_and(|a| {
                a.iter()
                    .filter_map(|t| t.as_str()?.parse::<Target>().ok())
                    .any(|t| t.contains(addr))
            })
        })
        .map(|r| Reason {
            kind: "failsafe",
            target: r.entry.storefront.clone().unwrap_or_default(),
            owner: "agent",
            does: "the storefront's fail-safe profile: tighter per-source thresholds for traffic to it, its new connections budgeted".into(),
            why: r.entry.detail["why"].as_str().map(str::to_string),
            since: Some(clock::rfc3339_ms(r.entry.at_ms)),
            lift: Some("ends when its incidents resolve (ensuresec incidents list)".into()),
            ..Default::default()
        })
        .collect())
}

/// The kernel's verdict, as the reasons add up: an allow wins; else any
/// block or ban drops everything; else throttles and budgets limit.
fn verdict(reasons: &[Reason]) -> String {
    let first = |kinds: &[&str]| reasons.iter().find(|r| kinds.contains(&r.kind));
    if let Some(r) = first(&["allow"]) {
        return format!("passed: allowlisted by {} ({})", r.target, r.owner);
    }
    if let Some(r) = first(&["block", "ban"]) {
        let until = r
            .ends
            .as_deref()
            .map_or("until lifted".to_string(), |e| format!("until {e}"));
        let n = reasons
            .iter()
            .filter(|r| r.kind == "block" || r.kind == "ban")
            .count();
        let more = if n > 1 {
            format!(" ({n} blocks; the longest decides)")
        } else {
            String::new()
        };
        return format!(
            "dropped: {} of {} by the {} {until}{more}",
            r.kind, r.target, r.owner
        );
    }
    if let Some(r) = first(&["throttle"]) {
        return format!("passed, limited: {} ({})", r.does, r.target);
    }
    let policy = if first(&["port_policy"]).is_some() {
        ", subject to the port policy"
    } else {
        ""
    };
    format!("passed{policy}")
}
