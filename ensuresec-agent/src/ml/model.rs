//! An anomaly model from an ONNX file, run with tract: inputs `features`
//! [N, width], outputs `score` [N] and per-feature `errors` [N, width]. The
//! threshold, feature names and version are read from the model's metadata
//! (`ensuresec.*`), so a model cannot be paired with the wrong threshold or
//! be fed features in an order it was not trained on.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use ensuresec_common::{decisions::Detector, vector};
use ndarray::{Array2, ArrayView2};
use tract_onnx::prelude::*;

/// Models larger than this are refused before parsing (ours is a few KiB).
const MAX_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model {path}: cannot read it: {why}")]
    Read { path: PathBuf, why: String },
    #[error("model {path}: not a usable ONNX model: {why}")]
    NotOnnx { path: PathBuf, why: String },
    #[error("model {path}: incompatible with this agent: {why}")]
    Incompatible { path: PathBuf, why: String },
    #[error("model {path}: gives NaN or infinite outputs ({why})")]
    NotFinite { path: PathBuf, why: String },
}

/// What a model scores: a source's step, or a destination's window (all of
/// its sources at once). Each has its own features, in a fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Source,
    Destination,
}

impl Subject {
    pub const fn features(self) -> &'static [&'static str] {
        match self {
            Subject::Source => &vector::FEATURES,
            Subject::Destination => &vector::destination::FEATURES,
        }
    }

    pub const fn width(self) -> usize {
        self.features().len()
    }

    /// The model's name in metrics, logs and `status`.
    pub const fn name(self) -> &'static str {
        match self {
            Subject::Source => "source",
            Subject::Destination => "aggregate",
        }
    }

    pub const fn detector(self) -> Detector {
        match self {
            Subject::Source => Detector::Ml,
            Subject::Destination => Detector::MlAggregate,
        }
    }

    /// The model behind a decision record's detector id, if any.
    pub fn of_detector(id: u32) -> Option<Subject> {
        [Subject::Source, Subject::Destination]
            .into_iter()
            .find(|s| s.detector() as u32 == id)
    }
}

/// What the model says about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub subject: Subject,
    pub path: PathBuf,
    pub version: String,
    pub width: usize,
    pub threshold: f32,
    pub step_seconds: Option<f64>,
    /// The kernel window the aggregate model's rows were read from.
    pub window_seconds: Option<f64>,
}

/// Scores of a batch, and each row's squared error per feature.
#[derive(Clone, Debug)]
pub struct Scored {
    pub scores: Vec<f32>,
    pub errors: Array2<f32>,
}

pub struct Model {
    pub info: ModelInfo,
    plan: Arc<TypedRunnableModel>,
}

fn property(model: &InferenceModel, key: &str) -> Option<String> {
    let t = model
        .properties
        .get(&format!("onnx.metadata_props.{key}"))?;
    t.try_as_plain_ram()
        .ok()?
        .to_scalar::<String>()
        .ok()
        .cloned()
}

