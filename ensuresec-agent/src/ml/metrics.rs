//! The anomaly models' Prometheus metrics, labelled `model="source"` or
//! `model="aggregate"`.

use super::model::Subject;
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
    pub fn register(registry: &Registry, subject: Subject) -> anyhow::Result<Self> {
        let label = |o: Opts| o.const_label("model", subject.name());
        let hlabel = |o: HistogramOpts| o.const_label("model", subject.name());
        let m = Self {
            scores: Histogram::with_opts(
                hlabel(HistogramOpts::new(
                    "ensuresec_ml_scores",
                    "Anomaly scores (mean squared reconstruction error)",
                ))
                .buckets(prometheus::exponential_buckets(0.01, 2.0, 18)?),
            )?,
            inference_seconds: Histogram::with_opts(
                hlabel(HistogramOpts::new(
                    "ensuresec_ml_inference_seconds",
                    "Time of one inference call on a batch of feature vectors",
                ))
                .buckets(prometheus::exponential_buckets(1e-5, 4.0, 10)?),
            )?,
            model_info: IntGaugeVec::new(
                label(Opts::new(
                    "ensuresec_ml_model_info",
                    "The anomaly model in use",
                )),
                &["version", "input_width"],
            )?,
            model_loaded: IntGauge::with_opts(label(Opts::new(
                "ensuresec_ml_model_loaded",
                "1 while an anomaly model is loaded and scoring",
            )))?,
            model_errors: IntCounterVec::new(
                label(Opts::new(
                    "ensuresec_ml_model_errors_total",
                    "Anomaly model files refused (missing, corrupt, incompatible) and failed inferences",
                )),
                &["kind"],
            )?,
            scored: IntCounter::with_opts(label(Opts::new(
                "ensuresec_ml_scored_total",
                "Source steps or destination windows scored by the anomaly model",
            )))?,
            flagged: IntCounter::with_opts(label(Opts::new(
                "ensuresec_ml_flagged_total",
                "Scored rows above the model's threshold",
            )))?,
            findings_dropped: IntCounter::with_opts(label(Opts::new(
                "ensuresec_ml_findings_dropped_total",
                "Flagged rows not handed to the decisions because the detection thread was behind",
            )))?,
            step_seconds: Histogram::with_opts(
                hlabel(HistogramOpts::new(
                    "ensuresec_ml_step_seconds",
                    "One scoring step: reading the kernel's table, building vectors, inference",
                ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_models_register_side_by_side_with_their_label() {
        let registry = Registry::new();
        let source = MlMetrics::register(&registry, Subject::Source).unwrap();
        MlMetrics::register(&registry, Subject::Destination).unwrap();
        source.model_errors.with_label_values(&["not_onnx"]).inc();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("ensuresec_ml_model_loaded{model=\"aggregate\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("ensuresec_ml_model_errors_total{kind=\"not_onnx\",model=\"source\"} 1"),
            "{text}"
        );
    }
}
