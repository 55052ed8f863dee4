//! The responder's metrics.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct ResponderMetrics {
    pub open: IntGaugeVec,
    pub opened: IntCounterVec,
    pub dropped: IntCounter,
    pub write_errors: IntCounter,
}

impl ResponderMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            open: IntGaugeVec::new(
                Opts::new(
                    "ensuresec_incidents_open",
                    "Incidents open or mitigating, by kind",
                ),
                &["kind"],
            )?,
            opened: IntCounterVec::new(
                Opts::new(
                    "ensuresec_incidents_opened_total",
                    "Incidents opened, by kind",
                ),
                &["kind"],
            )?,
            dropped: IntCounter::new(
                "ensuresec_incidents_decisions_dropped_total",
                "Decisions left out of incidents: the responder's queue was full",
            )?,
            write_errors: IntCounter::new(
                "ensuresec_incidents_write_errors_total",
                "Incident writes to the journal that failed (retried)",
            )?,
        };
        registry.register(Box::new(m.open.clone()))?;
        registry.register(Box::new(m.opened.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.write_errors.clone()))?;
        Ok(m)
    }
}
