//! Parsers for blocklist files: plain lists, FireHOL netsets and Spamhaus DROP
//! (the classic `a.b.c.d/n ; SBLnnn` text and the newer JSON-lines form).
//!
//! Parsing is all-or-nothing: the first bad line is an error naming the file,
//! the line number and the text, and nothing is returned for the other lines.

use std::{fmt, str::FromStr};

use crate::entry::{Target, TargetError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One address or CIDR per line, `#` comments.
    Plain,
    /// FireHOL `.netset`: the same syntax, used for FireHOL's published lists.
    Netset,
    /// Spamhaus DROP/EDROP: `prefix ; SBLnnn` with `;` comments, or JSON lines.
    Spamhaus,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "plain" => Ok(Format::Plain),
            "netset" => Ok(Format::Netset),
            "spamhaus" => Ok(Format::Spamhaus),
            other => Err(format!(
                "unknown format `{other}` (expected plain, netset or spamhaus)"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Plain => "plain",
            Format::Netset => "netset",
            Format::Spamhaus => "spamhaus",
        })
    }
}

/// One parsed entry and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportEntry {
    pub target: Target,
    /// 1-based line number.
    pub line: usize,
    /// A label the list itself gives the entry (Spamhaus' SBL id).
    pub label: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {why}: `{text}`")]
pub struct ImportError {
    pub file: String,
    pub line: usize,
    pub text: String,
    pub why: String,
}

/// Longest line echoed back in an error.
const ECHO_MAX: usize = 120;

