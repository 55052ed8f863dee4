//! Who holds or waits for a `flock`, from `/proc/locks`: to force an
//! interleaving (act while a command holds the write lock) instead of hoping
//! for it.

fn lines() -> Vec<Vec<String>> {
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Whether process `pid` holds a `flock`.
pub fn holds_flock(pid: u32) -> bool {
    let pid = pid.to_string();
    lines()
        .iter()
        .any(|f| f.get(1).map(String::as_str) == Some("FLOCK") && f.get(4) == Some(&pid))
}

/// Whether process `pid` waits for a `flock` someone else holds.
pub fn waits_for_flock(pid: u32) -> bool {
    let pid = pid.to_string();
    lines()
        .iter()
        .any(|f| f.get(1).map(String::as_str) == Some("->") && f.get(5) == Some(&pid))
}
