//! Traffic features the XDP program keeps per source and per protected
//! destination, the events it sends the agent, and the mitigation records the
//! agent writes back (throttles and new-connection budgets).
//!
//! Counters come in two forms: totals since the entry was created, and the
//! current window (`DetectConfig::window_ns`, one second by default), which the
//! XDP program resets when a packet arrives after the window ends. Every value is
//! per CPU; the agent sums the CPUs.

/// Source and destination addresses in one key type: IPv4 is `::ffff:a.b.c.d`.
pub type AddrKey = [u8; 16];

/// The key of an IPv4 address read from a packet (network order in memory).
#[inline(always)]
pub const fn v4_key(addr_ne: u32) -> AddrKey {
    let b = addr_ne.to_ne_bytes();
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, b[0], b[1], b[2], b[3],
    ]
}

/// UDP source ports of services abused for reflection and amplification:
/// chargen, DNS, NTP, SNMP, CLDAP, SSDP, memcached (and a few common others).
pub const REFLECTOR_PORTS: [u16; 10] = [19, 53, 123, 161, 389, 1900, 11211, 17, 111, 3702];

#[inline(always)]
pub fn is_reflector_port(port: u16) -> bool {
    let mut i = 0;
    while i < REFLECTOR_PORTS.len() {
        if REFLECTOR_PORTS[i] == port {
            return true;
        }
        i += 1;
    }
    false
}

/// Counters of one window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Monotonic ns at which this window began.
    pub start_ns: u64,
    pub packets: u32,
    pub bytes: u32,
    /// TCP with SYN and without ACK: connection attempts.
    pub syn: u32,
    pub synack: u32,
    /// TCP with ACK or RST, no data, and nothing that opens or closes: what an
    /// ACK/RST flood sends.
    pub ack_rst: u32,
    pub udp: u32,
    pub icmp: u32,
    pub frags: u32,
    /// UDP from a reflector source port (see `REFLECTOR_PORTS`).
    pub udp_reflect: u32,
    /// Distinct destination ports (bits of `port_sketch` set in this window).
    pub distinct_ports: u32,
    /// Distinct destination addresses (bits of `dst_sketch` set in this window).
    pub distinct_dsts: u32,
    /// Trip events this window sent, as three levels: packets in the low byte
    /// (the next trip fires at `trip_packets << level`), distinct ports in the
    /// next byte, distinct destinations in the third. Doubling levels let the
    /// agent re-evaluate a source as its traffic grows, with a handful of
    /// events per window at most.
    pub tripped: u32,
    pub port_sketch: [u64; 4],
    pub dst_sketch: [u64; 2],
}

/// Per source address, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub syn: u64,
    pub synack: u64,
    pub ack_only: u64,
    pub rst: u64,
    pub fin: u64,
    pub udp: u64,
    pub icmp: u64,
    pub frags: u64,
    /// Totals of the window's `ack_rst` and `udp_reflect`, so that the agent
    /// can take exact per-step deltas of every window counter.
    pub ack_rst: u64,
    pub udp_reflect: u64,
    pub window: Window,
}

/// One way of the per-source table: a set-associative per-CPU cache in an
/// array. A lookup checks `WAYS` slots; a new source takes the least recently
/// seen of them. An LRU hash map costs 45 ns per packet for a known source and
/// over 600 ns for a new one (a spoofed flood); this costs a few ns for either.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceSlot {
    pub key: AddrKey,
    pub stats: SourceStats,
}

/// Ways per set of the source and destination tables.
pub const FEATURE_WAYS: u32 = 2;

/// First slot of the set of a 16-byte key in a table of `mask + 1` sets.
#[inline(always)]
pub fn set_of(key: &AddrKey, extra: u32, seed: u64, mask: u32) -> u32 {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&key[..8]);
    lo.copy_from_slice(&key[8..]);
    let h = crate::exact::mix64(
        u64::from_ne_bytes(lo) ^ extra as u64 ^ crate::exact::mix64(u64::from_ne_bytes(hi) ^ seed),
    );
    ((h as u32) & mask) * FEATURE_WAYS
}

/// A protected destination: address, protocol and port. Ports the host does not
/// track (see `ES_DST_PORTS`) are folded into port 0, so that packets sprayed at
/// random ports cannot fill the map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DestKey {
    pub addr: AddrKey,
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// Per destination, per CPU. `window.distinct_dsts` counts distinct *sources*
/// here: many of them at once is what a spoofed flood looks like.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestStats {
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub new_conns: u64,
    pub window: Window,
}

