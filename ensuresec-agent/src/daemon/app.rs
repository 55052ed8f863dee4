//! The application inputs, started and connected to the engine.

use std::sync::{Arc, Mutex, atomic::AtomicBool};

use anyhow::Result;

use crate::{
    app::{
        metrics::AppMetrics,
        pipeline::{Pipeline, Sink, TimeBase},
        pseudonym::Hasher,
        tail::Tailer,
    },
    config::Validated,
    detect::engine::Engine,
};

/// Starts the application inputs (followed logs, the events listener) and
/// connects them to the engine through a waking inbox.
pub(super) async fn start_app(
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
