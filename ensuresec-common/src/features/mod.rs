//! Traffic features the XDP program keeps per source and per protected
//! destination, the events it sends the agent, and the mitigation records the
//! agent writes back (throttles and new-connection budgets).
//!
//! Counters come in two forms: totals since the entry was created, and the
//! current window (`DetectConfig::window_ns`, one second by default), which the
//! XDP program resets when a packet arrives after the window ends. Every value is
//! per CPU; the agent sums the CPUs.

pub mod door;
mod mitigation;
mod window;

pub use mitigation::*;
pub use window::*;

/// Source and destination addresses in one key type: the IPv6 address's
/// bytes, IPv4 as `::ffff:a.b.c.d`. Aligned to 8 bytes: BPF has no
/// misaligned loads, so the XDP program would read, compare, copy and hash
/// a plain byte array one byte at a time (about 60 instructions for one
/// comparison instead of four).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrKey(pub [u8; 16]);

impl AddrKey {
    pub const ZERO: AddrKey = AddrKey([0; 16]);

    /// The key as two words, in memory order.
    #[inline(always)]
    pub const fn words(&self) -> [u64; 2] {
        let b = &self.0;
        [
            u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        ]
    }
}

#[cfg(feature = "user")]
impl From<std::net::Ipv6Addr> for AddrKey {
    fn from(addr: std::net::Ipv6Addr) -> Self {
        AddrKey(addr.octets())
    }
}

#[cfg(feature = "user")]
impl From<AddrKey> for std::net::Ipv6Addr {
    fn from(key: AddrKey) -> Self {
        std::net::Ipv6Addr::from(key.0)
    }
}

/// The key of an IPv4 address read from a packet (network order in memory).
#[inline(always)]
pub const fn v4_key(addr_ne: u32) -> AddrKey {
    let b = addr_ne.to_ne_bytes();
    AddrKey([
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, b[0], b[1], b[2], b[3],
    ])
}

/// UDP source ports of services abused for reflection and amplification:
/// chargen, DNS, NTP, SNMP, CLDAP, SSDP, memcached (and a few common others).
/// A prior only: UDP from these (and from any port below 1024) counts as a
/// reflected answer even when it reaches a port the host serves (listed in
/// `udp_ports`), e.g. port 53 of a DNS server. UDP from any port is a
/// reflected answer when no socket listens where it lands (see
/// `class::UDP_SERVICE`).
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
    /// What the horizon needs of the source's first packet on this CPU: a
    /// horizon begins with the second packet, so that a spoofed flood's
    /// one-packet sources never touch its cache lines, and counts the first
    /// from here.
    pub first: FirstPacket,
    pub window: Window,
}

/// A source's first packet on a CPU, as its horizon will count it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirstPacket {
    /// Its TCP sequence number (when `FirstPacket::SYN`).
    pub seq: u32,
    /// The bit of its destination port in the horizon's port sketch (when
    /// `FirstPacket::PROBED_PORT`).
    pub port_bit: u16,
    /// `FirstPacket::SYN | PROBED_PORT | HORIZON_BEGUN`.
    pub flags: u16,
}

impl FirstPacket {
    /// A connection attempt (TCP SYN without ACK).
    pub const SYN: u16 = 1;
    /// A probe whose destination port the horizon counts.
    pub const PROBED_PORT: u16 = 1 << 1;
    /// The horizon has begun (with the source's second packet); until then
    /// it holds a former occupant's counts.
    pub const HORIZON_BEGUN: u16 = 1 << 2;

    pub const fn horizon_begun(&self) -> bool {
        self.flags & Self::HORIZON_BEGUN != 0
    }
}

