//! `[app]`, `[[storefront]]`, `[[logs]]` and `[events]`: what to read, whose
//! it is, and how each storefront's detectors are set. Validated whole
//! before anything runs; errors name the key.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc};

use ensuresec_common::{entry::Target, maps::REASON_TEXT_MAX};
use ipnet::IpNet;

mod sections;

pub use sections::{
    AppSection, EventsConfig, FailsafeConfig, Follow, LogConfig, StartAt, StorefrontConfig,
};

use super::{
    client::ClientRules,
    detect::{config::AppDetectors, signatures::Signatures},
    parse::{Format, Parser},
};

/// One log to follow, resolved.
#[derive(Clone, Debug)]
pub struct LogInput {
    pub path: PathBuf,
    pub parser: Parser,
    pub storefront: Option<usize>,
    /// The name in metrics and logs (the path).
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct EventsListener {
    pub listen: SocketAddr,
    pub token: String,
    pub max_body: usize,
}

/// Everything application-level, validated.
#[derive(Clone, Debug)]
pub struct AppSettings {
    pub clients: ClientRules,
    pub storefronts: Vec<(Arc<str>, AppDetectors)>,
    /// Lower-cased host name to storefront.
    pub hosts: HashMap<String, usize>,
    /// The addresses and prefixes each storefront is served on.
    pub addresses: Vec<(Target, usize)>,
    /// Each storefront's fail-safe profile, in `storefronts` order.
    pub failsafe: Vec<Option<crate::detect::failsafe::Profile>>,
    pub logs: Vec<LogInput>,
    pub events: Option<EventsListener>,
    pub section: AppSection,
}

fn host_key(host: &str) -> String {
    let host = host.trim().trim_end_matches('.');
    // `host:port`, but not an IPv6 literal's colons.
    let host = match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

impl AppSettings {
    /// Where read positions and the hashing key are kept.
    pub fn state_dir(&self) -> &std::path::Path {
        self.section
            .state_dir
            .as_deref()
            .unwrap_or(std::path::Path::new(crate::journal::DEFAULT_STATE_DIR))
    }

    pub fn validate(
        section: &AppSection,
        storefronts: &[StorefrontConfig],
        logs: &[LogConfig],
        events: &EventsConfig,
    ) -> Result<Self, String> {
        let trusted_proxies = section
            .trusted_proxies
            .iter()
            .map(|t| {
                t.parse::<IpNet>()
                    .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("app.trusted_proxies: `{t}` is not an address or CIDR prefix")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !(32..=128).contains(&section.ipv6_prefix) {
            return Err(format!(
                "app.ipv6_prefix = {} must be within 32..=128",
                section.ipv6_prefix
            ));
        }
        if section.max_clients == 0 || section.max_line < 256 {
            return Err("app.max_clients must be at least 1 and app.max_line at least 256".into());
        }
        let known: Vec<&str> = Signatures::shipped_ids().collect();
        if let Some(bad) = section
            .disabled_signatures
            .iter()
            .find(|d| !known.contains(&d.as_str()))
        {
            return Err(format!(
                "app.disabled_signatures: `{bad}` is not a shipped signature"
            ));
        }
        if let Some(bad) = section
            .signatures
            .iter()
            .find(|s| s.pattern.trim().is_empty())
        {
            return Err(format!("app.signatures: `{}` has an empty pattern", bad.id));
        }
        let mut fronts = Vec::new();
        let mut hosts = HashMap::new();
        let mut addresses = Vec::new();
        let mut failsafe = Vec::new();
        for (i, s) in storefronts.iter().enumerate() {
            if s.name.is_empty()
                || s.name.len() > REASON_TEXT_MAX
                || s.name.contains(char::is_control)
            {
                return Err(format!(
                    "storefront name `{}` must be 1..={REASON_TEXT_MAX} printable bytes",
                    s.name.escape_debug()
                ));
            }
            // Incidents no storefront claims are named `host` or by their
            // protected prefix: a storefront of such a name would take them.
            if s.name == crate::respond::places::HOST || s.name.parse::<Target>().is_ok() {
                return Err(format!(
                    "storefront name `{}` is reserved (incidents of the host or of a protected prefix are named so)",
                    s.name
                ));
            }
            if fronts.iter().any(|(n, _): &(Arc<str>, _)| **n == *s.name) {
                return Err(format!("storefront `{}` is listed twice", s.name));
            }
            fronts.push((Arc::from(s.name.as_str()), s.detectors()?));
            failsafe.push(
                s.failsafe
                    .as_ref()
                    .map(|f| crate::detect::failsafe::Profile::validate(&s.name, f))
                    .transpose()?,
            );
            for a in &s.addresses {
                let target = a
                    .parse::<Target>()
                    .map_err(|e| format!("storefront {}: address `{a}`: {e}", s.name))?;
                addresses.push((target, i));
            }
            for h in &s.hosts {
                if let Ok(ip) = host_key(h).parse::<std::net::IpAddr>() {
                    addresses.push((Target::of_addr(ip), i));
                }
                if let Some(other) = hosts.insert(host_key(h), i) {
                    return Err(format!(
                        "host `{h}` belongs to storefronts `{}` and `{}`",
                        storefronts[other].name, s.name
                    ));
                }
            }
        }
        let find = |name: &str, what: &str| {
            fronts
                .iter()
                .position(|(n, _)| **n == *name)
                .ok_or_else(|| format!("{what}: no [[storefront]] is named `{name}`"))
        };
        let mut inputs = Vec::new();
        for l in logs {
            let what = format!("logs {}", l.path.display());
            if !l.path.is_absolute() {
                return Err(format!("{what}: the path must be absolute"));
            }
            let storefront = l
                .storefront
                .as_deref()
                .map(|s| find(s, &what))
                .transpose()?;
            let mut parser = Parser::new(l.format);
            match (&l.json, l.format) {
                (Some(j), Format::Json) => parser = parser.with_fields(j.resolve()),
                (Some(_), other) => {
                    return Err(format!(
                        "{what}: `json` fields are for format = \"json\", not {:?}",
                        other.name()
                    ));
                }
                (None, _) => {}
            }
            if storefront.is_none() && fronts.is_empty() {
                return Err(format!("{what}: no [[storefront]] to count its lines for"));
            }
            if inputs.iter().any(|i: &LogInput| i.path == l.path) {
                return Err(format!("{what}: listed twice"));
            }
            inputs.push(LogInput {
                path: l.path.clone(),
                parser,
                storefront,
                name: l.path.display().to_string(),
            });
        }
        let events = match (events.listen, &events.token_file) {
            (None, _) => None,
            (Some(_), None) => {
                return Err("events.listen needs events.token_file (a bearer token)".into());
            }
            (Some(listen), Some(file)) => {
                let token = std::fs::read_to_string(file)
                    .map_err(|e| format!("events.token_file {}: {e}", file.display()))?
                    .trim()
                    .to_string();
                if token.len() < 16 {
                    return Err(format!(
                        "events.token_file {}: the token must be at least 16 characters",
                        file.display()
                    ));
                }
                if fronts.is_empty() {
                    return Err("events.listen: no [[storefront]] to count events for".into());
                }
                Some(EventsListener {
                    listen,
                    token,
                    max_body: events.max_body.max(1024),
                })
            }
        };
        Ok(Self {
            clients: ClientRules {
                trusted_proxies,
                ipv6_prefix: section.ipv6_prefix,
            },
            storefronts: fronts,
            hosts,
            addresses,
            failsafe,
            logs: inputs,
            events,
            section: section.clone(),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.logs.is_empty() || self.events.is_some()
    }

    /// The storefront a host name belongs to.
    pub fn storefront_of_host(&self, host: &str) -> Option<usize> {
        self.hosts.get(&host_key(host)).copied()
    }

    pub fn storefront_named(&self, name: &str) -> Option<usize> {
        self.storefronts.iter().position(|(n, _)| **n == *name)
    }

    pub fn signatures(&self) -> Signatures {
        Signatures::new(&self.section.signatures, &self.section.disabled_signatures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn front(name: &str, hosts: &[&str]) -> StorefrontConfig {
        StorefrontConfig {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        }
    }

    fn log(path: &str, format: Format, storefront: Option<&str>) -> LogConfig {
        LogConfig {
            path: path.into(),
            format,
            storefront: storefront.map(String::from),
            json: None,
        }
    }

    #[test]
    fn hosts_map_to_storefronts_whatever_their_case_or_port() {
        let s = AppSettings::validate(
            &AppSection::default(),
            &[front("a", &["Shop.Example"]), front("b", &["b.example"])],
            &[log(
                "/var/log/nginx/access.log",
                Format::VhostCombined,
                None,
            )],
            &EventsConfig::default(),
        )
        .unwrap();
        assert_eq!(s.storefront_of_host("shop.example:443"), Some(0));
        assert_eq!(s.storefront_of_host("B.EXAMPLE."), Some(1));
        assert_eq!(s.storefront_of_host("other.example"), None);
        assert!(s.enabled());
    }

    #[test]
    fn bad_settings_are_named() {
        let ok_front = [front("a", &["a.example"])];
        let cases: Vec<(AppSection, Vec<StorefrontConfig>, Vec<LogConfig>, &str)> = vec![
            (
                AppSection {
                    trusted_proxies: vec!["cdn".into()],
                    ..Default::default()
                },
                ok_front.to_vec(),
                vec![],
                "cdn",
            ),
            (
                AppSection {
                    ipv6_prefix: 8,
                    ..Default::default()
                },
                ok_front.to_vec(),
                vec![],
                "ipv6_prefix",
            ),
            (
                AppSection {
                    disabled_signatures: vec!["nope".into()],
                    ..Default::default()
                },
                ok_front.to_vec(),
                vec![],
                "nope",
            ),
            (
                AppSection::default(),
                vec![front("a", &["x"]), front("b", &["X"])],
                vec![],
                "belongs to",
            ),
            (
                AppSection::default(),
                vec![front("a", &[]), front("a", &[])],
                vec![],
                "twice",
            ),
            (
                AppSection::default(),
                vec![front(&"x".repeat(64), &[])],
                vec![],
                "storefront name",
            ),
            (
                AppSection::default(),
                ok_front.to_vec(),
                vec![log("/l", Format::Combined, Some("zz"))],
                "zz",
            ),
            (
                AppSection::default(),
                ok_front.to_vec(),
                vec![log("rel.log", Format::Combined, None)],
                "absolute",
            ),
            (
                AppSection::default(),
                vec![],
                vec![log("/l", Format::Combined, None)],
                "no [[storefront]]",
            ),
        ];
        for (section, fronts, logs, needle) in cases {
            let err = AppSettings::validate(&section, &fronts, &logs, &EventsConfig::default())
                .unwrap_err();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
        let events = EventsConfig {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            ..Default::default()
        };
        let err =
            AppSettings::validate(&AppSection::default(), &ok_front, &[], &events).unwrap_err();
        assert!(err.contains("token_file"), "{err}");
    }
}
