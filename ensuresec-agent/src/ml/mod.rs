//! Unknown-threat detection: per-source time steps scored by an ONNX anomaly
//! model (an autoencoder trained on benign traffic only).

pub mod steps;
