//! Running commands with their output passed through and failures named.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs `cmd`, failing with its command line when it fails.
pub fn status(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo ARGS` in the workspace with the stable toolchain.
pub fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    status(
        Command::new("cargo")
            .args(args)
            .current_dir(root)
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
}

/// `cargo +nightly SUBCOMMAND` for the eBPF crate, for its own target.
pub fn cargo_nightly_ebpf(root: &Path, subcommand: &str, extra: &[&str]) -> Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly")
        .arg(subcommand)
        .args([
            "--release",
            "-p",
            "ensuresec-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .args(extra)
        .current_dir(root)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("CARGO_TARGET_DIR", root.join("target/ebpf-check"));
    status(&mut cmd)
}