/// One way of the per-destination table (see `SourceSlot`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestSlot {
    pub key: DestKey,
    pub _pad: u32,
    pub stats: DestStats,
}

impl DestKey {
    /// The port and protocol folded into the set hash.
    pub const fn extra(&self) -> u32 {
        (self.port as u32) << 8 | self.proto as u32
    }
}

/// Kernel-side trip wires and sampling, written by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectConfig {
    /// Zero: no feature extraction at all (the filter alone).
    pub enabled: u32,
    pub _pad0: u32,
    pub window_ns: u64,
    /// A source's window sends a trip event when any of these is reached on one CPU.
    pub trip_packets: u32,
    pub trip_ports: u32,
    pub trip_dsts: u32,
    /// A destination's window sends a trip event at this many packets on one CPU.
    pub trip_dst_packets: u32,
    /// CPUs the agent saw, to split throttle rates per CPU.
    pub cpus: u32,
    pub _pad: u32,
    /// Geometry of the feature tables: seed and set count minus one.
    pub seed: u64,
    pub source_mask: u32,
    pub dest_mask: u32,
}

/// Byte of `Window::tripped` holding each trip level.
pub const TRIP_PACKETS: u32 = 0;
pub const TRIP_PORTS: u32 = 8;
pub const TRIP_DSTS: u32 = 16;
/// Trip levels stop doubling here (about 16M times the first threshold).
pub const MAX_TRIP_LEVEL: u32 = 24;

/// Whether `count` reached the next level of the trip wire kept in byte
/// `shift` of `w.tripped` (first at `first`, then each doubling); advances the
/// level if so.
#[inline(always)]
pub fn trip(w: &mut Window, shift: u32, count: u32, first: u32) -> bool {
    let level = (w.tripped >> shift) & 0xff;
    if level < MAX_TRIP_LEVEL && (count as u64) >= (first as u64) << level {
        w.tripped += 1 << shift;
        return true;
    }
    false
}

/// The packet trip wire (see `trip`).
#[inline(always)]
pub fn packet_trip(w: &mut Window, trip_packets: u32) -> bool {
    let packets = w.packets;
    trip(w, TRIP_PACKETS, packets, trip_packets)
}

pub const EVENT_SOURCE_TRIP: u32 = 1;
pub const EVENT_DEST_TRIP: u32 = 2;

/// What the XDP program sends the agent through `ES_EVENTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    pub cpu: u32,
    pub time_ns: u64,
    /// Source (source trips) or destination (destination trips).
    pub addr: AddrKey,
    /// For a source trip, the destination of the packet that tripped it.
    pub peer: AddrKey,
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
    pub _pad2: u32,
    /// The window that tripped, on this CPU.
    pub window: Window,
}

/// Classes of packets, as bits: what a detector's evidence is made of, and
/// what a source-scoped mitigation acts on. "Replies" are packets that answer
/// a socket of this host (a SYN-ACK to its connect, UDP to a socket connected
/// to the sender), found with the kernel's own socket lookup.
pub mod class {
    /// TCP SYN without ACK: a connection attempt.
    pub const SYN: u32 = 1;
    /// SYN-ACK that answers no connect of this host.
    pub const SYNACK: u32 = 1 << 1;
    /// Bare ACK or RST (no data, nothing opened or closed).
    pub const ACK_RST: u32 = 1 << 2;
    /// UDP that is not a reply.
    pub const UDP: u32 = 1 << 3;
    /// UDP from a service (amplifier) port that is not a reply: reflection.
    pub const UDP_SERVICE: u32 = 1 << 4;
    /// Any ICMP or ICMPv6.
    pub const ICMP: u32 = 1 << 5;
    /// ICMP echo or timestamp request: a host probe.
    pub const ICMP_ECHO: u32 = 1 << 6;
    /// Any IP fragment.
    pub const FRAGMENT: u32 = 1 << 7;
    /// A probe (TCP without ACK, UDP not from a service port) to a port the
    /// host does not serve (not in the tracked ports).
    pub const PROBE_UNTRACKED: u32 = 1 << 8;
    /// Every packet.
    pub const ALL: u32 = u32::MAX;
}

