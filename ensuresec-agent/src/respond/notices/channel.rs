//! A validated channel: where its notices go and whose incidents it gets.

use std::path::Path;

use super::config::{ChannelConfig, ChannelKind, SmtpTls};

#[derive(Clone, Debug)]
pub enum Target {
    Webhook { url: String, secret: Vec<u8> },
    Slack { url: String },
    Alertmanager { url: String },
    Email(Email),
}

#[derive(Clone, Debug)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// PEM certificates to trust for the server, beside the system's.
    pub ca_pem: Option<Vec<u8>>,
    pub from: lettre::message::Mailbox,
    pub to: Vec<lettre::message::Mailbox>,
    pub login: Option<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct Channel {
    pub name: String,
    pub target: Target,
    /// Empty: every incident (the provider's channel).
    pub storefronts: Vec<String>,
    pub min_severity: u8,
}

/// Severities in order.
pub fn severity_rank(severity: &str) -> Option<u8> {
    ["minor", "major", "critical"]
        .iter()
        .position(|s| *s == severity)
        .map(|p| p as u8)
}

fn read_secret(what: &str, path: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(format!("{what} {} is empty", path.display()));
    }
    Ok(text)
}

fn http_url(what: &str, url: Option<&String>) -> Result<String, String> {
    let url = url.ok_or_else(|| format!("{what}: `url` is required"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{what}: url `{url}` is not http:// or https://"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

impl Channel {
    pub fn validate(c: &ChannelConfig) -> Result<Self, String> {
        let what = format!("notices.channel `{}`", c.name);
        if c.name.is_empty() || c.name.contains(char::is_control) {
            return Err("notices.channel: a channel needs a printable name".into());
        }
        let min_severity = severity_rank(&c.min_severity).ok_or_else(|| {
            format!(
                "{what}: min_severity `{}` is not minor, major or critical",
                c.min_severity
            )
        })?;
        let target = match c.kind {
            ChannelKind::Webhook => {
                let secret_file = c.secret_file.as_ref().ok_or_else(|| {
                    format!("{what}: a webhook needs `secret_file` (its notices are signed)")
                })?;
                Target::Webhook {
                    url: http_url(&what, c.url.as_ref())?,
                    secret: read_secret(&format!("{what}: secret_file"), secret_file)?.into_bytes(),
                }
            }
            ChannelKind::Slack => Target::Slack {
                url: http_url(&what, c.url.as_ref())?,
            },
            ChannelKind::Alertmanager => Target::Alertmanager {
                url: http_url(&what, c.url.as_ref())?,
            },
            ChannelKind::Email => Target::Email(email(&what, c)?),
        };
        Ok(Channel {
            name: c.name.clone(),
            target,
            storefronts: c.storefronts.clone(),
            min_severity,
        })
    }

    /// Whether an incident of `storefront` (`None`: the host's or a
    /// prefix's, no storefront's) with `severity` goes to this channel.
    pub fn wants(&self, storefront: Option<&str>, severity: &str) -> bool {
        let whose = match storefront {
            _ if self.storefronts.is_empty() => true,
            Some(s) => self.storefronts.iter().any(|own| own == s),
            None => false,
        };
        whose && severity_rank(severity).unwrap_or(0) >= self.min_severity
    }
}

fn email(what: &str, c: &ChannelConfig) -> Result<Email, String> {
    let smtp = c
        .smtp
        .as_ref()
        .ok_or_else(|| format!("{what}: email needs `smtp` (host:port)"))?;
    let (host, port) = smtp
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("{what}: smtp `{smtp}` is not host:port"))?;
    let mailbox = |text: &str| {
        text.parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("{what}: `{text}` is not an email address: {e}"))
    };
    let from = mailbox(
        c.from
            .as_deref()
            .ok_or_else(|| format!("{what}: email needs `from`"))?,
    )?;
    if c.to.is_empty() {
        return Err(format!("{what}: email needs `to`"));
    }
    let to =
        c.to.iter()
            .map(|t| mailbox(t))
            .collect::<Result<Vec<_>, _>>()?;
    let ca_pem = c
        .ca_file
        .as_ref()
        .map(|p| std::fs::read(p).map_err(|e| format!("{what}: ca_file {}: {e}", p.display())))
        .transpose()?;
    let login = match (&c.username, &c.password_file) {
        (Some(u), Some(p)) => Some((
            u.clone(),
            read_secret(&format!("{what}: password_file"), p)?,
        )),
        (None, None) => None,
        _ => {
            return Err(format!(
                "{what}: `username` and `password_file` go together"
            ));
        }
    };
    Ok(Email {
        host,
        port,
        tls: c.tls,
        ca_pem,
        from,
        to,
        login,
    })
}
