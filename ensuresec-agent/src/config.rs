//! The agent's TOML configuration. Unknown keys are errors that name the key,
//! and every value is validated before anything is applied.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ensuresec_common::{
    entry::Target,
    maps::{DEFAULT_CIDR_V4, DEFAULT_CIDR_V6, DEFAULT_EXACT_V4, DEFAULT_EXACT_V6},
    ports::PortRange,
};
use serde::{Deserialize, Serialize};

use crate::{
    app::settings::{AppSection, AppSettings, EventsConfig, LogConfig, StorefrontConfig},
    detect::settings::{DetectSection, DetectSettings, ProtectConfig},
    error::{Error, Result},
    ml::settings::MlSection,
};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/ensuresec/ensuresec.toml";

/// How to attach: native (in the driver) is fastest; generic works on any device.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Native if the driver supports it, else generic.
    #[default]
    Auto,
    Native,
    Generic,
}

/// Map capacities, used when the maps are created.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MapSizes {
    pub exact_v4: u32,
    pub exact_v6: u32,
    pub cidr_v4: u32,
    pub cidr_v6: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            exact_v4: DEFAULT_EXACT_V4,
            exact_v6: DEFAULT_EXACT_V6,
            cidr_v4: DEFAULT_CIDR_V4,
            cidr_v6: DEFAULT_CIDR_V6,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    pub name: String,
    #[serde(default)]
    pub mode: Mode,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 9968).into(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PortPolicyConfig {
    pub enabled: bool,
    /// Allowed TCP destination ports: "443" or "8000-8100".
    pub tcp: Vec<String>,
    pub udp: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// How often expired entries are removed from the maps and gauges refreshed.
    #[serde(with = "duration")]
    pub sweep_interval: Duration,
    /// The journal and what else must outlive a reboot.
    pub state_dir: PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(10),
            state_dir: crate::journal::DEFAULT_STATE_DIR.into(),
        }
    }
}

/// The journal's retention.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Entries older than this are removed.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// The oldest entries go while the database is larger than this.
    pub max_size_mb: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 86_400),
            max_size_mb: 1024,
        }
    }
}

impl JournalConfig {
    pub fn retention(&self) -> crate::journal::retention::Retention {
        crate::journal::retention::Retention {
            max_age: self.retention,
            max_bytes: self.max_size_mb << 20,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AllowlistConfig {
    pub entries: Vec<String>,
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(rename = "interface")]
    pub interfaces: Vec<InterfaceConfig>,
    pub maps: MapSizes,
    pub metrics: MetricsConfig,
    pub allowlist: AllowlistConfig,
    pub port_policy: PortPolicyConfig,
    pub agent: AgentConfig,
    pub journal: JournalConfig,
    pub incidents: crate::respond::settings::IncidentsConfig,
    pub notices: crate::respond::notices::config::NoticesConfig,
    pub detect: DetectSection,
    pub protect: Vec<ProtectConfig>,
    pub ml: MlSection,
    /// Application level: clients, proxies, signatures, state.
    pub app: AppSection,
    #[serde(rename = "storefront")]
    pub storefronts: Vec<StorefrontConfig>,
    pub logs: Vec<LogConfig>,
    pub events: EventsConfig,
}

/// The config after validation: parsed targets and port ranges.
#[derive(Clone, Debug)]
pub struct Validated {
    pub raw: Config,
    pub detect: DetectSettings,
    pub app: AppSettings,
    pub allowlist: Vec<Target>,
    pub tcp_ports: Vec<PortRange>,
    pub udp_ports: Vec<PortRange>,
    pub notices: crate::respond::notices::NoticeSettings,
}

/// A duration in humantime form (`90s`, `5m`), at least 100 ms.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        let value = humantime::parse_duration(&text)
            .map_err(|e| D::Error::custom(format!("`{text}` is not a duration: {e}")))?;
        if value < Duration::from_millis(100) {
            return Err(D::Error::custom(format!("`{text}` is shorter than 100ms")));
        }
        Ok(value)
    }
}

