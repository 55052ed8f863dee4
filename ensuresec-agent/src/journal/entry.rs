//! One journal entry: when, what kind, who, about what, and the details in
//! JSON.

use std::{fmt, str::FromStr};

use serde::Serialize;

/// What an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The agent decided (ban, throttle, budget, alert).
    Decision,
    /// A decision's time ran out and the agent lifted it.
    Expiry,
    /// An operator lifted a decision (`decisions rm`, `block rm`).
    DecisionRm,
    Block,
    Unblock,
    Allow,
    Unallow,
    /// An operator's list import (one entry for the whole file).
    Import,
    /// The config's allowlist changed the lists at the agent's start.
    ConfigAllow,
    ConfigUnallow,
    /// The agent started on new maps and put the desired state back.
    Restore,
    /// The maps held what the journal did not (changes made while the
    /// agent was down, or a write the journal missed): the journal follows.
    Reconcile,
    AgentStart,
    AgentStop,
    /// The journal was found unreadable at start and moved aside.
    JournalReset,
    /// An operator undid a detector's decisions or an import at once.
    Rollback,
    /// An incident opened, was mitigated, resolved.
    IncidentOpen,
    IncidentMitigating,
    IncidentResolved,
    /// A storefront's fail-safe profile went on, or off.
    FailsafeOn,
    FailsafeOff,
    /// A notice reached its channel, or was given up.
    NoticeDelivered,
    NoticeGivenUp,
}

impl Kind {
    pub const ALL: [Kind; 23] = [
        Kind::Decision,
        Kind::Expiry,
        Kind::DecisionRm,
        Kind::Block,
        Kind::Unblock,
        Kind::Allow,
        Kind::Unallow,
        Kind::Import,
        Kind::ConfigAllow,
        Kind::ConfigUnallow,
        Kind::Restore,
        Kind::Reconcile,
        Kind::AgentStart,
        Kind::AgentStop,
        Kind::JournalReset,
        Kind::Rollback,
        Kind::IncidentOpen,
        Kind::IncidentMitigating,
        Kind::IncidentResolved,
        Kind::FailsafeOn,
        Kind::FailsafeOff,
        Kind::NoticeDelivered,
        Kind::NoticeGivenUp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Decision => "decision",
            Kind::Expiry => "expiry",
            Kind::DecisionRm => "decision_rm",
            Kind::Block => "block",
            Kind::Unblock => "unblock",
            Kind::Allow => "allow",
            Kind::Unallow => "unallow",
            Kind::Import => "import",
            Kind::ConfigAllow => "config_allow",
            Kind::ConfigUnallow => "config_unallow",
            Kind::Restore => "restore",
            Kind::Reconcile => "reconcile",
            Kind::AgentStart => "agent_start",
            Kind::AgentStop => "agent_stop",
            Kind::JournalReset => "journal_reset",
            Kind::Rollback => "rollback",
            Kind::IncidentOpen => "incident_open",
            Kind::IncidentMitigating => "incident_mitigating",
            Kind::IncidentResolved => "incident_resolved",
            Kind::FailsafeOn => "failsafe_on",
            Kind::FailsafeOff => "failsafe_off",
            Kind::NoticeDelivered => "notice_delivered",
            Kind::NoticeGivenUp => "notice_given_up",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("`{s}` is not a journal entry kind"))
    }
}

/// Who made a change.
pub const AGENT: &str = "agent";
pub const CONFIG: &str = "config";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub at_ms: u64,
    pub kind: Kind,
    /// `agent`, `config`, or the user who ran the command.
    pub actor: String,
    pub target: Option<String>,
    pub detector: Option<String>,
    pub action: Option<String>,
    pub storefront: Option<String>,
    /// The operation (an import) the entry belongs to.
    pub operation: Option<i64>,
    pub detail: serde_json::Value,
}

impl Entry {
    /// An entry made now.
    pub fn now(kind: Kind, actor: impl Into<String>) -> Self {
        Self {
            at_ms: crate::clock::unix_ms(),
            kind,
            actor: actor.into(),
            target: None,
            detector: None,
            action: None,
            storefront: None,
            operation: None,
            detail: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn target(mut self, target: impl fmt::Display) -> Self {
        self.target = Some(target.to_string());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}
