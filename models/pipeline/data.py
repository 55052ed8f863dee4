"""A dataset written by `cargo xtask dataset`: rows of per-source steps
(schema.json) or of per-destination windows (schema-destinations.json),
checked against its schema, and split by time (passes run one after another,
so the last pass is the latest traffic)."""

import csv
import gzip
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The per-source dataset's benign roles, for schemas that do not list theirs.
BENIGN_ROLES = ("shopper", "crowd", "visitor", "probe", "neighbor")


@dataclass
class Dataset:
    features: list[str]
    x: np.ndarray  # float32 [rows, width]
    meta: dict[str, np.ndarray]  # metadata columns, as strings or numbers
    schema: dict

    def rows(self, mask: np.ndarray) -> "Dataset":
        return Dataset(
            self.features,
            self.x[mask],
            {k: v[mask] for k, v in self.meta.items()},
            self.schema,
        )

    def __len__(self) -> int:
        return len(self.x)

    @property
    def benign_roles(self) -> tuple[str, ...]:
        return tuple(self.schema.get("benign_roles", BENIGN_ROLES))

    @property
    def per_destination(self) -> bool:
        return "destination" in self.meta


def _open(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def load(directory: Path, schema_file: str = "schema.json") -> Dataset:
    schema = json.loads((directory / schema_file).read_text())
    features = schema["features"]
    csv_path = directory / schema["file"]
    if not csv_path.exists():
        csv_path = csv_path.with_suffix(csv_path.suffix + ".gz")
    with _open(csv_path) as f:
        reader = csv.reader(f)
        header = next(reader)
        expected = [c["name"] for c in schema["columns"]]
        if header != expected:
            raise SystemExit(f"{csv_path}: columns {header} differ from the schema's {expected}")
        rows = list(reader)
    if not rows:
        raise SystemExit(f"{csv_path}: no rows")
    index = {name: i for i, name in enumerate(header)}
    x = np.array([[float(r[index[f]]) for f in features] for r in rows], dtype=np.float32)
    if not np.isfinite(x).all():
        raise SystemExit(f"{csv_path}: non-finite feature values")
    numeric = {"pass", "step", "label", "attacking", "packets"}
    meta = {}
    for c in header:
        if c in features:
            continue
        col = [r[index[c]] for r in rows]
        if c in numeric:
            meta[c] = np.array([int(v) for v in col])
        elif c == "t_s":
            meta[c] = np.array([float(v) for v in col])
        else:
            meta[c] = np.array(col)
    return Dataset(features, x, meta, schema)


@dataclass
class Splits:
    train: Dataset  # benign, earliest passes
    validation: Dataset  # everything of the pass after (threshold: its benign rows)
    test: Dataset  # everything of the last pass

    def validation_benign(self) -> Dataset:
        return self.validation.rows(benign_mask(self.validation))


def benign_mask(d: Dataset) -> np.ndarray:
    return np.isin(d.meta["role"], d.benign_roles) & (d.meta["label"] == 0)


def without_attack_tails(d: Dataset) -> Dataset:
    """A destination's window holds up to a step of what came before: the
    first step after an attack tool stopped is neither attack nor benign
    (its window straddles the end), so it is left out."""
    keep = np.ones(len(d), dtype=bool)
    order = np.lexsort((d.meta["step"], d.meta["destination"], d.meta["scenario"],
                        d.meta["pass"]))
    prev = None
    for i in order:
        run = (d.meta["pass"][i], d.meta["scenario"][i], d.meta["destination"][i])
        attacking = d.meta["attacking"][i]
        if prev is not None and prev[0] == run and prev[1] == 1 and attacking == 0:
            keep[i] = False
        prev = (run, attacking)
    return d.rows(keep)


def on_link(address: str) -> bool:
    """Sources the agent's per-source model does not score: IPv4 and IPv6
    link-local and unspecified addresses (`ml::runner::on_link`)."""
    a = ipaddress.ip_address(address)
    return a.is_link_local or a.is_unspecified


def scored_only(d: Dataset, min_packets: int) -> Dataset:
    """The steps the agent scores: it skips those below `[ml] min_packets`,
    and sources on the link."""
    keep = d.meta["packets"] >= min_packets
    if not d.per_destination:
        keep &= ~np.array([on_link(a) for a in d.meta["source"]], dtype=bool)
    return d.rows(keep)


def split_by_time(d: Dataset) -> Splits:
    """Passes run one after another: the earliest train, the next validates,
    the latest (a third of them, at least one) test."""
    passes = sorted(set(d.meta["pass"].tolist()))
    if len(passes) < 3:
        raise SystemExit(f"need at least 3 passes to split by time, the dataset has {len(passes)}")
    tested = max(1, (len(passes) - 1) // 2)
    test_passes = passes[-tested:]
    validation_pass = passes[-tested - 1]
    p = d.meta["pass"]
    train = benign_mask(d) & (p < validation_pass)
    validation = p == validation_pass
    test = np.isin(p, test_passes)
    return Splits(d.rows(train), d.rows(validation), d.rows(test))
