//! Unknown-threat detection: per-source time steps scored by an ONNX anomaly
//! model (an autoencoder trained on benign traffic only, see models/).

pub mod evidence;
pub mod metrics;
pub mod model;
pub mod runner;
pub mod settings;
pub mod state;
pub mod steps;
