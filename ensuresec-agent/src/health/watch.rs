//! Turns the agent's metrics into health issues: counters of things lost
//! that grew within the last minute, and states that are wrong now.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use prometheus::{
    IntGaugeVec, Opts, Registry,
    proto::{MetricFamily, MetricType},
};

use super::{Health, Issue};

/// Counters whose growth within `RECENT` is an issue: (metric, issue, what
/// it means).
const LOSSES: [(&str, &str, &str); 9] = [
    (
        "ensuresec_ringbuf_dropped_total",
        "ringbuf_drops",
        "trip events the kernel could not queue (the ring buffer's reader is behind)",
    ),
    (
        "ensuresec_ringbuf_shed_total",
        "work_dropped",
        "trip events shed: the queue to the detection thread held its bound of subjects",
    ),
    (
        "ensuresec_journal_write_errors_total",
        "journal_failing",
        "journal writes failed (a full disk?); retried, the kernel enforces meanwhile",
    ),
    (
        "ensuresec_incidents_write_errors_total",
        "journal_failing",
        "incident writes failed; retried",
    ),
    (
        "ensuresec_journal_dropped_total",
        "work_dropped",
        "journal records lost",
    ),
    (
        "ensuresec_incidents_decisions_dropped_total",
        "work_dropped",
        "decisions left out of incidents (the responder was behind)",
    ),
    (
        "ensuresec_app_findings_dropped_total",
        "work_dropped",
        "application findings the detection thread could not take",
    ),
    (
        "ensuresec_ml_findings_dropped_total",
        "work_dropped",
        "anomaly findings the detection thread could not take",
    ),
    (
        "ensuresec_notices_given_up_total",
        "notices_failing",
        "notices given up (refused, or undelivered too long)",
    ),
];

/// A notice waiting this long means a receiver is down.
const BACKLOG_SECONDS: f64 = 300.0;

/// How far back a loss still counts.
const RECENT: Duration = Duration::from_secs(60);

pub struct HealthWatch {
    registry: Registry,
    every: Duration,
    /// Past totals of the loss counters, oldest first.
    history: VecDeque<(Instant, BTreeMap<&'static str, f64>)>,
    gauge: IntGaugeVec,
}

/// Each sample of a family: its labels and value.
fn samples(families: &[MetricFamily], name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let Some(family) = families.iter().find(|f| f.name() == name) else {
        return Vec::new();
    };
    family
        .get_metric()
        .iter()
        .map(|m| {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            let value = match family.get_field_type() {
                MetricType::COUNTER => m.get_counter().value(),
                _ => m.get_gauge().value(),
            };
            (labels, value)
        })
        .collect()
}

fn total(families: &[MetricFamily], name: &str) -> f64 {
    samples(families, name).iter().map(|(_, v)| v).sum()
}

impl HealthWatch {
    pub fn register(registry: &Registry, every: Duration) -> prometheus::Result<Self> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "ensuresec_health_issues",
                "The agent's health issues now, by kind (see `ensuresec status`)",
            ),
            &["what"],
        )?;
        registry.register(Box::new(gauge.clone()))?;
        Ok(Self {
            registry: registry.clone(),
            every,
            history: VecDeque::new(),
            gauge,
        })
    }

    /// The health now.
    pub fn check(&mut self, pid: u32) -> Health {
        let families = self.registry.gather();
        let now = Instant::now();
        let totals: BTreeMap<&'static str, f64> = LOSSES
            .iter()
            .map(|(metric, _, _)| (*metric, total(&families, metric)))
            .collect();
        while self
            .history
            .get(1)
            .is_some_and(|(at, _)| now.duration_since(*at) >= RECENT)
        {
            self.history.pop_front();
        }
        let mut issues = Vec::new();
        if let Some((_, then)) = self.history.front() {
            for (metric, what, means) in LOSSES {
                let grew = totals[metric] - then.get(metric).copied().unwrap_or(0.0);
                if grew > 0.0 {
                    issues.push(Issue {
                        what: what.into(),
                        detail: format!("{grew} {means}, in the last minute"),
                    });
                }
            }
        }
        self.history.push_back((now, totals));
        issues.extend(model_issues(&families));
        let oldest = total(&families, "ensuresec_notices_oldest_pending_seconds");
        if oldest >= BACKLOG_SECONDS {
            issues.push(Issue {
                what: "notices_backlog".into(),
                detail: format!(
                    "{} notices waiting, the oldest for {oldest} s (a receiver is down?)",
                    total(&families, "ensuresec_notices_pending")
                ),
            });
        }
        issues.extend(log_issues(&families));
        self.gauge.reset();
        for i in &issues {
            self.gauge.with_label_values(&[&i.what]).inc();
        }
        Health {
            pid,
            written_ms: crate::clock::unix_ms(),
            every_ms: self.every.as_millis() as u64,
            issues,
        }
    }
}

