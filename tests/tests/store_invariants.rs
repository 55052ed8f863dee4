//! Invariants of the shared state under concurrent writers: whatever the agent
//! and the CLI do at the same time, the control record, the lists and the
//! kernel's verdicts agree.

use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Result;
use ensuresec_agent::{config::MapSizes, edit::Op, store::Store};
use ensuresec_common::{
    entry::Target,
    features::{DestKey, Throttle, v4_key},
};
use ensuresec_tests::{
    kernel::{Kernel, XDP_DROP, XDP_PASS},
    packet::*,
};

fn block() -> Op {
    Op::Block {
        expires_at_ns: 0,
        reason_id: 0,
        now_secs: 0,
    }
}

fn packet_from(src: Ipv4Addr) -> Vec<u8> {
    let udp = L4::Udp {
        sport: 1,
        dport: 53,
        payload: vec![],
    };
    frame(
        &[],
        ipv4(src, Ipv4Addr::new(10, 0, 0, 1), &V4Opts::default(), &udp),
    )
}

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
            };
            while !done.load(Ordering::Relaxed) {
                let source = v4_key(u32::from_ne_bytes([192, 0, 2, (rounds % 200) as u8]));
                let dest = DestKey {
                    addr: v4_key(u32::from_ne_bytes([10, 0, 0, 1])),
                    port: 80,
                    proto: 6,
                    _pad: 0,
                };
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
        cli.write()?.edit(&[(prefix(i), block())])?;
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
        assert_eq!(k.run("ensuresec", &packet_from(inside))?, want, "{inside}");
    }
    let control = k.store.control()?;
    assert_eq!(control.throttles, 1, "one throttle is in force");
    assert_eq!(control.budgets, 0, "no budget is in force");
    Ok(())
}