fn echo(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end();
    match text.char_indices().nth(ECHO_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Longest line accepted: list lines are an address and a short comment.
pub const MAX_LINE: usize = 4096;

/// Parses a whole file held in memory.
pub fn parse(file: &str, content: &[u8], format: Format) -> Result<Vec<ImportEntry>, ImportError> {
    parse_reader(file, content, format, usize::MAX)
}

/// Parses a list as it is read, a line at a time: a line longer than
/// `MAX_LINE` (a binary file, `/dev/zero`) and more than `max_entries`
/// entries are errors naming the line, so that reading never holds more than
/// one line beyond the entries themselves.
pub fn parse_reader(
    file: &str,
    mut reader: impl std::io::BufRead,
    format: Format,
    max_entries: usize,
) -> Result<Vec<ImportEntry>, ImportError> {
    use std::io::{BufRead as _, Read as _};
    let mut out = Vec::new();
    let mut raw = Vec::with_capacity(128);
    for line in 1.. {
        raw.clear();
        let fail = |raw: &[u8], why: String| ImportError {
            file: file.to_string(),
            line,
            text: echo(raw),
            why,
        };
        let read = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut raw)
            .map_err(|e| fail(&[], format!("reading failed: {e}")))?;
        if read == 0 {
            break;
        }
        let ended = raw.last() == Some(&b'\n');
        if ended {
            raw.pop();
        }
        if raw.contains(&0) {
            return Err(fail(&raw, "binary data (NUL byte)".into()));
        }
        if !ended && raw.len() > MAX_LINE {
            return Err(fail(
                &raw,
                format!("line longer than {MAX_LINE} bytes (not a list?)"),
            ));
        }
        let text = raw.strip_suffix(b"\r").unwrap_or(&raw);
        let parsed = match format {
            Format::Plain | Format::Netset => parse_plain_line(text),
            Format::Spamhaus => parse_spamhaus_line(text),
        };
        match parsed {
            Ok(Some((target, label))) => {
                if out.len() == max_entries {
                    return Err(fail(
                        &raw,
                        format!("more than {max_entries} entries, the capacity of the lists"),
                    ));
                }
                out.push(ImportEntry {
                    target,
                    line,
                    label,
                })
            }
            Ok(None) => {}
            Err(why) => return Err(fail(&raw, why)),
        }
    }
    Ok(out)
}

type Parsed = Result<Option<(Target, Option<String>)>, String>;

fn target(text: &str) -> Result<Target, String> {
    text.parse().map_err(|e: TargetError| e.to_string())
}

/// The part of a line before `comment`, which must be text.
fn before_comment(raw: &[u8], comment: u8) -> Result<&str, String> {
    let data = match raw.iter().position(|&b| b == comment) {
        Some(p) => &raw[..p],
        None => raw,
    };
    std::str::from_utf8(data)
        .map(str::trim)
        .map_err(|_| "not valid UTF-8 text".to_string())
}

fn parse_plain_line(raw: &[u8]) -> Parsed {
    let data = before_comment(raw, b'#')?;
    if data.is_empty() {
        return Ok(None);
    }
    if data.split_whitespace().nth(1).is_some() {
        return Err("expected one address or CIDR per line".into());
    }
    Ok(Some((target(data)?, None)))
}

fn parse_spamhaus_line(raw: &[u8]) -> Parsed {
    let trimmed = raw.trim_ascii_start();
    if trimmed.first() == Some(&b'{') {
        return parse_spamhaus_json(trimmed);
    }
    let data = before_comment(raw, b';')?;
    if data.is_empty() {
        return Ok(None);
    }
    if data.split_whitespace().nth(1).is_some() {
        return Err("expected `prefix ; SBLnnn`".into());
    }
    let label = raw
        .iter()
        .position(|&b| b == b';')
        .and_then(|p| std::str::from_utf8(&raw[p + 1..]).ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(Some((target(data)?, label)))
}

fn parse_spamhaus_json(raw: &[u8]) -> Parsed {
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "expected a JSON object".to_string())?;
    if let Some(cidr) = obj.get("cidr") {
        let cidr = cidr
            .as_str()
            .ok_or_else(|| "`cidr` is not a string".to_string())?;
        let label = obj
            .get("sblid")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        return Ok(Some((target(cidr)?, label)));
    }
    if obj.get("type").and_then(|v| v.as_str()) == Some("metadata") {
        return Ok(None);
    }
    Err("JSON object has no `cidr`".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(content: &str, format: Format) -> Vec<(String, Option<String>)> {
        parse("list.txt", content.as_bytes(), format)
            .unwrap()
            .into_iter()
            .map(|e| (e.target.to_string(), e.label))
            .collect()
    }

    fn err(content: &[u8], format: Format) -> ImportError {
        parse("list.txt", content, format).unwrap_err()
    }

    #[test]
    fn plain_skips_comments_and_blank_lines() {
        let got = ok(
            "# header\n\n192.0.2.1\r\n  10.0.0.0/8  # trailing\n2001:db8::/32\n\t\n",
            Format::Plain,
        );
        let targets: Vec<_> = got.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(targets, ["192.0.2.1", "10.0.0.0/8", "2001:db8::/32"]);
    }

    #[test]
    fn netset_reads_firehol_files() {
        let content = "#\n# firehol_level1\n#\n# Maintainer      : FireHOL\n#\n0.0.0.0/8\n1.10.16.0/20\n223.254.0.0/16\n";
        let got = ok(content, Format::Netset);
        assert_eq!(
            got.len(),
            3,
            "comment lines are skipped, 0.0.0.0/8 is a real prefix"
        );
    }

    #[test]
    fn netset_reports_bad_lines() {
        let e = err(b"1.10.16.0/20\n1.10.16.0/33\n", Format::Netset);
        assert_eq!(e.line, 2);
        assert_eq!(e.text, "1.10.16.0/33");
        assert!(e.to_string().starts_with("list.txt:2: "), "{e}");
    }

    #[test]
    fn spamhaus_text_keeps_sbl_ids() {
        let content = "; Spamhaus DROP List 2026/11/26\n; Expires: Thu, 27 Nov 2026\n1.10.16.0/20 ; SBL256894\n1.19.0.0/16;SBL434604\n";
        let got = ok(content, Format::Spamhaus);
        assert_eq!(
            got,
            [
                ("1.10.16.0/20".to_string(), Some("SBL256894".to_string())),
                ("1.19.0.0/16".to_string(), Some("SBL434604".to_string())),
            ]
        );
    }

    #[test]
    fn spamhaus_json_lines() {
        let content = "{\"cidr\":\"1.10.16.0/20\",\"sblid\":\"SBL256894\",\"rir\":\"apnic\"}\n{\"cidr\":\"2001:db8::/32\",\"sblid\":\"SBL1\",\"rir\":\"ripencc\"}\n{\"type\":\"metadata\",\"timestamp\":1764115200,\"size\":2,\"records\":2}\n";
        let got = ok(content, Format::Spamhaus);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, "2001:db8::/32");
    }

    #[test]
    fn every_format_rejects_its_bad_lines() {
        let cases: &[(&[u8], Format, usize, &str)] = &[
            (
                b"192.0.2.1\n192.0.2.300\n",
                Format::Plain,
                2,
                "not an IPv4/IPv6",
            ),
            (b"192.0.2.1 192.0.2.2\n", Format::Plain, 1, "one address"),
            (b"10.1.0.0/8\n", Format::Plain, 1, "host bits"),
            (b"0.0.0.0/0\n", Format::Plain, 1, "whole address family"),
            (b"ok\n", Format::Plain, 1, "not an IPv4/IPv6"),
            (b"1.2.3.4\n\xff\xfe\n", Format::Plain, 2, "UTF-8"),
            (b"1.2.3.4\n1.2.\x003.4\n", Format::Netset, 2, "NUL"),
            (b"1.2.3.0/24 SBL1\n", Format::Spamhaus, 1, "prefix ; SBLnnn"),
            (
                b"; c\n1.2.3.0/24 ; SBL1\nnot-a-net ; SBL2\n",
                Format::Spamhaus,
                3,
                "not an IPv4",
            ),
            (b"{\"cidr\": 5}\n", Format::Spamhaus, 1, "not a string"),
            (
                b"{\"cidr\": \"1.2.3.0/24\"\n",
                Format::Spamhaus,
                1,
                "invalid JSON",
            ),
            (b"{\"sblid\": \"SBL1\"}\n", Format::Spamhaus, 1, "no `cidr`"),
            (b"[1]\n", Format::Plain, 1, "not an IPv4/IPv6"),
        ];
        for (content, format, line, why) in cases {
            let e = err(content, *format);
            assert_eq!(e.line, *line, "{e}");
            assert!(e.to_string().contains(why), "{e} should mention {why}");
        }
    }

    #[test]
    fn long_lines_are_echoed_shortened() {
        let long = "x".repeat(500);
        let e = err(long.as_bytes(), Format::Plain);
        assert!(e.text.len() < 130 && e.text.ends_with("..."));
    }

    #[test]
    fn binary_and_endless_input_is_refused_early() {
        let e = err(&[b'1'; MAX_LINE + 10], Format::Plain);
        assert!(e.why.contains("longer than 4096"), "{e}");
        assert_eq!(e.line, 1);
        let mut zeros = std::io::Read::take(std::io::repeat(0), 1 << 30);
        let e = parse_reader(
            "/dev/zero",
            std::io::BufReader::new(&mut zeros),
            Format::Plain,
            10,
        )
        .unwrap_err();
        assert!(e.why.contains("NUL") || e.why.contains("longer"), "{e}");
        let many = "192.0.2.1\n192.0.2.2\n192.0.2.3\n";
        let e = parse_reader("l", many.as_bytes(), Format::Plain, 2).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.why.contains("more than 2 entries"), "{e}");
    }

    #[test]
    fn format_names_parse() {
        assert_eq!("netset".parse(), Ok(Format::Netset));
        assert!("csv".parse::<Format>().unwrap_err().contains("csv"));
    }
}
