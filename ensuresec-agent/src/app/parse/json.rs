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
use serde_json::Value;

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
                forwarded_for: Some(s("request.headers.X-Forwarded-For.0")),
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

    pub fn parse(&self, line: &str) -> Result<Request<'static>, ParseError> {
        let value: Value = serde_json::from_str(line).map_err(ParseError::Json)?;
        if !value.is_object() {
            return Err(invalid("access log object", line));
        }
        let client = text(&value, &self.client).ok_or(ParseError::Missing("client address"))?;
        let peer = parse_client(&client)?;
        let status_value = find(&value, &self.status).ok_or(ParseError::Missing("status"))?;
        let status = match status_value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| invalid("status", &status_value.to_string()))? as u16;
        let time = match self.time.as_deref().and_then(|p| find(&value, p)) {
            Some(t) => Some(time::rfc3339_or_unix(t)?),
            None => None,
        };
        let optional = |path: &Option<String>| {
            path.as_deref()
                .and_then(|p| text(&value, p))
                .filter(|t| !t.is_empty() && t != "-")
        };
        Ok(Request {
            time,
            peer,
            forwarded_for: optional(&self.forwarded_for).map(Cow::Owned),
            host: optional(&self.host).map(Cow::Owned),
            method: Cow::Owned(text(&value, &self.method).unwrap_or_default()),
            target: Cow::Owned(text(&value, &self.uri).ok_or(ParseError::Missing("uri"))?),
            status,
            user_agent: Cow::Owned(optional(&self.user_agent).unwrap_or_default()),
        })
    }
}

fn find<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    // A key with dots of its own is looked up whole first.
    if let Some(v) = value.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(value, |v, part| match v {
        Value::Array(items) => items.get(part.parse::<usize>().ok()?),
        _ => v.get(part),
    })
}

fn text(value: &Value, path: &str) -> Option<String> {
    match find(value, path)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
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
        let caddy = r#"{"level":"info","ts":1796114400.25,"request":{"remote_ip":"2001:db8::9","remote_port":"5555","proto":"HTTP/2.0","method":"POST","host":"shop.example","uri":"/login","headers":{"User-Agent":["sqlmap/1.7"]}},"status":401}"#;
        let r = JsonFields::preset(JsonPreset::Caddy).parse(caddy).unwrap();
        assert_eq!(
            (r.status, &*r.method, &*r.user_agent),
            (401, "POST", "sqlmap/1.7")
        );
        assert_eq!(r.time, Some(1_796_114_400.25));
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