/// A mitigation on one source, written by the agent (`ES_THROTTLE`): packets
/// of `drop_classes` are dropped, packets of `limit_classes` are held to the
/// rate, the rest of the source's traffic passes. Scoping by class is what
/// keeps a mitigation of spoofable evidence from cutting off the address's
/// owner: a shopper whose address was spoofed in a reflection flood still
/// browses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Throttle {
    /// Packets per second allowed, over all CPUs.
    pub rate_pps: u32,
    pub burst: u32,
    /// Monotonic ns after which the throttle no longer applies.
    pub expires_at_ns: u64,
    pub limit_classes: u32,
    pub drop_classes: u32,
}

/// Token bucket state, per CPU (`ES_THROTTLE_STATE`, `ES_BUDGET_STATE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Tokens in thousandths of a packet.
    pub milli_tokens: u64,
    pub last_ns: u64,
}

/// Refills and takes one token; returns whether the packet may pass.
/// `rate_pps` and `burst` are this CPU's share.
#[inline(always)]
pub fn take_token(b: &mut Bucket, rate_pps: u64, burst: u64, now_ns: u64) -> bool {
    let cap = burst.max(1) * 1000;
    if b.last_ns == 0 {
        b.milli_tokens = cap;
    } else {
        // In microseconds, capped at 100 s, so that rate * elapsed never
        // overflows (and needs no 128-bit multiply, which BPF lacks).
        let elapsed_us = (now_ns.saturating_sub(b.last_ns) / 1000).min(100_000_000);
        // rate (pps) * elapsed (us) / 1e6 packets = rate * elapsed / 1e3 milli-packets
        let refill = (rate_pps & 0xffff_ffff) * elapsed_us / 1000;
        b.milli_tokens = (b.milli_tokens + refill).min(cap);
    }
    b.last_ns = now_ns;
    if b.milli_tokens >= 1000 {
        b.milli_tokens -= 1000;
        true
    } else {
        false
    }
}

/// Sketch bit of a port (256 bits) or address (128 bits): a multiplicative hash.
#[inline(always)]
pub const fn sketch_bit(value: u32, bits: u32) -> u32 {
    (value.wrapping_mul(0x9e37_79b1) >> 24) % bits
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let mut b = Bucket::default();
        let mut passed = 0;
        for _ in 0..100 {
            if take_token(&mut b, 10, 5, 1_000_000_000) {
                passed += 1;
            }
        }
        assert_eq!(passed, 5, "the burst, all at one instant");
        // One second later: ten more (rate 10 pps), capped by the burst of 5.
        let mut later = 0;
        for i in 0..100 {
            if take_token(&mut b, 10, 5, 2_000_000_000 + i) {
                later += 1;
            }
        }
        assert_eq!(later, 5);
        // A tenth of a second later: one token.
        assert!(take_token(&mut b, 10, 5, 2_100_000_100));
        assert!(!take_token(&mut b, 10, 5, 2_100_000_200));
    }

    #[test]
    fn packet_trips_double() {
        let mut w = Window::default();
        let mut fired = Vec::new();
        for n in 1..=1000 {
            w.packets = n;
            if packet_trip(&mut w, 100) {
                fired.push(n);
            }
        }
        assert_eq!(fired, [100, 200, 400, 800]);
        // The other wires keep their own levels.
        let mut fired = Vec::new();
        for n in 1..=20 {
            if trip(&mut w, TRIP_DSTS, n, 4) {
                fired.push(n);
            }
        }
        assert_eq!(fired, [4, 8, 16]);
        assert_eq!(w.tripped & 0xff, 4, "packet levels untouched");
    }

    #[test]
    fn v4_keys_are_ipv4_mapped() {
        let a = std::net::Ipv4Addr::new(192, 0, 2, 7);
        let key = v4_key(u32::from_ne_bytes(a.octets()));
        assert_eq!(std::net::Ipv6Addr::from(key).to_ipv4_mapped(), Some(a));
    }

    #[test]
    fn sketch_bits_spread() {
        let mut seen = std::collections::HashSet::new();
        for port in 1..=1024u32 {
            seen.insert(sketch_bit(port, 256));
        }
        assert!(seen.len() > 200, "{}", seen.len());
        assert!(seen.iter().all(|b| *b < 256));
    }

    #[test]
    fn reflector_ports() {
        assert!(is_reflector_port(123) && is_reflector_port(11211));
        assert!(!is_reflector_port(443));
    }
}
