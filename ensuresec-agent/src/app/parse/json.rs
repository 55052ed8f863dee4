//! JSON access logs: one object per line, with the fields found where a
//! mapping says. Presets cover nginx (`log_format ... escape=json` with the
//! variables' names as keys), Caddy and Traefik; every path can be
//! overridden. A path is dotted, and a number indexes an array:
//! `request.headers.User-Agent.0`.

use std::{
    borrow::Cow,
    net::{IpAddr, SocketAddr},
};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ParseError, invalid, time};
use crate::app::record::Request;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JsonPreset {
    /// `{"time":"$time_iso8601","remote_addr":"$remote_addr","host":"$host",
    /// "request_method":"$request_method","request_uri":"$request_uri",
    /// "status":"$status","http_user_agent":"$http_user_agent",
    /// "http_x_forwarded_for":"$http_x_forwarded_for"}`
    #[default]
    Nginx,
    /// Caddy's `log` directive (JSON encoder).
    Caddy,
    /// Traefik's access log with `format = "json"` and headers kept.
    Traefik,
}

/// Where each field is; `None` for fields the log does not have.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JsonFields {
    pub client: String,
    pub time: Option<String>,
    pub method: String,
    pub uri: String,
    pub status: String,
    pub user_agent: Option<String>,
    pub host: Option<String>,
    pub forwarded_for: Option<String>,
}

/// `[logs.json]` in the config: a preset, and paths that replace its own.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JsonFieldsConfig {
    #[serde(default)]
    pub preset: JsonPreset,
    pub client: Option<String>,
    pub time: Option<String>,
    pub method: Option<String>,
    pub uri: Option<String>,
    pub status: Option<String>,
    pub user_agent: Option<String>,
    pub host: Option<String>,
    pub forwarded_for: Option<String>,
}

impl JsonFieldsConfig {
    pub fn resolve(&self) -> JsonFields {
        let mut f = JsonFields::preset(self.preset);
        let set = |slot: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                *slot = v.clone();
            }
        };
        set(&mut f.client, &self.client);
        set(&mut f.method, &self.method);
        set(&mut f.uri, &self.uri);
        set(&mut f.status, &self.status);
        let opt = |slot: &mut Option<String>, v: &Option<String>| {
            if v.is_some() {
                *slot = v.clone();
            }
        };
        opt(&mut f.time, &self.time);
        opt(&mut f.user_agent, &self.user_agent);
        opt(&mut f.host, &self.host);
        opt(&mut f.forwarded_for, &self.forwarded_for);
        f
    }
}

fn s(text: &str) -> String {
    text.to_string()
}

impl JsonFields {
    pub fn preset(preset: JsonPreset) -> Self {
        match preset {
            JsonPreset::Nginx => Self {
                client: s("remote_addr"),
                time: Some(s("time")),
                method: s("request_method"),
                uri: s("request_uri"),
                status: s("status"),
                user_agent: Some(s("http_user_agent")),
                host: Some(s("host")),
                forwarded_for: Some(s("http_x_forwarded_for")),
            },
            JsonPreset::Caddy => Self {
                client: s("request.remote_ip"),
                time: Some(s("ts")),
                method: s("request.method"),
                uri: s("request.uri"),
                status: s("status"),
                user_agent: Some(s("request.headers.User-Agent.0")),
                host: Some(s("request.host")),
                // Every header line: a proxy may add its own beside the
                // client's (which alone could say anything).
                forwarded_for: Some(s("request.headers.X-Forwarded-For")),
            },
            JsonPreset::Traefik => Self {
                client: s("ClientHost"),
                time: Some(s("StartUTC")),
                method: s("RequestMethod"),
                uri: s("RequestPath"),
                status: s("DownstreamStatus"),
                user_agent: Some(s("request_User-Agent")),
                host: Some(s("RequestHost")),
                forwarded_for: Some(s("request_X-Forwarded-For")),
            },
        }
    }

