//! Parsers for the log formats ensuresec reads. Each takes one line (without
//! its newline) and returns a `Record` or a `ParseError` that names what is
//! wrong; none of them panics or allocates without bound on any input.

mod clf;
pub mod json;
mod nginx_error;
mod time;

pub use json::{JsonFields, JsonPreset};

use super::record::{Record, ShopEvent};

/// The formats of `[[logs]] format = ...` and `xtask replay --log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// nginx/Apache `combined` (also `common`, and nginx's `main` with
    /// `"$http_x_forwarded_for"` at the end).
    Combined,
    /// `combined` preceded by the virtual host (`host` or `host:port`).
    VhostCombined,
    /// One JSON object per line, fields named by a `JsonFields` mapping.
    Json,
    /// nginx's error log: basic-auth failures and `limit_req` hits.
    NginxError,
    /// Shop events (the schema in the README).
    Events,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Combined => "combined",
            Format::VhostCombined => "vhost_combined",
            Format::Json => "json",
            Format::NginxError => "nginx_error",
            Format::Events => "events",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            Format::Combined,
            Format::VhostCombined,
            Format::Json,
            Format::NginxError,
            Format::Events,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
}

/// Why a line was not understood. Values quoted in the message are cut to
/// a few dozen characters: a 10 MB line makes a short error.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the line is not UTF-8")]
    NotUtf8,
    #[error("the line is empty")]
    Empty,
    #[error("no {0}")]
    Missing(&'static str),
    #[error("{field} `{value}` is not valid")]
    Invalid { field: &'static str, value: String },
    #[error("not a JSON object: {0}")]
    Json(#[source] serde_json::Error),
    #[error("the event is not valid: {0}")]
    Event(#[source] serde_json::Error),
}

/// At most this much of a bad value is quoted in an error.
const QUOTED: usize = 48;

pub(crate) fn invalid(field: &'static str, value: &str) -> ParseError {
    let mut end = value.len().min(QUOTED);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    ParseError::Invalid {
        field,
        value: value[..end].to_string(),
    }
}

/// How to read the lines of one log.
#[derive(Clone, Debug)]
pub struct Parser {
    pub format: Format,
    pub fields: JsonFields,
}

impl Parser {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            fields: JsonFields::preset(JsonPreset::Nginx),
        }
    }

    pub fn with_fields(mut self, fields: JsonFields) -> Self {
        self.fields = fields;
        self
    }

    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            return Err(ParseError::Empty);
        }
        match self.format {
            Format::Combined => clf::parse(line, false).map(Record::Request),
            Format::VhostCombined => clf::parse(line, true).map(Record::Request),
            Format::Json => self.fields.parse(line).map(Record::Request),
            Format::NginxError => nginx_error::parse(line),
            Format::Events => parse_event(line).map(Record::Event),
        }
    }
}

pub fn parse_event(line: &str) -> Result<ShopEvent, ParseError> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(ParseError::Json)?;
    if !value.is_object() {
        return Err(invalid("event", line));
    }
    serde_json::from_value(value).map_err(ParseError::Event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::record::EventKind;

    #[test]
    fn events_need_time_type_and_ip_and_ignore_unknown_keys() {
        let p = Parser::new(Format::Events);
        let ok = br#"{"time":"2026-12-01T10:00:00+01:00","type":"login_failed","ip":"2001:db8::1","account":"a@b","shoe_size":44}"#;
        let Record::Event(e) = p.parse(ok).unwrap() else {
            panic!()
        };
        assert_eq!(e.kind, EventKind::LoginFailed);
        assert_eq!(e.time.unix_timestamp(), 1_796_115_600);
        for (line, needle) in [
            (&br#"{"type":"login_ok","ip":"10.0.0.1"}"#[..], "time"),
            (
                br#"{"time":"2026-12-01T10:00:00Z","ip":"10.0.0.1"}"#,
                "type",
            ),
            (
                br#"{"time":"2026-12-01T10:00:00Z","type":"login_ok"}"#,
                "ip",
            ),
            (
                br#"{"time":"yesterday","type":"login_ok","ip":"10.0.0.1"}"#,
                "time",
            ),
            (
                br#"{"time":"2026-12-01T10:00:00Z","type":"hug","ip":"10.0.0.1"}"#,
                "hug",
            ),
            (
                br#"{"time":"2026-12-01T10:00:00Z","type":"signup","ip":"me"}"#,
                "address",
            ),
            (br#"[1,2]"#, "event"),
            (br#"{"time":"#, "JSON"),
        ] {
            let err = p.parse(line).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
    }

    #[test]
    fn bad_bytes_and_empty_lines_are_named() {
        let p = Parser::new(Format::Combined);
        assert!(matches!(p.parse(b"\xff\xfe\x00"), Err(ParseError::NotUtf8)));
        assert!(matches!(p.parse(b"  "), Err(ParseError::Empty)));
        let long = "x".repeat(10_000);
        let err = p.parse(long.as_bytes()).unwrap_err().to_string();
        assert!(err.len() < 120, "{err}");
    }
}
