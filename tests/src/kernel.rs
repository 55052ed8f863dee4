//! The XDP object loaded into the kernel for BPF_PROG_TEST_RUN, with its maps
//! pinned in a private directory so tests never touch a real installation.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use std::os::fd::AsFd as _;

use ensuresec_agent::{config::MapSizes, ebpf, edit::Op, pins::PinDir, store::Store, sys};
use ensuresec_common::{
    entry::Target,
    maps::{BenchParams, BenchSource, Counter, MAP_BENCH, MAP_BENCH_SRC},
};

/// Set by whoever runs a lab binary and sweeps after it (`cargo xtask`): its
/// pid goes into every name, so that what a binary's own children (eval's
/// replays) leave behind is swept too.
pub const LAB_OWNER_ENV: &str = "ENSURESEC_LAB_OWNER";

/// A unique name for this process: `es-TAG-PID-N`, or `es-TAG-OWNER-PID-N`
/// under a lab owner.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let owner = std::env::var(LAB_OWNER_ENV)
        .ok()
        .filter(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
        .map_or(String::new(), |o| format!("{o}-"));
    format!(
        "es-{tag}-{owner}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pin directory under /sys/fs/bpf that is removed with everything in it
/// (unless it is borrowed: someone else's, e.g. a lab's).
pub struct TestPins {
    pub pins: PinDir,
    owned: bool,
}

impl TestPins {
    pub fn new(tag: &str) -> Self {
        TestPins {
            pins: PinDir::new(PathBuf::from("/sys/fs/bpf").join(unique(tag))),
            owned: true,
        }
    }

    /// Someone else's pin directory, left as it is.
    pub fn borrowed(pins: &PinDir) -> Self {
        TestPins {
            pins: pins.clone(),
            owned: false,
        }
    }
}

impl Drop for TestPins {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = std::fs::remove_dir_all(self.pins.root());
        // What a killed agent left.
        ensuresec_agent::pins::remove_pid_file(&self.pins.pid_file());
    }
}

/// An operator's block that never expires, with no reason.
pub fn block_forever() -> Op {
    Op::Block {
        expires_at_ns: 0,
        reason_id: 0,
        now_secs: 0,
    }
}

pub struct Kernel {
    pub ebpf: Ebpf,
    pub store: Store,
    pub pins: TestPins,
}

/// XDP verdicts.
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

impl Kernel {
    /// Loads the object with small maps and loads every program.
    pub fn new(sizes: MapSizes) -> Result<Self> {
        Self::with_bench_rows(sizes, 1)
    }

    /// `new`, with room for `rows` sources in the benchmark's source table.
    pub fn with_bench_rows(sizes: MapSizes, rows: u32) -> Result<Self> {
        let pins = TestPins::new("kern");
        let extra = [(ensuresec_common::maps::MAP_BENCH_SRC, rows.max(1))];
        let mut ebpf = ebpf::load_with(&pins.pins, &sizes, &extra)?;
        ebpf::load_filter(&mut ebpf)?;
        let store = Store::open(&pins.pins)?;
        let mut kernel = Kernel { ebpf, store, pins };
        for name in [
            "bench_floor",
            "bench_floor_random",
            "bench_filter_random",
            "bench_pass",
            "bench_gen",
        ] {
            kernel.load_program(name)?;
        }
        Ok(kernel)
    }

    /// The filter's programs loaded (not attached) on the maps already
    /// pinned at `pins`, to ask BPF_PROG_TEST_RUN what the kernel does with a
    /// frame under the lists in force there.
    pub fn on(pins: &PinDir) -> Result<Self> {
        let mut ebpf = ebpf::load(pins, &MapSizes::default())?;
        ebpf::load_filter(&mut ebpf)?;
        let store = Store::open(pins)?;
        Ok(Kernel {
            ebpf,
            store,
            pins: TestPins::borrowed(pins),
        })
    }

    /// Loads one more of the object's programs (a benchmark's) on these maps.
    pub fn load_program(&mut self, name: &str) -> Result<()> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("program {name}"))?
            .try_into()?;
        prog.load().with_context(|| format!("loading {name}"))
    }

    pub fn small() -> Result<Self> {
        Self::new(MapSizes {
            exact_v4: 4096,
            exact_v6: 4096,
            cidr_v4: 1024,
            cidr_v6: 1024,
        })
    }

    fn program(&self, name: &str) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(name)
            .with_context(|| format!("program {name}"))?
            .try_into()?)
    }

    /// Runs `name` once on `frame`; returns the XDP verdict.
    pub fn run(&self, name: &str, frame: &[u8]) -> Result<u32> {
        let result = self.program(name)?.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: 1,
            ..Default::default()
        })?;
        Ok(result.return_value)
    }

    /// Sends `frame` out of interface `ifindex` (of the calling thread's
    /// network namespace) `repeat` times through program `name` with live
    /// frames (`BPF_F_TEST_XDP_LIVE_FRAMES`), as the kernel's
    /// xdp-trafficgen does; returns the wall time it took.
    pub fn send_live(
        &self,
        name: &str,
        frame: &[u8],
        ifindex: u32,
        repeat: u32,
    ) -> Result<std::time::Duration> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let start = std::time::Instant::now();
        self.program(name)?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..Default::default()
            })
            .with_context(|| format!("live frames through {name}"))?;
        Ok(start.elapsed())
    }

    /// Attaches program `name` in driver mode to interface `ifindex` of the
    /// calling thread's network namespace.
    pub fn attach(&mut self, name: &str, ifindex: u32) -> Result<XdpLinkId> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("program {name}"))?
            .try_into()?;
        prog.attach_to_if_index(ifindex, XdpMode::Driver)
            .with_context(|| format!("attaching {name} to ifindex {ifindex}"))
    }

    pub fn detach(&mut self, name: &str, link: XdpLinkId) -> Result<()> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("program {name}"))?
            .try_into()?;
        prog.detach(link)?;
        Ok(())
    }

    /// Runs `name` `repeat` times in the kernel; returns the mean ns per run.
    pub fn time(&self, name: &str, frame: &[u8], repeat: u32) -> Result<f64> {
        let result = self.program(name)?.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        })?;
        Ok(result.duration.as_nanos() as f64)
    }

    pub fn edit(&self, target: &str, op: Op) -> Result<()> {
        let target: Target = target.parse()?;
        self.store.write()?.edit(&[(target, op)])?;
        Ok(())
    }

    pub fn block(&self, target: &str) -> Result<()> {
        self.edit(target, block_forever())
    }

    pub fn allow(&self, target: &str) -> Result<()> {
        self.edit(
            target,
            Op::Allow {
                from_config: false,
                now_secs: 0,
            },
        )
    }

    /// Fills the benchmark source table and points the random programs at it.
    pub fn set_bench_sources(&self, rows: &[BenchSource], src_offset: u32) -> Result<()> {
        let fd = |name: &str| -> Result<std::os::fd::BorrowedFd<'_>> {
            match self.ebpf.map(name).with_context(|| format!("map {name}"))? {
                aya::maps::Map::Array(data) => Ok(data.fd().as_fd()),
                _ => anyhow::bail!("{name} is not an array"),
            }
        };
        let keys: Vec<u32> = (0..rows.len() as u32).collect();
        sys::update(fd(MAP_BENCH_SRC)?, &keys, rows).map_err(|p| p.error)?;
        let params = BenchParams {
            count: rows.len() as u32,
            src_offset,
        };
        sys::update(fd(MAP_BENCH)?, &[0u32], &[params]).map_err(|p| p.error)?;
        Ok(())
    }

    pub fn counters(&self) -> Result<Vec<Counter>> {
        Ok(self.store.counters()?)
    }
}
