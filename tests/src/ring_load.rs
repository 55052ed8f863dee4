//! A load of trip events at a real agent: `bench_events` sends one source
//! trip per BPF_PROG_TEST_RUN run into the ring buffer of an agent
//! protecting the lab storefront, as fast as one CPU can, about sources drawn
//! from a pool. Used by `cargo xtask bench ring` and its smoke test.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use ensuresec_common::maps::BenchSource;

use crate::{
    bench_lists::{SRC_OFFSET, be},
    kernel::Kernel,
    lab::{Agent, Lab},
    packet::{L4, TCP_SYN, V4Opts, frame, ipv4},
    scenarios::{cpu_seconds, usage},
    wait::eventually,
    xdp_harness::pin_to,
};

/// Runs per BPF_PROG_TEST_RUN call: short enough to stop on time.
const REPEAT: u32 = 20_000;

/// The counts of the kernel and the agent at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    /// Events the kernel had no room for, and sent.
    pub dropped: u64,
    pub sent: u64,
    /// The agent's reader: read, merged into a queued event, shed.
    pub read: u64,
    pub coalesced: u64,
    pub shed: u64,
    /// Handled by the detectors.
    pub handled: u64,
    /// CPU seconds of the agent and of its reader thread.
    pub cpu_s: f64,
    pub reader_cpu_s: f64,
}

impl Counts {
    /// Every event sent was read, and every one read handled, merged into
    /// one handled after it, or shed.
    pub fn caught_up(&self) -> bool {
        self.read >= self.sent && self.handled + self.coalesced + self.shed >= self.read
    }
}

pub struct RingLoad {
    pub lab: Lab,
    pub agent: Agent,
    kernel: Kernel,
    packet: Vec<u8>,
}

impl RingLoad {
    /// A lab, an agent protecting its storefront with every thread on CPU
    /// 1, and the generator, this thread, on CPU 0.
    pub fn new() -> Result<Self> {
        let lab = Lab::new()?;
        let config = lab.agent_config("[[protect]]\nprefix = \"10.77.0.0/16\"\n")?;
        let agent = lab.start_agent(&config)?;
        let taskset = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &agent.child.id().to_string()])
            .output()?;
        anyhow::ensure!(
            taskset.status.success(),
            "taskset: {}",
            String::from_utf8_lossy(&taskset.stderr)
        );
        pin_to(0)?;
        let mut kernel = Kernel::on(&lab.pins.pins)?;
        kernel.load_program("bench_events")?;
        let syn = L4::Tcp {
            sport: 40000,
            dport: 80,
            flags: TCP_SYN,
        };
        let packet = frame(
            &[],
            ipv4(
                Ipv4Addr::new(10, 128, 0, 1),
                lab.storefront.v4,
                &V4Opts::default(),
                &syn,
            ),
        );
        Ok(Self {
            lab,
            agent,
            kernel,
            packet,
        })
    }

    pub fn counts(&self) -> Result<Counts> {
        let (dropped, sent) = self.kernel.store.event_stats()?;
        let m = |name: &str| -> Result<u64> { Ok(self.lab.metric(name)? as u64) };
        let pid = self.agent.child.id();
        Ok(Counts {
            dropped,
            sent,
            read: m("ensuresec_ringbuf_read_total")?,
            coalesced: m("ensuresec_ringbuf_coalesced_total")?,
            shed: m("ensuresec_ringbuf_shed_total")?,
            handled: m("ensuresec_ringbuf_events_total")?,
            cpu_s: usage(pid).0,
            reader_cpu_s: reader_cpu(pid)?,
        })
    }

    /// Sends events for `time` about sources drawn from a pool of
    /// `subjects` (a power of two, at most 2^23, in 10.128.0.0/9, away from
    /// the lab's 10.77.0.0/16); returns the seconds it took.
    pub fn offer(&self, subjects: u64, time: Duration) -> Result<f64> {
        let bits = subjects.trailing_zeros();
        anyhow::ensure!(
            subjects.is_power_of_two() && bits <= 23,
            "{subjects} subjects"
        );
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX >> (32 - bits)
        };
        let pool = BenchSource {
            addr_be: be(Ipv4Addr::new(10, 128, 0, 0)),
            host_mask_be: u32::from_ne_bytes(mask.to_be_bytes()),
        };
        self.kernel.set_bench_sources(&[pool], SRC_OFFSET)?;
        let start = Instant::now();
        while start.elapsed() < time {
            self.kernel.time("bench_events", &self.packet, REPEAT)?;
        }
        Ok(start.elapsed().as_secs_f64())
    }

    /// Waits until the agent caught up (see `Counts::caught_up`).
    pub fn wait_caught_up(&self) -> Result<Counts> {
        eventually(
            Duration::from_secs(60),
            "the agent to handle every event sent",
            || {
                let c = self.counts()?;
                Ok(c.caught_up().then_some(c))
            },
        )
    }
}

/// CPU seconds of the agent's ring buffer reader thread.
fn reader_cpu(pid: u32) -> Result<f64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        // The kernel keeps 15 bytes of a thread's name.
        if std::fs::read_to_string(dir.join("comm"))?.trim() == "ensuresec-event" {
            let stat = dir.join("stat");
            return cpu_seconds(&stat.to_string_lossy()).context("the reader's stat");
        }
    }
    anyhow::bail!("no ensuresec-events thread in agent {pid}")
}
