//! The notifier's thread: takes due notices from the outbox (each channel's
//! in order), sends them, marks each delivered or tries again with
//! exponential backoff, and gives up after `give_up_after`. The outbox is
//! in the journal, so a notice outlives a receiver that is down and an agent
//! that restarts; each is marked delivered once, and carries an idempotency
//! key for a receiver that saw a send the agent could not record.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    channel::{Channel, Target},
    deliver::{self, ALERT_LIFETIME},
    metrics::NoticeMetrics,
    render::Notice,
};
use serde_json::json;

use crate::{
    clock,
    journal::{AGENT, Entry, Journal, Kind, outbox::OutboxRow},
};

const TICK: Duration = Duration::from_millis(250);
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between tries: a receiver back after an hour gets its
/// notices within a minute.
const MAX_RETRY: Duration = Duration::from_secs(60);

pub struct Notifier {
    journal: Journal,
    channels: HashMap<String, Channel>,
    give_up_after: Duration,
    metrics: NoticeMetrics,
    /// Firing alerts sent to Alertmanager channels, sent again before they
    /// would lapse: (channel, incident) to the notice.
    firing: HashMap<(String, i64), (Notice, Instant)>,
}

pub fn backoff(attempts: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1u32 << attempts.min(16))
        .min(MAX_RETRY)
}

impl Notifier {
    pub fn new(
        journal: Journal,
        channels: Vec<Channel>,
        give_up_after: Duration,
        metrics: NoticeMetrics,
    ) -> Self {
        let mut notifier = Notifier {
            journal,
            channels: channels.into_iter().map(|c| (c.name.clone(), c)).collect(),
            give_up_after,
            metrics,
            firing: HashMap::new(),
        };
        notifier.resume_firing();
        notifier
    }

    /// The alerts a previous run sent for incidents not resolved since:
    /// sent again at once, so that they do not lapse across a restart.
    fn resume_firing(&mut self) {
        let Ok(rows) = self.journal.notices(10_000) else {
            return;
        };
        let due = Instant::now()
            .checked_sub(ALERT_LIFETIME)
            .unwrap_or_else(Instant::now);
        // A delivered alert still fires unless its incident's resolve came
        // after it (delivered or given up).
        for row in rows
            .into_iter()
            .filter(|r| r.delivered_ms.is_some() || r.failed_ms.is_some())
        {
            let alerting = self
                .channels
                .get(&row.channel)
                .is_some_and(|c| matches!(c.target, Target::Alertmanager { .. }));
            let key = (row.channel.clone(), row.incident);
            match serde_json::from_str::<Notice>(&row.payload) {
                Ok(n)
                    if alerting && n.incident.resolved.is_none() && row.delivered_ms.is_some() =>
                {
                    self.firing.insert(key, (n, due));
                }
                _ => {
                    self.firing.remove(&key);
                }
            }
        }
    }

    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name("ensuresec-notify".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = self.round() {
                        tracing::warn!(error = %e, "reading the notices' outbox");
                    }
                    self.refresh_alerts();
                    std::thread::sleep(TICK);
                }
            })
            .expect("spawning the notifier thread")
    }

    /// Sends what is due, one notice per channel.
    fn round(&mut self) -> Result<(), crate::journal::JournalError> {
        let now = clock::unix_ms();
        for row in self.journal.due_notices(now)? {
            let Some(channel) = self.channels.get(&row.channel) else {
                self.journal.notice_failed(
                    row.id,
                    now,
                    "the channel is no longer configured",
                    true,
                )?;
                continue;
            };
            let notice: Notice = match serde_json::from_str(&row.payload) {
                Ok(n) => n,
                Err(e) => {
                    self.journal.notice_failed(
                        row.id,
                        now,
                        &format!("unreadable notice: {e}"),
                        true,
                    )?;
                    continue;
                }
            };
            let label = [row.channel.as_str()];
            match deliver::deliver(&channel.target, &row.key, &notice) {
                Ok(()) => {
                    self.journal.notice_delivered(row.id, clock::unix_ms())?;
                    journal_step(
                        &mut self.journal,
                        Kind::NoticeDelivered,
                        &row,
                        &notice,
                        None,
                    );
                    self.metrics.sent.with_label_values(&label).inc();
                    if matches!(channel.target, Target::Alertmanager { .. }) {
                        let key = (row.channel.clone(), row.incident);
                        if notice.incident.resolved.is_some() {
                            self.firing.remove(&key);
                        } else {
                            self.firing.insert(key, (notice, Instant::now()));
                        }
                    }
                }
                Err(e) => {
                    self.metrics.failures.with_label_values(&label).inc();
                    let late =
                        now.saturating_sub(row.created_ms) >= self.give_up_after.as_millis() as u64;
                    let give_up = !e.retry || late;
                    if give_up {
                        self.metrics.given_up.with_label_values(&label).inc();
                        // A resolve given up still ends the alert's refresh.
                        if notice.incident.resolved.is_some() {
                            self.firing.remove(&(row.channel.clone(), row.incident));
                        }
                        journal_step(
                            &mut self.journal,
                            Kind::NoticeGivenUp,
                            &row,
                            &notice,
                            Some(&e.why),
                        );
                        tracing::error!(channel = %row.channel, incident = row.incident, error = %e, "a notice is given up");
                    } else {
                        tracing::warn!(channel = %row.channel, incident = row.incident, attempts = row.attempts + 1, error = %e, "a notice failed; trying again");
                    }
                    let next = now + backoff(row.attempts).as_millis() as u64;
                    self.journal.notice_failed(row.id, next, &e.why, give_up)?;
                }
            }
        }
        let (pending, oldest) = self.journal.pending_notices()?;
        self.metrics.pending.set(pending as i64);
        self.metrics
            .oldest_pending_seconds
            .set(oldest.map_or(0, |o| now.saturating_sub(o) / 1000) as i64);
        Ok(())
    }

    /// Sends the alerts of open incidents again at a third of their life,
    /// so that Alertmanager keeps them firing until they resolve.
    fn refresh_alerts(&mut self) {
        for ((channel, _), (notice, sent)) in &mut self.firing {
            if sent.elapsed() < ALERT_LIFETIME / 3 {
                continue;
            }
            if let Some(c) = self.channels.get(channel) {
                let key = format!("{}/{}/refresh", notice.incident.host, notice.incident.id);
                // Tried once per period, sent or not: a receiver that is
                // down holds up no other notice.
                *sent = Instant::now();
                if let Err(e) = deliver::deliver(&c.target, &key, notice) {
                    tracing::warn!(%channel, error = %e, "refreshing an alert");
                }
            }
        }
    }
}

/// The journal's entry of a delivery or a give-up (a failure to write
/// it is only logged: the outbox row holds the truth).
fn journal_step(
    journal: &mut Journal,
    kind: Kind,
    row: &OutboxRow,
    notice: &Notice,
    error: Option<&str>,
) {
    let mut entry = Entry::now(kind, AGENT).detail(json!({
        "channel": row.channel,
        "incident": row.incident,
        "event": row.event,
        "key": row.key,
        "attempts": row.attempts + 1,
        "error": error,
    }));
    entry.storefront = Some(notice.incident.storefront.clone());
    if let Err(e) = journal.write(&[entry], &[]) {
        tracing::warn!(error = %e, "could not journal a notice's delivery");
    }
}
