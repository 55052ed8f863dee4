//! The detection metrics.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct DetectMetrics {
    pub detections: IntCounterVec,
    pub decisions_active: IntGaugeVec,
    /// Decisions that could not be written, by why (`decisions_full`, ...).
    pub decisions_failed: IntCounterVec,
    pub events: IntCounter,
    pub dropped: IntCounter,
    /// Re-examinations skipped because the watch list or a tick's work was
    /// full (a many-source flood).
    pub revisits_shed: IntCounter,
    /// Sources and destinations being looked at again now.
    pub watched: IntGauge,
    pub time_to_mitigate: Histogram,
}

impl DetectMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let m = Self {
            detections: IntCounterVec::new(
                Opts::new("ensuresec_detections_total", "Detections, by detector"),
                &["detector"],
            )?,
            decisions_active: IntGaugeVec::new(
                Opts::new(
                    "ensuresec_decisions_active",
                    "Automatic decisions in force, by action",
                ),
                &["action"],
            )?,
            decisions_failed: IntCounterVec::new(
                Opts::new(
                    "ensuresec_decisions_failed_total",
                    "Decisions that could not be written (and so are not enforced), by reason",
                ),
                &["reason"],
            )?,
            events: IntCounter::new(
                "ensuresec_ringbuf_events_total",
                "Events read from the kernel's ring buffer",
            )?,
            dropped: IntCounter::new(
                "ensuresec_ringbuf_dropped_total",
                "Events the kernel could not queue (ring buffer full)",
            )?,
            revisits_shed: IntCounter::new(
                "ensuresec_revisits_shed_total",
                "Re-examinations of tripped sources skipped to bound the work of a tick",
            )?,
            watched: IntGauge::new(
                "ensuresec_watched",
                "Tripped sources and destinations looked at again until their window ends",
            )?,
            time_to_mitigate: Histogram::with_opts(
                HistogramOpts::new(
                    "ensuresec_time_to_mitigate_seconds",
                    "From the first packet of an attack's window to the decision in the kernel",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
        };
        registry.register(Box::new(m.detections.clone()))?;
        registry.register(Box::new(m.decisions_active.clone()))?;
        registry.register(Box::new(m.decisions_failed.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.revisits_shed.clone()))?;
        registry.register(Box::new(m.watched.clone()))?;
        registry.register(Box::new(m.time_to_mitigate.clone()))?;
        Ok(m)
    }
}
