//! The agent's ring buffer reader under a load of trip events (the harness
//! of `cargo xtask bench ring`, in short): every event the kernel sent is
//! read, and every one read is handled, merged into a queued event about
//! the same source, or shed. How much the kernel drops is the benchmark's
//! business (a debug agent beside other tests is no measure of it).

use std::time::Duration;

use anyhow::Result;
use ensuresec_tests::ring_load::RingLoad;

#[test]
fn every_event_sent_is_read_and_accounted_for() -> Result<()> {
    let load = RingLoad::new()?;
    let before = load.counts()?;
    // A pool of 1024 sources: the same subjects trip again and again.
    load.offer(1 << 10, Duration::from_millis(500))?;
    let after = load.wait_caught_up()?;
    let sent = after.sent - before.sent;
    assert!(sent > 10_000, "the load sent only {sent} events");
    assert_eq!(after.read - before.read, sent);
    let handled = after.handled - before.handled;
    let coalesced = after.coalesced - before.coalesced;
    assert!(handled >= 1024, "{after:?}");
    assert!(
        coalesced > 0,
        "repeated subjects were never merged: {after:?}"
    );
    assert_eq!(
        handled + coalesced + (after.shed - before.shed),
        sent,
        "{after:?}"
    );
    Ok(())
}
