//! `[notices]` and its `[[notices.channel]]`s: where notices go, whose
//! incidents each channel gets, and how they are signed or sent.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NoticesConfig {
    #[serde(rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    /// A directory of templates that replace the built-in ones (same names).
    pub templates: Option<PathBuf>,
    /// At most one update per incident and channel this often.
    #[serde(with = "crate::config::duration")]
    pub update_every: Duration,
    /// A notice not delivered for this long is given up (and counted).
    #[serde(with = "crate::config::duration")]
    pub give_up_after: Duration,
    /// This host's name in notices (default: the system's host name).
    pub host: Option<String>,
}

impl Default for NoticesConfig {
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            templates: None,
            update_every: Duration::from_secs(600),
            give_up_after: Duration::from_secs(86_400),
            host: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// JSON, signed (HMAC-SHA256 over the timestamp and body).
    Webhook,
    /// Slack's or Mattermost's incoming webhooks.
    Slack,
    /// Alertmanager's API v2: an alert per incident, resolved with it.
    Alertmanager,
    Email,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, refused if the server does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain text: only for a relay on this host.
    None,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: ChannelKind,
    /// Webhook, Slack and Alertmanager: where to POST (Alertmanager: its
    /// base address).
    pub url: Option<String>,
    /// Webhook: the shared secret the signature is made with.
    pub secret_file: Option<PathBuf>,
    /// Whose incidents: empty for every storefront and the host (the
    /// provider's channel); else only these storefronts' (an owner's).
    #[serde(default)]
    pub storefronts: Vec<String>,
    /// The least severity sent: minor, major or critical.
    #[serde(default = "minor")]
    pub min_severity: String,
    /// Email: the server (`host:port`), TLS, a CA for its certificate,
    /// sender and recipients, and a login if it wants one.
    pub smtp: Option<String>,
    #[serde(default)]
    pub tls: SmtpTls,
    pub ca_file: Option<PathBuf>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
}

fn minor() -> String {
    "minor".into()
}
