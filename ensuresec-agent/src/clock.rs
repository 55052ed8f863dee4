//! The two clocks list entries use: `CLOCK_MONOTONIC` for expiry (the XDP
//! program compares against `bpf_ktime_get_coarse_ns`, the same clock read at
//! tick granularity) and wall-clock for display.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock the XDP program reads coarsely.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_MONOTONIC is always available on Linux");
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
    ttl.map_or(0, |t| mono_ns() + t.as_nanos() as u64)
}

/// Time left before a kernel expiry, `None` for never; zero once passed.
pub fn remaining(expires_at_ns: u64, now_ns: u64) -> Option<Duration> {
    (expires_at_ns != 0).then(|| Duration::from_nanos(expires_at_ns.saturating_sub(now_ns)))
}

/// RFC 3339 rendering of a Unix time in seconds.
pub fn rfc3339(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The wall-clock time (ms) of a `CLOCK_MONOTONIC` instant, so that an
/// expiry outlives a reboot (the monotonic clock starts again at zero).
pub fn wall_ms_of_mono(ns: u64) -> u64 {
    let (mono, wall) = (mono_ns() as i128, unix_ms() as i128 * 1_000_000);
    ((wall + ns as i128 - mono).max(0) / 1_000_000) as u64
}

/// The `CLOCK_MONOTONIC` instant of a wall-clock time (ms); `None` once it
/// has passed.
pub fn mono_of_wall_ms(ms: u64) -> Option<u64> {
    let (mono, wall) = (mono_ns() as i128, unix_ms() as i128 * 1_000_000);
    let at = mono + ms as i128 * 1_000_000 - wall;
    (at > mono).then_some(at as u64)
}

/// RFC 3339 rendering of a Unix time in milliseconds.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}