/// A source's counters over the horizon (`DetectConfig::horizon_ns`,
/// minutes): what a flood or scan too slow for any window adds up to. Kept
/// in `ES_HORIZONS` at the index of the source's slot in `ES_SOURCES`, apart
/// from the slot: a spoofed flood's one-packet sources, each a new slot,
/// never touch these lines, and the slot stays four cache lines.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Horizon {
    /// Monotonic ns at which this horizon began.
    pub start_ns: u64,
    /// TCP with SYN and without ACK: connection attempts.
    pub syn: u32,
    /// Connection attempts the source completed: an ACK at one of the
    /// `pending` sequence numbers. A flood or a half-open scan completes
    /// nothing (a spoofer would have to forge the ACK as well); a client
    /// completes every handshake, also while it floods from the same
    /// address.
    pub completed: u32,
    /// Distinct destination ports of probes (bits of `port_sketch` set).
    pub distinct_ports: u32,
    /// Distinct openings (bits of `opening_sketch` set): the first three
    /// bytes of the first data a connection sends, which name the protocol
    /// it speaks (an HTTP method, a TLS record's type and version; the
    /// fourth byte of a TLS record is its length). A client speaks one or
    /// two; a service scan tries dozens.
    pub openings: u32,
    /// Where the data of the source's latest connection attempt starts
    /// (its SYN's sequence number plus one); the segment that begins there
    /// is an opening.
    pub next_seq: u32,
    /// Trip levels, packed as `Window::tripped`: SYNs never completed in
    /// `TRIP_PACKETS`, ports in `TRIP_PORTS`, openings in `TRIP_DSTS`.
    pub tripped: u32,
    /// The sequence numbers that complete the latest connection attempts
    /// (a SYN's plus one), in a ring: a browser opens six at once.
    pub pending: [u32; PENDING_SYNS],
    /// When each was sent (ms, wrapping). A busy NAT opens more
    /// connections at once than the ring holds: a slot taken over while
    /// its SYN is younger than `PENDING_MS` counts as completed when the
    /// source completes at least half of its attempts, and as never
    /// completed otherwise (a flood of 25 SYNs a second refills the ring
    /// three times a second).
    pub pending_ms: [u32; PENDING_SYNS],
    /// The ring's next slot.
    pub pending_next: u32,
    pub _pad: u32,
    pub port_sketch: [u64; 4],
    pub opening_sketch: u64,
}

/// Connection attempts of a source whose completion the horizon waits for.
pub const PENDING_SYNS: usize = 8;

/// How long a pending connection attempt keeps the benefit of the doubt.
pub const PENDING_MS: u32 = 1_000;

impl Horizon {
    /// Connection attempts that were not completed.
    pub const fn uncompleted(&self) -> u32 {
        self.syn.saturating_sub(self.completed)
    }
}

/// Byte of `Horizon::tripped` of each trip level.
pub const TRIP_HORIZON_SYNS: u32 = TRIP_PACKETS;
pub const TRIP_HORIZON_PORTS: u32 = TRIP_PORTS;
pub const TRIP_HORIZON_OPENINGS: u32 = TRIP_DSTS;

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

/// The hash a key's set (low bits) and doorkeeper bucket and tag (see
/// `door`) come from.
#[inline(always)]
pub fn key_hash(key: &AddrKey, extra: u32, seed: u64) -> u64 {
    let [hi, lo] = key.words();
    crate::exact::mix64(lo ^ extra as u64 ^ crate::exact::mix64(hi ^ seed))
}

/// First slot of the set of hash `h` in a table of `mask + 1` sets.
#[inline(always)]
pub const fn set_of_hash(h: u64, mask: u32) -> u32 {
    ((h as u32) & mask) * FEATURE_WAYS
}

/// First slot of the set of a 16-byte key in a table of `mask + 1` sets.
#[inline(always)]
pub fn set_of(key: &AddrKey, extra: u32, seed: u64, mask: u32) -> u32 {
    set_of_hash(key_hash(key, extra, seed), mask)
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
    /// Explicit: a hash map compares keys' padding too.
    pub _pad2: u32,
}

/// Per destination, per CPU, at three time scales. `distinct_dsts` counts
/// distinct *sources* here (many of them at once is what a spoofed or
/// reflected flood looks like), `distinct_ports` distinct source ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestStats {
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub new_conns: u64,
    /// The configured window (`DetectConfig::window_ns`).
    pub window: Window,
    /// A tenth of it: a burst over before a window fills.
    pub burst: Window,
    /// Ten of them: a modest rate that goes on.
    pub slow: Window,
}

