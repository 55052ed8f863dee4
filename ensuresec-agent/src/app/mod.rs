//! Application-level inputs and detection: web server logs and shop events
//! become observations of what clients do on each storefront; the detectors
//! turn them into findings, which the one decision engine (`detect::engine`)
//! decides on like any other detection. Nothing here writes the maps.

pub mod client;
pub mod detect;
pub mod events;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod pseudonym;
pub mod record;
pub mod settings;
pub mod tail;
