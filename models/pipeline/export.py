"""The autoencoder as an ONNX graph the agent's tract can run: standardisation
as plain Sub/Div nodes (no `Scaler` op), Gemm and Tanh layers, and the errors
computed inside the graph. Inputs `features` [N, width]; outputs `score` [N]
and `errors` [N, width]. What the agent needs besides (threshold, feature
names, version) travels in the model's metadata, so one file is the model."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from .autoencoder import Autoencoder

OPSET = 13


def to_onnx(ae: Autoencoder, features: list[str], metadata: dict[str, str]) -> onnx.ModelProto:
    width = len(features)
    inits = [
        numpy_helper.from_array(ae.mean.astype(np.float32), "mean"),
        numpy_helper.from_array(ae.std.astype(np.float32), "std"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["z"]),
    ]
    current = "z"
    layers = len(ae.mlp.coefs_)
    for i, (w, b) in enumerate(zip(ae.mlp.coefs_, ae.mlp.intercepts_)):
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"b{i}"))
        out = f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [out]))
        if i < layers - 1:
            nodes.append(helper.make_node("Tanh", [out], [f"a{i}"]))
            out = f"a{i}"
        current = out
    nodes += [
        helper.make_node("Sub", [current, "z"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["errors"]),
        helper.make_node("ReduceMean", ["errors"], ["score"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "ensuresec_autoencoder",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("errors", TensorProto.FLOAT, ["N", width]),
        ],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="ensuresec models/train.py",
    )
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model


def run_onnxruntime(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    score, errors = session.run(["score", "errors"], {"features": x.astype(np.float32)})
    return score, errors


def check_parity(ae: Autoencoder, path: Path, x: np.ndarray) -> float:
    """Largest relative difference between onnxruntime (float32) and the
    float64 model; fails above 1e-4."""
    ort_scores, _ = run_onnxruntime(path, x)
    ref = ae.scores(x)
    rel = np.abs(ort_scores - ref) / np.maximum(1.0, np.abs(ref))
    worst = float(rel.max())
    if worst > 1e-4:
        raise SystemExit(f"onnxruntime and the trained model disagree: relative {worst:.2e}")
    return worst


def write_test_vectors(path: Path, model_path: Path, x: np.ndarray, labels: list[str]) -> None:
    """Inputs with onnxruntime's outputs: the agent's tests check tract against
    these without Python."""
    score, errors = run_onnxruntime(model_path, x)
    doc = {
        "model": model_path.name,
        "tolerance": "relative 1e-5 of max(1, |score|)",
        "vectors": [
            {
                "about": labels[i],
                "features": [float(v) for v in x[i]],
                "score": float(score[i]),
                "errors": [float(v) for v in errors[i]],
            }
            for i in range(len(x))
        ],
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
