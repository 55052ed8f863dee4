"""The model card's numbers: per attack family, ROC AUC, detection rates at
fixed false-positive rates of benign windows, time to detect, and the threshold
detectors on the same windows; false positives on benign traffic, the flash
crowd on its own."""

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

from .data import Dataset, benign_mask


@dataclass
class FamilyResult:
    family: str
    windows: int
    runs: int
    auc: float
    dr_fpr_1: float
    dr_fpr_01: float
    dr_deployed: float
    ttd_model_s: float | None
    dr_threshold: float
    ttd_threshold_s: float | None
    missed_median_packets: float | None
    caught_median_packets: float | None
    top_features: list[str] = field(default_factory=list)


@dataclass
class BenignResult:
    windows: int
    fpr_deployed: float
    by_role: dict[str, tuple[int, float]]
    flash_crowd_windows: int
    flash_crowd_fpr: float
    threshold_fpr: float


def _median(v: list[float]) -> float | None:
    return float(np.median(v)) if v else None


def _first_times(d: Dataset, flagged: np.ndarray) -> list[float]:
    """Per run (pass, scenario), the end of the first flagged attack step:
    each tool starts when its run starts, so this is the time to detect."""
    out = []
    runs = sorted(set(zip(d.meta["pass"].tolist(), d.meta["scenario"].tolist())))
    for p, s in runs:
        m = (d.meta["pass"] == p) & (d.meta["scenario"] == s) & flagged
        if m.any():
            out.append(float(d.meta["t_s"][m].min()))
    return out


def families(test: Dataset, scores: np.ndarray, errors: np.ndarray, deployed: float,
             features: list[str]) -> list[FamilyResult]:
    benign = benign_mask(test)
    b = scores[benign]
    thr_1 = float(np.quantile(b, 0.99))
    thr_01 = float(np.quantile(b, 0.999))
    out = []
    for fam in sorted(set(test.meta["family"][test.meta["label"] == 1].tolist())):
        m = (test.meta["label"] == 1) & (test.meta["family"] == fam)
        s = scores[m]
        fd = test.rows(m)
        y = np.concatenate([np.zeros(len(b)), np.ones(len(s))])
        auc = float(roc_auc_score(y, np.concatenate([b, s])))
        flagged = s > deployed
        # Spoofed floods are decided on the destination, as is everything
        # the aggregate model scores.
        spoofed = fam == "spoofed-syn"
        column = ("threshold_destination" if spoofed or test.per_destination
                  else "threshold_source")
        by_threshold = fd.meta[column] != ""
        packets = fd.meta["packets"]
        fam_errors = errors[m][flagged]
        top = []
        if len(fam_errors):
            top = [features[i] for i in np.argsort(-fam_errors.mean(axis=0))[:3]]
        runs = len(set(zip(fd.meta["pass"].tolist(), fd.meta["scenario"].tolist())))
        out.append(FamilyResult(
            family=fam,
            windows=int(m.sum()),
            runs=runs,
            auc=auc,
            dr_fpr_1=float((s > thr_1).mean()),
            dr_fpr_01=float((s > thr_01).mean()),
            dr_deployed=float(flagged.mean()),
            ttd_model_s=_median(_first_times(fd, flagged)),
            dr_threshold=float(by_threshold.mean()),
            ttd_threshold_s=_median(_first_times(fd, by_threshold)),
            missed_median_packets=_median(packets[~flagged].tolist()),
            caught_median_packets=_median(packets[flagged].tolist()),
            top_features=top,
        ))
    return out


def _threshold_fpr(test: Dataset, benign: np.ndarray) -> float:
    """The threshold detectors' share of benign rows they had decided on. A
    destination's decision outlives the attack it answered, so destination
    rows count only in runs where no attack tool ran."""
    if not test.per_destination:
        return float((test.meta["threshold_source"][benign] != "").mean())
    runs = list(zip(test.meta["pass"].tolist(), test.meta["scenario"].tolist()))
    attacked = {r for r, a in zip(runs, test.meta["attacking"].tolist()) if a}
    quiet = benign & np.array([r not in attacked for r in runs])
    if not quiet.any():
        return 0.0
    return float((test.meta["threshold_destination"][quiet] != "").mean())


def benign(test: Dataset, scores: np.ndarray, deployed: float) -> BenignResult:
    m = benign_mask(test)
    flagged = scores > deployed
    roles = {}
    for r in test.benign_roles:
        rm = m & (test.meta["role"] == r)
        if rm.any():
            roles[r] = (int(rm.sum()), float(flagged[rm].mean()))
    crowd = m & (test.meta["scenario"] == "flash-crowd")
    return BenignResult(
        windows=int(m.sum()),
        fpr_deployed=float(flagged[m].mean()),
        by_role=roles,
        flash_crowd_windows=int(crowd.sum()),
        flash_crowd_fpr=float(flagged[crowd].mean()) if crowd.any() else 0.0,
        threshold_fpr=_threshold_fpr(test, m),
    )
