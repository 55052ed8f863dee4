//! Invariants of the shared state under concurrent writers: whatever the agent
//! and the CLI do at the same time, the control record, the lists and the
//! kernel's verdicts agree.

use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Result;
use ensuresec_agent::{
    clock,
    config::MapSizes,
    detect::{
        decide::{self, Lift},
        plan::Plan,
        rules::Detection,
    },
    edit::Op,
    error::Error,
    store::{Store, decisions::addr_key},
};
use ensuresec_common::{
    decisions::{Action, DecisionKey, DecisionRecord, Detector, SCOPE_SOURCE},
    entry::Target,
    features::{DestKey, Throttle, class, v4_key},
    maps::{DEFAULT_DECISIONS, ListEntry},
};
use ensuresec_tests::{
    kernel::{Kernel, XDP_DROP, XDP_PASS, block_forever},
    packet::*,
    wait::eventually,
};

/// Prefix `i` of the 256 the CLI side adds and removes: 100.64.i.0/24.
fn prefix(i: u32) -> Target {
    format!("100.64.{i}.0/24").parse().unwrap()
}

/// The agent throttles and budgets in a loop (its decide/lift path) while an
/// operator adds 256 prefixes one command at a time and removes every other
/// one. Afterwards the control record points at a trie holding exactly the
/// listed prefixes, its throttle and budget counts match their maps, and the
/// kernel drops every listed prefix and nothing else.
#[test]
fn agent_mitigations_and_cli_prefix_edits_do_not_lose_each_other() -> Result<()> {
    let k = Kernel::new(MapSizes {
        exact_v4: 1024,
        exact_v6: 1024,
        cidr_v4: 512,
        cidr_v6: 64,
    })?;
    let done = Arc::new(AtomicBool::new(false));
    let agent = {
        let pins = k.pins.pins.clone();
        let done = done.clone();
        std::thread::spawn(move || -> Result<u64> {
            let store = Store::open(&pins)?;
            let mut rounds = 0u64;
            let t = Throttle {
                rate_pps: 100,
                burst: 100,
                expires_at_ns: u64::MAX,
                limit_classes: class::ALL,
                drop_classes: 0,
            };
            while !done.load(Ordering::Relaxed) {
                let source = v4_key(u32::from_ne_bytes([192, 0, 2, (rounds % 200) as u8]));
                let dest = DestKey::new(v4_key(u32::from_ne_bytes([10, 0, 0, 1])), 80, 6);
                // One write lock per decision, as the agent takes it.
                store.write()?.set_throttle(&source, &t)?;
                store.write()?.set_budget(&dest, &t)?;
                store.write()?.remove_throttle(&source)?;
                store.write()?.remove_budget(&dest)?;
                rounds += 1;
            }
            // Leave one of each in force.
            store
                .write()?
                .set_throttle(&v4_key(u32::from_ne_bytes([192, 0, 2, 250])), &t)?;
            Ok(rounds)
        })
    };
    let cli = Store::open(&k.pins.pins)?;
    for i in 0..256 {
        cli.write()?.edit(&[(prefix(i), block_forever())])?;
    }
    for i in (0..256).step_by(2) {
        cli.write()?.edit(&[(prefix(i), Op::Unblock)])?;
    }
    done.store(true, Ordering::Relaxed);
    let rounds = agent.join().expect("agent thread")?;
    assert!(rounds > 10, "the agent side ran only {rounds} rounds");

    let listed: Vec<Target> = k
        .store
        .prefix_entries()?
        .into_iter()
        .map(|l| l.target)
        .collect();
    let expected: Vec<Target> = (1..256).step_by(2).map(prefix).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "the live trie holds the listed prefixes");
    for i in 0..256u32 {
        let inside = Ipv4Addr::new(100, 64, i as u8, 9);
        let want = if i % 2 == 1 { XDP_DROP } else { XDP_PASS };
        assert_eq!(k.run("ensuresec", &udp_from(inside))?, want, "{inside}");
    }
    let control = k.store.control()?;
    assert_eq!(control.throttles, 1, "one throttle is in force");
    assert_eq!(control.budgets, 0, "no budget is in force");
    Ok(())
}

const SOURCE: &str = "192.0.2.44";

fn source_key() -> DecisionKey {
    DecisionKey::new(addr_key(SOURCE.parse().unwrap()), 0, 0, SCOPE_SOURCE)
}

fn detection() -> Detection {
    Detection {
        detector: Detector::HalfOpen,
        observed: 300,
        threshold: 100,
        extra: [0; 2],
        storefront_id: 0,
    }
}