impl Config {
    pub fn parse(path: &Path, text: &str) -> Result<Validated> {
        let fail = |why: String| Error::Config {
            path: path.to_path_buf(),
            why,
        };
        let mut raw: Config = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        if raw.app.state_dir.is_none() {
            raw.app.state_dir = Some(raw.agent.state_dir.clone());
        }
        if raw.journal.max_size_mb == 0 {
            return Err(fail(
                "journal.max_size_mb = 0: the journal needs room".into(),
            ));
        }
        if raw.agent.state_dir.as_os_str().is_empty() || raw.agent.state_dir.is_relative() {
            return Err(fail(format!(
                "agent.state_dir = `{}` must be an absolute path",
                raw.agent.state_dir.display()
            )));
        }
        for (what, value) in [
            ("maps.exact_v4", raw.maps.exact_v4),
            ("maps.exact_v6", raw.maps.exact_v6),
            ("maps.cidr_v4", raw.maps.cidr_v4),
            ("maps.cidr_v6", raw.maps.cidr_v6),
        ] {
            if !(1..=1 << 26).contains(&value) {
                return Err(fail(format!("{what} = {value} is outside 1..=67108864")));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for iface in &raw.interfaces {
            if iface.name.is_empty() || iface.name.len() >= 16 || iface.name.contains('/') {
                return Err(fail(format!("`{}` is not an interface name", iface.name)));
            }
            if !seen.insert(&iface.name) {
                return Err(fail(format!("interface `{}` is listed twice", iface.name)));
            }
        }
        let allowlist = raw
            .allowlist
            .entries
            .iter()
            .map(|e| {
                e.parse::<Target>()
                    .map_err(|err| fail(format!("allowlist.entries: {err}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let ports = |list: &[String], what: &str| {
            list.iter()
                .map(|p| {
                    p.parse::<PortRange>()
                        .map_err(|e| fail(format!("{what}: {e}")))
                })
                .collect::<Result<Vec<_>>>()
        };
        let tcp_ports = ports(&raw.port_policy.tcp, "port_policy.tcp")?;
        let udp_ports = ports(&raw.port_policy.udp, "port_policy.udp")?;
        let detect = DetectSettings::validate(&raw.detect, &raw.protect, &raw.ml).map_err(fail)?;
        let app = AppSettings::validate(&raw.app, &raw.storefronts, &raw.logs, &raw.events)
            .map_err(fail)?;
        let storefront_names: Vec<String> =
            raw.storefronts.iter().map(|s| s.name.clone()).collect();
        let notices =
            crate::respond::notices::NoticeSettings::validate(&raw.notices, &storefront_names)
                .map_err(fail)?;
        Ok(Validated {
            notices,
            detect,
            app,
            raw,
            allowlist,
            tcp_ports,
            udp_ports,
        })
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Validated> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading config {}", path.display()), e))?;
        Self::parse(path, &text)
    }

    /// The file at `path` if given, else the default path if it exists, else defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Validated> {
        match path {
            Some(p) => Self::load(p),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Self::load(Path::new(DEFAULT_CONFIG_PATH))
            }
            None => Self::parse(&PathBuf::from("(defaults)"), ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Validated> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.raw.maps, MapSizes::default());
        assert_eq!(c.raw.metrics.listen.to_string(), "127.0.0.1:9968");
        assert!(!c.raw.port_policy.enabled);
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../deploy/ensuresec.example.toml");
        let c = parse(text).unwrap();
        assert_eq!(c.raw.interfaces[0].name, "eth0");
        assert!(!c.allowlist.is_empty());
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("bogus = 1", "bogus"),
            ("[maps]\nexact_v5 = 10", "exact_v5"),
            ("[[interface]]\nname = \"eth0\"\nspeed = 10", "speed"),
            ("[metrics]\nlisten = \"127.0.0.1:1\"\nport = 2", "port"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
            assert!(err.contains("test.toml"), "{err}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (text, needle) in [
            ("[allowlist]\nentries = [\"10.0.0.1/8\"]", "host bits"),
            ("[port_policy]\ntcp = [\"http\"]", "http"),
            ("[maps]\nexact_v4 = 0", "maps.exact_v4"),
            ("[[interface]]\nname = \"eth0\"\nmode = \"turbo\"", "turbo"),
            (
                "[[interface]]\nname = \"eth0\"\n[[interface]]\nname = \"eth0\"",
                "twice",
            ),
            ("[agent]\nsweep_interval = \"often\"", "often"),
            ("[metrics]\nlisten = \"localhost\"", "listen"),
            ("maps = 3", "maps"),
            ("[journal]\nmax_size_mb = 0", "max_size_mb"),
            ("[journal]\nretention = \"forever\"", "forever"),
            ("[agent]\nstate_dir = \"var/lib\"", "absolute"),
            ("[[storefront]]\nname = \"host\"", "reserved"),
            ("[[storefront]]\nname = \"10.0.0.0/8\"", "reserved"),
            (
                "[[storefront]]\nname = \"a\"\n[storefront.failsafe]\nper_source_scale = 2.0",
                "per_source_scale",
            ),
            (
                "[[notices.channel]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1\"",
                "secret_file",
            ),
            (
                "[[notices.channel]]\nname = \"x\"\nkind = \"slack\"\nurl = \"ftp://h\"",
                "not http",
            ),
            (
                "[[notices.channel]]\nname = \"x\"\nkind = \"slack\"\nurl = \"http://h\"\nstorefronts = [\"nope\"]",
                "no [[storefront]] is named `nope`",
            ),
            (
                "[[notices.channel]]\nname = \"m\"\nkind = \"email\"\nsmtp = \"mail\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]",
                "not host:port",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
