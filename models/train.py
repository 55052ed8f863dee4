"""Trains ensuresec's anomaly models from the lab datasets and writes, into
--out: the per-source model (ensuresec-ae.onnx, test_vectors.json,
evaluation.json), the aggregate per-destination model
(ensuresec-aggregate-ae.onnx, aggregate_test_vectors.json,
aggregate_evaluation.json) and MODEL_CARD.md. Run by `cargo xtask train`;
see MODEL_CARD.md for what they do and why."""

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import card, card_aggregate, data, evaluate, export, margin, select  # noqa: E402

SEED = 7
QUANTILE = 0.999

# Where `cargo xtask eval --ml --card` puts both models' results on public
# captures. A retrained model has none until it runs; the same models
# trained again (same versions and thresholds) keep theirs.
EVAL_BEGIN, EVAL_END = "<!-- eval:begin -->", "<!-- eval:end -->"
NOT_MEASURED = """Not measured for these models yet: run `cargo xtask eval --ml --card
models/MODEL_CARD.md` with the captures (see the README).
"""


def public_captures(old_card: Path, infos: list[dict]) -> str:
    section = NOT_MEASURED
    if old_card.exists():
        text = old_card.read_text()
        begin, end = text.find(EVAL_BEGIN), text.find(EVAL_END)
        if 0 <= begin < end:
            kept = text[begin + len(EVAL_BEGIN):end].lstrip("\n")
            names = [f"`{i['version']}` (threshold {i['threshold']:.4f})" for i in infos]
            if all(n in kept for n in names):
                section = kept
    return f"\n# Both models on public captures\n{EVAL_BEGIN}\n{section}{EVAL_END}\n"


@dataclasses.dataclass(frozen=True)
class Kind:
    """One of the two models: its dataset and the files it writes."""
    schema: str
    model: str
    test_vectors: str
    evaluation: str
    version_prefix: str
    # The agent's default `[ml] min_packets` / `aggregate_min_packets`: rows
    # with fewer packets are not scored.
    min_packets: int


SOURCE = Kind("schema.json", "ensuresec-ae.onnx", "test_vectors.json", "evaluation.json", "ae", 2)
AGGREGATE = Kind("schema-destinations.json", "ensuresec-aggregate-ae.onnx",
                 "aggregate_test_vectors.json", "aggregate_evaluation.json", "agg", 20)


def dataset_digest(directory: Path, schema: dict) -> str:
    path = directory / schema["file"]
    if not path.exists():
        path = path.with_suffix(path.suffix + ".gz")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shown(path: Path) -> str:
    """A path relative to the repository when it is inside it."""
    repo = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(repo))
    except ValueError:
        return str(path)


def pick_test_vectors(test: data.Dataset) -> tuple[np.ndarray, list[str]]:
    """A few benign and attack rows of every family, and two edge cases."""
    rng = np.random.default_rng(SEED)
    picks, labels = [], []
    benign = np.flatnonzero(test.meta["label"] == 0)
    for i in rng.choice(benign, size=min(12, len(benign)), replace=False):
        picks.append(test.x[i])
        labels.append(f"benign {test.meta['role'][i]} in {test.meta['scenario'][i]}")
    for fam in sorted(set(test.meta["family"][test.meta["label"] == 1].tolist())):
        rows = np.flatnonzero((test.meta["label"] == 1) & (test.meta["family"] == fam))
        for i in rng.choice(rows, size=min(2, len(rows)), replace=False):
            picks.append(test.x[i])
            labels.append(f"attack {fam}")
    width = test.x.shape[1]
    picks.append(np.zeros(width, dtype=np.float32))
    labels.append("all zeros")
    picks.append(np.full(width, 20.0, dtype=np.float32))
    labels.append("far out of range")
    return np.array(picks, dtype=np.float32), labels


