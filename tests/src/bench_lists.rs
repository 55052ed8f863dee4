//! The lists and traffic both XDP benchmarks (`bench xdp`, `bench rig`)
//! measure: exact IPv4 addresses in 1.0.0.0-126.255.255.255 and prefixes in
//! the upper half (so an unlisted source is easy to pick and never inside a
//! prefix), the blocks that list them, and the benchmark source tables the
//! random templates draw from.

use std::{collections::HashSet, net::Ipv4Addr};

use ensuresec_agent::edit::Op;
use ensuresec_common::{entry::Target, maps::BenchSource};
use ipnet::Ipv4Net;

/// IPv4 source offset in an untagged frame (where the random templates
/// write their source).
pub const SRC_OFFSET: u32 = 26;

/// `n` distinct addresses in 1.0.0.0-126.255.255.255.
pub fn exact_addresses(n: usize, rng: &mut fastrand::Rng) -> Vec<Ipv4Addr> {
    let mut set = HashSet::with_capacity(n);
    while set.len() < n {
        set.insert(Ipv4Addr::from(rng.u32(0x0100_0000..0x7f00_0000)));
    }
    set.into_iter().collect()
}

/// `n` distinct prefixes of /12 to /28 at random places in 128.0.0.0/1.
pub fn prefixes(n: usize, rng: &mut fastrand::Rng) -> Vec<Ipv4Net> {
    let mut set = HashSet::with_capacity(n);
    while set.len() < n {
        let len = rng.u8(12..=28);
        let addr = Ipv4Addr::from(rng.u32(0x8000_0000..=u32::MAX));
        set.insert(Ipv4Net::new(addr, len).expect("length in range").trunc());
    }
    set.into_iter().collect()
}

/// An operator's block of each address and prefix, forever.
pub fn block_edits(exact: &[Ipv4Addr], nets: &[Ipv4Net]) -> Vec<(Target, Op)> {
    let block = Op::Block {
        expires_at_ns: 0,
        reason_id: 0,
        now_secs: 0,
    };
    let mut edits: Vec<(Target, Op)> = exact.iter().map(|a| (Target::V4(*a), block)).collect();
    edits.extend(nets.iter().map(|n| (Target::Net4(*n), block)));
    edits
}

/// An address below 127.0.0.0 that is not in `exact`.
pub fn unlisted(exact: &[Ipv4Addr]) -> Ipv4Addr {
    let listed: HashSet<Ipv4Addr> = exact.iter().copied().collect();
    (1u32..)
        .map(|i| Ipv4Addr::from(0x0b00_0000 + i * 7919))
        .find(|a| !listed.contains(a))
        .expect("an unlisted address")
}

/// A host inside the first prefix.
pub fn in_prefix(nets: &[Ipv4Net]) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(nets[0].network()) | 1)
}

/// An address as a benchmark source table holds it (network order in memory).
pub fn be(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

fn mask_be(bits: u32) -> u32 {
    u32::from_ne_bytes(bits.to_be_bytes())
}

/// Random sources that pass: anywhere in 0.0.0.0/2 (exact addresses are
/// a vanishing share of it, prefixes are in the upper half).
pub fn pass_rows() -> Vec<BenchSource> {
    vec![BenchSource {
        addr_be: be(Ipv4Addr::new(1, 0, 0, 0)),
        host_mask_be: mask_be(0x3fff_ffff),
    }]
}

/// Random sources among the listed addresses.
pub fn exact_rows(exact: &[Ipv4Addr]) -> Vec<BenchSource> {
    exact
        .iter()
        .map(|a| BenchSource {
            addr_be: be(*a),
            host_mask_be: 0,
        })
        .collect()
}

/// Random hosts in random listed prefixes.
pub fn prefix_rows(nets: &[Ipv4Net]) -> Vec<BenchSource> {
    nets.iter()
        .map(|n| BenchSource {
            addr_be: be(n.network()),
            host_mask_be: mask_be(u32::from(n.hostmask())),
        })
        .collect()
}
