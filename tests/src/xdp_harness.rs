//! The XDP program with detection on, for BPF_PROG_TEST_RUN tests of the
//! feature counters, trip wires and mitigations: a kernel, frames from one
//! source to one storefront address, and the events the program sent.

use std::net::Ipv4Addr;

use anyhow::Result;
use ensuresec_common::{
    features::{DetectConfig, Event, v4_key},
    ports::{PortRange, bitmap},
};

use crate::{
    kernel::{Kernel, XDP_PASS},
    packet::*,
};

pub const SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
pub const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

pub fn key(a: Ipv4Addr) -> ensuresec_common::features::AddrKey {
    v4_key(u32::from_ne_bytes(a.octets()))
}

pub fn tcp(src: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let l4 = L4::Tcp {
        sport: 40000,
        dport,
        flags,
    };
    frame(&[], ipv4(src, DST, &V4Opts::default(), &l4))
}

pub fn tcp_from(src: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let l4 = L4::Tcp {
        sport,
        dport,
        flags,
    };
    frame(&[], ipv4(src, DST, &V4Opts::default(), &l4))
}

pub fn udp_datagram(src: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let l4 = L4::Udp {
        sport,
        dport,
        payload: vec![0; 40],
    };
    frame(&[], ipv4(src, DST, &V4Opts::default(), &l4))
}

/// A small kernel that counts with a one-minute window and trips at
/// `trip_packets` packets or `trip_ports` ports; ports 80 and 443 are served.
pub fn detecting(trip_packets: u32, trip_ports: u32) -> Result<Kernel> {
    let k = Kernel::small()?;
    k.store.write()?.set_detect_config(&DetectConfig {
        enabled: 1,
        window_ns: 60_000_000_000,
        trip_packets,
        trip_ports,
        trip_dsts: 1000,
        trip_dst_packets: 1000,
        cpus: 1,
        ..DetectConfig::default()
    })?;
    let tracked: Vec<PortRange> = vec!["80".parse()?, "443".parse()?];
    k.store
        .write()?
        .set_tracked_ports(&bitmap(&tracked), &bitmap(&[]))?;
    Ok(k)
}

/// Detection on with every trip wire too high to fire: what feature
/// counting costs each packet (the benchmarks), source horizons included.
pub fn counting_only() -> DetectConfig {
    DetectConfig {
        enabled: 1,
        window_ns: 1_000_000_000,
        trip_packets: u32::MAX,
        trip_ports: u32::MAX,
        trip_dsts: u32::MAX,
        trip_dst_packets: u32::MAX,
        cpus: 1,
        horizon_ns: 300_000_000_000,
        trip_horizon_syns: u32::MAX,
        trip_horizon_ports: u32::MAX,
        trip_openings: u32::MAX,
        ..DetectConfig::default()
    }
}

/// A destination no test counts: where `admit` sends.
pub const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 99);

/// Gets `src` past the doorkeeper (`features::door`): its first packet,
/// to a destination no test counts, stays out of the per-source table, so
/// that the test's own packets are all counted for the source. Checks that
/// the packet arrived and left no trace in the table. The doorkeeper is per
/// CPU, and each run is on the calling thread's CPU: this pins the thread
/// to CPU 0, so that the test's packets meet the doorkeeper this one did.
pub fn admit(k: &Kernel, src: Ipv4Addr) -> Result<()> {
    pin_to(0)?;
    let f = frame(
        &[],
        ipv4(
            src,
            ELSEWHERE,
            &V4Opts::default(),
            &L4::Tcp {
                sport: 40000,
                dport: 9,
                flags: TCP_ACK,
            },
        ),
    );
    anyhow::ensure!(k.run("ensuresec", &f)? == XDP_PASS, "{src}: not passed");
    let cfg = k.store.detect_config()?;
    anyhow::ensure!(
        k.store.source_stats(&cfg, &key(src), 0)?.is_none(),
        "{src}: a first packet entered the per-source table"
    );
    Ok(())
}

pub fn events(k: &Kernel) -> Result<Vec<Event>> {
    let mut ring = k.store.events()?;
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        assert_eq!(item.len(), std::mem::size_of::<Event>());
        // SAFETY: the kernel wrote an `Event` of this size.
        out.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Event) });
    }
    Ok(out)
}

/// Pins the calling thread to one CPU.
pub fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: this thread, a valid set.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    anyhow::ensure!(
        rc == 0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}
