//! nginx's error log, for what it says about clients:
//! `2024/01/31 12:00:00 [error] 12#12: *5 user "bob" was not found in "/etc/nginx/htpasswd", client: 10.0.0.1, server: shop, request: "GET / HTTP/1.1", host: "shop.example"`
//! (likewise `user "bob": password mismatch` and `limiting requests, excess:
//! 1.2 by zone "one"`). Other lines are `Record::Other`.

use std::net::IpAddr;

use super::{ParseError, invalid, time};
use crate::app::record::{ErrorKind, ErrorLine, Record};

/// The text between `key: ` and the next `, ` (or the end).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    Some(rest.find(", ").map_or(rest, |end| &rest[..end]))
}

fn quoted_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let end = rest.find('"')?;
    Some(&rest[..end])
}

pub fn parse(line: &str) -> Result<Record<'_>, ParseError> {
    // `YYYY/MM/DD HH:MM:SS [level] pid#tid: message`
    let when = line.get(..19).ok_or(ParseError::Missing("time"))?;
    let time = time::nginx_error(when)?;
    let rest = &line[19..];
    let level_end = rest.find("] ").ok_or(ParseError::Missing("[level]"))?;
    let message = &rest[level_end + 2..];
    // `12#12: *5 ` before the text itself; the text must start the message:
    // a request path with "limiting requests" in it does not make one.
    let text = message
        .split_once(": ")
        .map_or(message, |(_, t)| t)
        .trim_start_matches(|c: char| c == '*' || c.is_ascii_digit())
        .trim_start();
    let kind = if let Some(rest) = text.strip_prefix("user \"") {
        let user = quoted_after(text, "user \"").ok_or(ParseError::Missing("user"))?;
        let after = &rest[user.len()..];
        if after.starts_with("\" was not found in") {
            ErrorKind::UserNotFound { user }
        } else if after.starts_with("\": password mismatch") {
            ErrorKind::PasswordMismatch { user }
        } else {
            return Ok(Record::Other);
        }
    } else if text.starts_with("limiting requests, excess:") {
        ErrorKind::LimitingRequests
    } else {
        return Ok(Record::Other);
    };
    // The user name and the request are written unescaped: a line naming
    // more than one client is someone's forgery, not nginx's.
    if message.matches(", client: ").count() != 1 {
        return Err(invalid("client", "named more than once"));
    }
    let client_text = field(message, ", client: ").ok_or(ParseError::Missing("client"))?;
    let client: IpAddr = client_text
        .parse()
        .map_err(|_| invalid("client", client_text))?;
    let host = (message.matches(", host: \"").count() == 1)
        .then(|| field(message, ", host: \"").map(|h| h.trim_end_matches('"')))
        .flatten();
    Ok(Record::Error(ErrorLine {
        time: Some(time),
        kind,
        client,
        host,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_and_rate_limits_read() {
        let missing = r#"2026/12/01 10:00:00 [error] 7#7: *3 user "admin" was not found in "/etc/nginx/htpasswd", client: 10.0.0.9, server: shop, request: "GET /admin HTTP/1.1", host: "shop.example""#;
        let Record::Error(e) = parse(missing).unwrap() else {
            panic!()
        };
        assert_eq!(e.kind, ErrorKind::UserNotFound { user: "admin" });
        assert_eq!(e.client, "10.0.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(e.host, Some("shop.example"));
        let mismatch = r#"2026/12/01 10:00:00 [error] 7#7: *4 user "bob": password mismatch, client: 2001:db8::2, server: shop, request: "GET / HTTP/1.1", host: "shop.example""#;
        let Record::Error(e) = parse(mismatch).unwrap() else {
            panic!()
        };
        assert_eq!(e.kind, ErrorKind::PasswordMismatch { user: "bob" });
        let limited = r#"2026/12/01 10:00:00 [error] 7#7: *5 limiting requests, excess: 10.040 by zone "one", client: 10.0.0.3, server: shop, request: "GET / HTTP/1.1", host: "shop.example""#;
        let Record::Error(e) = parse(limited).unwrap() else {
            panic!()
        };
        assert_eq!(e.kind, ErrorKind::LimitingRequests);
        let other = "2026/12/01 10:00:00 [notice] 1#1: signal process started";
        assert_eq!(parse(other).unwrap(), Record::Other);
        // A request's path that reads like a rate-limit line is a 404, not one.
        let forged = r#"2026/12/01 10:00:00 [error] 7#7: *9 open() "/www/limiting requests, excess: 1" failed (2: No such file or directory), client: 10.0.0.3, server: shop"#;
        assert_eq!(parse(forged).unwrap(), Record::Other);
    }

    #[test]
    fn broken_lines_are_named() {
        for (line, needle) in [
            ("short", "time"),
            ("2026-12-01 10:00:00 [error] x", "time"),
            ("2026/12/01 10:00:00 no level here", "[level]"),
            (
                r#"2026/12/01 10:00:00 [error] 7#7: *5 limiting requests, excess: 1 by zone "z", client: nobody"#,
                "client",
            ),
            (
                r#"2026/12/01 10:00:00 [error] 7#7: *5 limiting requests, excess: 1 by zone "z""#,
                "client",
            ),
            (
                r#"2026/12/01 10:00:00 [error] 7#7: *3 user "a, client: 198.51.100.7, b" was not found in "/h", client: 10.0.0.1, server: s"#,
                "more than once",
            ),
        ] {
            let err = parse(line).unwrap_err().to_string();
            assert!(err.contains(needle), "{line}: {err} should name {needle}");
        }
    }
}
