//! Network namespaces created by a test or the lab, removed (with every process
//! still running in them) when dropped, even when the test fails.

use std::process::{Command, Output};

use anyhow::{Context as _, Result, bail};

use crate::kernel::unique;

pub struct Netns {
    pub name: String,
}

/// Runs a command, failing with its command line and stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

pub fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

impl Netns {
    pub fn new(tag: &str) -> Result<Self> {
        let ns = Netns { name: unique(tag) };
        ip(&["netns", "add", &ns.name])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["-n", &self.name];
        full.extend(args);
        ip(&full)
    }

    /// A command run inside the namespace (`ip netns exec`, with its own /sys).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// A command that joins only the network namespace, keeping the host's
    /// mounts, so that /sys/fs/bpf and its pins stay visible.
    pub fn nsenter(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg(program);
        c
    }

    fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            // SAFETY: plain kill(2) on a pid that lives in our namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Moves this thread (only) into a namespace `ip netns add` made.
pub fn enter(name: &str) -> Result<()> {
    let path = std::path::Path::new("/run/netns").join(name);
    let ns = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    set_thread_netns(&ns, name)
}

fn set_thread_netns(ns: &std::fs::File, name: &str) -> Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: a valid namespace fd; affects the calling thread only.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    anyhow::ensure!(
        rc == 0,
        "setns into {name}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Runs `f` with this thread in namespace `ns`, then moves it back.
pub fn within<T>(ns: &Netns, f: impl FnOnce() -> T) -> Result<T> {
    let home = std::fs::File::open("/proc/thread-self/ns/net")?;
    enter(&ns.name)?;
    let out = f();
    set_thread_netns(&home, "this thread's own namespace")?;
    Ok(out)
}

/// Connects `a` in `ns_a` to `b` in `ns_b` with a veth pair.
pub fn veth(ns_a: &Netns, a: &str, ns_b: &Netns, b: &str) -> Result<()> {
    ip(&[
        "link", "add", a, "netns", &ns_a.name, "type", "veth", "peer", "name", b, "netns",
        &ns_b.name,
    ])?;
    ns_a.ip(&["link", "set", a, "up"])?;
    ns_b.ip(&["link", "set", b, "up"])
}