/// The agent's ban of `SOURCE`, for `ttl`, as its decision path writes it.
fn auto_ban(k: &Kernel, ttl: Duration, strikes: u32) -> Result<()> {
    decide::apply(
        &k.store.write()?,
        &source_key(),
        &detection(),
        Plan::Ban { ttl },
        strikes,
        clock::mono_ns(),
    )?;
    Ok(())
}

/// Waits until the decision on `SOURCE` has run out.
fn until_the_ban_expired(k: &Kernel) -> Result<()> {
    let expires = k
        .store
        .decision(&source_key())?
        .expect("a decision")
        .expires_at_ns;
    eventually(Duration::from_secs(2), "the ban to expire", || {
        Ok((clock::mono_ns() > expires).then_some(()))
    })
}

fn lift(k: &Kernel, why: Lift) -> Result<()> {
    let record = k.store.decision(&source_key())?.expect("a decision");
    decide::lift(&k.store.write()?, &source_key(), &record, why)?;
    Ok(())
}

fn dropped(k: &Kernel) -> Result<bool> {
    Ok(k.run("ensuresec", &udp_from(SOURCE.parse()?))? == XDP_DROP)
}

fn entry(k: &Kernel) -> Result<ListEntry> {
    Ok(k.store
        .entries_for(&SOURCE.parse()?)?
        .expect("the source is listed"))
}

fn small_kernel() -> Result<Kernel> {
    Kernel::new(MapSizes {
        exact_v4: 1024,
        exact_v6: 1024,
        cidr_v4: 64,
        cidr_v6: 64,
    })
}

/// An operator's block added over an automatic ban belongs to the operator:
/// lifting the decision (as `decisions rm` does) leaves it in force.
#[test]
fn operator_block_over_an_auto_ban_survives_the_decisions_lift() -> Result<()> {
    let k = small_kernel()?;
    auto_ban(&k, Duration::from_secs(600), 1)?;
    assert!(dropped(&k)?);
    k.store
        .write()?
        .edit(&[(SOURCE.parse()?, block_forever())])?;
    lift(&k, Lift::ByHand)?;
    assert!(
        dropped(&k)?,
        "the operator's block was removed with the ban"
    );
    assert_eq!(
        entry(&k)?.expires_at_ns,
        0,
        "the operator's block never expires"
    );
    Ok(())
}

/// Likewise when the ban runs out: the agent's expiry lift leaves the
/// operator's block.
#[test]
fn operator_block_over_an_auto_ban_survives_the_bans_expiry() -> Result<()> {
    let k = small_kernel()?;
    auto_ban(&k, Duration::from_millis(200), 1)?;
    k.store
        .write()?
        .edit(&[(SOURCE.parse()?, block_forever())])?;
    until_the_ban_expired(&k)?;
    // The agent's upkeep: the decision has expired, so it is lifted.
    lift(&k, Lift::Expired)?;
    assert!(
        dropped(&k)?,
        "the operator's block was removed when the ban expired"
    );
    Ok(())
}

/// An automatic ban on an address the operator blocked for good does not cut
/// the block to the ban's TTL.
#[test]
fn an_auto_ban_never_shortens_an_operators_block_forever() -> Result<()> {
    let k = small_kernel()?;
    k.store
        .write()?
        .edit(&[(SOURCE.parse()?, block_forever())])?;
    auto_ban(&k, Duration::from_millis(200), 1)?;
    until_the_ban_expired(&k)?;
    assert!(dropped(&k)?, "the permanent block ended with the ban");
    Ok(())
}

/// Lifting a decision by hand says it was a false positive: the source's
/// strikes are forgotten, so its next ban is not escalated.
#[test]
fn lifting_a_decision_by_hand_forgets_the_strikes() -> Result<()> {
    let k = small_kernel()?;
    auto_ban(&k, Duration::from_secs(600), 2)?;
    lift(&k, Lift::ByHand)?;
    assert_eq!(
        k.store.offender(&source_key().addr)?.map(|o| o.strikes),
        None,
        "strikes survived a lift by hand"
    );
    Ok(())
}

/// Reason texts an import interns are not freed as unused while the import
/// is still being prepared: its entries do not exist yet when the table
/// fills up and stale texts are cleared.
#[test]
fn a_full_reason_table_keeps_the_texts_an_import_just_interned() -> Result<()> {
    let k = small_kernel()?;
    let w = k.store.write()?;
    let mut reasons = w.reasons()?;
    // Fill the table with texts no entry uses, leaving a little room.
    let stale = (0..16_383 - 100)
        .map(|i| format!("old list {i}"))
        .collect::<Vec<_>>();
    for text in &stale {
        w.intern_reason(&mut reasons, text, || w.reason_ids_in_use())?;
    }
    // An import with 300 labels: the table fills part-way through it.
    let mut reasons = w.reasons()?;
    let mut edits = Vec::new();
    for i in 0..300u32 {
        let text = format!("spamhaus SBL{i}");
        let reason_id = w.intern_reason(&mut reasons, &text, || w.reason_ids_in_use())?;
        let target: Target = format!("198.18.{}.{}", i / 256, i % 256).parse()?;
        edits.push((
            target,
            Op::Block {
                expires_at_ns: 0,
                reason_id,
                now_secs: 1,
            },
        ));
    }
    w.edit(&edits)?;
    let texts = w.reasons()?;
    for (i, (target, op)) in edits.iter().enumerate() {
        let Op::Block { .. } = op else { unreachable!() };
        let entry = w.entries_for(target)?.expect("listed");
        assert_eq!(
            texts.text(entry.reason_id),
            Some(format!("spamhaus SBL{i}").as_str()),
            "{target}"
        );
    }
    Ok(())
}