    pub fn parse<'a>(&self, line: &'a str) -> Result<Request<'a>, ParseError> {
        let doc = Doc::parse(line)?;
        let client = doc
            .text(&self.client)
            .ok_or(ParseError::Missing("client address"))?;
        let peer = parse_client(&client)?;
        let status_leaf = doc
            .leaf(&self.status)
            .ok_or(ParseError::Missing("status"))?;
        let status = match &status_leaf {
            Leaf::Text(t) => t.parse::<u64>().ok(),
            Leaf::Number(n) => n.parse::<u64>().ok(),
        }
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| invalid("status", status_leaf.as_str()))? as u16;
        let time = match self.time.as_deref().and_then(|p| doc.leaf(p)) {
            Some(Leaf::Text(t)) => Some(time::rfc3339(&t)?),
            Some(Leaf::Number(n)) => Some(n.parse::<f64>().map_err(|_| invalid("time", n))?),
            None => None,
        };
        let optional = |path: &Option<String>| {
            path.as_deref()
                .and_then(|p| doc.text(p))
                .filter(|t| !t.is_empty() && t != "-")
        };
        Ok(Request {
            time,
            peer,
            forwarded_for: optional(&self.forwarded_for),
            host: optional(&self.host),
            method: doc.text(&self.method).unwrap_or_default(),
            target: doc.text(&self.uri).ok_or(ParseError::Missing("uri"))?,
            status,
            user_agent: optional(&self.user_agent).unwrap_or_default(),
        })
    }
}

/// A JSON object read lazily: the top level's values stay unparsed text
/// until a field is asked for, and strings without escapes are borrowed
/// from the line. About twice as fast as a whole `serde_json::Value`.
struct Doc<'a> {
    top: Entries<'a>,
}

/// An object's entries, in order, keys borrowed from the line where they
/// have no escapes: a short list is searched faster than a map is built.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Entries<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// A key, borrowed when it can be.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Visit)
    }
}

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Key(k), v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    entries.push((k, v));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A scalar field: text or a number (its text).
enum Leaf<'a> {
    Text(Cow<'a, str>),
    Number(&'a str),
}

impl Leaf<'_> {
    fn as_str(&self) -> &str {
        match self {
            Leaf::Text(t) => t,
            Leaf::Number(n) => n,
        }
    }
}

impl<'a> Doc<'a> {
    fn parse(line: &'a str) -> Result<Self, ParseError> {
        if !line.trim_start().starts_with('{') {
            return Err(invalid("access log object", line));
        }
        let top = serde_json::from_str(line).map_err(ParseError::Json)?;
        Ok(Self { top })
    }

    fn raw(&self, path: &str) -> Option<&'a RawValue> {
        // A key with dots of its own is looked up whole first.
        if let Some(v) = self.top.get(path) {
            return Some(v);
        }
        let mut parts = path.split('.');
        let mut value: &'a RawValue = self.top.get(parts.next()?)?;
        for part in parts {
            let text = value.get();
            value = if text.starts_with('[') {
                let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
                items.get(part.parse::<usize>().ok()?).copied()?
            } else {
                let object: Entries<'a> = serde_json::from_str(text).ok()?;
                object.get(part)?
            };
        }
        Some(value)
    }

    fn leaf(&self, path: &str) -> Option<Leaf<'a>> {
        let text = self.raw(path)?.get();
        match text.as_bytes().first()? {
            b'"' => {
                // Borrowed unless the string has escapes.
                let s = serde_json::from_str::<&'a str>(text)
                    .map(Cow::Borrowed)
                    .or_else(|_| serde_json::from_str::<String>(text).map(Cow::Owned))
                    .ok()?;
                Some(Leaf::Text(s))
            }
            b'-' | b'0'..=b'9' => Some(Leaf::Number(text)),
            _ => None,
        }
    }

    fn text(&self, path: &str) -> Option<Cow<'a, str>> {
        let raw = self.raw(path)?.get();
        if raw.starts_with('[') {
            // A header's lines (Caddy, Traefik), joined as one list.
            let lines: Vec<String> = serde_json::from_str(raw).ok()?;
            return Some(Cow::Owned(lines.join(", ")));
        }
        match self.leaf(path)? {
            Leaf::Text(t) => Some(t),
            Leaf::Number(n) => Some(Cow::Borrowed(n)),
        }
    }
}

