//! Notices in plain language, from templates an operator can replace
//! (minijinja; the built-in ones are embedded, a file of the same name in
//! `notices.templates` wins). Rendered when queued: a restart sends the same
//! words.

use std::path::Path;

use minijinja::Environment;
use serde::{Deserialize, Serialize};

use crate::{
    clock,
    respond::incidents::{Incident, IncidentKind, State},
};

const BUILT_IN: [(&str, &str); 8] = [
    ("subject.txt", include_str!("templates/subject.txt")),
    ("notice.txt", include_str!("templates/notice.txt")),
    ("flood.txt", include_str!("templates/flood.txt")),
    ("scan.txt", include_str!("templates/scan.txt")),
    (
        "credential_stuffing.txt",
        include_str!("templates/credential_stuffing.txt"),
    ),
    (
        "card_testing.txt",
        include_str!("templates/card_testing.txt"),
    ),
    ("http_flood.txt", include_str!("templates/http_flood.txt")),
    ("anomaly.txt", include_str!("templates/anomaly.txt")),
];

/// A notice as queued: the words, and the facts a machine reads.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Notice {
    pub event: String,
    pub subject: String,
    pub text: String,
    pub incident: Facts,
}

/// What a notice says of its incident (its storefront's data only).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    pub id: i64,
    pub host: String,
    pub storefront: String,
    pub kind: String,
    pub severity: String,
    pub state: String,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved: Option<String>,
    pub sources: u64,
    pub sample_sources: Vec<String>,
    pub decisions: u64,
    pub enforced: u64,
    /// Estimates: packets to the storefront dropped, and new connections.
    #[serde(default)]
    pub packets_dropped: u64,
    #[serde(default)]
    pub connections_dropped: u64,
    pub detectors: Vec<String>,
    pub accounts_tried: usize,
    pub accounts_taken_over: usize,
    pub evidence: Vec<String>,
}

fn kind_words(kind: IncidentKind) -> &'static str {
    match kind {
        IncidentKind::Flood => "a traffic flood",
        IncidentKind::Scan => "a vulnerability scan",
        IncidentKind::CredentialStuffing => "a credential stuffing attack",
        IncidentKind::CardTesting => "card testing",
        IncidentKind::HttpFlood => "a request flood",
        IncidentKind::Anomaly => "unusual traffic",
    }
}

fn state_words(state: State) -> &'static str {
    match state {
        State::Open => "detected and not blocked (alert only)",
        State::Mitigating => "blocked by ensuresec",
        State::Resolved => "over",
    }
}

impl Facts {
    pub fn of(i: &Incident, host: &str) -> Self {
        Facts {
            id: i.id,
            host: host.to_string(),
            storefront: i.storefront.clone(),
            kind: i.kind.name().into(),
            severity: i.severity.clone(),
            state: i.state.name().into(),
            first_seen: clock::rfc3339_ms(i.first_seen_ms),
            last_seen: clock::rfc3339_ms(i.last_seen_ms),
            resolved: i.resolved_ms.map(clock::rfc3339_ms),
            sources: i.sources_total,
            sample_sources: i.sources.iter().take(10).cloned().collect(),
            decisions: i.decisions,
            enforced: i.enforced,
            packets_dropped: i.packets_dropped,
            connections_dropped: i.connections_dropped,
            detectors: i.detectors.iter().cloned().collect(),
            accounts_tried: i.accounts_tried.len(),
            accounts_taken_over: i.accounts_taken_over.len(),
            evidence: i.evidence.iter().take(5).cloned().collect(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates, each replaced by a file of its name in
    /// `dir`; a template that does not parse is an error naming it.
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        for (name, text) in BUILT_IN {
            let text = match dir.map(|d| d.join(name)).filter(|p| p.exists()) {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| format!("notices.templates: {}: {e}", path.display()))?,
                None => text.to_string(),
            };
            env.add_template_owned(name, text)
                .map_err(|e| format!("notices.templates: {name}: {e}"))?;
        }
        Ok(Templates { env })
    }

    pub fn render(&self, event: &str, facts: Facts, kind: IncidentKind, state: State) -> Notice {
        let ctx = minijinja::context! {
            event,
            kind_words => kind_words(kind),
            state_words => state_words(state),
            ..minijinja::Value::from_serialize(&facts)
        };
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(&ctx))
                .unwrap_or_else(|e| {
                    tracing::warn!(template = name, error = %e, "a notice template failed; the facts are sent as they are");
                    format!("{} at {} (#{}): {e}", kind.name(), facts.storefront, facts.id)
                })
        };
        Notice {
            event: event.to_string(),
            subject: render("subject.txt").trim().to_string(),
            text: render("notice.txt"),
            incident: facts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::incidents::Incident;

    fn incident(kind: IncidentKind) -> Incident {
        let mut i = Incident::new("shop-a".into(), kind, 1_700_000_000_000);
        i.id = 7;
        i.state = State::Mitigating;
        i.sources.insert("192.0.2.9".into());
        i.sources_total = 3;
        i.decisions = 3;
        i.enforced = 3;
        i.detectors.insert("credential_stuffing".into());
        i.accounts_tried.insert("0011223344556677".into());
        i
    }

    #[test]
    fn every_kind_says_what_happened_what_was_done_and_what_to_do() {
        let t = Templates::load(None).unwrap();
        for kind in IncidentKind::ALL {
            let i = incident(kind);
            let n = t.render("open", Facts::of(&i, "host-1"), kind, i.state);
            assert!(n.subject.starts_with("[ensuresec] "), "{}", n.subject);
            assert!(
                n.subject.contains("shop-a") && n.subject.contains("#7"),
                "{}",
                n.subject
            );
            for part in [
                "What happened: since",
                "What ensuresec did: 3 decisions",
                "What to do:",
                "192.0.2.9 and more",
            ] {
                assert!(n.text.contains(part), "{kind}: {part}: {}", n.text);
            }
        }
        let mut i = incident(IncidentKind::Scan);
        i.evidence
            .push("192.0.2.9: probes; answered 2xx (possible exposure) /.env".into());
        let n = t.render("open", Facts::of(&i, "h"), i.kind, i.state);
        assert!(
            n.text.contains("ANSWERED") && n.text.contains("/.env"),
            "{}",
            n.text
        );
        let i = incident(IncidentKind::CredentialStuffing);
        let n = t.render("resolved", Facts::of(&i, "h"), i.kind, State::Resolved);
        assert!(n.subject.ends_with("is over (#7)"), "{}", n.subject);
        assert!(n.text.contains("password"), "{}", n.text);
    }

    #[test]
    fn an_operators_template_replaces_the_built_in_one_and_a_broken_one_is_named() {
        let dir = std::env::temp_dir().join(format!("es-templates-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("flood.txt"),
            "Call us at 555-0100 about #{{ id }}.\n",
        )
        .unwrap();
        let t = Templates::load(Some(&dir)).unwrap();
        let i = incident(IncidentKind::Flood);
        let n = t.render("open", Facts::of(&i, "h"), i.kind, i.state);
        assert!(
            n.text.contains("Call us at 555-0100 about #7."),
            "{}",
            n.text
        );
        std::fs::write(dir.join("scan.txt"), "{% if %}").unwrap();
        let e = Templates::load(Some(&dir)).unwrap_err();
        assert!(e.contains("scan.txt"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
