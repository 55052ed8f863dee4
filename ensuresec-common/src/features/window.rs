//! One window of counters, and the branch-free helpers the XDP program counts
//! it with: sketch marks, a majority vote over ports, trip wires.

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
    /// Unsolicited UDP: answers nobody asked for (`class::UDP_SERVICE`).
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
    /// Packets that were the first their source sent (the source was new to
    /// this CPU's per-source table): a flood of one-packet sources has as
    /// many as packets. Counted for destinations only.
    pub fresh: u32,
    /// The most frequent port of the other side, by majority vote (port in
    /// the high half, votes in the low half): a destination's top source
    /// port (one reflected service), a source's own top source port (a
    /// reflector answers from one).
    pub vote: u32,
    /// Bytes of unsolicited UDP and SYN-ACKs (`udp_reflect`, `synack`), and
    /// of fragments: what a reflection delivers.
    pub reflect_bytes: u32,
    pub _pad: u32,
    /// Distinct destination ports of a source; distinct *source* ports of a
    /// destination (one reflected service port, or thousands of random ones).
    pub port_sketch: [u64; 4],
    pub dst_sketch: [u64; 2],
}

impl Window {
    /// The port the vote elected, and the packets behind it (at least).
    pub const fn top_port(&self) -> (u16, u16) {
        ((self.vote >> 16) as u16, self.vote as u16)
    }
}

/// 1 if `x` is zero, else 0, without a branch (BPF has no conditional set:
/// every comparison would be a branch for the verifier to walk).
#[inline(always)]
pub const fn is_zero(x: u32) -> u32 {
    ((x | x.wrapping_neg()) >> 31) ^ 1
}

/// One step of a majority vote over ports, without a branch: the candidate
/// gains a vote when `port` is its own, is replaced when it has none, and
/// else loses one. A port that makes up more than half of the packets is
/// the candidate at the end.
#[inline(always)]
pub const fn vote(v: u32, port: u16) -> u32 {
    vote_by(v, port, 1)
}

/// `weight` steps of `vote` at once (0: the vote unchanged), without a
/// branch: a packet counted with a weight (`sample_weight`) votes with it.
/// `weight` is at most 0xffff.
#[inline(always)]
pub const fn vote_by(v: u32, port: u16, weight: u32) -> u32 {
    let votes = v & 0xffff;
    let candidate = v >> 16;
    let same = is_zero(candidate ^ port as u32);
    // votes >= weight, both below 2^16: the difference's sign bit is clear.
    let holds = (votes.wrapping_sub(weight) >> 31) ^ 1;
    // votes + weight, at most 0xffff.
    let sum = votes + weight;
    let over = (0xffffu32.wrapping_sub(sum) >> 31) & 1;
    let gained = sum.wrapping_sub(over * sum.wrapping_sub(0xffff));
    let kept = candidate << 16 | gained;
    let lost = candidate << 16 | votes.wrapping_sub(weight);
    let taken = (port as u32) << 16 | weight.wrapping_sub(votes);
    let other = holds * lost + (holds ^ 1) * taken;
    same * kept + (same ^ 1) * other
}

/// `vote_by` a packet's `weight` when `on` (0 or 1), else the vote unchanged.
#[inline(always)]
pub const fn vote_if(v: u32, port: u16, on: u32, weight: u32) -> u32 {
    vote_by(v, port, (on & 1) * weight)
}

/// Sets bit `bit` of a sketch when `on` (0 or 1), without a branch; returns
/// 1 if that set a new bit. `N` must be a power of two.
#[inline(always)]
pub fn mark_if<const N: usize>(words: &mut [u64; N], bit: u32, on: u64) -> u32 {
    let i = (bit as usize / 64) & (N - 1);
    let shift = bit % 64;
    let was = (words[i] >> shift) & 1;
    words[i] |= (on & 1) << shift;
    ((was ^ 1) & on & 1) as u32
}

/// Byte of `Window::tripped` holding each trip level.
pub const TRIP_PACKETS: u32 = 0;
pub const TRIP_PORTS: u32 = 8;
pub const TRIP_DSTS: u32 = 16;
/// A destination's unsolicited answers trip in the byte a source's ports use.
pub const TRIP_UNSOLICITED: u32 = TRIP_PORTS;

/// Unsolicited answers (reflected UDP, unsolicited SYN-ACKs, fragments) a
/// destination's window must hold before they can be an attack, at any
/// scale: a busy page load from a browser answers with a couple of dozen
/// SYN-ACKs at once, and stray answers arrive on any host. The first level
/// of the destination's unsolicited trip wire.
pub const UNSOLICITED_MIN: u32 = 32;

/// Trip levels stop doubling here (about 16M times the first threshold).
pub const MAX_TRIP_LEVEL: u32 = 24;

/// Whether `count` reached the next level of the trip wire kept in byte
/// `shift` of `w.tripped` (first at `first`, then each doubling); advances the
/// level if so.
#[inline(always)]
pub fn trip(w: &mut Window, shift: u32, count: u32, first: u32) -> bool {
    trip_level(&mut w.tripped, shift, count, first)
}

