"""Are the probabilities right for compounds the model has not seen? Reliability diagrams, expected
calibration error (ECE) and a recalibration map, all on compound-grouped out-of-fold predictions.

Two ECE figures, because multi-label MoA probabilities are almost all near 0:

- ``pairs``: every (treated profile, MoA) pair, 15 equal-width bins. Honest but dominated by the ~99.5 %
  of pairs predicted ≈ 0, so it is always small; its reliability diagram still shows over-/under-confidence.
- ``top1``: each treated profile's most probable MoA (confidence = its probability, correct = it is a true
  MoA). This is the number a user reading "0.31 for EGFR inhibitor" cares about.

Recalibration is global (one map for all MoAs: per-target maps overfit the many MoAs with a handful of
compounds) and monotone, so it never changes a profile's ranking of MoAs or the conformal sets (which
threshold the raw probabilities). It is chosen NESTED: each candidate is fit on the other folds' OOF and
applied to the held-out fold; kept only if the held-out ECE improves and the CV log loss does not get worse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..evaluation.metrics import columnwise_log_loss

N_BINS = 15
P_FLOOR = 1e-5
"""Recalibrated probabilities are kept in [P_FLOOR, 1 - P_FLOOR]: an isotonic step at exactly 0 would cost
34.5 nats per positive in the log loss."""
MAX_KNOTS = 512


def logit(p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def fit_platt(z: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Platt's map sigmoid(a·z + b) fit by logistic regression on logits `z` against 0/1 `y`. The millions of
    (profile, MoA) pairs are first grouped by z rounded to 0.01 (a few thousand weighted points, same optimum to
    that resolution), so the fit takes a second, not minutes."""
    from sklearn.linear_model import LogisticRegression

    z = np.round(np.asarray(z, dtype=np.float64).ravel(), 2)
    y = np.asarray(y).ravel() > 0
    keys, inverse = np.unique(z, return_inverse=True)
    pos = np.bincount(inverse, weights=y, minlength=len(keys))
    count = np.bincount(inverse, minlength=len(keys))
    X = np.concatenate([keys, keys])[:, None]
    target = np.r_[np.ones(len(keys)), np.zeros(len(keys))]
    weight = np.r_[pos, count - pos]
    keep = weight > 0
    if len(np.unique(target[keep])) < 2:  # one class only: nothing to fit
        return {"a": 1.0, "b": 0.0}
    lr = LogisticRegression(C=1e4, max_iter=500).fit(X[keep], target[keep], sample_weight=weight[keep])
    return {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    """Reliability diagram data and ECE of binary outcomes `y` against probabilities `p` (any shape,
    flattened), equal-width bins: per non-empty bin its range, mean predicted, observed frequency, count."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"outcomes {y.shape} and probabilities {p.shape} differ in shape")
    if len(y) == 0:
        return {"ece": None, "n": 0, "bins": []}
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    sum_p = np.bincount(which, weights=p, minlength=n_bins)
    sum_y = np.bincount(which, weights=y, minlength=n_bins)
    bins, ece = [], 0.0
    for b in np.flatnonzero(count):
        mean_p, freq = sum_p[b] / count[b], sum_y[b] / count[b]
        ece += count[b] / len(y) * abs(mean_p - freq)
        bins.append({"lo": round(float(edges[b]), 4), "hi": round(float(edges[b + 1]), 4),
                     "mean_predicted": float(mean_p), "observed": float(freq), "count": int(count[b])})
    return {"ece": float(ece), "n": int(len(y)), "bins": bins}


def top1_outcomes(Y: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(correct, confidence) of each row's most probable MoA."""
    j = np.argmax(P, axis=1)
    rows = np.arange(len(P))
    return np.asarray(Y)[rows, j], np.asarray(P)[rows, j]


def calibration_report(Y: np.ndarray, P: np.ndarray, target_names: list[str], top_moas: int = 10,
                       n_bins: int = N_BINS) -> dict[str, Any]:
    """ECE and reliability data: all pairs, the top-1 call, and each of the `top_moas` most frequent MoAs
    (rows: the treated profiles given)."""
    Y = np.asarray(Y, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    correct, conf = top1_outcomes(Y, P)
    frequent = np.argsort(-Y.sum(axis=0), kind="stable")[:top_moas]
    return {
        "pairs": reliability(Y, P, n_bins),
        "top1": reliability(correct, conf, n_bins),
        "per_moa": {target_names[j]: {"positives": int(Y[:, j].sum()),
                                      "ece": reliability(Y[:, j], P[:, j], n_bins)["ece"]} for j in frequent},
        "log_loss": float(columnwise_log_loss(Y, P).mean()),
    }


@dataclass
class Recalibrator:
    """A global monotone map of probabilities: ``identity``, ``platt`` (sigmoid(a·logit p + b)) or
    ``isotonic`` (piecewise linear through at most MAX_KNOTS knots). ``fit(y, p)`` / ``transform(p)``."""

    method: str = "identity"
    params: dict[str, Any] = field(default_factory=dict)

    def fit(self, y: np.ndarray, p: np.ndarray) -> "Recalibrator":
        y = np.asarray(y, dtype=np.float64).ravel()
        p = np.asarray(p, dtype=np.float64).ravel()
        if self.method == "platt":
            self.params = fit_platt(logit(p), y)
        elif self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=P_FLOOR, y_max=1 - P_FLOOR, out_of_bounds="clip").fit(p, y)
            x, v = iso.X_thresholds_, iso.y_thresholds_
            if len(x) > MAX_KNOTS:  # thin the knots: the map is smooth at this resolution
                keep = np.unique(np.linspace(0, len(x) - 1, MAX_KNOTS).round().astype(int))
                x, v = x[keep], v[keep]
            self.params = {"x": x.tolist(), "y": v.tolist()}
        elif self.method != "identity":
            raise ValueError(f"unknown recalibration {self.method!r}: identity, platt or isotonic")
        return self

    def transform(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "platt":
            out = sigmoid(self.params["a"] * logit(p) + self.params["b"])
        elif self.method == "isotonic":
            out = np.interp(p, self.params["x"], self.params["y"])
        else:
            return p
        return np.clip(out, P_FLOOR, 1 - P_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "Recalibrator":
        return cls(str(state.get("method", "identity")), dict(state.get("params") or {}))


def nested_recalibration(Y: np.ndarray, P: np.ndarray, fold: np.ndarray,
                         methods: tuple[str, ...] = ("platt", "isotonic")) -> tuple[dict[str, Any], np.ndarray]:
    """Each method fit on the other folds' OOF and applied to each fold (treated rows: ``fold >= 0``): the
    held-out ECE (pairs, top-1) and log loss of every method next to none, and the chosen method (lowest
    held-out top-1 ECE among those that do not worsen the log loss; identity if none improves), and the
    chosen method's held-out probabilities of the treated rows."""
    Y = np.asarray(Y, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    fold = np.asarray(fold)
    rows = fold >= 0
    Y, P, fold = Y[rows], P[rows], fold[rows]
    results: dict[str, Any] = {}
    held_out: dict[str, np.ndarray] = {}
    for method in ("identity", *methods):
        out = np.empty_like(P)
        for k in np.unique(fold):
            train, test = fold != k, fold == k
            out[test] = Recalibrator(method).fit(Y[train], P[train]).transform(P[test])
        held_out[method] = out
        correct, conf = top1_outcomes(Y, out)
        results[method] = {"ece_pairs": reliability(Y, out)["ece"], "ece_top1": reliability(correct, conf)["ece"],
                           "log_loss": float(columnwise_log_loss(Y, out).mean())}
    base = results["identity"]
    ok = [m for m in methods if results[m]["log_loss"] <= base["log_loss"] + 1e-6
          and results[m]["ece_top1"] < base["ece_top1"]]
    chosen = min(ok, key=lambda m: results[m]["ece_top1"]) if ok else "identity"
    report = {"methods": results, "chosen": chosen,
              "rule": "fit on the other folds' out-of-fold predictions, scored on the held-out fold; kept when the "
                      "held-out top-1 ECE improves and the log loss does not get worse"}
    return report, held_out[chosen]
