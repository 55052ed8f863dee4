//! Unknown-threat detection: per-source time steps and per-destination
//! windows scored by ONNX anomaly models (autoencoders trained on benign
//! traffic only, see models/).

pub mod destinations;
pub mod evidence;
pub mod metrics;
pub mod model;
pub mod runner;
pub mod settings;
pub mod state;
pub mod steps;
