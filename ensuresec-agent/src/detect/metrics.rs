//! The detection metrics.

use super::events::ReaderMetrics;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct DetectMetrics {
    pub detections: IntCounterVec,
    pub decisions_active: IntGaugeVec,
    /// Decisions that could not be written, by why (`decisions_full`, ...).
    pub decisions_failed: IntCounterVec,
    /// Events handled by the detectors.
    pub events: IntCounter,
    pub dropped: IntCounter,
    /// What the ring buffer's reader read, merged and shed.
    pub reader: ReaderMetrics,
    /// Re-examinations skipped because the watch list or a tick's work was
    /// full (a many-source flood).
    pub revisits_shed: IntCounter,
    /// Sources and destinations being looked at again now.
    pub watched: IntGauge,
    /// By layer: `network` and `model` from the attack window's first
    /// packet, `app` from the moment the deciding line was read.
    pub time_to_mitigate: HistogramVec,
}

impl DetectMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let m = Self {
            detections: IntCounterVec::new(
                Opts::new(
                    "ensuresec_detections_total",
                    "Detections, by detector and storefront (empty for network detections)",
                ),
                &["detector", "storefront"],
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
                "Events from the kernel's ring buffer the detectors handled (one per subject and turn)",
            )?,
            reader: ReaderMetrics {
                read: IntCounter::new(
                    "ensuresec_ringbuf_read_total",
                    "Events read from the kernel's ring buffer",
                )?,
                coalesced: IntCounter::new(
                    "ensuresec_ringbuf_coalesced_total",
                    "Events read that replaced a queued event about the same subject",
                )?,
                shed: IntCounter::new(
                    "ensuresec_ringbuf_shed_total",
                    "Events read about a new subject while the queue held its bound of subjects",
                )?,
            },
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
            time_to_mitigate: HistogramVec::new(
                HistogramOpts::new(
                    "ensuresec_time_to_mitigate_seconds",
                    "To the decision in the kernel: from the first packet of an attack's window (network, model), from reading the deciding line (app)",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["layer"],
            )?,

        };
        registry.register(Box::new(m.detections.clone()))?;
        registry.register(Box::new(m.decisions_active.clone()))?;
        registry.register(Box::new(m.decisions_failed.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.reader.read.clone()))?;
        registry.register(Box::new(m.reader.coalesced.clone()))?;
        registry.register(Box::new(m.reader.shed.clone()))?;
        registry.register(Box::new(m.revisits_shed.clone()))?;
        registry.register(Box::new(m.watched.clone()))?;
        registry.register(Box::new(m.time_to_mitigate.clone()))?;
        Ok(m)
    }
}
