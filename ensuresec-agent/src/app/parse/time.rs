//! Timestamps of the formats, as Unix seconds.

use time::{
    OffsetDateTime, PrimitiveDateTime, format_description::BorrowedFormatItem,
    macros::format_description,
};

use super::{ParseError, invalid};

/// `10/Oct/2000:13:55:36 -0700` (nginx `$time_local`, Apache `%t`).
const CLF: &[BorrowedFormatItem<'static>] = format_description!(
    "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
);

/// `2024/01/31 12:00:00` (nginx's error log, local time without a zone).
const NGINX_ERROR: &[BorrowedFormatItem<'static>] =
    format_description!("[year]/[month]/[day] [hour]:[minute]:[second]");

pub fn clf(text: &str) -> Result<f64, ParseError> {
    // A busy log repeats each second's timestamp many times.
    thread_local! {
        static LAST: std::cell::RefCell<(String, f64)> = const { std::cell::RefCell::new((String::new(), 0.0)) };
    }
    if let Some(t) = LAST.with_borrow(|(s, t)| (s == text).then_some(*t)) {
        return Ok(t);
    }
    let t = OffsetDateTime::parse(text, CLF)
        .map(|t| t.unix_timestamp() as f64)
        .map_err(|_| invalid("time", text))?;
    LAST.with_borrow_mut(|last| {
        last.0.clear();
        last.0.push_str(text);
        last.1 = t;
    });
    Ok(t)
}

/// The error log has no zone; it is read as UTC. Only differences between
/// lines matter to the detectors, and replay reports seconds from the start.
pub fn nginx_error(text: &str) -> Result<f64, ParseError> {
    PrimitiveDateTime::parse(text, NGINX_ERROR)
        .map(|t| t.assume_utc().unix_timestamp() as f64)
        .map_err(|_| invalid("time", text))
}

/// RFC 3339 text (JSON logs' timestamps; Caddy's `ts` is a number instead).
pub fn rfc3339(text: &str) -> Result<f64, ParseError> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        .map_err(|_| invalid("time", text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_as_unix_seconds() {
        assert_eq!(clf("10/Oct/2000:13:55:36 -0700").unwrap(), 971_211_336.0);
        assert!(clf("10/Foo/2000:13:55:36 -0700").is_err());
        assert_eq!(nginx_error("2000/10/10 20:55:36").unwrap(), 971_211_336.0);
        assert_eq!(rfc3339("2000-10-10T20:55:36.5Z").unwrap(), 971_211_336.5);
        assert!(rfc3339("noon").is_err());
    }
}