/// An address, or `address:port` / `[v6]:port`.
fn parse_client(text: &str) -> Result<IpAddr, ParseError> {
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .map_err(|_| invalid("client address", text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_read_their_servers_logs() {
        let nginx = r#"{"time":"2026-12-01T10:00:00+00:00","remote_addr":"10.0.0.5","host":"shop.example","request_method":"GET","request_uri":"/.env","status":"404","http_user_agent":"curl/8","http_x_forwarded_for":""}"#;
        let r = JsonFields::preset(JsonPreset::Nginx).parse(nginx).unwrap();
        assert_eq!(
            (r.status, r.path(), r.host.as_deref()),
            (404, "/.env", Some("shop.example"))
        );
        assert_eq!(r.forwarded_for, None);
        let caddy = r#"{"level":"info","ts":1796114400.25,"request":{"remote_ip":"2001:db8::9","remote_port":"5555","proto":"HTTP/2.0","method":"POST","host":"shop.example","uri":"/login","headers":{"User-Agent":["sqlmap/1.7"],"X-Forwarded-For":["1.2.3.4","198.51.100.7"]}},"status":401}"#;
        let r = JsonFields::preset(JsonPreset::Caddy).parse(caddy).unwrap();
        assert_eq!(
            (r.status, &*r.method, &*r.user_agent),
            (401, "POST", "sqlmap/1.7")
        );
        assert_eq!(r.time, Some(1_796_114_400.25));
        assert_eq!(r.forwarded_for.as_deref(), Some("1.2.3.4, 198.51.100.7"));
        let traefik = r#"{"ClientHost":"192.0.2.4","ClientAddr":"192.0.2.4:3333","DownstreamStatus":200,"RequestHost":"shop.example","RequestMethod":"GET","RequestPath":"/p/1?x=1","StartUTC":"2026-12-01T10:00:00.5Z","request_User-Agent":"Mozilla/5.0"}"#;
        let r = JsonFields::preset(JsonPreset::Traefik)
            .parse(traefik)
            .unwrap();
        assert_eq!((r.status, r.path(), r.query()), (200, "/p/1", "x=1"));
    }

    #[test]
    fn overrides_replace_the_presets_paths() {
        let cfg = JsonFieldsConfig {
            preset: JsonPreset::Traefik,
            client: Some("ClientAddr".into()),
            ..Default::default()
        };
        let line = r#"{"ClientAddr":"[2001:db8::1]:443","DownstreamStatus":200,"RequestPath":"/"}"#;
        let r = cfg.resolve().parse(line).unwrap();
        assert_eq!(r.peer, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(r.time, None);
    }

    #[test]
    fn missing_and_wrong_fields_are_named() {
        let f = JsonFields::preset(JsonPreset::Nginx);
        for (line, needle) in [
            (r#"{"status":200,"request_uri":"/"}"#, "client address"),
            (
                r#"{"remote_addr":"x","status":200,"request_uri":"/"}"#,
                "client address",
            ),
            (r#"{"remote_addr":"10.0.0.1","request_uri":"/"}"#, "status"),
            (
                r#"{"remote_addr":"10.0.0.1","status":"ok","request_uri":"/"}"#,
                "status",
            ),
            (r#"{"remote_addr":"10.0.0.1","status":200}"#, "uri"),
            (
                r#"{"remote_addr":"10.0.0.1","status":200,"request_uri":"/","time":"noon"}"#,
                "time",
            ),
            (r#""just a string""#, "object"),
            ("{not json", "JSON"),
        ] {
            let err = f.parse(line).unwrap_err().to_string();
            assert!(err.contains(needle), "{line}: {err} should name {needle}");
        }
    }
}
