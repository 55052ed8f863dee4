//! Builds the XDP programs (`ensuresec-ebpf`) with nightly for bpfel-unknown-none
//! and leaves the object in OUT_DIR, where `ebpf_object()` embeds it.

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("agent crate has no parent directory"))?
        .join("ensuresec-ebpf");
    let common_dir = ebpf_dir.with_file_name("ensuresec-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let root_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    let package = aya_build::Package {
        name: "ensuresec-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Nightly)
}
