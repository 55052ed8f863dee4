//! Detection and automatic mitigation: settings, detectors, decisions, and the
//! engine that turns the kernel's trip-wire events into decisions.

pub mod decide;
pub mod engine;
pub mod rules;
pub mod settings;
pub mod sockets;
pub mod state;
