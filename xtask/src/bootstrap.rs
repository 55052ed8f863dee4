//! Idempotent set-up of a fresh machine: Debian packages the lab and tests use,
//! the nightly toolchain with `rust-src` for the eBPF crate, and `bpf-linker`
//! built against nightly's own LLVM into `target/tools` (see ENGINEERING.md).

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::run::{output, status};

/// Packages the lab, the tests and the demo run.
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "curl",
    "nginx-light",
    "util-linux",
    "ca-certificates",
    // Attack and load tools for the detection lab and tests.
    "hping3",
    "nmap",
    "masscan",
    "t50",
    "slowhttptest",
    "wrk",
    // ApacheBench (ab), a second HTTP load tool for the application floods.
    "apache2-utils",
    "tcpreplay",
    "tcpdump",
    // Application-level attack tools (credential stuffing, content discovery),
    // and fail2ban as the reference the log benchmarks compare with.
    "hydra",
    "gobuster",
    "ffuf",
    "dirb",
    "sqlmap",
    "wapiti",
    "fail2ban",
    // fail2ban follows logs with inotify only with this (else it polls).
    "python3-pyinotify",
    // fail2ban bans with iptables (in the lab storefront's namespace).
    "iptables",
    // Real upstreams the storefront itself talks to (DNS), and the clients
    // the tests script.
    "dnsmasq-base",
    "python3",
    // Receivers of the agent's notices: Alertmanager (API v2), an SMTP
    // server (STARTTLS with a certificate from openssl).
    "prometheus-alertmanager",
    "python3-aiosmtpd",
    "openssl",
    // `bench rig`: the peers it measures (xdp-filter, nftables, iptables
    // with an ipset), the receiving queue's counters (ethtool) and bpftool.
    "xdp-tools",
    "nftables",
    "ipset",
    "ethtool",
    "bpftool",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn bootstrap(root: &Path) -> Result<()> {
    debian_packages()?;
    toolchains()?;
    bpf_linker(root)?;
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("missing Debian packages {missing:?}; run as root (the tests need root anyway)");
    }
    let apt = |args: &[&str]| {
        status(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    // The packages start a system nginx on port 80, a fail2ban server with
    // its own jails and an Alertmanager; the lab runs its own nginx and
    // Alertmanager, the benches fail2ban's tools only.
    for service in ["nginx", "fail2ban", "prometheus-alertmanager"] {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", service])
            .output();
    }
    let _ = Command::new("nginx").args(["-s", "stop"]).output();
    let _ = Command::new("fail2ban-client").arg("stop").output();
    // Without systemd the package's Alertmanager may run from its postinst.
    let _ = Command::new("pkill")
        .args(["-x", "prometheus-alertmanager"])
        .output();
    Ok(())
}

fn toolchains() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    let nightly = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))?;
    if !nightly.lines().any(|l| l.starts_with("rust-src")) {
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if !nightly.lines().any(|l| l.starts_with("clippy")) {
        status(Command::new("rustup").args([
            "component",
            "add",
            "clippy",
            "--toolchain",
            "nightly",
        ]))?;
    }
    let stable = output(Command::new("rustup").args(["component", "list", "--installed"]))?;
    for component in ["clippy", "rustfmt"] {
        if !stable.lines().any(|l| l.starts_with(component)) {
            status(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

/// LLVM major version and shared library of nightly's rustc.
fn nightly_llvm() -> Result<(String, std::path::PathBuf)> {
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let llvm = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("rustc +nightly -vV prints no LLVM version")?;
    let major = llvm.split('.').next().unwrap_or_default().to_string();
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let lib = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib_dir.display()))?;
    Ok((major, lib))
}

fn bpf_linker(root: &Path) -> Result<()> {
    let tools = root.join("target/tools");
    let (major, lib) = nightly_llvm()?;
    let stamp_path = tools.join("bpf-linker.stamp");
    let stamp = format!(
        "bpf-linker {BPF_LINKER_VERSION} llvm-{major} {}\n",
        lib.display()
    );
    let binary = tools.join("bin/bpf-linker");
    if binary.exists() && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp) {
        return Ok(());
    }
    // bpf-linker links against the LLVM that nightly ships; expose it as a prefix.
    let prefix = tools.join("llvm");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    let name = lib.file_name().context("LLVM library has no file name")?;
    for link in [prefix_lib.join("libLLVM.so"), prefix_lib.join(name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    status(
        Command::new("cargo")
            .args([
                "+nightly",
                "install",
                "bpf-linker",
                "--locked",
                "--force",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
                "--root",
            ])
            .arg(&tools)
            .env("LLVM_PREFIX", &prefix)
            .env_remove("RUSTUP_TOOLCHAIN"),
    )?;
    std::fs::write(&stamp_path, stamp)?;
    Ok(())
}
