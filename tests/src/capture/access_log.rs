//! An HTTP request as the `combined` access-log line (nginx, Apache) a
//! server at the storefront would write for it.

use std::time::SystemTime;

use time::{OffsetDateTime, format_description::BorrowedFormatItem, macros::format_description};

use super::http::Request;

/// `10/Oct/2000:13:55:36 +0000`.
const CLF: &[BorrowedFormatItem<'static>] =
    format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");

/// A field as nginx writes it between quotes: `"`, `\` and control and
/// non-ASCII bytes as `\xHH`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'"' | b'\\' | 0..0x20 | 0x7f.. => out += &format!("\\x{b:02X}"),
            _ => out.push(b as char),
        }
    }
    out
}

/// The request as a `combined` log line, stamped `at`.
pub fn combined(r: &Request, at: SystemTime) -> String {
    let stamp = OffsetDateTime::from(at)
        .format(CLF)
        .unwrap_or_else(|_| "01/Jan/1970:00:00:00 +0000".into());
    let quoted = |v: &Option<String>| v.as_deref().map_or("-".to_string(), escape);
    format!(
        "{} - - [{stamp}] \"{}\" {} {} \"{}\" \"{}\"",
        r.client,
        escape(&r.line),
        r.status,
        r.bytes,
        quoted(&r.referer),
        quoted(&r.agent),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ensuresec_agent::app::{
        parse::{Format, Parser},
        record::Record,
    };

    use super::*;

    const CLIENT: &str = "192.0.2.10";

    #[test]
    fn a_combined_line_reads_back_through_the_agents_parser() {
        let r = Request {
            time: Duration::ZERO,
            client: CLIENT.parse().unwrap(),
            line: "GET /a\"b HTTP/1.1".into(),
            status: 302,
            bytes: 17,
            referer: None,
            agent: Some("Mozilla/5.0 (compatible; \"x\")".into()),
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_596_348_082);
        let line = combined(&r, at);
        assert!(line.contains("[02/Aug/2020:06:01:22 +0000]"), "{line}");
        let parsed = Parser::new(Format::Combined)
            .parse(line.as_bytes())
            .expect("parses");
        let Record::Request(p) = parsed else {
            panic!("not a request: {line}");
        };
        assert_eq!(p.peer, r.client);
        assert_eq!((p.status, p.method.as_ref()), (302, "GET"));
        assert_eq!(p.time, Some(1_596_348_082.0));
        assert!(p.user_agent.contains("compatible"), "{}", p.user_agent);
    }
}
