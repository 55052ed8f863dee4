//! `ensuresec run`: attach (adopting what is attached), apply the config's
//! allowlist and port policy, sweep expired entries, serve metrics. SIGTERM and
//! SIGINT end it and leave the filter attached.

use std::{
    collections::HashSet,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context as _, Result};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

mod app;
mod setup;

use app::start_app;
use setup::{apply_port_policy, attach_all, reconcile_allowlist, sweep};

use crate::{
    config::{Config, Validated},
    detect::{engine::Engine, kernel, metrics::DetectMetrics},
    ebpf,
    journal::{AGENT, CONFIG, Entry, Kind},
    metrics::{self, ListSnapshot},
    ml::{metrics::MlMetrics, runner::Runner},
    pins::{AgentLock, PinDir},
    recover::startup::{self, MapsAtStart},
    store::Store,
};

pub fn run(pins: &PinDir, config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(pins.clone(), config))
}

async fn run_async(pins: PinDir, config: Validated) -> Result<()> {
    // Held until the agent ends: a second agent, or a detach, is refused meanwhile.
    let _claim = AgentLock::claim(&pins)?;
    let state_dir = config.raw.agent.state_dir.clone();
    let journal = startup::open_journal(&state_dir);
    let maps_at_start = startup::examine_maps(&pins)?;
    if let MapsAtStart::Replaced(why) = &maps_at_start {
        tracing::warn!(%why, "the pinned maps have another layout (an upgrade): made anew, the desired state restored from the journal");
    }
    let mut bpf = ebpf::load(&pins, &config.raw.maps)?;
    let store = Arc::new(Store::open(&pins)?);
    let restored = journal.as_ref().and_then(|j| {
        startup::restore_into_new(&store, j, &maps_at_start)
            .map_err(|e| tracing::error!(error = %e, "could not restore the desired state from the journal"))
            .ok()
            .flatten()
    });
    if let Err(e) = crate::state_file::write(&pins.state_dir_file(), &state_dir) {
        tracing::warn!(error = %e, "could not record the state directory for the CLI");
    }
    if store.capacities.exact_v4 != config.raw.maps.exact_v4
        || store.capacities.cidr_v4 != config.raw.maps.cidr_v4
    {
        tracing::warn!(
            pinned = ?store.capacities,
            configured = ?config.raw.maps,
            "the pinned maps keep the sizes they were created with; detach every interface to resize"
        );
    }
    let allow_changes = reconcile_allowlist(&store, &config)?;
    apply_port_policy(&store, &config)?;
    let snapshot = Arc::new(Mutex::new(ListSnapshot::default()));
    let (registry, metrics) = metrics::registry(store.clone(), snapshot.clone())?;
    let stop_journal = Arc::new(AtomicBool::new(false));
    let (journal_sink, journal_thread) = match journal {
        Some(j) => {
            let (sink, thread) = startup::start_journal(
                j,
                config.raw.journal.retention(),
                &registry,
                store.clone(),
                &maps_at_start,
                &stop_journal,
            )?;
            if let Some(entry) = restored {
                sink.entry(entry);
            }
            sink.entry(Entry::now(Kind::AgentStart, AGENT).detail(json!({
                "version": env!("CARGO_PKG_VERSION"),
                "maps": format!("{maps_at_start:?}"),
            })));
            if allow_changes.added + allow_changes.removed > 0 {
                sink.entry(Entry::now(Kind::ConfigAllow, CONFIG).detail(json!({
                    "entries": config.allowlist.len(),
                    "added": allow_changes.added,
                    "removed": allow_changes.removed,
                })));
            }
            (Some(sink), Some(thread))
        }
        None => (None, None),
    };
    metrics
        .port_policy_enabled
        .set(config.raw.port_policy.enabled as i64);
    let detect_metrics = DetectMetrics::register(&registry)?;
    let stop_detect = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let network = !config.detect.protect.is_empty();
    if !network {
        kernel::disable(&store)?;
        if config.detect.ml.is_some() {
            tracing::warn!(
                "[ml] needs [[protect]] blocks (they turn on the kernel's features): the model is not used"
            );
        }
    } else {
        kernel::configure(&store, &config.detect)?;
    }
    let mut events_server = None;
    let mut responder = Vec::new();
    let failsafe = crate::detect::failsafe::Failsafe::new(&config.app);
    if network || config.app.enabled() {
        let mut engine = Engine::new(store.clone(), config.detect.clone(), detect_metrics)?;
        if let Some(sink) = &journal_sink {
            engine = engine.with_listener(crate::journal::outcomes::listener(sink.clone()));
            // Incidents live in the journal: without one there are none
            // (and no fail-safe profile goes on).
            let (commands, taken) = std::sync::mpsc::sync_channel(256);
            let responding = crate::respond::Responding {
                state_dir: &state_dir,
                config: &config,
                registry: &registry,
                failsafe: failsafe.clone(),
                commands,
                store: store.clone(),
            };
            match crate::respond::start(responding, stop_journal.clone()) {
                Ok((listener, responding)) => {
                    engine = engine
                        .with_listener(listener)
                        .with_failsafe(failsafe.clone(), taken);
                    responder = responding;
                }
                Err(e) => {
                    tracing::error!(error = %e, "incidents are off: the responder could not start")
                }
            }
        }
        if config.app.enabled() {
            let (engine_with_app, server) = start_app(
                engine,
                &config,
                &registry,
                &stop_detect,
                &mut threads,
                &failsafe,
            )
            .await?;
            engine = engine_with_app;
            events_server = server;
        }
        if let Some(ml) = config.detect.ml.as_ref().filter(|_| network) {
            // Bounded: a flood of flagged sources cannot grow the agent.
            let (tx, rx) = std::sync::mpsc::sync_channel(4096);
            engine = engine.with_findings(rx);
            for model in &ml.models {
                let runner = Runner::new(
                    store.clone(),
                    ml,
                    model.clone(),
                    config.detect.protect.iter().map(|(t, _)| *t).collect(),
                    config.detect.window,
                    MlMetrics::register(&registry, model.subject)?,
                    tx.clone(),
                    crate::ml::state::path(&pins, model.subject),
                );
                threads.push(runner.spawn(stop_detect.clone()));
            }
        }
        tracing::info!(
            prefixes = config.detect.protect.len(),
            storefronts = config.app.storefronts.len(),
            logs = config.app.logs.len(),
            events = config.app.events.is_some(),
            dry_run = config.detect.dry_run,
            anomaly_model = network && config.detect.ml.is_some(),
            "detection on"
        );
        threads.push(engine.spawn(stop_detect.clone()));
    }
    let detect_state = crate::detect::state::DetectState {
        pid: std::process::id(),
        protect: config
            .detect
            .protect
            .iter()
            .map(|(t, _)| t.to_string())
            .collect(),
        dry_run: config.detect.dry_run,
    };
    if let Err(e) = crate::state_file::write(&crate::detect::state::path(&pins), &detect_state) {
        tracing::warn!(error = %e, "could not record the detection state for `ensuresec status`");
    }
    let mut attached = HashSet::new();
    attach_all(&mut bpf, &store, &config, &mut attached);
    metrics.attached_interfaces.set(attached.len() as i64);
    sweep(&store, &snapshot, &metrics)?;

    let health = Arc::new(Mutex::new(crate::health::HealthWatch::register(
        &registry,
        config.raw.agent.sweep_interval,
    )?));
    let mut server = tokio::spawn(metrics::serve(config.raw.metrics.listen, registry));
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut tick = tokio::time::interval(config.raw.agent.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(pin_dir = %pins.root().display(), "agent running");
    let bpf = Arc::new(Mutex::new(bpf));
    let metrics = Arc::new(metrics);
    let config = Arc::new(config);
    let attached = Arc::new(Mutex::new(attached));
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping; the filter stays attached"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping; the filter stays attached"); break; }
            _ = tick.tick() => {
                let (store, snapshot, metrics, config, bpf, attached, health, pins) = (
                    store.clone(), snapshot.clone(), metrics.clone(), config.clone(), bpf.clone(), attached.clone(), health.clone(), pins.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    let mut attached = attached.lock().expect("attached lock");
                    attach_all(&mut bpf.lock().expect("bpf lock"), &store, &config, &mut attached);
                    metrics.attached_interfaces.set(attached.len() as i64);
                    if let Err(e) = sweep(&store, &snapshot, &metrics) {
                        metrics.sweep_errors.inc();
                        tracing::error!(error = %e, "sweep failed");
                    }
                    crate::health::report(&mut health.lock().expect("health lock"), &pins);
                }).await?;
            }
            ended = &mut server => {
                // The metrics server only ends on error (e.g. the address is taken).
                return match ended {
                    Ok(Ok(())) => Err(anyhow::anyhow!("the metrics server stopped")),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(e.into()),
                };
            }
        }
    }
    server.abort();
    if let Some(events) = events_server {
        events.abort();
    }
    stop_detect.store(true, Ordering::Relaxed);
    for handle in threads {
        let _ = handle.join();
    }
    // Last: what the engine decided before it stopped is written.
    if let Some(sink) = journal_sink {
        sink.entry(Entry::now(Kind::AgentStop, AGENT));
    }
    stop_journal.store(true, Ordering::Relaxed);
    for t in responder {
        let _ = t.join();
    }
    if let Some(t) = journal_thread {
        let _ = t.join();
    }
    Ok(())
}