/// Decisions on one source merge and replace each other without leaving
/// anything behind: a scan's drop adds its class without lowering the SYN
/// limit; a ban that replaces the throttle takes the throttle out of the
/// kernel; lifting the ban leaves the source with nothing.
#[test]
fn decisions_on_one_source_merge_and_replace_cleanly() -> Result<()> {
    let k = small_kernel()?;
    let detection = |detector| Detection {
        detector,
        observed: 1,
        threshold: 1,
        extra: [0; 2],
        storefront_id: 0,
    };
    let ttl = Duration::from_secs(600);
    let apply = |detector, plan| -> Result<()> {
        decide::apply(
            &k.store.write()?,
            &source_key(),
            &detection(detector),
            plan,
            1,
            clock::mono_ns(),
        )?;
        Ok(())
    };
    apply(
        Detector::SynFlood,
        Plan::Throttle {
            pps: 200,
            limit: class::SYN,
            drop: 0,
            ttl,
        },
    )?;
    apply(
        Detector::PortScan,
        Plan::Throttle {
            pps: 20,
            limit: 0,
            drop: class::PROBE_UNTRACKED,
            ttl,
        },
    )?;
    let merged = k.store.decision(&source_key())?.expect("a decision");
    assert_eq!(
        (merged.rate, merged.limit_classes, merged.drop_classes),
        (200, class::SYN, class::PROBE_UNTRACKED),
        "a drop does not lower the limit"
    );
    assert_eq!(k.store.throttles()?.len(), 1);
    apply(Detector::HalfOpen, Plan::Ban { ttl })?;
    assert!(
        k.store.throttles()?.is_empty(),
        "the ban replaced the throttle"
    );
    assert_eq!(k.store.control()?.throttles, 0);
    assert!(dropped(&k)?);
    lift(&k, Lift::ByHand)?;
    assert!(!dropped(&k)?, "nothing is left of the source's decisions");
    assert!(k.store.entries_for(&SOURCE.parse()?)?.is_none());
    Ok(())
}

/// With the decisions map full, a detection is refused as `DecisionsFull`
/// and nothing of it reaches the kernel: no ban, no throttle, no list entry
/// that no record would ever lift.
#[test]
fn a_full_decisions_map_leaves_no_unrecorded_mitigation() -> Result<()> {
    let k = small_kernel()?;
    let alert = DecisionRecord {
        action: Action::Alert as u32,
        expires_at_ns: u64::MAX,
        ..Default::default()
    };
    {
        let w = k.store.write()?;
        for i in 0..DEFAULT_DECISIONS {
            let key = DecisionKey {
                addr: addr_key(Ipv4Addr::from(0x0a00_0000 + i).into()),
                ..source_key()
            };
            w.set_decision(&key, &alert)?;
        }
    }
    let ttl = Duration::from_secs(600);
    let plans = [
        Plan::Ban { ttl },
        Plan::Throttle {
            pps: 10,
            limit: class::SYN,
            drop: class::UDP_SERVICE,
            ttl,
        },
    ];
    for plan in plans {
        let refused = decide::apply(
            &k.store.write()?,
            &source_key(),
            &detection(),
            plan,
            1,
            clock::mono_ns(),
        );
        assert!(
            matches!(refused, Err(Error::DecisionsFull)),
            "{plan:?}: {refused:?}"
        );
        assert!(k.store.decision(&source_key())?.is_none());
        assert!(!dropped(&k)?, "{plan:?} reached the kernel");
        assert!(k.store.entries_for(&SOURCE.parse()?)?.is_none());
        assert!(k.store.throttles()?.is_empty());
    }
    // Room again: the same detection goes through.
    k.store.write()?.remove_decision(&DecisionKey {
        addr: addr_key(Ipv4Addr::from(0x0a00_0000).into()),
        ..source_key()
    })?;
    auto_ban(&k, ttl, 1)?;
    assert!(dropped(&k)?);
    Ok(())
}
