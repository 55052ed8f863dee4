//! Prefixes with both parts an entry may carry (the operator's block and the
//! agent's ban, each with its own expiry) beside allows and exact entries:
//! after any sequence of edits, every address's kernel verdict is what the
//! entries covering it say. Allow wins; otherwise a covering entry with a
//! live block or ban drops.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
};

use ensuresec_agent::{
    clock,
    config::MapSizes,
    edit::{Op, apply},
};
use ensuresec_common::{
    entry::Target,
    maps::{FLAG_ALLOW, ListEntry},
};
use ensuresec_tests::{
    kernel::{Kernel, XDP_DROP, XDP_PASS},
    packet::*,
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};

/// Nested and disjoint prefixes and exact addresses of both families, down to
/// the deepest levels of the IPv6 trie.
const TARGETS: &[&str] = &[
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.16/28",
    "10.1.2.17",
    "10.1.3.0/24",
    "2001:db8::/48",
    "2001:db8:0:1::/64",
    "2001:db8:0:1::/80",
    "2001:db8:0:1::5",
    "2001:db8:0:1::4/126",
    "2001:db8:0:2::/64",
];

/// Addresses inside and around them.
const PROBES: &[&str] = &[
    "10.1.2.17",
    "10.1.2.18",
    "10.1.2.40",
    "10.1.3.5",
    "10.1.9.9",
    "10.2.0.1",
    "2001:db8:0:1::5",
    "2001:db8:0:1::6",
    "2001:db8:0:1::8",
    "2001:db8:0:1:1::1",
    "2001:db8:0:2::1",
    "2001:db8:9::1",
    "2001:db9::1",
];

/// An expiry: long passed, far ahead, or never.
fn expiry(kind: u8) -> u64 {
    match kind {
        0 => 1,
        1 => clock::mono_ns() + 3_600_000_000_000,
        _ => 0,
    }
}

fn op(kind: u8, when: u8) -> Op {
    match kind {
        0 => Op::Block {
            expires_at_ns: expiry(when),
            reason_id: 0,
            now_secs: 1,
        },
        1 => Op::Unblock,
        // The agent's bans always end.
        2 => Op::Ban {
            expires_at_ns: expiry(when.min(1)),
            now_secs: 1,
        },
        3 => Op::Unban,
        4 => Op::Allow {
            from_config: false,
            now_secs: 1,
        },
        _ => Op::Unallow,
    }
}

fn frame_from(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => udp_from(a),
        IpAddr::V6(a) => {
            let udp = L4::Udp {
                sport: 1,
                dport: 53,
                payload: vec![],
            };
            let dst: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
            frame(&[], ipv6(a, dst, &[], &udp))
        }
    }
}

/// The verdict the entries covering `addr` give.
fn expected(model: &HashMap<Target, ListEntry>, addr: IpAddr) -> u32 {
    let now = clock::mono_ns();
    let covering: Vec<&ListEntry> = model
        .iter()
        .filter(|(t, _)| t.contains(addr))
        .map(|(_, e)| e)
        .collect();
    if covering.iter().any(|e| e.flags & FLAG_ALLOW != 0) {
        XDP_PASS
    } else if covering.iter().any(|e| e.blocks_at(now)) {
        XDP_DROP
    } else {
        XDP_PASS
    }
}

#[test]
fn blocks_and_bans_on_nested_prefixes_give_every_address_its_verdict() {
    let k = Kernel::new(MapSizes {
        exact_v4: 64,
        exact_v6: 64,
        cidr_v4: 64,
        cidr_v6: 64,
    })
    .unwrap();
    let targets: Vec<Target> = TARGETS.iter().map(|t| t.parse().unwrap()).collect();
    let probes: Vec<IpAddr> = PROBES.iter().map(|p| p.parse().unwrap()).collect();
    let edits = proptest::collection::vec((0..targets.len(), 0..6u8, 0..3u8), 1..40);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&edits, |edits| {
            // Each case starts from empty lists.
            let all: Vec<(Target, Op)> = targets
                .iter()
                .flat_map(|t| [(*t, Op::Unblock), (*t, Op::Unban), (*t, Op::Unallow)])
                .collect();
            for (t, o) in all {
                let _ = k.store.write().and_then(|w| w.edit(&[(t, o)]));
            }
            let mut model: HashMap<Target, ListEntry> = HashMap::new();
            for (i, kind, when) in edits {
                let (t, o) = (targets[i], op(kind, when));
                // Refused edits (nothing to remove) change nothing anywhere.
                let Ok(next) = apply(&t, model.get(&t).copied(), o) else {
                    continue;
                };
                k.store
                    .write()
                    .and_then(|w| w.edit(&[(t, o)]))
                    .map_err(|e| TestCaseError::fail(format!("{t} {o:?}: {e}")))?;
                match next {
                    Some(e) => model.insert(t, e),
                    None => model.remove(&t),
                };
            }
            for addr in &probes {
                let got = k
                    .run("ensuresec", &frame_from(*addr))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let covering: Vec<_> = model.iter().filter(|(t, _)| t.contains(*addr)).collect();
                prop_assert_eq!(got, expected(&model, *addr), "{}: {:?}", addr, covering);
            }
            Ok(())
        })
        .unwrap();
}
