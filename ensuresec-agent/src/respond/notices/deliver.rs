//! Sending one notice to one channel: a signed webhook, a Slack or
//! Mattermost message, an Alertmanager alert (resolved with its incident),
//! or an email.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{
    channel::{Email, Target},
    config::SmtpTls,
    render::Notice,
};
use crate::clock;

/// Headers of a webhook notice.
pub const SIGNATURE: &str = "X-Ensuresec-Signature";
pub const TIMESTAMP: &str = "X-Ensuresec-Timestamp";
pub const IDEMPOTENCY: &str = "Idempotency-Key";

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a firing alert lasts in Alertmanager unless sent again (the
/// notifier sends open incidents' alerts again well before).
pub const ALERT_LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
#[error("{why}")]
pub struct DeliveryError {
    pub why: String,
    /// Worth trying again (the receiver is down or busy); else given up.
    pub retry: bool,
}

fn retry(why: impl ToString) -> DeliveryError {
    DeliveryError {
        why: why.to_string(),
        retry: true,
    }
}

/// The webhook signature: HMAC-SHA256 over `timestamp.body`, in hex.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1={}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

pub fn deliver(target: &Target, key: &str, notice: &Notice) -> Result<(), DeliveryError> {
    match target {
        Target::Webhook { url, secret } => {
            let body = serde_json::to_vec(&json!({
                "id": key,
                "event": notice.event,
                "subject": notice.subject,
                "text": notice.text,
                "incident": notice.incident,
            }))
            .expect("plain data");
            let timestamp = clock::unix_secs().to_string();
            let signature = sign(secret, &timestamp, &body);
            post(
                url,
                &[
                    (TIMESTAMP, &timestamp),
                    (SIGNATURE, &signature),
                    (IDEMPOTENCY, key),
                ],
                &body,
            )
        }
        Target::Slack { url } => {
            let text = format!(
                "*{}*\n{}",
                slack_escape(&notice.subject),
                slack_escape(&notice.text)
            );
            let body = json!({ "text": text });
            post(url, &[], body.to_string().as_bytes())
        }
        Target::Alertmanager { url } => {
            let body = alert(notice).to_string();
            post(&format!("{url}/api/v2/alerts"), &[], body.as_bytes())
        }
        Target::Email(email) => send_mail(email, key, notice),
    }
}

/// Slack's and Mattermost's markup escapes: an attacker's path in the
/// evidence must not become a link or a mention.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The alert of an incident: its labels say which, its end says whether it
/// still fires.
pub fn alert(notice: &Notice) -> serde_json::Value {
    let i = &notice.incident;
    let ends = match &i.resolved {
        Some(resolved) => resolved.clone(),
        None => clock::rfc3339_ms(clock::unix_ms() + ALERT_LIFETIME.as_millis() as u64),
    };
    json!([{
        "labels": {
            "alertname": "EnsuresecIncident",
            "host": i.host,
            "storefront": i.storefront,
            "kind": i.kind,
            "severity": i.severity,
            "incident": i.id.to_string(),
        },
        "annotations": {
            "summary": notice.subject,
            "description": notice.text,
        },
        "startsAt": i.first_seen,
        "endsAt": ends,
    }])
}

fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<(), DeliveryError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header(
            "User-Agent",
            concat!("ensuresec/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send(body).map_err(retry)?;
    let status = response.status().as_u16();
    match status {
        200..=299 => Ok(()),
        // Busy, rate limited, or down for now: later.
        408 | 425 | 429 | 500..=599 => Err(retry(format!("{url} answered {status}"))),
        _ => Err(DeliveryError {
            why: format!("{url} refused the notice: {status}"),
            retry: false,
        }),
    }
}

fn send_mail(email: &Email, key: &str, notice: &Notice) -> Result<(), DeliveryError> {
    use lettre::{
        Message, SmtpTransport, Transport,
        transport::smtp::{
            authentication::Credentials,
            client::{Certificate, Tls, TlsParameters},
        },
    };
    let permanent = |why: String| DeliveryError { why, retry: false };
    let mut message = Message::builder()
        .from(email.from.clone())
        .subject(notice.subject.clone())
        // Receivers drop a second copy of one notice by its id.
        .message_id(Some(format!(
            "<{}@ensuresec>",
            key.replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
                "_"
            )
        )));
    for to in &email.to {
        message = message.to(to.clone());
    }
    let message = message
        .body(notice.text.clone())
        .map_err(|e| permanent(format!("the email cannot be built: {e}")))?;
    let mut tls = TlsParameters::builder(email.host.clone());
    if let Some(pem) = &email.ca_pem {
        let cert = Certificate::from_pem(pem)
            .map_err(|e| permanent(format!("ca_file is no PEM certificate: {e}")))?;
        tls = tls.add_root_certificate(cert);
    }
    let tls = tls
        .build_rustls()
        .map_err(|e| permanent(format!("TLS for {}: {e}", email.host)))?;
    let mut transport = SmtpTransport::builder_dangerous(&email.host)
        .port(email.port)
        .timeout(Some(TIMEOUT))
        .tls(match email.tls {
            SmtpTls::Starttls => Tls::Required(tls),
            SmtpTls::Tls => Tls::Wrapper(tls),
            SmtpTls::None => Tls::None,
        });
    if let Some((user, password)) = &email.login {
        transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
    }
    match transport.build().send(&message) {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(permanent(format!("{}: {e}", email.host))),
        Err(e) => Err(retry(format!("{}: {e}", email.host))),
    }
}