/// The time scales of a destination's windows, as `Event::scale` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Scale {
    Window = 0,
    Burst = 1,
    Slow = 2,
}

impl Scale {
    pub const fn from_u8(v: u8) -> Option<Scale> {
        match v {
            0 => Some(Scale::Window),
            1 => Some(Scale::Burst),
            2 => Some(Scale::Slow),
            _ => None,
        }
    }

    /// Length in ns, for a configured window of `window_ns`.
    #[inline(always)]
    pub const fn length_ns(self, window_ns: u64) -> u64 {
        match self {
            Scale::Window => window_ns,
            Scale::Burst => window_ns / 10,
            Scale::Slow => window_ns * 10,
        }
    }
}

impl DestStats {
    pub fn at(&self, scale: Scale) -> &Window {
        match scale {
            Scale::Window => &self.window,
            Scale::Burst => &self.burst,
            Scale::Slow => &self.slow,
        }
    }
}

/// One way of the per-destination table (see `SourceSlot`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestSlot {
    pub key: DestKey,
    pub stats: DestStats,
}

impl DestKey {
    pub const fn new(addr: AddrKey, port: u16, proto: u8) -> Self {
        DestKey {
            addr,
            port,
            proto,
            _pad: 0,
            _pad2: 0,
        }
    }

    /// The port and protocol folded into the set hash.
    pub const fn extra(&self) -> u32 {
        (self.port as u32) << 8 | self.proto as u32
    }

    /// TCP to the ports the host does not serve (untracked ports share
    /// port 0): no client needs a SYN there answered.
    pub const fn is_unserved_tcp(&self) -> bool {
        self.port == 0 && self.proto == 6
    }

    /// What this destination's window `w` holds that nobody asked for or
    /// needs: unsolicited UDP (with the fragments large answers arrive in,
    /// which carry no ports) and SYN-ACKs, and SYNs to ports nobody serves.
    pub const fn unwanted(&self, w: &Window) -> u32 {
        let udp = (self.proto == 17) as u32;
        w.udp_reflect + w.synack + w.frags * udp + w.syn * self.is_unserved_tcp() as u32
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
    /// Doorkeeper buckets minus one (see `door`); 0: every source enters
    /// the per-source table with its first packet.
    pub door_mask: u32,
    /// Geometry of the feature tables: seed and set count minus one.
    pub seed: u64,
    pub source_mask: u32,
    pub dest_mask: u32,
    /// A source's horizon (`Horizon`), and the first levels of its trip
    /// wires: SYNs never completed, distinct ports, openings (0: off).
    pub horizon_ns: u64,
    pub trip_horizon_syns: u32,
    pub trip_horizon_ports: u32,
    pub trip_openings: u32,
    pub _pad2: u32,
}

pub const EVENT_SOURCE_TRIP: u32 = 1;
pub const EVENT_DEST_TRIP: u32 = 2;
/// A source's horizon tripped; the event's window is the source's current one.
pub const EVENT_SOURCE_HORIZON: u32 = 3;

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
    /// For a destination trip, the `Scale` of the window that tripped.
    pub scale: u8,
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
    /// Unsolicited UDP, what a reflection delivers: not a reply, and either
    /// to a port nobody on this host listens on, or from a service port
    /// (below 1024, or in `REFLECTOR_PORTS`) to a port it serves. Nobody
    /// needs it.
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

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn v4_keys_are_ipv4_mapped() {
        let a = std::net::Ipv4Addr::new(192, 0, 2, 7);
        let key = v4_key(u32::from_ne_bytes(a.octets()));
        assert_eq!(std::net::Ipv6Addr::from(key).to_ipv4_mapped(), Some(a));
    }

    #[test]
    fn reflector_ports() {
        assert!(is_reflector_port(123) && is_reflector_port(11211));
        assert!(!is_reflector_port(443));
    }
}
