//! The anomaly model's Prometheus metrics.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct MlMetrics {
    pub scores: Histogram,
    pub inference_seconds: Histogram,
    /// 1 for the model in use, labelled with its version and input width.
    pub model_info: IntGaugeVec,
    pub model_loaded: IntGauge,
    /// Model files that could not be used, and inference failures, by kind.
    pub model_errors: IntCounterVec,
    pub scored: IntCounter,
    pub flagged: IntCounter,
    /// Flagged sources the detection thread had no room for (it was behind).
    pub findings_dropped: IntCounter,
    /// The whole step: reading the source table, vectors, inference.
    pub step_seconds: Histogram,
}

impl MlMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let m = Self {
            scores: Histogram::with_opts(
                HistogramOpts::new(
                    "ensuresec_ml_scores",
                    "Anomaly scores of scored sources (mean squared reconstruction error)",
                )
                .buckets(prometheus::exponential_buckets(0.01, 2.0, 18)?),
            )?,
            inference_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "ensuresec_ml_inference_seconds",
                    "Time of one inference call on a batch of feature vectors",
                )
                .buckets(prometheus::exponential_buckets(1e-5, 4.0, 10)?),
            )?,
            model_info: IntGaugeVec::new(
                Opts::new("ensuresec_ml_model_info", "The anomaly model in use"),
                &["version", "input_width"],
            )?,
            model_loaded: IntGauge::new(
                "ensuresec_ml_model_loaded",
                "1 while an anomaly model is loaded and scoring",
            )?,
            model_errors: IntCounterVec::new(
                Opts::new(
                    "ensuresec_ml_model_errors_total",
                    "Anomaly model files refused (missing, corrupt, incompatible) and failed inferences",
                ),
                &["kind"],
            )?,
            scored: IntCounter::new(
                "ensuresec_ml_sources_scored_total",
                "Source steps scored by the anomaly model",
            )?,
            flagged: IntCounter::new(
                "ensuresec_ml_flagged_total",
                "Source steps scored above the model's threshold",
            )?,
            findings_dropped: IntCounter::new(
                "ensuresec_ml_findings_dropped_total",
                "Flagged sources not handed to the decisions because the detection thread was behind",
            )?,
            step_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "ensuresec_ml_step_seconds",
                    "One scoring step: reading the source table, building vectors, inference",
                )
                .buckets(prometheus::exponential_buckets(1e-4, 4.0, 9)?),
            )?,
        };
        registry.register(Box::new(m.scores.clone()))?;
        registry.register(Box::new(m.inference_seconds.clone()))?;
        registry.register(Box::new(m.model_info.clone()))?;
        registry.register(Box::new(m.model_loaded.clone()))?;
        registry.register(Box::new(m.model_errors.clone()))?;
        registry.register(Box::new(m.scored.clone()))?;
        registry.register(Box::new(m.flagged.clone()))?;
        registry.register(Box::new(m.findings_dropped.clone()))?;
        registry.register(Box::new(m.step_seconds.clone()))?;
        Ok(m)
    }
}
