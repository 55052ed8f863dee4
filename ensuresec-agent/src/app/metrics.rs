//! The application inputs' metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct AppMetrics {
    /// Lines by log and result (`ok`, `malformed`, `too_long`, `unmapped`,
    /// `ignored`).
    pub lines: IntCounterVec,
    pub clients: IntGauge,
    pub clients_shed: IntCounter,
    /// Requests from generic HTTP libraries (counted, never acted on).
    pub library_requests: IntCounterVec,
    /// Shop events POSTed to the listener, by HTTP status answered.
    pub event_posts: IntCounterVec,
    /// Findings the detection thread could not take.
    pub findings_dropped: IntCounter,
    /// Bytes written to each log and not read yet.
    pub log_lag: IntGaugeVec,
    /// 1 for a log with unread bytes and no progress for `STALLED`.
    pub log_stalled: IntGaugeVec,
}

impl AppMetrics {
    pub fn new() -> prometheus::Result<Self> {
        Ok(Self {
            lines: IntCounterVec::new(
                Opts::new(
                    "ensuresec_log_lines_total",
                    "Log and event lines read, by log and result",
                ),
                &["log", "result"],
            )?,
            clients: IntGauge::new(
                "ensuresec_app_clients",
                "Clients the application detectors remember",
            )?,
            clients_shed: IntCounter::new(
                "ensuresec_app_clients_shed_total",
                "Clients forgotten early because the table was full (max_clients)",
            )?,
            library_requests: IntCounterVec::new(
                Opts::new(
                    "ensuresec_app_library_requests_total",
                    "Requests from generic HTTP libraries, by storefront (counted only)",
                ),
                &["storefront"],
            )?,
            event_posts: IntCounterVec::new(
                Opts::new(
                    "ensuresec_event_posts_total",
                    "POSTs to /v1/events, by status answered",
                ),
                &["code"],
            )?,
            findings_dropped: IntCounter::new(
                "ensuresec_app_findings_dropped_total",
                "Application findings the detection thread could not take (it was behind)",
            )?,
            log_lag: IntGaugeVec::new(
                Opts::new(
                    "ensuresec_log_lag_bytes",
                    "Bytes written to a log and not read yet",
                ),
                &["log"],
            )?,
            log_stalled: IntGaugeVec::new(
                Opts::new(
                    "ensuresec_log_stalled",
                    "1 while a log has unread bytes and its reading made no progress for 30 s",
                ),
                &["log"],
            )?,
        })
    }

    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::new()?;
        registry.register(Box::new(m.lines.clone()))?;
        registry.register(Box::new(m.clients.clone()))?;
        registry.register(Box::new(m.clients_shed.clone()))?;
        registry.register(Box::new(m.library_requests.clone()))?;
        registry.register(Box::new(m.event_posts.clone()))?;
        registry.register(Box::new(m.findings_dropped.clone()))?;
        registry.register(Box::new(m.log_lag.clone()))?;
        registry.register(Box::new(m.log_stalled.clone()))?;
        Ok(m)
    }
}
