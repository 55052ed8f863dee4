//! The exact-address tables filled to capacity, drained and refilled: every
//! listed address must drop in the kernel and every other one pass, whatever
//! moves the inserts needed.

use std::{
    cell::Cell,
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::Result;
use ensuresec_agent::{
    config::MapSizes,
    edit::{Op, apply},
    error::Error,
    store::{RawMap, Store},
};
use ensuresec_common::{
    entry::Target,
    exact::{WAYS_V4, WAYS_V6},
    maps::{
        Control, FLAG_ALLOW, FLAG_BLOCK, FLAGS_BLOCKING, ListEntry, MAP_CONTROL, MAP_X4_KEYS,
        MAP_X4_VALS, MAP_X6_KEYS, MAP_X6_VALS,
    },
};
use ensuresec_tests::{
    kernel::{Kernel, XDP_DROP, XDP_PASS, block_forever},
    packet::*,
};
use proptest::{
    prelude::*,
    test_runner::{TestCaseError, TestRunner},
};

const CAPACITY: u32 = 64;

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
                Target::V4(a) => udp_from(*a),
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
        k.store.write()?.edit(&[(*t, block_forever())])?;
        listed.push(*t);
    }
    let batch: Vec<(Target, Op)> = v4[32..64]
        .iter()
        .chain(&v6[32..64])
        .map(|t| (*t, block_forever()))
        .collect();
    k.store.write()?.edit(&batch)?;
    listed.extend(batch.iter().map(|(t, _)| *t));
    check(&k, &listed, &pool[128..160])?;

    // Full: one more is refused and changes nothing.
    let err = k
        .store
        .write()?
        .edit(&[(v4[64], block_forever())])
        .unwrap_err();
    assert!(err.to_string().contains("capacity is 64"), "{err}");
    check(&k, &listed, &v4[64..80])?;

    // Drain every other entry, refill with new ones, several rounds.
    for round in 0..4 {
        let drop: Vec<Target> = listed.iter().step_by(2).copied().collect();
        let removal: Vec<(Target, Op)> = drop.iter().map(|t| (*t, Op::Unblock)).collect();
        k.store.write()?.edit(&removal)?;
        listed.retain(|t| !drop.contains(t));
        let fresh4 = &v4[64 + round * 16..80 + round * 16];
        let fresh6 = &v6[64 + round * 16..80 + round * 16];
        let adds: Vec<(Target, Op)> = fresh4
            .iter()
            .chain(fresh6)
            .map(|t| (*t, block_forever()))
            .collect();
        k.store.write()?.edit(&adds)?;
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
        match k
            .store
            .write()
            .and_then(|w| w.edit(&[(t, block_forever())]))
        {
            Ok(_) => listed.push(t),
            Err(e) => {
                assert!(e.to_string().contains("capacity"), "{e}");
                refused += 1;
            }
        }
        // Now and then remove an old entry, so that moves meet freed slots.
        if listed.len() > 8 && rng.u8(..) < 40 {
            let gone = listed.remove(rng.usize(..listed.len()));
            k.store.write()?.edit(&[(gone, Op::Unblock)])?;
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

/// A kernel whose exact tables may fill `load_percent` of their slots (the
/// agent keeps them at half), so that batches often need moves.
fn loaded_kernel(capacity: u32, load_percent: u32) -> Result<Kernel> {
    let mut k = Kernel::new(MapSizes {
        exact_v4: capacity,
        exact_v6: capacity,
        cidr_v4: 16,
        cidr_v6: 16,
    })?;
    let control_map = RawMap::open(&k.pins.pins, MAP_CONTROL)?;
    let mut control: Control = control_map.get(&0u32)?.unwrap();
    control.x4_capacity = (control.x4_mask + 1) * WAYS_V4 as u32 * load_percent / 100;
    control.x6_capacity = (control.x6_mask + 1) * WAYS_V6 as u32 * load_percent / 100;
    control_map.set(&0u32, &control)?;
    k.store = Store::open(&k.pins.pins)?;
    Ok(k)
}

/// One random edit of a pool address: (address index, operation).
#[derive(Clone, Copy, Debug)]
enum Edit {
    Block(usize),
    Unblock(usize),
    Ban(usize),
    Unban(usize),
    Allow(usize),
    Unallow(usize),
}

fn edit_strategy(pool: usize) -> impl Strategy<Value = Edit> {
    (0..6u8, 0..pool).prop_map(|(kind, i)| match kind {
        0 => Edit::Block(i),
        1 => Edit::Unblock(i),
        2 => Edit::Ban(i),
        3 => Edit::Unban(i),
        4 => Edit::Allow(i),
        _ => Edit::Unallow(i),
    })
}

impl Edit {
    fn op(self, reason_id: u32) -> (usize, Op) {
        match self {
            Edit::Block(i) => (
                i,
                Op::Block {
                    expires_at_ns: 0,
                    reason_id,
                    now_secs: 1,
                },
            ),
            Edit::Unblock(i) => (i, Op::Unblock),
            Edit::Ban(i) => (
                i,
                Op::Ban {
                    expires_at_ns: u64::MAX,
                    now_secs: 1,
                },
            ),
            Edit::Unban(i) => (i, Op::Unban),
            Edit::Allow(i) => (
                i,
                Op::Allow {
                    from_config: false,
                    now_secs: 1,
                },
            ),
            Edit::Unallow(i) => (i, Op::Unallow),
        }
    }
}

/// The model's state after `edits`, or why the batch is refused.
fn desired(
    model: &HashMap<Target, ListEntry>,
    edits: &[(Target, Op)],
) -> Result<HashMap<Target, ListEntry>, String> {
    let mut next = model.clone();
    for (t, op) in edits {
        match apply(t, next.get(t).copied(), *op).map_err(|e| e.to_string())? {
            Some(e) => next.insert(*t, e),
            None => next.remove(t),
        };
    }
    Ok(next)
}

/// Every address's kernel verdict and listed entry against the model, and
/// every empty slot of the value arrays cleared.
fn verify(
    k: &Kernel,
    pool: &[Target],
    model: &HashMap<Target, ListEntry>,
) -> std::result::Result<(), TestCaseError> {
    for t in pool {
        let want = match model.get(t) {
            Some(e) if e.flags & FLAG_ALLOW == 0 && e.flags & FLAGS_BLOCKING != 0 => XDP_DROP,
            _ => XDP_PASS,
        };
        let f = match t {
            Target::V4(a) => udp_from(*a),
            Target::V6(a) => v6_packet(*a),
            _ => unreachable!(),
        };
        let got = k
            .run("ensuresec", &f)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got, want, "verdict of {}: {:?}", t, model.get(t));
    }
    let listed: HashMap<Target, ListEntry> = k
        .store
        .entries()
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .into_iter()
        .map(|l| (l.target, l.entry))
        .collect();
    prop_assert_eq!(&listed, model);
    for (keys, vals, ways) in [
        (MAP_X4_KEYS, MAP_X4_VALS, WAYS_V4),
        (MAP_X6_KEYS, MAP_X6_VALS, WAYS_V6),
    ] {
        let keys = RawMap::open(&k.pins.pins, keys).unwrap();
        let vals = RawMap::open(&k.pins.pins, vals).unwrap();
        let values: Vec<ListEntry> = vals.read_mapped().unwrap();
        let empty = |b: usize, w: usize| -> bool {
            if ways == WAYS_V4 && keys.name == MAP_X4_KEYS {
                let bucket: [u32; WAYS_V4] = keys.get(&(b as u32)).unwrap().unwrap();
                bucket[w] == 0
            } else {
                let bucket: [[u8; 16]; WAYS_V6] = keys.get(&(b as u32)).unwrap().unwrap();
                bucket[w] == [0; 16]
            }
        };
        for (slot, v) in values.iter().enumerate() {
            if empty(slot / ways, slot % ways) {
                prop_assert_eq!(
                    *v,
                    ListEntry::default(),
                    "{} slot {} not cleared",
                    vals.name,
                    slot
                );
            }
        }
    }
    Ok(())
}

/// The invariant behind every list: after any sequence of committed batches,
/// each address's kernel verdict and entry equal the desired state; after a
/// refused batch, the kernel holds exactly what it held before.
#[test]
fn random_batches_at_high_load_keep_kernel_equal_to_desired_state() {
    let mut rng = fastrand::Rng::with_seed(99);
    // More addresses of each family than the tables hold at 90 % load.
    let pool: Vec<Target> = (0..320)
        .map(|i| {
            if i % 2 == 0 {
                Target::V4(Ipv4Addr::from(rng.u32(1..u32::MAX)))
            } else {
                Target::V6(Ipv6Addr::from(rng.u128(1..u128::MAX)))
            }
        })
        .collect();
    // Each batch: its edits, and whether to keep edits the state refuses
    // (removing what is not listed), which refuses the whole batch.
    let batches = proptest::collection::vec(
        (
            proptest::collection::vec(edit_strategy(pool.len()), 1..64),
            proptest::bool::weighted(0.1),
        ),
        1..40,
    );
    // One kernel for every case (loading the programs is what costs): each
    // case starts from empty tables.
    let k = loaded_kernel(CAPACITY, 90).unwrap();
    // The same 32 cases every run: the assertions on how many batches ran
    // out of room below are about this load, not about a random draw of it
    // (a random draw once gave none).
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::with_cases(32),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let (committed, crowded) = (Cell::new(0), Cell::new(0));
    runner
        .run(&batches, |batches| {
            clear(&k).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut model: HashMap<Target, ListEntry> = HashMap::new();
            for (n, (batch, keep_bad)) in batches.iter().enumerate() {
                let mut edits: Vec<(Target, Op)> = Vec::new();
                for e in batch {
                    let (i, op) = e.op(n as u32 + 1);
                    edits.push((pool[i], op));
                    if !keep_bad && desired(&model, &edits).is_err() {
                        edits.pop();
                    }
                }
                let next = desired(&model, &edits);
                match (k.store.write().and_then(|w| w.edit(&edits)), next) {
                    (Ok(_), Ok(next)) => {
                        model = next;
                        committed.set(committed.get() + 1);
                    }
                    (Ok(_), Err(why)) => {
                        return Err(TestCaseError::fail(format!(
                            "batch {n} applied but the model refuses it: {why}"
                        )));
                    }
                    // Refused for the bad edit the model refuses it for.
                    (Err(e), Err(why)) => prop_assert_eq!(e.to_string(), why, "batch {}", n),
                    // A good batch is refused only for want of room.
                    (Err(e), Ok(_)) => {
                        prop_assert!(
                            matches!(e, Error::Capacity { .. } | Error::TableCrowded { .. }),
                            "batch {} refused: {}",
                            n,
                            e
                        );
                        crowded.set(crowded.get() + 1);
                    }
                }
                verify(&k, &pool, &model)?;
            }
            Ok(())
        })
        .unwrap();
    // The load was high enough to refuse some batches for room, and most
    // went through.
    assert!(crowded.get() > 0, "no batch ran out of room");
    assert!(
        committed.get() > 10 * crowded.get(),
        "{} committed, {} refused for room",
        committed.get(),
        crowded.get()
    );
}

/// Removes every entry, whoever owns it.
fn clear(k: &Kernel) -> Result<()> {
    let mut edits = Vec::new();
    for l in k.store.entries()? {
        edits.push((l.target, Op::Unban));
        if l.entry.flags & FLAG_BLOCK != 0 {
            edits.push((l.target, Op::Unblock));
        }
        if l.entry.flags & FLAG_ALLOW != 0 {
            edits.push((l.target, Op::Unallow));
        }
    }
    k.store.write()?.edit(&edits)?;
    assert!(k.store.entries()?.is_empty());
    Ok(())
}

/// The probe that found the defect: every address of a /16, shuffled, into a
/// table of exactly that capacity, in one batch.
#[test]
fn a_whole_slash_16_in_one_batch_is_listed_and_dropped() -> Result<()> {
    let k = Kernel::new(MapSizes {
        exact_v4: 65_536,
        exact_v6: 16,
        cidr_v4: 16,
        cidr_v6: 16,
    })?;
    let mut rng = fastrand::Rng::with_seed(5);
    for round in 0..3u32 {
        let mut addrs: Vec<Ipv4Addr> = (0..65_536u32)
            .map(|i| Ipv4Addr::from(0x0a00_0000 | (round << 16) | i))
            .collect();
        rng.shuffle(&mut addrs);
        let edits: Vec<(Target, Op)> = addrs
            .iter()
            .map(|a| (Target::V4(*a), block_forever()))
            .collect();
        let summary = k.store.write()?.edit(&edits)?;
        assert_eq!(summary.added, 65_536, "round {round}");
        assert_eq!(k.store.entries()?.len(), 65_536, "round {round}");
        for a in &addrs {
            assert_eq!(
                k.run("ensuresec", &udp_from(*a))?,
                XDP_DROP,
                "{a} in round {round}"
            );
        }
        // Empty it again for the next round.
        let removal: Vec<(Target, Op)> = addrs
            .iter()
            .map(|a| (Target::V4(*a), Op::Unblock))
            .collect();
        k.store.write()?.edit(&removal)?;
        assert!(k.store.entries()?.is_empty());
    }
    Ok(())
}