/// `trip` on any set of levels packed as in `Window::tripped`. A wire whose
/// first level is 0 is off.
#[inline(always)]
pub fn trip_level(tripped: &mut u32, shift: u32, count: u32, first: u32) -> bool {
    let level = (*tripped >> shift) & 0xff;
    if first != 0 && level < MAX_TRIP_LEVEL && (count as u64) >= (first as u64) << level {
        *tripped += 1 << shift;
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

/// Sketch bit of a port (256 bits) or address (128 bits): a multiplicative hash.
#[inline(always)]
pub const fn sketch_bit(value: u32, bits: u32) -> u32 {
    (value.wrapping_mul(0x9e37_79b1) >> 24) % bits
}

/// A window holding this many packets on a CPU is heavy: from then on until
/// it ends, one packet in `HEAVY_SAMPLE`, picked at random, is counted in it
/// with that weight. Below, every packet counts: a window's first packets,
/// all of a light source's or destination's, are exact; a flood's counts are
/// unbiased estimates (a standard deviation of about 3 % at 10,000 packets),
/// and the counting work of seven packets in eight is skipped.
pub const HEAVY_PACKETS: u32 = 1024;
pub const HEAVY_SAMPLE: u32 = 8;

/// The weight to count a packet with in a window holding `packets` (0 for
/// a window that is over), `random` being a random number: 1 while the
/// window is light; then `HEAVY_SAMPLE` for one packet in `HEAVY_SAMPLE`,
/// 0 (not counted) for the others. Branch-free, as the helpers above.
#[inline(always)]
pub const fn sample_weight(packets: u32, random: u32) -> u32 {
    let heavy = ((packets >= HEAVY_PACKETS) as u32) & 1;
    let picked = is_zero(random % HEAVY_SAMPLE);
    (heavy ^ 1) + heavy * picked * HEAVY_SAMPLE
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

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
        // A wire set to 0 is off.
        assert!(!trip(&mut w, TRIP_PORTS, 1_000, 0));
    }

    #[test]
    fn a_weighted_vote_is_as_many_single_votes() {
        let mut x = 0x1234_5678u32;
        let (mut weighted, mut single) = (0, 0);
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let port = [53u16, 123, 40_000][(x % 3) as usize];
            let weight = [0, 1, 8][((x >> 8) % 3) as usize];
            weighted = vote_by(weighted, port, weight);
            for _ in 0..weight {
                single = vote(single, port);
            }
            assert_eq!(weighted, single);
        }
    }

    #[test]
    fn light_windows_count_every_packet_heavy_ones_an_eighth_with_weight() {
        let weights: Vec<u32> = (0..16).map(|seq| sample_weight(10, seq)).collect();
        assert!(weights.iter().all(|&w| w == 1));
        let weights: Vec<u32> = (0..16u32)
            .map(|random| sample_weight(HEAVY_PACKETS, random))
            .collect();
        assert_eq!(weights.iter().sum::<u32>(), 16, "unbiased: {weights:?}");
        assert_eq!(weights.iter().filter(|&&w| w == 0).count(), 14);
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
    fn the_vote_elects_a_majority_port_as_a_plain_vote_would() {
        fn plain(v: u32, port: u16) -> u32 {
            let (candidate, votes) = ((v >> 16) as u16, v & 0xffff);
            if candidate == port {
                if votes < 0xffff { v + 1 } else { v }
            } else if votes == 0 {
                (port as u32) << 16 | 1
            } else {
                v - 1
            }
        }
        let mut x = 0x9e37_79b9u32;
        let (mut a, mut b) = (0, 0);
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // 60 % from port 47808, the rest spread.
            let port = if x % 10 < 6 {
                47808
            } else {
                (x >> 8) as u16 % 7
            };
            a = vote(a, port);
            b = plain(b, port);
            assert_eq!(a, b, "step {i}");
        }
        assert_eq!(
            Window {
                vote: a,
                ..Default::default()
            }
            .top_port()
            .0,
            47808
        );
        assert_eq!(vote(47808 << 16 | 0xffff, 47808), 47808 << 16 | 0xffff);
        // Packets without ports leave the vote as it was.
        let v = vote(0, 53);
        assert_eq!(vote_if(v, 0, 0, 1), v);
        assert_eq!(vote_if(v, 53, 1, 1), vote(v, 53));
        assert_eq!((0..=u32::MAX).step_by(65_537).map(is_zero).sum::<u32>(), 1);
    }

    #[test]
    fn sketch_marks_say_whether_a_bit_was_new() {
        let mut words = [0u64; 4];
        assert_eq!(mark_if(&mut words, 200, 1), 1);
        assert_eq!(mark_if(&mut words, 200, 1), 0);
        assert_eq!(mark_if(&mut words, 7, 0), 0);
        assert_eq!(words, [0, 0, 0, 1 << 8]);
    }
}
