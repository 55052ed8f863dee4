"""Model selection without peeking: a small grid of autoencoders, each with
its threshold from benign validation windows; a family's numbers come from
the candidate that did best on the *other* families' validation windows
(leave-one-family-out), and the shipped model is the best on all of them."""

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from . import autoencoder
from .data import Splits, benign_mask

# (standard deviation floor, hidden layers)
GRID = [
    (floor, layers)
    for floor in (0.05, 0.1, 0.25)
    for layers in ((8, 4, 8), (10, 5, 10), (12, 6, 12))
]


@dataclass
class Candidate:
    std_floor: float
    layers: tuple[int, ...]
    ae: autoencoder.Autoencoder
    threshold: float
    validation_auc: dict[str, float]

    @property
    def name(self) -> str:
        return f"{'-'.join(map(str, self.layers))}, floor {self.std_floor}"


def train_all(splits: Splits, seed: int, quantile: float) -> list[Candidate]:
    v = splits.validation
    benign = benign_mask(v)
    attack = v.meta["label"] == 1
    out = []
    for floor, layers in GRID:
        ae = autoencoder.train(splits.train.x, layers, seed, floor)
        scores = ae.scores(v.x)
        aucs = {}
        for fam in sorted(set(v.meta["family"][attack].tolist())):
            m = attack & (v.meta["family"] == fam)
            y = np.r_[np.zeros(benign.sum()), np.ones(m.sum())]
            aucs[fam] = float(roc_auc_score(y, np.r_[scores[benign], scores[m]]))
        out.append(Candidate(
            floor, layers, ae, autoencoder.threshold(scores[benign], quantile), aucs))
    return out


def best(candidates: list[Candidate], leave_out: str | None = None) -> Candidate:
    """Highest mean validation AUC over the families other than `leave_out`
    (the first of equals)."""
    def mean_auc(c: Candidate) -> float:
        v = [a for f, a in c.validation_auc.items() if f != leave_out]
        return float(np.mean(v)) if v else 0.0
    return max(candidates, key=mean_auc)
