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
use aya::Ebpf;
use ensuresec_common::{entry::Target, maps::FLAG_ALLOW_FROM_CONFIG, ports::bitmap};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    app::{
        metrics::AppMetrics,
        pipeline::{Pipeline, Sink, TimeBase},
        pseudonym::Hasher,
        tail::Tailer,
    },
    attach, census, clock,
    config::{Config, Validated},
    detect::{engine::Engine, kernel, metrics::DetectMetrics},
    ebpf,
    edit::Op,
    journal::{AGENT, CONFIG, Entry, Kind},
    metrics::{self, AgentMetrics, ListSnapshot},
    ml::{metrics::MlMetrics, runner::Runner},
    pins::{AgentLock, PinDir},
    recover::startup::{self, MapsAtStart},
    store::{EditSummary, Store},
};
use serde_json::json;

pub fn run(pins: &PinDir, config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(pins.clone(), config))
}

/// Makes the config's allowlist the set of config-owned allow entries.
fn reconcile_allowlist(store: &Store, config: &Validated) -> Result<EditSummary> {
    let w = store.write()?;
    let wanted: HashSet<Target> = config.allowlist.iter().copied().collect();
    let now_secs = clock::unix_secs();
    let mut edits: Vec<(Target, Op)> = wanted
        .iter()
        .map(|t| {
            (
                *t,
                Op::Allow {
                    from_config: true,
                    now_secs,
                },
            )
        })
        .collect();
    for l in w.entries()? {
        if l.entry.flags & FLAG_ALLOW_FROM_CONFIG != 0 && !wanted.contains(&l.target) {
            edits.push((l.target, Op::UnallowConfig));
        }
    }
    let summary = w.edit(&edits)?;
    tracing::info!(
        entries = wanted.len(),
        added = summary.added,
        removed = summary.removed,
        "allowlist from the config applied"
    );
    Ok(summary)
}

fn apply_port_policy(store: &Store, config: &Validated) -> Result<()> {
    let policy = &config.raw.port_policy;
    store.write()?.set_port_policy(
        policy.enabled,
        &bitmap(&config.tcp_ports),
        &bitmap(&config.udp_ports),
    )?;
    if policy.enabled {
        tracing::info!(tcp = ?policy.tcp, udp = ?policy.udp, "port policy on");
    }
    Ok(())
}

/// Attaches every configured interface not yet attached by this agent.
fn attach_all(bpf: &mut Ebpf, store: &Store, config: &Validated, done: &mut HashSet<String>) {
    for iface in &config.raw.interfaces {
        if done.contains(&iface.name) {
            continue;
        }
        match store
            .write()
            .and_then(|w| attach::attach(bpf, &w, &iface.name, iface.mode))
        {
            Ok(a) => {
                let how = if a.replaced {
                    "adopted (program replaced in place)"
                } else {
                    "attached"
                };
                tracing::info!(iface = %a.iface, mode = a.mode, "{how}");
                done.insert(iface.name.clone());
            }
            Err(e) => {
                tracing::error!(iface = %iface.name, error = %e, "cannot attach; retrying at each sweep")
            }
        }
    }
    // An interface that disappeared must be attached again when it comes back.
    done.retain(|name| matches!(attach::link_target(store.pins(), name), Ok(Some(_))));
}

/// Removes expired blocks and refreshes the list gauges.
/// Reading every entry takes a while with a million of them, so it is done
/// without the write lock (writers, the detection thread's bans among them,
/// are not held up); the lock is taken for the writes only. Expiring is safe
/// on entries read earlier: it removes only parts whose time has passed.
fn sweep(store: &Store, snapshot: &Mutex<ListSnapshot>, metrics: &AgentMetrics) -> Result<()> {
    let now_ns = clock::mono_ns();
    let census = census::take(&store.entries()?, now_ns);
    let w = store.write()?;
    if w.recount_exact(w.exact_v4.count()?, w.exact_v6.count()?)? {
        tracing::warn!("corrected the exact tables' key counts (a writer was stopped part-way)");
    }
    if !census.expired.is_empty() {
        let edits: Vec<(Target, Op)> = census
            .expired
            .iter()
            .map(|t| (*t, Op::Expire { now_ns }))
            .collect();
        w.edit(&edits)?;
        metrics.expired_removed.inc_by(edits.len() as u64);
        tracing::info!(count = edits.len(), "removed expired blocks");
    }
    let counts = census.counts;
    let caps = store.capacities;
    *snapshot.lock().expect("snapshot lock") = ListSnapshot {
        counts,
        capacities: vec![
            ("ipv4", "exact", caps.exact_v4),
            ("ipv4", "cidr", caps.cidr_v4),
            ("ipv6", "exact", caps.exact_v6),
            ("ipv6", "cidr", caps.cidr_v6),
        ],
    };
    metrics.sweeps.inc();
    Ok(())
}

/// Starts the application inputs (followed logs, the events listener) and
/// connects them to the engine through a waking inbox.
async fn start_app(
    engine: Engine,
    config: &Validated,
    registry: &prometheus::Registry,
    stop: &Arc<AtomicBool>,
    threads: &mut Vec<std::thread::JoinHandle<()>>,
    failsafe: &crate::detect::failsafe::Failsafe,
) -> Result<(Engine, Option<tokio::task::JoinHandle<()>>)> {
    let app = Arc::new(config.app.clone());
    // Bounded: a burst of findings cannot grow the agent; refusals are counted.
    let (tx, inbox) = crate::detect::inbox::inbox(4096)?;
    let metrics = AppMetrics::register(registry)?;
    let dropped = metrics.findings_dropped.clone();
    let sink: Sink = Box::new(move |finding| {
        if tx.send(finding).is_err() {
            dropped.inc();
        }
    });
    let key = app.state_dir().join("app.key");
    let hasher = Hasher::load_or_create(&key)?;
    let pipeline = Arc::new(Mutex::new(
        Pipeline::new(app.clone(), hasher, metrics.clone(), TimeBase::Clock, sink)
            .with_failsafe(failsafe),
    ));
    if !app.logs.is_empty() {
        threads.push(Tailer::new(&app).spawn(pipeline.clone(), stop.clone()));
    }
    let server = match &app.events {
        Some(events) => {
            let listener = crate::app::events::bind(events).await?;
            Some(tokio::spawn(crate::app::events::serve_events(
                listener,
                events.clone(),
                pipeline,
                metrics,
            )))
        }
        None => None,
    };
    let names: Vec<Arc<str>> = app.storefronts.iter().map(|(n, _)| n.clone()).collect();
    Ok((engine.with_app(inbox, &names), server))
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
    let mut responder = None;
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
            };
            match crate::respond::start(responding, stop_journal.clone()) {
                Ok((listener, thread)) => {
                    engine = engine
                        .with_listener(listener)
                        .with_failsafe(failsafe.clone(), taken);
                    responder = Some(thread);
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
                let (store, snapshot, metrics, config, bpf, attached) = (
                    store.clone(), snapshot.clone(), metrics.clone(), config.clone(), bpf.clone(), attached.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    let mut attached = attached.lock().expect("attached lock");
                    attach_all(&mut bpf.lock().expect("bpf lock"), &store, &config, &mut attached);
                    metrics.attached_interfaces.set(attached.len() as i64);
                    if let Err(e) = sweep(&store, &snapshot, &metrics) {
                        metrics.sweep_errors.inc();
                        tracing::error!(error = %e, "sweep failed");
                    }
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
    if let Some(t) = responder {
        let _ = t.join();
    }
    if let Some(t) = journal_thread {
        let _ = t.join();
    }
    Ok(())
}