def train(kind: Kind, args: argparse.Namespace) -> tuple:
    """Trains, exports and evaluates one model; returns what its card needs."""
    full = data.load(args.dataset, kind.schema)
    if full.per_destination:
        full = data.without_attack_tails(full)
    ds = data.scored_only(full, kind.min_packets)
    splits = data.split_by_time(ds)
    # Attack windows of the test passes the agent would not score at all.
    test_passes = sorted(set(splits.test.meta["pass"].tolist()))
    in_test = np.isin(full.meta["pass"], test_passes) & (full.meta["label"] == 1)
    unscored = {
        f: int((in_test & (full.meta["family"] == f) & (full.meta["packets"] < kind.min_packets)).sum())
        for f in sorted(set(full.meta["family"][in_test].tolist()))
    }
    print(f"train {len(splits.train)}, validation {len(splits.validation)}, test {len(splits.test)}")

    candidates = select.train_all(splits, SEED, QUANTILE)
    shipped = select.best(candidates)
    # Every candidate's threshold is raised by the margin the shipped
    # configuration needs for benign groups it never saw.
    raise_by, held = margin.held_out(splits, shipped.layers, shipped.std_floor, SEED, QUANTILE)
    candidates = [dataclasses.replace(c, threshold=c.threshold * raise_by) for c in candidates]
    shipped = next(c for c in candidates if c.name == shipped.name)
    print(f"margin {raise_by:.2f}: " + ", ".join(f"{h.group} {h.ratio:.2f}" for h in held))
    digest = dataset_digest(args.dataset, ds.schema)
    version = f"{kind.version_prefix}{len(ds.features)}-{digest[:10]}"
    metadata = {
        "ensuresec.version": version,
        "ensuresec.threshold": repr(shipped.threshold),
        "ensuresec.features": ",".join(ds.features),
        "ensuresec.step_seconds": str(ds.schema["step_seconds"]),
        "ensuresec.min_packets": str(kind.min_packets),
        "ensuresec.dataset_sha256": digest,
    }
    if "window_seconds" in ds.schema:
        metadata["ensuresec.window_seconds"] = str(ds.schema["window_seconds"])
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / kind.model
    model = export.to_onnx(shipped.ae, ds.features, metadata)
    model_path.write_bytes(model.SerializeToString())
    parity = export.check_parity(shipped.ae, model_path, splits.test.x)

    # The shipped model as the agent runs it: onnxruntime's float32 outputs.
    scores, errors = export.run_onnxruntime(model_path, splits.test.x)
    ben = evaluate.benign(splits.test, scores, shipped.threshold)
    shipped_fams = {f.family: f for f in evaluate.families(
        splits.test, scores, errors, shipped.threshold, ds.features)}
    # Each family scored by the candidate chosen without it.
    fams, chosen = [], {}
    for name in shipped_fams:
        c = select.best(candidates, leave_out=name)
        s = c.ae.scores(splits.test.x)
        e = c.ae.errors(splits.test.x)
        row = next(f for f in evaluate.families(splits.test, s, e, c.threshold, ds.features)
                   if f.family == name)
        fams.append(row)
        chosen[name] = c.name

    vectors, labels = pick_test_vectors(splits.test)
    export.write_test_vectors(args.out / kind.test_vectors, model_path, vectors, labels)

    passes = sorted(set(ds.meta["pass"].tolist()))
    validation_pass = int(splits.validation.meta["pass"][0])
    info = {
        "version": version,
        "dataset": f"{shown(args.dataset)}/{ds.schema['file']} (sha256 {digest[:16]}…)",
        "layers": f"{len(ds.features)}-{'-'.join(map(str, shipped.layers))}-{len(ds.features)}",
        "std_floor": shipped.std_floor,
        "threshold": shipped.threshold,
        "opset": export.OPSET,
        "features": ds.features,
        "passes": len(passes),
        "rows": len(full),
        "scored_rows": len(ds),
        "min_packets": kind.min_packets,
        "unscored": unscored,
        "spoofed_per_step": ds.schema.get("spoofed_rows_per_step"),
        "train_passes": ", ".join(str(p) for p in passes if p < validation_pass),
        "validation_pass": validation_pass,
        "test_passes": ", ".join(map(str, test_passes)),
        "train_rows": len(splits.train),
        "validation_rows": len(splits.validation_benign()),
        "test_rows": len(splits.test),
        "quantile": QUANTILE,
        "margin": raise_by,
        "held_out": [dataclasses.asdict(h) for h in held],
        "seed": SEED,
        "parity": parity,
        "grid": [c.name for c in candidates],
        "chosen": chosen,
        "dataset_minutes": round(len(passes) * len(ds.schema["scenarios"]) * 14 / 60),
    }
    evaluation = {
        "model": info,
        "families_leave_one_out": [dataclasses.asdict(f) for f in fams],
        "families_shipped_model": [dataclasses.asdict(f) for f in shipped_fams.values()],
        "benign": dataclasses.asdict(ben),
        "candidates": [
            {"name": c.name, "threshold": c.threshold, "validation_auc": c.validation_auc}
            for c in candidates
        ],
    }
    (args.out / kind.evaluation).write_text(json.dumps(evaluation, indent=1) + "\n")
    print(f"model {version} ({shipped.name}): threshold {shipped.threshold:.4f}, parity {parity:.1e}")
    for f in fams:
        print(f"  {f.family:<18} auc {f.auc:.3f}  dr@thr {f.dr_deployed:.2f}  "
              f"dr@1% {f.dr_fpr_1:.2f}  ttd {f.ttd_model_s}  thresholds {f.dr_threshold:.2f}"
              f"  [{chosen[f.family]}]")
    print(f"  benign FPR {ben.fpr_deployed:.4f}, flash crowd {ben.flash_crowd_fpr:.4f}")
    return info, fams, list(shipped_fams.values()), ben


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", type=Path, required=True,
                    help="directory with schema.json and schema-destinations.json")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    out = args.out
    # Both models are trained into a scratch directory and moved into place
    # together: a failure leaves the committed models and card as they were.
    with tempfile.TemporaryDirectory() as scratch:
        args.out = Path(scratch)
        source = train(SOURCE, args)
        aggregate = train(AGGREGATE, args)
        text = card.render(*source) + card_aggregate.render(*aggregate)
        text += public_captures(out / "MODEL_CARD.md", [source[0], aggregate[0]])
        (args.out / "MODEL_CARD.md").write_text(text)
        out.mkdir(parents=True, exist_ok=True)
        for f in args.out.iterdir():
            shutil.move(str(f), out / f.name)


if __name__ == "__main__":
    main()
