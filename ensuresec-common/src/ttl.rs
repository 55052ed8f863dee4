//! Time-to-live of a block: "30s", "15m", "4h", "7d", "1h30m".

use std::time::Duration;

/// Longest TTL accepted; beyond it an operator wants no TTL at all.
pub const MAX_TTL: Duration = Duration::from_secs(3650 * 24 * 3600);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TtlError {
    #[error("`{text}` is not a duration (examples: 90s, 15m, 4h, 7d, 1h30m): {why}")]
    Invalid { text: String, why: String },
    #[error("TTL `{0}` is zero; omit --ttl for a block that never expires")]
    Zero(String),
    #[error("TTL `{0}` is longer than ten years; omit --ttl for a block that never expires")]
    TooLong(String),
    #[error("TTL `{0}` has a fraction of a second; use whole seconds")]
    SubSecond(String),
}

/// Parses an operator-written TTL.
pub fn parse_ttl(text: &str) -> Result<Duration, TtlError> {
    let trimmed = text.trim();
    let ttl = humantime::parse_duration(trimmed).map_err(|e| TtlError::Invalid {
        text: text.to_string(),
        why: e.to_string(),
    })?;
    if ttl.is_zero() {
        return Err(TtlError::Zero(text.to_string()));
    }
    if ttl.subsec_nanos() != 0 {
        return Err(TtlError::SubSecond(text.to_string()));
    }
    if ttl > MAX_TTL {
        return Err(TtlError::TooLong(text.to_string()));
    }
    Ok(ttl)
}

/// Parses an interval of the config (a window, a step): like a TTL, but
/// fractions of a second are fine (`100ms`).
pub fn parse_interval(text: &str) -> Result<Duration, TtlError> {
    let interval = humantime::parse_duration(text.trim()).map_err(|e| TtlError::Invalid {
        text: text.to_string(),
        why: e.to_string(),
    })?;
    if interval.is_zero() {
        return Err(TtlError::Zero(text.to_string()));
    }
    if interval > MAX_TTL {
        return Err(TtlError::TooLong(text.to_string()));
    }
    Ok(interval)
}

/// Renders a remaining time the way operators write TTLs: `3h59m12s`.
pub fn format_remaining(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86400)));
    }

    #[test]
    fn rejects_bad_ttls_naming_them() {
        for bad in ["", "4", "4x", "-1h", "soon"] {
            let err = parse_ttl(bad).unwrap_err();
            assert!(matches!(err, TtlError::Invalid { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("`{bad}`")));
        }
        assert_eq!(parse_ttl("0s"), Err(TtlError::Zero("0s".into())));
        assert_eq!(
            parse_ttl("20years"),
            Err(TtlError::TooLong("20years".into()))
        );
        assert_eq!(
            parse_ttl("1500ms"),
            Err(TtlError::SubSecond("1500ms".into()))
        );
    }

    #[test]
    fn formats_remaining_time() {
        assert_eq!(format_remaining(Duration::from_secs(0)), "0s");
        assert_eq!(format_remaining(Duration::from_secs(14352)), "3h59m12s");
        assert_eq!(format_remaining(Duration::from_secs(90061)), "1d1h1m1s");
    }
}
