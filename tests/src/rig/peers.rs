//! The filters a hosting provider would otherwise use, set up on the rig's
//! receiving end with the same addresses and prefixes as ensuresec:
//! xdp-filter (xdp-tools), an nftables netdev-ingress set, and iptables'
//! raw table with an ipset. Each is removed when dropped (and with the
//! namespace).

use std::{io::Write as _, net::Ipv4Addr, process::Stdio};

use anyhow::{Context as _, Result, bail};
use ipnet::Ipv4Net;

use super::{DUT_IF, Rig};
use crate::netns::run;

/// xdp-filter holds this many IPv4 addresses (its map's size).
pub const XDP_FILTER_MAX: usize = 10_000;

/// xdp-filter loaded in native mode on the receiving end, dropping packets
/// from `addrs`.
pub struct XdpFilter<'a> {
    rig: &'a Rig,
}

impl<'a> XdpFilter<'a> {
    pub fn load(rig: &'a Rig, addrs: &[Ipv4Addr]) -> Result<Self> {
        if addrs.len() > XDP_FILTER_MAX {
            bail!(
                "xdp-filter holds {XDP_FILTER_MAX} addresses, not {}",
                addrs.len()
            );
        }
        // nsenter, not `ip netns exec`: xdp-filter pins its maps in the
        // host's /sys/fs/bpf and finds them there on the next call.
        run(rig
            .dut_ns
            .nsenter("xdp-filter")
            .args(["load", DUT_IF, "-m", "native", "-f", "ipv4"]))?;
        let filter = XdpFilter { rig };
        for a in addrs {
            run(rig
                .dut_ns
                .nsenter("xdp-filter")
                .args(["ip", &a.to_string(), "-m", "src"]))?;
        }
        Ok(filter)
    }
}

impl Drop for XdpFilter<'_> {
    fn drop(&mut self) {
        let _ = self
            .rig
            .dut_ns
            .nsenter("xdp-filter")
            .args(["unload", DUT_IF])
            .output();
    }
}

/// Feeds `script` to `program` (`nft -f -`, `ipset restore`) in the
/// receiving namespace.
fn feed(rig: &Rig, program: &str, args: &[&str], script: &str) -> Result<()> {
    let mut child = rig
        .dut_ns
        .cmd(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        // nft quotes the whole offending line: keep the start of it.
        let err = String::from_utf8_lossy(&out.stderr);
        let err: String = err.trim().chars().take(400).collect();
        bail!("{program} {args:?}: {err}");
    }
    Ok(())
}

/// An nftables netdev-ingress chain on the receiving end dropping sources in
/// a set of `addrs` and a set of `nets` (an interval set).
pub struct Nftables<'a> {
    rig: &'a Rig,
}

impl Drop for Nftables<'_> {
    fn drop(&mut self) {
        let _ = self
            .rig
            .dut_ns
            .cmd("nft")
            .args(["delete", "table", "netdev", "rig"])
            .output();
    }
}

impl<'a> Nftables<'a> {
    pub fn load(rig: &'a Rig, addrs: &[Ipv4Addr], nets: &[Ipv4Net]) -> Result<Self> {
        let mut s = format!(
            "table netdev rig {{\n\
             set exact {{ type ipv4_addr; size {}; }}\n\
             set nets {{ type ipv4_addr; flags interval; auto-merge; size {}; }}\n\
             chain ingress {{ type filter hook ingress device {DUT_IF} priority 0; policy accept;\n\
             ip saddr @exact drop\n ip saddr @nets drop\n }}\n}}\n",
            addrs.len().max(1) * 2,
            nets.len().max(1) * 2,
        );
        for chunk in addrs.chunks(10_000) {
            s.push_str("add element netdev rig exact { ");
            s.push_str(&join(chunk));
            s.push_str(" }\n");
        }
        for chunk in nets.chunks(10_000) {
            s.push_str("add element netdev rig nets { ");
            s.push_str(&join(chunk));
            s.push_str(" }\n");
        }
        let table = Nftables { rig };
        feed(rig, "nft", &["-f", "-"], &s)?;
        Ok(table)
    }
}

/// iptables' raw table on the receiving end dropping sources in an ipset of
/// `addrs` (hash:ip) and one of `nets` (hash:net).
pub struct Iptables<'a> {
    rig: &'a Rig,
}

impl Drop for Iptables<'_> {
    fn drop(&mut self) {
        let ns = &self.rig.dut_ns;
        let _ = ns
            .cmd("iptables")
            .args(["-t", "raw", "-F", "PREROUTING"])
            .output();
        for set in ["rig-exact", "rig-nets"] {
            let _ = ns.cmd("ipset").args(["destroy", set]).output();
        }
    }
}

impl<'a> Iptables<'a> {
    pub fn load(rig: &'a Rig, addrs: &[Ipv4Addr], nets: &[Ipv4Net]) -> Result<Self> {
        let mut s = format!(
            "create rig-exact hash:ip maxelem {}\ncreate rig-nets hash:net maxelem {}\n",
            (addrs.len() * 2).max(1024),
            (nets.len() * 2).max(1024)
        );
        for a in addrs {
            s.push_str(&format!("add rig-exact {a}\n"));
        }
        for n in nets {
            s.push_str(&format!("add rig-nets {n}\n"));
        }
        let table = Iptables { rig };
        feed(rig, "ipset", &["restore"], &s)?;
        for set in ["rig-exact", "rig-nets"] {
            run(rig.dut_ns.cmd("iptables").args([
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-m",
                "set",
                "--match-set",
                set,
                "src",
                "-j",
                "DROP",
            ]))?;
        }
        Ok(table)
    }
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
