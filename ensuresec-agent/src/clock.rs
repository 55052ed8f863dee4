//! The two clocks list entries use: `CLOCK_BOOTTIME` for expiry (what the kernel
//! compares against with `bpf_ktime_get_boot_ns`) and wall-clock for display.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds of `CLOCK_BOOTTIME`, the clock of `bpf_ktime_get_boot_ns`.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_BOOTTIME is always available on Linux");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Kernel expiry for a TTL starting now; `None` means "never" (0 in the maps).
pub fn expiry_for(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |t| boot_ns() + t.as_nanos() as u64)
}

/// Time left before a kernel expiry, `None` for never; zero once passed.
pub fn remaining(expires_at_ns: u64, now_boot_ns: u64) -> Option<Duration> {
    (expires_at_ns != 0).then(|| Duration::from_nanos(expires_at_ns.saturating_sub(now_boot_ns)))
}

/// RFC 3339 rendering of a Unix time in seconds.
pub fn rfc3339(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}
