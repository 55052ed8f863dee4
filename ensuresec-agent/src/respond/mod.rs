//! Response: the engine's decisions, of every layer, grouped into incidents
//! per storefront and kind, with a lifecycle (open, mitigating, resolved
//! after a quiet period). Follows the decisions; never writes the maps.

pub mod incidents;
pub mod metrics;
pub mod places;
pub mod record;
pub mod responder;
pub mod settings;

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicBool},
    thread::JoinHandle,
};

use prometheus::Registry;

use crate::{config::Validated, detect::outcome::Listener, journal::Journal};

/// Starts the responder on a journal connection of its own; returns the
/// engine's listener that feeds it and its thread.
pub fn start(
    state_dir: &Path,
    config: &Validated,
    registry: &Registry,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(Listener, JoinHandle<()>)> {
    let journal = Journal::open(state_dir)?;
    let metrics = metrics::ResponderMetrics::register(registry)?;
    let (responder, tx) = responder::Responder::new(
        journal,
        places::Places::new(config),
        config.raw.incidents.quiet,
        metrics.clone(),
    )?;
    Ok((responder::listener(tx, metrics), responder.spawn(stop)))
}
