//! `[incidents]`: when an incident is over.

use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// An incident with no new decision for this long is resolved.
    #[serde(with = "crate::config::duration")]
    pub quiet: Duration,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        Self {
            quiet: Duration::from_secs(300),
        }
    }
}
