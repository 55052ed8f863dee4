//! nginx/Apache `combined` and `vhost_combined`:
//! `[vhost[:port] ]addr ident user [time] "request" status bytes "referer" "agent"["xff"]`.
//! `common` (no referer and agent) and nginx's `main` (a trailing
//! `"$http_x_forwarded_for"`) read too.

use std::{borrow::Cow, net::IpAddr};

use super::{ParseError, invalid, time};
use crate::app::record::Request;

/// A cursor over the line's fields.
struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Fields<'a> {
    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start_matches(' ');
    }

    fn done(&mut self) -> bool {
        self.skip_spaces();
        self.rest.is_empty()
    }

    /// A bare field up to the next space.
    fn word(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        self.skip_spaces();
        if self.rest.is_empty() {
            return Err(ParseError::Missing(what));
        }
        let end = self.rest.find(' ').unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        Ok(word)
    }

    /// `"..."`, where a backslash escapes the next character (Apache writes
    /// `\"`; nginx writes `\x22`, which needs no care here).
    fn quoted(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        self.skip_spaces();
        let Some(inner) = self.rest.strip_prefix('"') else {
            return Err(ParseError::Missing(what));
        };
        let bytes = inner.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    self.rest = &inner[i + 1..];
                    return Ok(&inner[..i]);
                }
                _ => i += 1,
            }
        }
        Err(ParseError::Missing(what))
    }
}

fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.replace("\\\"", "\"").replace("\\x22", "\""))
}

fn dash_is_none(text: &str) -> Option<Cow<'_, str>> {
    (!text.is_empty() && text != "-").then(|| unescape(text))
}

pub fn parse(line: &str, vhost: bool) -> Result<Request<'_>, ParseError> {
    let mut f = Fields { rest: line };
    let host = if vhost {
        let v = f.word("virtual host")?;
        // `host:port`, but an IPv6 literal host has colons of its own.
        let name = match v.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
            _ => v,
        };
        Some(Cow::Borrowed(name))
    } else {
        None
    };
    let addr = f.word("client address")?;
    let peer: IpAddr = addr.parse().map_err(|_| invalid("client address", addr))?;
    // nginx writes `$remote_user` unescaped, spaces and brackets included:
    // the time is the last `[...]` that holds one and is followed by the
    // quoted request (whose quotes nginx does escape).
    let mut at = None;
    for (i, _) in f.rest.match_indices('[') {
        let inner = &f.rest[i + 1..];
        let Some(end) = inner.find(']') else {
            continue;
        };
        if inner[end..].starts_with("] \"")
            && let Ok(t) = time::clf(&inner[..end])
        {
            at = Some((i + 1 + end + 1, t));
        }
    }
    let (after_time, time) = at.ok_or(ParseError::Missing("[time]"))?;
    f.rest = &f.rest[after_time..];
    let request = f.quoted("\"request\"")?;
    let status_text = f.word("status")?;
    let status: u16 = status_text
        .parse()
        .ok()
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| invalid("status", status_text))?;
    let bytes = f.word("bytes")?;
    if bytes != "-" && !bytes.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("bytes", bytes));
    }
    // `common` ends here.
    let (mut user_agent, mut forwarded_for) = (Cow::Borrowed(""), None);
    if !f.done() {
        f.quoted("\"referer\"")?;
        user_agent = unescape(f.quoted("\"user agent\"")?);
        if !f.done() {
            forwarded_for = dash_is_none(f.quoted("\"x-forwarded-for\"")?);
        }
    }
    // "GET /x HTTP/1.1"; a client that sent garbage leaves it here as is
    // (nginx logs "\x16\x03..." with status 400 for TLS on a plain port).
    let (method, target) = match request.split(' ').collect::<Vec<_>>()[..] {
        [m, t, _] | [m, t] => (m, t),
        _ => ("", request),
    };
    Ok(Request {
        time: Some(time),
        peer,
        forwarded_for,
        host,
        method: Cow::Borrowed(method),
        target: unescape(target),
        status,
        user_agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX: &str = r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "POST /login?next=%2F HTTP/1.1" 401 512 "https://shop.example/" "Mozilla/5.0 (Hydra)""#;

    #[test]
    fn combined_reads_every_field() {
        let r = parse(NGINX, false).unwrap();
        assert_eq!(r.peer, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(r.time, Some(971_211_336.0));
        assert_eq!(
            (&*r.method, r.path(), r.query()),
            ("POST", "/login", "next=%2F")
        );
        assert_eq!(r.status, 401);
        assert_eq!(r.user_agent, "Mozilla/5.0 (Hydra)");
        assert_eq!(r.host, None);
        assert_eq!(r.forwarded_for, None);
    }

    #[test]
    fn vhost_main_and_common_variants_read() {
        let line = format!("shop.example:443 {NGINX}");
        let v = parse(&line, true).unwrap();
        assert_eq!(v.host.as_deref(), Some("shop.example"));
        let line = format!("shop.example 2001:db8::1{}", &NGINX[11..]);
        let v6 = parse(&line, true).unwrap();
        assert_eq!(v6.peer, "2001:db8::1".parse::<IpAddr>().unwrap());
        let line = format!(r#"{NGINX} "198.51.100.1, 10.0.0.2""#);
        let main = parse(&line, false).unwrap();
        assert_eq!(
            main.forwarded_for.as_deref(),
            Some("198.51.100.1, 10.0.0.2")
        );
        let line = format!(r#"{NGINX} "-""#);
        let dash = parse(&line, false).unwrap();
        assert_eq!(dash.forwarded_for, None);
        let common = parse(
            r#"10.0.0.1 - bob [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 -"#,
            false,
        )
        .unwrap();
        assert_eq!((common.status, &*common.user_agent), (200, ""));
    }

    #[test]
    fn a_user_name_with_spaces_and_brackets_does_not_hide_the_request() {
        let line = r#"10.0.0.9 - a b [x] [10/Oct/2000:13:55:36 -0700] "x [10/Oct/2000:13:55:36 -0700] "GET /.env HTTP/1.1" 404 1 "-" "curl""#;
        let r = parse(line, false).unwrap();
        assert_eq!((r.path(), r.status), ("/.env", 404));
    }

    #[test]
    fn escaped_quotes_and_garbage_requests_read() {
        let apache = r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /?q=\"x\" HTTP/1.1" 200 1 "-" "say \"hi\"""#;
        let r = parse(apache, false).unwrap();
        assert_eq!((&*r.target, &*r.user_agent), ("/?q=\"x\"", "say \"hi\""));
        let tls = r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "\x16\x03\x01\x02\x00\x01" 400 157 "-" "-""#;
        let r = parse(tls, false).unwrap();
        assert_eq!((r.status, &*r.method), (400, ""));
    }

    #[test]
    fn broken_lines_name_the_field() {
        for (line, needle) in [
            (
                "not-an-ip - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1",
                "client address",
            ),
            (
                "10.0.0.1 - - 10/Oct/2000 \"GET / HTTP/1.1\" 200 1",
                "[time]",
            ),
            ("10.0.0.1 - - [yesterday] \"GET / HTTP/1.1\" 200 1", "time"),
            (
                "10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1 200 1",
                "request",
            ),
            (
                "10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" OK 1",
                "status",
            ),
            (
                "10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1 \"-\" \"unterminated",
                "user agent",
            ),
            ("10.0.0.1", "[time]"),
        ] {
            let err = parse(line, false).unwrap_err().to_string();
            assert!(err.contains(needle), "{line}: {err} should name {needle}");
        }
    }
}
