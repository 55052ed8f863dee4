//! The exact-address tables filled to capacity, drained and refilled: every
//! listed address must drop in the kernel and every other one pass, whatever
//! moves the inserts needed.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use ensuresec_agent::{
    config::MapSizes,
    edit::Op,
    store::{RawMap, Store},
};
use ensuresec_common::{
    entry::Target,
    exact::WAYS_V4,
    maps::{Control, MAP_CONTROL},
};
use ensuresec_tests::{
    kernel::{Kernel, XDP_DROP, XDP_PASS},
    packet::*,
};

const CAPACITY: u32 = 64;

fn block() -> Op {
    Op::Block {
        expires_at_ns: 0,
        reason_id: 0,
        now_secs: 0,
    }
}

fn v4_packet(src: Ipv4Addr) -> Vec<u8> {
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

fn v6_packet(src: Ipv6Addr) -> Vec<u8> {
    let udp = L4::Udp {
        sport: 1,
        dport: 53,
        payload: vec![],
    };
    frame(&[], ipv6(src, "2001:db8::1".parse().unwrap(), &[], &udp))
}

fn check(k: &Kernel, listed: &[Target], unlisted: &[Target]) -> Result<()> {
    for (targets, want) in [(listed, XDP_DROP), (unlisted, XDP_PASS)] {
        for t in targets {
            let f = match t {
                Target::V4(a) => v4_packet(*a),
                Target::V6(a) => v6_packet(*a),
                _ => unreachable!(),
            };
            assert_eq!(k.run("ensuresec", &f)?, want, "{t}");
        }
    }
    let mut got: Vec<Target> = k.store.entries()?.into_iter().map(|l| l.target).collect();
    let mut expect = listed.to_vec();
    got.sort();
    expect.sort();
    assert_eq!(got, expect);
    Ok(())
}

#[test]
fn fill_drain_refill_both_families() -> Result<()> {
    let k = Kernel::new(MapSizes {
        exact_v4: CAPACITY,
        exact_v6: CAPACITY,
        cidr_v4: 16,
        cidr_v6: 16,
    })?;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut pool: Vec<Target> = Vec::new();
    while pool.len() < 400 {
        let t = if pool.len().is_multiple_of(2) {
            Target::V4(Ipv4Addr::from(rng.u32(1..u32::MAX)))
        } else {
            Target::V6(Ipv6Addr::from(rng.u128(1..u128::MAX)))
        };
        if !pool.contains(&t) {
            pool.push(t);
        }
    }
    let (v4, v6): (Vec<Target>, Vec<Target>) = pool.iter().partition(|t| t.is_v4());
    let mut listed: Vec<Target> = Vec::new();
    // Fill both tables to capacity, one at a time and then in a batch.
    for t in v4[..32].iter().chain(&v6[..32]) {
        k.store.edit(&[(*t, block())])?;
        listed.push(*t);
    }
    let batch: Vec<(Target, Op)> = v4[32..64]
        .iter()
        .chain(&v6[32..64])
        .map(|t| (*t, block()))
        .collect();
    k.store.edit(&batch)?;
    listed.extend(batch.iter().map(|(t, _)| *t));
    check(&k, &listed, &pool[128..160])?;

    // Full: one more is refused and changes nothing.
    let err = k.store.edit(&[(v4[64], block())]).unwrap_err();
    assert!(err.to_string().contains("capacity is 64"), "{err}");
    check(&k, &listed, &v4[64..80])?;

    // Drain every other entry, refill with new ones, several rounds.
    for round in 0..4 {
        let drop: Vec<Target> = listed.iter().step_by(2).copied().collect();
        let removal: Vec<(Target, Op)> = drop.iter().map(|t| (*t, Op::Unblock)).collect();
        k.store.edit(&removal)?;
        listed.retain(|t| !drop.contains(t));
        let fresh4 = &v4[64 + round * 16..80 + round * 16];
        let fresh6 = &v6[64 + round * 16..80 + round * 16];
        let adds: Vec<(Target, Op)> = fresh4.iter().chain(fresh6).map(|t| (*t, block())).collect();
        k.store.edit(&adds)?;
        listed.extend(adds.iter().map(|(t, _)| *t));
        check(&k, &listed, &drop)?;
    }
    Ok(())
}

/// With the tables allowed to fill 90% of their slots (the agent keeps them
/// at half), inserts often find both buckets full and must move keys.
#[test]
fn moves_under_high_load_keep_every_key_findable() -> Result<()> {
    let mut k = Kernel::new(MapSizes {
        exact_v4: CAPACITY,
        exact_v6: CAPACITY,
        cidr_v4: 16,
        cidr_v6: 16,
    })?;
    let control_map = RawMap::open(&k.pins.pins, MAP_CONTROL)?;
    let mut control: Control = control_map.get(&0u32)?.unwrap();
    let slots4 = (control.x4_mask + 1) * WAYS_V4 as u32;
    control.x4_capacity = slots4 * 9 / 10;
    control_map.set(&0u32, &control)?;
    k.store = Store::open(&k.pins.pins)?;

    let mut rng = fastrand::Rng::with_seed(23);
    let mut listed: Vec<Target> = Vec::new();
    let mut refused = 0;
    for _ in 0..(slots4 * 2) {
        let t = Target::V4(Ipv4Addr::from(rng.u32(1..u32::MAX)));
        match k.store.edit(&[(t, block())]) {
            Ok(_) => listed.push(t),
            Err(e) => {
                assert!(e.to_string().contains("capacity"), "{e}");
                refused += 1;
            }
        }
        // Now and then remove an old entry, so that moves meet freed slots.
        if listed.len() > 8 && rng.u8(..) < 40 {
            let gone = listed.remove(rng.usize(..listed.len()));
            k.store.edit(&[(gone, Op::Unblock)])?;
        }
    }
    assert!(
        listed.len() as u32 > slots4 * 6 / 10,
        "filled to {} of {slots4}",
        listed.len()
    );
    assert!(refused > 0, "the load was high enough to refuse some");
    check(&k, &listed, &[Target::V4(Ipv4Addr::new(203, 0, 113, 1))])
}
