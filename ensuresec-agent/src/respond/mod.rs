//! Response: the engine's decisions, of every layer, grouped into incidents
//! per storefront and kind, with a lifecycle (open, mitigating, resolved
//! after a quiet period). Follows the decisions; never writes the maps.

pub mod drops;
pub mod incidents;
pub mod metrics;
pub mod notices;
pub mod places;
pub mod record;
pub mod responder;
pub mod settings;
pub mod switches;

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicBool, mpsc::SyncSender},
    thread::JoinHandle,
};

use prometheus::Registry;

use crate::{
    config::Validated,
    detect::{engine::FailsafeCommand, failsafe::Failsafe, outcome::Listener},
    journal::Journal,
};

/// What the responder needs from the agent.
pub struct Responding<'a> {
    pub state_dir: &'a Path,
    pub config: &'a Validated,
    pub registry: &'a Registry,
    /// The storefronts' fail-safe profiles...
    pub failsafe: Arc<Failsafe>,
    /// ...which the engine turns on and off when told here.
    pub commands: SyncSender<FailsafeCommand>,
    /// Read only: what the kernel dropped on the way to each destination.
    pub store: Arc<crate::store::Store>,
}

/// Starts the responder, and the notifier if a channel is configured, each
/// on a journal connection of its own; returns the engine's listener that
/// feeds the responder, and their threads.
pub fn start(
    r: Responding<'_>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(Listener, Vec<JoinHandle<()>>)> {
    let journal = Journal::open(r.state_dir)?;
    let metrics = metrics::ResponderMetrics::register(r.registry)?;
    let (responder, tx) = responder::Responder::new(
        journal,
        places::Places::new(r.config),
        r.config.raw.incidents.quiet,
        metrics.clone(),
        switches::Switches::new(r.failsafe, r.commands),
        drops::DropWatch::new(r.store),
        r.config.notices.queue(
            r.config
                .raw
                .storefronts
                .iter()
                .map(|s| s.name.clone())
                .collect(),
        ),
    )?;
    let mut threads = vec![responder.spawn(stop.clone())];
    if !r.config.notices.channels.is_empty() {
        let notifier = notices::notifier::Notifier::new(
            Journal::open(r.state_dir)?,
            r.config.notices.channels.clone(),
            r.config.notices.config.give_up_after,
            notices::metrics::NoticeMetrics::register(r.registry)?,
        );
        threads.push(notifier.spawn(stop));
    }
    Ok((responder::listener(tx, metrics), threads))
}
