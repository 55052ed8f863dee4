//! Where the benchmarks write their results: target/bench/ of the workspace,
//! whatever directory they run from.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

/// Writes `rows` as pretty JSON to target/bench/`name`; returns the path.
pub fn write_json<T: Serialize + ?Sized>(name: &str, rows: &T) -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(rows)?)?;
    eprintln!("wrote {}", path.display());
    Ok(path)
}
