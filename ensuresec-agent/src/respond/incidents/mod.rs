//! Incidents: one per storefront and kind of attack while it lasts.

mod kind;
mod model;
mod tracker;

pub use kind::IncidentKind;
pub use model::{Incident, MAX_LISTED, State};
pub use tracker::{Change, Key, Observation, Tracker};

#[cfg(test)]
mod tests;
