//! Notices to the provider, the storefront owners and, through them, their
//! customers: one per incident opening, significant update and resolve,
//! routed per tenant, queued in a persistent outbox and delivered once.

pub mod channel;
pub mod config;
pub mod deliver;
pub mod metrics;
pub mod notifier;
pub mod queue;
pub mod render;

use std::collections::HashSet;

use channel::Channel;
use config::NoticesConfig;
use render::Templates;

/// `[notices]`, validated: the channels (secrets read) and the templates
/// (parsed).
#[derive(Clone, Debug)]
pub struct NoticeSettings {
    pub channels: Vec<Channel>,
    pub templates: Templates,
    pub host: String,
    pub config: NoticesConfig,
}

impl NoticeSettings {
    pub fn validate(c: &NoticesConfig, storefronts: &[String]) -> Result<Self, String> {
        let mut names = HashSet::new();
        let mut channels = Vec::new();
        for raw in &c.channels {
            if !names.insert(raw.name.as_str()) {
                return Err(format!("notices.channel `{}` is listed twice", raw.name));
            }
            if let Some(unknown) = raw.storefronts.iter().find(|s| !storefronts.contains(s)) {
                return Err(format!(
                    "notices.channel `{}`: no [[storefront]] is named `{unknown}`",
                    raw.name
                ));
            }
            channels.push(Channel::validate(raw)?);
        }
        Ok(NoticeSettings {
            channels,
            templates: Templates::load(c.templates.as_deref())?,
            host: c.host.clone().unwrap_or_else(host_name),
            config: c.clone(),
        })
    }

    pub fn queue(&self, storefronts: HashSet<String>) -> queue::Queue {
        queue::Queue::new(
            self.channels.clone(),
            self.templates.clone(),
            self.host.clone(),
            self.config.update_every.as_millis() as u64,
            storefronts,
        )
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    match (ok, std::str::from_utf8(&buf[..end])) {
        (true, Ok(name)) if !name.is_empty() => name.to_string(),
        _ => "this host".into(),
    }
}