/// A model that is configured and not scoring: its file was refused.
fn model_issues(families: &[MetricFamily]) -> Vec<Issue> {
    let errors = samples(families, "ensuresec_ml_model_errors_total");
    samples(families, "ensuresec_ml_model_loaded")
        .into_iter()
        .filter(|(_, loaded)| *loaded == 0.0)
        .filter_map(|(labels, _)| {
            let refused: f64 = errors
                .iter()
                .filter(|(l, _)| labels.iter().all(|(k, v)| l.get(k) == Some(v)))
                .map(|(_, v)| v)
                .sum();
            (refused > 0.0).then(|| Issue {
                what: "model_refused".into(),
                detail: format!(
                    "anomaly model {} refused ({refused} errors): threshold detectors only",
                    labels.values().cloned().collect::<Vec<_>>().join(" ")
                ),
            })
        })
        .collect()
}

fn log_issues(families: &[MetricFamily]) -> Vec<Issue> {
    let lag = samples(families, "ensuresec_log_lag_bytes");
    samples(families, "ensuresec_log_stalled")
        .into_iter()
        .filter(|(_, stalled)| *stalled > 0.0)
        .map(|(labels, _)| {
            let log = labels.get("log").cloned().unwrap_or_default();
            let behind = lag
                .iter()
                .find(|(l, _)| l.get("log") == Some(&log))
                .map_or(0.0, |(_, v)| *v);
            Issue {
                what: "log_stalled".into(),
                detail: format!("{log}: {behind} bytes unread and no progress"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use prometheus::{IntCounter, IntGauge};

    use super::*;

    fn whats(h: &Health) -> Vec<&str> {
        h.issues.iter().map(|i| i.what.as_str()).collect()
    }

    #[test]
    fn recent_losses_a_refused_model_and_a_stalled_log_are_issues() {
        let registry = Registry::new();
        let ring = IntCounter::new("ensuresec_ringbuf_dropped_total", "x").unwrap();
        let loaded = IntGauge::new("ensuresec_ml_model_loaded", "x").unwrap();
        let refused = IntCounter::new("ensuresec_ml_model_errors_total", "x").unwrap();
        let stalled = IntGaugeVec::new(Opts::new("ensuresec_log_stalled", "x"), &["log"]).unwrap();
        for m in [
            Box::new(ring.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(loaded.clone()),
            Box::new(refused.clone()),
            Box::new(stalled.clone()),
        ] {
            registry.register(m).unwrap();
        }
        let mut watch = HealthWatch::register(&registry, Duration::from_secs(1)).unwrap();
        ring.inc_by(5);
        assert!(
            watch.check(1).issues.is_empty(),
            "losses before the first look"
        );
        ring.inc_by(3);
        let h = watch.check(1);
        assert_eq!(whats(&h), ["ringbuf_drops"]);
        assert!(h.issues[0].detail.starts_with("3 trip events"), "{h:?}");
        refused.inc();
        stalled.with_label_values(&["/var/log/a.log"]).set(1);
        let h = watch.check(1);
        assert_eq!(whats(&h), ["ringbuf_drops", "model_refused", "log_stalled"]);
        assert!(h.issues[2].detail.contains("/var/log/a.log"));
        let families = registry.gather();
        assert_eq!(
            samples(&families, "ensuresec_health_issues").len(),
            3,
            "one gauge each"
        );
        loaded.set(1);
        stalled.with_label_values(&["/var/log/a.log"]).set(0);
        assert_eq!(
            whats(&watch.check(1)),
            ["ringbuf_drops"],
            "still within the minute"
        );
    }
}
