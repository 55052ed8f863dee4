//! The live-frame rig of `cargo xtask bench rig`: a generator namespace
//! sends real frames with BPF_PROG_TEST_RUN and `BPF_F_TEST_XDP_LIVE_FRAMES`
//! (as the kernel's xdp-trafficgen does) out of one end of a veth pair; the
//! other end, in the namespace under test, carries the system measured. Its
//! receive queue runs in a NAPI thread pinned to its own CPU, and packets
//! per second are read from that queue's XDP counters over a fixed time,
//! with the receiving CPU's time per frame from the NAPI thread's runtime.

pub mod peers;

use std::{
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

pub use crate::netns::within;
use crate::{
    kernel::Kernel,
    netns::{Netns, run, veth},
    packet::*,
    xdp_harness::pin_to,
};

pub const GEN_IF: &str = "rg0";
pub const DUT_IF: &str = "rd0";
pub const GEN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const DUT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// Frames per BPF_PROG_TEST_RUN call of the generator.
const BURST: u32 = 1 << 16;

pub struct Rig {
    pub gen_ns: Netns,
    pub dut_ns: Netns,
    pub gen_if: u32,
    pub dut_if: u32,
    gen_mac: [u8; 6],
    dut_mac: [u8; 6],
    /// CPUs for the generator and the receiving queue (the same on a
    /// machine with one).
    gen_cpu: usize,
    rx_cpu: usize,
}

impl Rig {
    pub fn new() -> Result<Self> {
        let gen_ns = Netns::new("rig-gen")?;
        let dut_ns = Netns::new("rig-dut")?;
        veth(&gen_ns, GEN_IF, &dut_ns, DUT_IF)?;
        gen_ns.ip(&["addr", "add", &format!("{GEN_ADDR}/24"), "dev", GEN_IF])?;
        dut_ns.ip(&["addr", "add", &format!("{DUT_ADDR}/24"), "dev", DUT_IF])?;
        let gen_if = within(&gen_ns, || ifindex(GEN_IF))??;
        let dut_if = within(&dut_ns, || ifindex(DUT_IF))??;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Rig {
            gen_mac: mac(&gen_ns, GEN_IF)?,
            dut_mac: mac(&dut_ns, DUT_IF)?,
            gen_ns,
            dut_ns,
            gen_if,
            dut_if,
            gen_cpu: 0,
            rx_cpu: if cpus > 1 { 1 } else { 0 },
        })
    }

    /// A TCP SYN from `src` to the receiver's port 443, addressed to its MAC
    /// (so that the kernel's stack takes it as its own).
    pub fn frame(&self, src: Ipv4Addr) -> Vec<u8> {
        let l4 = L4::Tcp {
            sport: 40000,
            dport: 443,
            flags: TCP_SYN,
        };
        let mut f = frame(&[], ipv4(src, DUT_ADDR, &V4Opts::default(), &l4));
        f[..6].copy_from_slice(&self.dut_mac);
        f[6..12].copy_from_slice(&self.gen_mac);
        f
    }

    /// Attaches `program` of `k` to the receiving end, replacing what was
    /// there, and pins the receive queue's new NAPI thread.
    pub fn attach(&self, k: &mut Kernel, program: &str) -> Result<aya::programs::xdp::XdpLinkId> {
        let link = within(&self.dut_ns, || k.attach(program, self.dut_if))??;
        self.pin_receive_queue()?;
        Ok(link)
    }

    /// Moves the receive queue's NAPI into a thread of its own and pins it
    /// (veth creates the NAPI when an XDP program is attached, by this
    /// process or another, such as an agent).
    pub fn pin_receive_queue(&self) -> Result<()> {
        run(self
            .dut_ns
            .cmd("sh")
            .args(["-c", &format!("echo 1 > /sys/class/net/{DUT_IF}/threaded")]))?;
        self.pin_napi()
    }

    /// Pins the receiving queue's NAPI threads to `rx_cpu`.
    fn pin_napi(&self) -> Result<()> {
        for pid in napi_threads()? {
            run(Command::new("taskset").args(["-pc", &self.rx_cpu.to_string(), &pid.to_string()]))?;
        }
        Ok(())
    }

    /// Nanoseconds the receiving queue's NAPI threads have run so far
    /// (`/proc/PID/schedstat`): the receiving CPU's work, the program's and
    /// (for XDP_PASS) the kernel stack's behind it.
    fn rx_runtime_ns(&self) -> Result<u64> {
        let mut total = 0;
        for pid in napi_threads()? {
            let path = format!("/proc/{pid}/schedstat");
            let text = std::fs::read_to_string(&path).with_context(|| path.clone())?;
            let first = text.split_whitespace().next().unwrap_or_default();
            total += first
                .parse::<u64>()
                .with_context(|| format!("{path}: {text}"))?;
        }
        Ok(total)
    }

    /// Frames the receiving queue's XDP program has seen (veth's counters).
    pub fn rx_xdp_packets(&self) -> Result<u64> {
        let out = run(self.dut_ns.cmd("ethtool").args(["-S", DUT_IF]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut total = None;
        for line in text.lines() {
            let Some((name, value)) = line.trim().split_once(':') else {
                continue;
            };
            if name.starts_with("rx_queue_") && name.ends_with("_xdp_packets") {
                *total.get_or_insert(0) += value.trim().parse::<u64>().context("a counter")?;
            }
        }
        total.with_context(|| format!("ethtool -S {DUT_IF} has no rx_queue_N_xdp_packets"))
    }

    /// Sends `frame` through `generator`'s `bench_gen` for `time`, from this thread
    /// moved into the generator's namespace and CPU; returns the frames per
    /// second the receiving queue took and what each cost its CPU.
    pub fn measure(&self, generator: &Kernel, frame: &[u8], time: Duration) -> Result<Rate> {
        let before = self.rx_xdp_packets()?;
        let ran_before = self.rx_runtime_ns()?;
        let started = Instant::now();
        on_cpu(self.gen_cpu, || {
            within(&self.gen_ns, || -> Result<()> {
                while started.elapsed() < time {
                    generator.send_live("bench_gen", frame, self.gen_if, BURST)?;
                }
                Ok(())
            })
        })???;
        let elapsed = started.elapsed();
        let after = self.rx_xdp_packets()?;
        let ran = self.rx_runtime_ns()?.saturating_sub(ran_before);
        let frames = after - before;
        Ok(Rate {
            mpps: frames as f64 / elapsed.as_secs_f64() / 1e6,
            rx_ns_per_frame: ran as f64 / frames.max(1) as f64,
        })
    }
}

/// What the receiving end took in one measurement.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Millions of frames per second: capped by what the generator offers.
    pub mpps: f64,
    /// Receiving-CPU nanoseconds per frame: the system's own cost, whatever
    /// the generator offers (its inverse is the rate one receiving CPU
    /// could take).
    pub rx_ns_per_frame: f64,
}

/// The receiving queue's NAPI threads (`napi/rd0-<id>`).
fn napi_threads() -> Result<Vec<u32>> {
    let prefix = format!("napi/{DUT_IF}-");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(&prefix) {
            pids.push(pid);
        }
    }
    if pids.is_empty() {
        bail!("no NAPI thread {prefix}*: threaded NAPI did not start");
    }
    Ok(pids)
}

/// Runs `f` with this thread on `cpu` only, then restores its affinity.
fn on_cpu<T>(cpu: usize, f: impl FnOnce() -> T) -> Result<T> {
    // SAFETY: a zeroed set, filled by sched_getaffinity for this thread.
    let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: this thread, a set of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut old) } != 0 {
        bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
    }
    pin_to(cpu)?;
    let out = f();
    // SAFETY: this thread, the set it had.
    unsafe { libc::sched_setaffinity(0, size, &old) };
    Ok(out)
}

fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => bail!("no interface {name}"),
        i => Ok(i),
    }
}

fn mac(ns: &Netns, iface: &str) -> Result<[u8; 6]> {
    let out = run(ns.cmd("cat").arg(format!("/sys/class/net/{iface}/address")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC of {iface}: {text}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("MAC of {iface}: {text}"))
}