impl Model {
    /// Loads, checks and tries a model of `subject`: it must read, parse,
    /// declare the subject's features in our order with a positive
    /// threshold, take [N, width] inputs, and give finite outputs of the
    /// right shapes.
    pub fn load(path: &Path, subject: Subject) -> Result<Self, ModelError> {
        let (wanted, width) = (subject.features(), subject.width());
        let read = |why: String| ModelError::Read {
            path: path.to_path_buf(),
            why,
        };
        let not_onnx = |why: String| ModelError::NotOnnx {
            path: path.to_path_buf(),
            why,
        };
        let incompatible = |why: String| ModelError::Incompatible {
            path: path.to_path_buf(),
            why,
        };
        let file = std::fs::File::open(path).map_err(|e| read(e.to_string()))?;
        let mut bytes = Vec::new();
        file.take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| read(e.to_string()))?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(read(format!("larger than {} MiB", MAX_BYTES >> 20)));
        }
        if bytes.is_empty() {
            return Err(not_onnx("the file is empty".into()));
        }
        let model = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .map_err(|e| not_onnx(format!("{e:#}")))?;

        let features = property(&model, "ensuresec.features")
            .ok_or_else(|| incompatible("no `ensuresec.features` in its metadata".into()))?;
        let names: Vec<&str> = features.split(',').collect();
        if names != wanted {
            return Err(incompatible(format!(
                "it was trained on features [{features}], this agent's {} model computes [{}]",
                subject.name(),
                wanted.join(",")
            )));
        }
        let threshold: f32 = property(&model, "ensuresec.threshold")
            .ok_or_else(|| incompatible("no `ensuresec.threshold` in its metadata".into()))?
            .trim()
            .parse()
            .map_err(|e| incompatible(format!("ensuresec.threshold: {e}")))?;
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err(incompatible(format!(
                "ensuresec.threshold = {threshold} is not a positive number"
            )));
        }
        let version = property(&model, "ensuresec.version").unwrap_or_else(|| "unversioned".into());
        let step_seconds = property(&model, "ensuresec.step_seconds").and_then(|s| s.parse().ok());
        let window_seconds =
            property(&model, "ensuresec.window_seconds").and_then(|s| s.parse().ok());

        if model.inputs.len() != 1 || model.outputs.len() != 2 {
            return Err(incompatible(format!(
                "it has {} inputs and {} outputs; expected 1 (features) and 2 (score, errors)",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        let declared = model
            .input_fact(0)
            .map_err(|e| not_onnx(format!("{e:#}")))?
            .shape
            .dims()
            .nth(1)
            .and_then(tract_onnx::tract_hir::infer::Factoid::concretize)
            .and_then(|d| d.to_i64().ok());
        if let Some(w) = declared
            && w != width as i64
        {
            return Err(incompatible(format!(
                "its input is {w} features wide, this agent computes {width}"
            )));
        }
        let n = model.sym("N");
        let plan = model
            .with_input_fact(0, f32::fact(tract_onnx::tract_core::dims!(n, width)).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| not_onnx(format!("{e:#}")))?;
        let this = Self {
            info: ModelInfo {
                subject,
                path: path.to_path_buf(),
                version,
                width,
                threshold,
                step_seconds,
                window_seconds,
            },
            plan,
        };
        this.probe()?;
        Ok(this)
    }

    /// Runs two fixed rows: a model that cannot score them is refused now,
    /// not on live traffic.
    fn probe(&self) -> Result<(), ModelError> {
        let width = self.info.width;
        let mut x = Array2::<f32>::zeros((2, width));
        x.row_mut(1).fill(1.0);
        let out = self.score(x.view())?;
        if out.scores.len() != 2 || out.errors.dim() != (2, width) {
            return Err(ModelError::Incompatible {
                path: self.info.path.clone(),
                why: format!(
                    "outputs have shapes [{}] and {:?}; expected [N] and [N, {width}]",
                    out.scores.len(),
                    out.errors.dim()
                ),
            });
        }
        if let Some(i) = out.scores.iter().position(|s| !s.is_finite()) {
            return Err(ModelError::NotFinite {
                path: self.info.path.clone(),
                why: format!("score {} for probe row {i}", out.scores[i]),
            });
        }
        Ok(())
    }

    /// Scores a batch of feature vectors (rows).
    pub fn score(&self, x: ArrayView2<f32>) -> Result<Scored, ModelError> {
        let fail = |why: String| ModelError::NotOnnx {
            path: self.info.path.clone(),
            why,
        };
        let input: Tensor = x.to_owned().into();
        let out = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| fail(format!("running it: {e:#}")))?;
        let scores = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| fail(format!("score output: {e:#}")))?;
        let errors = out[1]
            .to_plain_array_view::<f32>()
            .map_err(|e| fail(format!("errors output: {e:#}")))?;
        let errors = errors
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|e| ModelError::Incompatible {
                path: self.info.path.clone(),
                why: format!("errors output is not [N, width]: {e}"),
            })?
            .to_owned();
        Ok(Scored {
            scores: scores.iter().copied().collect(),
            errors,
        })
    }
}
