"""How far above the validation quantile the deployed threshold sits.

A threshold fitted on the benign traffic a model was trained on is as tight
as that traffic: benign traffic of a kind the lab never made scores far above it
(held out, the lab's monitoring visitor, whose pings are the only ICMP of
any benign source, scores over a hundred times the threshold).
To measure that, each benign group (a role, or a visitor's habit; for the
aggregate model, a scenario) is held out in turn: the model is trained and
its threshold fitted without the group, and the group's own validation
windows are scored. The margin is how far the threshold must be raised so that no
held-out group's windows go over it more often than the quantile allows
the validation windows to; the deployed threshold is the validation
quantile times that margin. No attack window takes part."""

from dataclasses import dataclass

import numpy as np

from . import autoencoder
from .data import Dataset, Splits, benign_mask

# Margins below 1 would tighten the threshold: never.
MIN_MARGIN = 1.0


@dataclass
class HeldOut:
    group: str
    windows: int
    # The group's quantile score over the threshold fitted without it.
    ratio: float


def groups(d: Dataset) -> np.ndarray:
    """The benign group of each row: for sources, the role, with each
    visitor's address apart (each visitor has a habit of its own); for
    destinations, the scenario."""
    if d.per_destination:
        return d.meta["scenario"]
    role = d.meta["role"]
    return np.where(role == "visitor", np.char.add("visitor ", d.meta["source"].astype(str)), role)


def held_out(splits: Splits, layers: tuple[int, ...], std_floor: float, seed: int,
             quantile: float, min_windows: int = 5) -> tuple[float, list[HeldOut]]:
    """The margin, and each held-out group's ratio. A group's windows are
    its benign rows of the validation pass: the test passes stay out of it,
    so the false positive rates measured on them are not fitted."""
    train_groups = groups(splits.train)
    v = splits.validation
    v_benign = benign_mask(v)
    v_groups = groups(v)
    out = []
    for g in sorted(set(train_groups.tolist())):
        windows = v.x[v_benign & (v_groups == g)]
        rest = v.x[v_benign & (v_groups != g)]
        if len(windows) < min_windows or len(rest) == 0:
            continue
        ae = autoencoder.train(splits.train.x[train_groups != g], layers, seed, std_floor)
        thr = autoencoder.threshold(ae.scores(rest), quantile)
        mine = float(np.quantile(ae.scores(windows), quantile))
        out.append(HeldOut(str(g), len(windows), mine / thr if thr > 0 else float("inf")))
    margin = max([MIN_MARGIN] + [h.ratio for h in out])
    return margin, out


def section(info: dict, unit: str) -> str:
    """The model card's account of the margin: each held-out group's ratio."""
    rows = "\n".join(
        f"| {h['group']} | {h['windows']} | {h['ratio']:.2f} |" for h in info["held_out"])
    return f"""## Benign traffic it never saw (the threshold's margin)
Each benign {unit} is held out in turn: a model of the shipped configuration
is trained, and its threshold fitted, without it; then the group's own
validation windows are scored (the test passes stay out of it). The ratio is the group's
{info['quantile']} quantile over that threshold: above 1, the group would
have been flagged more often than the validation windows allow. The
deployed threshold is the validation quantile
({info['threshold'] / info['margin']:.4f}) times the largest ratio (at
least 1): **{info['margin']:.2f}**. No attack window takes part; the
detection rates above are measured at the raised threshold.

| held-out group | windows | ratio |
|---|---:|---:|
{rows}
"""
