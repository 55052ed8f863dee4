//! Detection and automatic mitigation: settings, detectors, decisions, and the
//! engine that turns the kernel's trip-wire events into decisions.

pub mod allow;
pub mod app_evidence;
pub mod baseline;
pub mod decide;
pub mod detector;
pub mod engine;
pub mod events;
pub mod evidence;
pub mod failsafe;
pub mod inbox;
pub mod kernel;
pub mod metrics;
pub mod outcome;
pub mod plan;
pub mod rules;
pub mod settings;
pub mod sockets;
pub mod state;
mod wake;
pub mod watch;
