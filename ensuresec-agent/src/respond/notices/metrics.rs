//! The notices' metrics.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct NoticeMetrics {
    pub sent: IntCounterVec,
    pub failures: IntCounterVec,
    pub given_up: IntCounterVec,
    pub pending: IntGauge,
    pub oldest_pending_seconds: IntGauge,
}

impl NoticeMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["channel"]);
        let m = Self {
            sent: counter(
                "ensuresec_notices_sent_total",
                "Notices delivered, by channel",
            )?,
            failures: counter(
                "ensuresec_notices_failures_total",
                "Notice deliveries that failed (each is tried again or given up), by channel",
            )?,
            given_up: counter(
                "ensuresec_notices_given_up_total",
                "Notices given up (refused, or undelivered for notices.give_up_after), by channel",
            )?,
            pending: IntGauge::new("ensuresec_notices_pending", "Notices waiting in the outbox")?,
            oldest_pending_seconds: IntGauge::new(
                "ensuresec_notices_oldest_pending_seconds",
                "Age of the oldest notice waiting in the outbox (0 for none)",
            )?,
        };
        registry.register(Box::new(m.sent.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.given_up.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        registry.register(Box::new(m.oldest_pending_seconds.clone()))?;
        Ok(m)
    }
}
