//! Prometheus metrics. Packet counters are read from the kernel at scrape time;
//! list sizes come from the agent's last sweep (reading a million entries per
//! scrape would cost more than the scrape is worth).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use bytes::Bytes;
use ensuresec_common::reason::Reason;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming};
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::{
    http::{self, reply},
    store::Store,
};

/// List sizes per (list, family, kind), refreshed by each sweep.
#[derive(Clone, Debug, Default)]
pub struct ListSnapshot {
    pub counts: Vec<(&'static str, &'static str, &'static str, usize)>,
    pub capacities: Vec<(&'static str, &'static str, u32)>,
}

/// Metrics the agent updates directly.
pub struct AgentMetrics {
    pub sweeps: IntCounter,
    pub expired_removed: IntCounter,
    pub attached_interfaces: IntGauge,
    pub port_policy_enabled: IntGauge,
    pub sweep_errors: IntCounter,
}

struct KernelCollector {
    store: Arc<Store>,
    snapshot: Arc<Mutex<ListSnapshot>>,
    descs: Vec<Desc>,
}

fn packets_vec() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "ensuresec_packets_total",
            "Packets seen by the XDP filter, by verdict and reason",
        ),
        &["verdict", "reason"],
    )
    .expect("valid metric")
}

fn bytes_vec() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "ensuresec_bytes_total",
            "Bytes seen by the XDP filter, by verdict and reason",
        ),
        &["verdict", "reason"],
    )
    .expect("valid metric")
}

fn entries_vec(list: &str) -> IntGaugeVec {
    IntGaugeVec::new(
        Opts::new(
            format!("ensuresec_{list}list_entries"),
            format!("Entries on the {list}list, by address family and kind (exact or cidr)"),
        ),
        &["family", "kind"],
    )
    .expect("valid metric")
}

fn capacity_vec() -> IntGaugeVec {
    IntGaugeVec::new(
        Opts::new(
            "ensuresec_list_capacity",
            "Capacity of the list maps, by address family and kind",
        ),
        &["family", "kind"],
    )
    .expect("valid metric")
}

impl Collector for KernelCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (packets, bytes) = (packets_vec(), bytes_vec());
        match self.store.counters() {
            Ok(counters) => {
                for (c, r) in counters.iter().zip(Reason::ALL) {
                    let labels = [r.verdict(), r.name()];
                    packets.with_label_values(&labels).inc_by(c.packets);
                    bytes.with_label_values(&labels).inc_by(c.bytes);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading packet counters"),
        }
        let (block, allow, capacity) = (entries_vec("block"), entries_vec("allow"), capacity_vec());
        let snapshot = self.snapshot.lock().expect("snapshot lock").clone();
        for (list, family, kind, n) in snapshot.counts {
            let vec = if list == "block" { &block } else { &allow };
            vec.with_label_values(&[family, kind]).set(n as i64);
        }
        for (family, kind, n) in snapshot.capacities {
            capacity.with_label_values(&[family, kind]).set(n as i64);
        }
        let mut out = Vec::new();
        out.extend(packets.collect());
        out.extend(bytes.collect());
        out.extend(block.collect());
        out.extend(allow.collect());
        out.extend(capacity.collect());
        out
    }
}

/// Builds the registry: kernel counters, list gauges, agent and process metrics.
pub fn registry(
    store: Arc<Store>,
    snapshot: Arc<Mutex<ListSnapshot>>,
) -> anyhow::Result<(Registry, AgentMetrics)> {
    let registry = Registry::new();
    let descs = [
        packets_vec().desc(),
        bytes_vec().desc(),
        entries_vec("block").desc(),
        entries_vec("allow").desc(),
        capacity_vec().desc(),
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    registry.register(Box::new(KernelCollector {
        store,
        snapshot,
        descs,
    }))?;
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let counter = |name: &str, help: &str| -> anyhow::Result<IntCounter> {
        let c = IntCounter::new(name, help)?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let gauge = |name: &str, help: &str| -> anyhow::Result<IntGauge> {
        let g = IntGauge::new(name, help)?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let metrics = AgentMetrics {
        sweeps: counter("ensuresec_sweeps_total", "Expiry sweeps run by the agent")?,
        expired_removed: counter(
            "ensuresec_expired_removed_total",
            "Expired blocks removed from the maps by the agent",
        )?,
        sweep_errors: counter("ensuresec_sweep_errors_total", "Sweeps that failed")?,
        attached_interfaces: gauge(
            "ensuresec_attached_interfaces",
            "Interfaces the filter is attached to",
        )?,
        port_policy_enabled: gauge(
            "ensuresec_port_policy_enabled",
            "1 when the port policy drops ports outside its lists",
        )?,
    };
    Ok((registry, metrics))
}

/// Text exposition of everything in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("text encoding cannot fail");
    String::from_utf8(buf).expect("text exposition is UTF-8")
}

fn respond(registry: &Registry, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            render(registry),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Serves `/metrics` and `/healthz` until the task is dropped (with the
/// bounds of `http::serve`).
pub async fn serve(listen: SocketAddr, registry: Registry) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "metrics.listen is not a loopback address: anyone who can reach it reads the metrics (put a firewall or a proxy in front)"
        );
    }
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics listener to {listen}"))?;
    tracing::info!(%listen, "serving metrics");
    http::serve(listener, "metrics", move |request: Request<Incoming>| {
        let response = respond(&registry, request.uri().path());
        async move { response }
    })
    .await;
    Ok(())
}
