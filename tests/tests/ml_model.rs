//! The committed anomaly models under tract: their scores match
//! onnxruntime's on the committed test vectors, and broken or incompatible
//! model files are refused with an error that says what is wrong.

use std::path::{Path, PathBuf};

use ensuresec_agent::ml::model::{Model, ModelError, Subject};
use ensuresec_common::vector::WIDTH;
use prost::Message as _;
use tract_onnx::pb::{
    ModelProto, StringStringEntryProto, tensor_shape_proto::dimension::Value as Dim,
    type_proto::Value as Type,
};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn committed() -> PathBuf {
    models().join("ensuresec-ae.onnx")
}

fn committed_aggregate() -> PathBuf {
    models().join("ensuresec-aggregate-ae.onnx")
}

fn close(got: f32, want: f64) -> bool {
    (got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0)
}

#[test]
fn tract_matches_onnxruntime_on_the_committed_vectors() {
    matches_onnxruntime(&committed(), Subject::Source, "test_vectors.json");
}

#[test]
fn the_aggregate_model_matches_onnxruntime_too() {
    matches_onnxruntime(
        &committed_aggregate(),
        Subject::Destination,
        "aggregate_test_vectors.json",
    );
}

fn matches_onnxruntime(path: &Path, subject: Subject, vectors_file: &str) {
    let model = Model::load(path, subject).expect("the committed model loads");
    let width = subject.width();
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(models().join(vectors_file)).expect("test vectors"),
    )
    .expect("test vectors are JSON");
    let vectors = doc["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 10, "a real set of vectors");
    let mut x = ndarray::Array2::<f32>::zeros((vectors.len(), width));
    for (i, v) in vectors.iter().enumerate() {
        let f = v["features"].as_array().expect("features");
        assert_eq!(f.len(), width);
        for (j, value) in f.iter().enumerate() {
            x[[i, j]] = value.as_f64().expect("number") as f32;
        }
    }
    // All at once, then one by one: batching must not change a score.
    let all = model.score(x.view()).expect("scores");
    for (i, v) in vectors.iter().enumerate() {
        let want = v["score"].as_f64().expect("score");
        assert!(
            close(all.scores[i], want),
            "vector {i} ({}): tract {} vs onnxruntime {want}",
            v["about"],
            all.scores[i]
        );
        let one = model
            .score(x.slice(ndarray::s![i..i + 1, ..]))
            .expect("one");
        assert!(
            close(one.scores[0], want),
            "vector {i} alone: {}",
            one.scores[0]
        );
        for (j, e) in v["errors"].as_array().expect("errors").iter().enumerate() {
            let want = e.as_f64().expect("error");
            assert!(
                close(all.errors[[i, j]], want),
                "vector {i} feature {j}: {} vs {want}",
                all.errors[[i, j]]
            );
        }
    }
    // The vectors include benign and attack rows, scored on both sides of
    // the threshold.
    let t = model.info.threshold;
    assert!(all.scores.iter().any(|s| *s > t) && all.scores.iter().any(|s| *s <= t));
}

#[test]
fn metadata_says_what_the_model_is() {
    let model = Model::load(&committed(), Subject::Source).expect("loads");
    assert_eq!(model.info.width, WIDTH);
    assert!(model.info.threshold > 0.0);
    assert!(
        model.info.version.starts_with("ae15-"),
        "{}",
        model.info.version
    );
    assert_eq!(model.info.step_seconds, Some(1.0));
    let aggregate = Model::load(&committed_aggregate(), Subject::Destination).expect("loads");
    assert_eq!(aggregate.info.width, Subject::Destination.width());
    assert!(aggregate.info.version.starts_with("agg15-"));
}

#[test]
fn a_model_of_one_subject_is_refused_for_the_other() {
    // Both vectors are 15 wide: only the declared features tell them apart.
    let e = match Model::load(&committed(), Subject::Destination) {
        Ok(_) => panic!("the per-source model was accepted as the aggregate one"),
        Err(e) => e,
    };
    assert!(matches!(e, ModelError::Incompatible { .. }), "{e}");
    assert!(e.to_string().contains("aggregate model computes"), "{e}");
    assert!(
        e.to_string().contains("fresh_share"),
        "names the features: {e}"
    );
    assert!(Model::load(&committed_aggregate(), Subject::Source).is_err());
}

fn proto() -> ModelProto {
    ModelProto::decode(std::fs::read(committed()).expect("model").as_slice()).expect("ONNX")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

fn set_prop(p: &mut ModelProto, key: &str, value: Option<&str>) {
    p.metadata_props.retain(|e| e.key != key);
    if let Some(v) = value {
        p.metadata_props.push(StringStringEntryProto {
            key: key.into(),
            value: v.into(),
        });
    }
}

/// A change to the committed model's protobuf.
type Edit = Box<dyn Fn(&mut ModelProto)>;

fn refusal(path: &Path) -> ModelError {
    match Model::load(path, Subject::Source) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e,
    }
}

#[test]
fn broken_files_are_refused_with_a_reason() {
    let dir = tempdir();
    let bytes = std::fs::read(committed()).expect("model");

    let e = refusal(&dir.join("absent.onnx"));
    assert!(matches!(e, ModelError::Read { .. }), "{e}");
    for (name, content) in [
        ("empty.onnx", &b""[..]),
        ("truncated.onnx", &bytes[..bytes.len() / 2]),
        ("text.onnx", b"this is not a model\n"),
    ] {
        let e = refusal(&write(&dir, name, content));
        assert!(matches!(e, ModelError::NotOnnx { .. }), "{name}: {e}");
        assert!(e.to_string().contains(name), "names the file: {e}");
    }
}

#[test]
fn incompatible_models_are_refused_with_a_reason() {
    let dir = tempdir();
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "other-features.onnx",
            Box::new(|p| set_prop(p, "ensuresec.features", Some("a,b,c"))),
            "trained on features [a,b,c]",
        ),
        (
            "no-threshold.onnx",
            Box::new(|p| set_prop(p, "ensuresec.threshold", None)),
            "ensuresec.threshold",
        ),
        (
            "nan-threshold.onnx",
            Box::new(|p| set_prop(p, "ensuresec.threshold", Some("NaN"))),
            "not a positive number",
        ),
        (
            "narrow.onnx",
            Box::new(|p| {
                let input = &mut p.graph.as_mut().expect("graph").input[0];
                let Some(Type::TensorType(t)) =
                    input.r#type.as_mut().and_then(|t| t.value.as_mut())
                else {
                    panic!("tensor input")
                };
                t.shape.as_mut().expect("shape").dim[1].value = Some(Dim::DimValue(14));
            }),
            "14 features wide",
        ),
    ];
    for (name, edit, needle) in cases {
        let mut p = proto();
        edit(&mut p);
        let e = refusal(&write(&dir, name, &p.encode_to_vec()));
        assert!(matches!(e, ModelError::Incompatible { .. }), "{name}: {e}");
        assert!(e.to_string().contains(needle), "{name}: {e}");
    }
}

#[test]
fn models_with_nan_outputs_are_refused() {
    let dir = tempdir();
    let mut p = proto();
    let std = p
        .graph
        .as_mut()
        .expect("graph")
        .initializer
        .iter_mut()
        .find(|t| t.name == "std")
        .expect("a std initializer");
    // 0/0 for a zero input: the standardisation divides by zero.
    std.raw_data = vec![0; std.raw_data.len()];
    let e = refusal(&write(&dir, "nan.onnx", &p.encode_to_vec()));
    assert!(matches!(e, ModelError::NotFinite { .. }), "{e}");
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "es-ml-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
