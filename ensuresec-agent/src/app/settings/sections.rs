//! The application sections of the config file as written: `[app]`,
//! `[[storefront]]`, `[[logs]]`, `[events]`.

use std::{net::SocketAddr, path::PathBuf};

use ensuresec_common::decisions::Detector;
use serde::Deserialize;

use crate::app::{
    detect::{
        config::{AppDetectorOverride, AppDetectors},
        signatures::Signature,
    },
    parse::{Format, json::JsonFieldsConfig},
};

/// Where a log never read before is first read from.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Its end: the agent judges what happens from now on.
    #[default]
    End,
    Beginning,
}

/// How logs are followed.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Follow {
    /// Woken by inotify at each write (polling where inotify is missing).
    #[default]
    Inotify,
    /// Looked at every 100 ms: for file systems whose writes inotify does
    /// not see (NFS and other network file systems written by other hosts).
    Poll,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AppSection {
    /// Reverse proxies and CDN ranges whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// IPv6 clients are counted and banned by this prefix.
    pub ipv6_prefix: u8,
    /// Read positions and the hashing key; kept across reboots. Defaults to
    /// `agent.state_dir`.
    pub state_dir: Option<PathBuf>,
    /// A POST to one of these paths answered with a failure status is a
    /// failed login.
    pub login_paths: Vec<String>,
    pub login_failure_status: Vec<u16>,
    /// Clients remembered at most (all storefronts together).
    pub max_clients: usize,
    /// Longer lines are skipped and counted as `too_long`.
    pub max_line: usize,
    pub start_at: StartAt,
    pub follow: Follow,
    /// Signatures added to the shipped list.
    pub signatures: Vec<Signature>,
    /// Ids of shipped signatures a storefront legitimately serves.
    pub disabled_signatures: Vec<String>,
}

impl Default for AppSection {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            ipv6_prefix: 64,
            state_dir: None,
            login_paths: [
                "/login",
                "/account/login",
                "/customer/account/loginPost",
                "/my-account/",
                "/wp-login.php",
                "/user/login",
            ]
            .map(String::from)
            .to_vec(),
            login_failure_status: vec![401, 403],
            max_clients: 200_000,
            max_line: 64 * 1024,
            start_at: StartAt::End,
            follow: Follow::Inotify,
            signatures: Vec::new(),
            disabled_signatures: Vec::new(),
        }
    }
}

/// One `[[storefront]]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorefrontConfig {
    pub name: String,
    /// Host names whose requests are this storefront's (`[[logs]]` without
    /// a `storefront` of its own map each line by its Host).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The addresses or prefixes it is served on: attacks on them are its
    /// incidents. IP literals among `hosts` count too.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The protection it gets while under attack.
    pub failsafe: Option<FailsafeConfig>,
    pub http_flood: Option<AppDetectorOverride>,
    pub credential_stuffing: Option<AppDetectorOverride>,
    pub account_takeover: Option<AppDetectorOverride>,
    pub card_testing: Option<AppDetectorOverride>,
    pub scanner: Option<AppDetectorOverride>,
    pub attack_tool: Option<AppDetectorOverride>,
}

impl StorefrontConfig {
    pub(super) fn detectors(&self) -> Result<AppDetectors, String> {
        let mut d = AppDetectors::default();
        for (detector, o) in [
            (Detector::HttpFlood, &self.http_flood),
            (Detector::CredentialStuffing, &self.credential_stuffing),
            (Detector::AccountTakeover, &self.account_takeover),
            (Detector::CardTesting, &self.card_testing),
            (Detector::Scanner, &self.scanner),
            (Detector::AttackTool, &self.attack_tool),
        ] {
            if let Some(o) = o {
                let c = d
                    .get(detector)
                    .with(o)
                    .map_err(|e| format!("storefront {}: {}: {e}", self.name, detector.name()))?;
                d.set(detector, c);
            }
        }
        Ok(d)
    }
}

/// `[storefront.failsafe]`: while an incident of the storefront is open,
/// its protection tightens to this profile; it relaxes once they resolve.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FailsafeConfig {
    /// The incident kinds that turn it on (all when empty).
    #[serde(default)]
    pub on: Vec<String>,
    /// Per-source thresholds for its addresses and its clients, network and
    /// application, times this (0 < scale <= 1).
    #[serde(default = "half")]
    pub per_source_scale: f64,
    /// New TCP connections per second to each of its addresses and
    /// `ports` (a budget); none without it.
    pub new_connections_per_second: Option<u32>,
    #[serde(default = "web_ports")]
    pub ports: Vec<u16>,
    /// Failed logins of one client that make credential stuffing (and at
    /// most as many distinct accounts).
    pub login_failures: Option<u32>,
    /// The longest the profile stays on, whatever holds it.
    #[serde(default = "hour", with = "crate::config::duration")]
    pub max_on: std::time::Duration,
}

fn hour() -> std::time::Duration {
    std::time::Duration::from_secs(3600)
}

fn half() -> f64 {
    0.5
}

fn web_ports() -> Vec<u16> {
    vec![80, 443]
}

/// One `[[logs]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub path: PathBuf,
    pub format: Format,
    /// The storefront every line belongs to; without it, lines are mapped
    /// by their Host (`vhost_combined`, JSON with a host field, error log).
    pub storefront: Option<String>,
    /// Field paths of a JSON log.
    pub json: Option<JsonFieldsConfig>,
}

/// `[events]`: the local listener for shop events.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token a shop must send.
    pub token_file: Option<PathBuf>,
    /// Larger bodies are refused with 413.
    pub max_body: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            token_file: None,
            max_body: 1 << 20,
        }
    }
}
