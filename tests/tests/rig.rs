//! The live-frame rig of `cargo xtask bench rig`, in short: real frames
//! from the generator reach the receiving end and are counted there, for
//! the XDP_DROP floor, ensuresec dropping a listed source and an nftables
//! peer. A smoke test of the harness, not a timed pass/fail: the speeds are
//! the benchmark's business.

use std::time::Duration;

use anyhow::Result;
use ensuresec_agent::config::MapSizes;
use ensuresec_common::reason::Reason;
use ensuresec_tests::{
    kernel::Kernel,
    rig::{Rig, peers::Nftables, within},
};

#[test]
fn frames_reach_each_system_on_the_rig() -> Result<()> {
    let rig = Rig::new()?;
    let mut dut = Kernel::small()?;
    let generator = Kernel::new(MapSizes::default())?;
    let listed = "1.2.3.4".parse()?;
    dut.block("1.2.3.4")?;
    let frame = rig.frame(listed);
    let time = Duration::from_millis(200);

    let link = rig.attach(&mut dut, "bench_floor")?;
    let floor = rig.measure(&generator, &frame, time)?.mpps;
    within(&rig.dut_ns, || dut.detach("bench_floor", link))??;
    assert!(floor > 0.0, "the floor received nothing");

    let link = rig.attach(&mut dut, "ensuresec")?;
    let before = dut.counters()?[Reason::BlockedExact as usize].packets;
    let filter = rig.measure(&generator, &frame, time)?;
    let dropped = dut.counters()?[Reason::BlockedExact as usize].packets - before;
    within(&rig.dut_ns, || dut.detach("ensuresec", link))??;
    assert!(filter.mpps > 0.0, "ensuresec received nothing");
    assert!(
        filter.rx_ns_per_frame > 0.0,
        "the receiving CPU's time was not read: {filter:?}"
    );
    assert!(
        dropped > 0,
        "ensuresec dropped none of the listed source's frames"
    );

    let _nft = Nftables::load(&rig, &[listed], &[])?;
    let link = rig.attach(&mut dut, "bench_pass")?;
    let nft = rig.measure(&generator, &frame, time)?.mpps;
    within(&rig.dut_ns, || dut.detach("bench_pass", link))??;
    assert!(nft > 0.0, "frames never reached the nftables peer");
    eprintln!(
        "floor {floor:.2} Mpps, ensuresec {:.2} ({:.0} ns a frame), nftables {nft:.2}",
        filter.mpps, filter.rx_ns_per_frame
    );
    Ok(())
}
