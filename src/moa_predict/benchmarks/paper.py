"""The paper's results tables, reproduced with our CV protocol: ``moa benchmark paper``.

The published system compared BRkNN-a, BRkNN-b, ML-kNN and a small Keras net on LISH-MoA. This runs its
grids (k for the kNN models, epochs for the net) with 5 folds grouped by drug (``assign_folds``, the same
folds for every model), scores treated rows only, and sets the results next to the paper's published
numbers. It is efficient by construction:

* per fold, the validation rows' neighbour lists are computed once at the largest k (sorted nearest first)
  and every k is evaluated from prefixes; ML-kNN's leave-one-out training neighbours likewise;
* the net is trained once per fold to the largest epoch count, snapshotting validation predictions at each
  listed epoch (equal to training for that many epochs: no learning-rate schedule).

Scores are the out-of-fold predictions scored once over all treated rows (accumulated as per-target sums,
so no out-of-fold matrix per grid point is kept).
"""

from __future__ import annotations

import platform
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from ..data.profiles.dataset import Dataset
from ..models.registry import make_model
from ..models.knn import (brknn_a_labels, brknn_a_labels_skmultilearn, brknn_b_labels, build_index, label_matrix,
                          lookup, mean_set_size, mlknn_posterior_table, mlknn_tables, neighbour_label_counts,
                          paper_inputs, query_neighbours)
from ..training.crossval import assign_folds, cross_validate, describe_rows
from ..evaluation.metrics import columnwise_log_loss
from ..runtime.threads import limit_threads

PAPER_PUBLISHED: dict[str, dict[str, Any]] = {
    "brknn-a": {"score": 0.10518, "param": "k", "value": 5},
    "ml-knn": {"score": 0.10523, "param": "k", "value": 20},
    "brknn-b": {"score": 0.27254, "param": "k", "value": 2000},
    "paper-nn": {"score": 0.01706, "param": "epochs", "value": 75},
}
"""The paper's best result per model (private leaderboard, real features; docs/anchors.md). The net's
score is for its published configuration (75 epochs)."""
PRIOR_REAL_CV = 0.0222
"""Predicting each target's prevalence on the real data (drug-grouped CV, treated rows; anchors.md)."""

LABELS = {"prior": "prior (prevalence)", "brknn-a": "BRkNN-a", "brknn-b": "BRkNN-b", "ml-knn": "ML-kNN",
          "paper-nn": "paper net"}
PAPER_STYLE = {"brknn-a": "labels", "brknn-b": "labels", "ml-knn": "labels", "paper-nn": "probabilities"}
"""How the paper scored each model: hard 0/1 label sets for the kNN models, probabilities for the net."""
PROBA_OUTPUT = {"brknn-a": "frequencies", "brknn-b": "frequencies", "ml-knn": "probabilities",
                "paper-nn": "probabilities"}


@dataclass(frozen=True)
class Grid:
    brknn_a: tuple[int, ...]
    brknn_b: tuple[int, ...]
    ml_knn: tuple[int, ...]
    epochs: tuple[int, ...]
    rows: int | None = None
    """Subsample this many rows first (None: all)."""


FULL = Grid(brknn_a=(3, 5, 10, 15, 20, 25, 30, 40, 50, 100, 200, 500),
            brknn_b=(3, 5, 10, 15, 20, 25, 30, 40, 50, 100, 500, 1000, 2000),
            ml_knn=(3, 5, 10, 15, 20, 25, 30, 40, 50, 100, 200, 500),
            epochs=(15, 25, 50, 75, 100, 150, 200))
QUICK = Grid(brknn_a=(3, 5, 10, 20, 50, 100), brknn_b=(3, 5, 10, 50, 100, 500), ml_knn=(3, 5, 10, 20, 50, 100),
             epochs=(15, 25, 50, 75), rows=6000)


class _Scores:
    """Per-target log-loss sums over validation rows, per (model, grid value, output)."""

    def __init__(self, n_targets: int) -> None:
        self.sums: dict[tuple[str, int, str], np.ndarray] = defaultdict(lambda: np.zeros(n_targets))
        self.folds: dict[tuple[str, int, str], list[float]] = defaultdict(list)
        self.rows = 0

    def add(self, model: str, value: int, output: str, y: np.ndarray, pred: np.ndarray) -> None:
        per = columnwise_log_loss(y, pred)
        self.sums[(model, value, output)] += per * len(y)
        self.folds[(model, value, output)].append(float(per.mean()))

    def score(self, key: tuple[str, int, str]) -> float:
        return float(self.sums[key].mean() / self.rows)


def run_paper_benchmark(data: Dataset, *, quick: bool = False, n_splits: int = 5, seed: int = 0,
                        device: str = "cpu", grid: Grid | None = None, progress: bool = True,
                        command: str = "", torch_threads: int | None = 1) -> dict[str, Any]:
    """Run the paper's grids with drug-grouped CV; returns the report (every figure, JSON-able).

    `torch_threads`: torch and BLAS threads while the net trains on the CPU (``runtime.threads.limit_threads``;
    default 1: the 875-128-64-206 net at batch 100 gains nothing from more, and on a shared, oversubscribed
    machine two spinning threads ran 10-20x slower).
    """
    if data.targets is None:
        raise ValueError("the paper benchmark needs targets")
    t_start = time.perf_counter()
    grid = grid or (QUICK if quick else FULL)
    full_fingerprint, full_rows = data.fingerprint(), len(data.features)
    if grid.rows and grid.rows < len(data.features):
        keep = np.sort(np.random.default_rng(seed).choice(len(data.features), grid.rows, replace=False))
        data = data.subset(keep)
    fold, grouped = assign_folds(data, n_splits, seed)
    Y = data.targets.to_numpy(np.float32)
    control = data.is_control
    X = paper_inputs(data.features)
    scores = _Scores(Y.shape[1])
    scores.rows = int((fold >= 0).sum())
    timings: dict[str, list[float]] = defaultdict(list)
    net_rows: list[int] = []

    t0 = time.perf_counter()
    prior = cross_validate(make_model("prior"), data, n_splits=n_splits, seed=seed, fold=fold, progress=False)
    timings["prior CV"].append(time.perf_counter() - t0)

    q_ks = sorted(set(grid.brknn_a) | set(grid.brknn_b) | set(grid.ml_knn))
    net = make_model("paper-nn", seed=seed, progress=progress)
    steps = ["neighbours", "kNN grids", "net"]
    bar = tqdm(total=n_splits * len(steps), desc="paper benchmark", unit="step", disable=not progress)
    for f in range(n_splits):
        tr = np.flatnonzero((fold != f) & (fold >= 0))  # kNN: treated training rows (controls dropped)
        va = np.flatnonzero(fold == f)  # validation: treated rows only
        yv = Y[va]

        bar.set_postfix_str(f"fold {f + 1}: neighbour lists")
        t0 = time.perf_counter()
        index = build_index(X[tr])
        kq = min(max(q_ks), len(tr))
        nb_val = query_neighbours(index, X[va], kq)
        t1 = time.perf_counter()
        k_loo = min(max(grid.ml_knn), len(tr) - 1)
        nb_loo = query_neighbours(index, None, k_loo)
        t2 = time.perf_counter()
        timings[f"validation neighbours (k={kq})"].append(t1 - t0)
        timings[f"leave-one-out neighbours (k={k_loo})"].append(t2 - t1)
        bar.update()

        bar.set_postfix_str(f"fold {f + 1}: kNN grids")
        labels = label_matrix(Y[tr])
        sizes = Y[tr].sum(axis=1).astype(np.float64)
        for k in q_ks:
            kk = min(k, kq)
            counts = neighbour_label_counts(nb_val[:, :kk], labels)
            conf = counts / np.float32(kk)
            if k in grid.brknn_a:
                scores.add("brknn-a", k, "labels", yv, brknn_a_labels(conf))
                scores.add("brknn-a", k, "frequencies", yv, conf)
                scores.add("brknn-a", k, "labels_skmultilearn", yv, brknn_a_labels_skmultilearn(conf))
            if k in grid.brknn_b:
                scores.add("brknn-b", k, "labels", yv, brknn_b_labels(conf, mean_set_size(nb_val[:, :kk], sizes)))
                scores.add("brknn-b", k, "frequencies", yv, conf)
            if k in grid.ml_knn:
                kk = min(k, k_loo)
                tables = mlknn_tables(neighbour_label_counts(nb_loo[:, :kk], labels), Y[tr], kk, 1.0)
                posterior, decision = mlknn_posterior_table(*tables)
                test_counts = counts if kk == min(k, kq) else neighbour_label_counts(nb_val[:, :kk], labels)
                scores.add("ml-knn", k, "probabilities", yv, lookup(posterior, test_counts))
                scores.add("ml-knn", k, "labels", yv, lookup(decision, test_counts))
        timings["kNN grid scoring"].append(time.perf_counter() - t2)
        del nb_val, nb_loo, index
        bar.update()

        bar.set_postfix_str(f"fold {f + 1}: net to {max(grid.epochs)} epochs")
        t0 = time.perf_counter()
        train_net = np.flatnonzero((fold != f) & ((fold >= 0) | control))  # the paper's net: controls too
        with limit_threads(torch_threads) if torch_threads and device == "cpu" else nullcontext():
            _, snaps = net.fit_snapshots(data.features.iloc[train_net], Y[train_net], data.features.iloc[va],
                                         grid.epochs, device=device)
        for e, pred in snaps.items():
            scores.add("paper-nn", e, "probabilities", yv, pred)
        timings[f"net ({max(grid.epochs)} epochs)"].append(time.perf_counter() - t0)
        net_rows.append(len(train_net))
        bar.update()
    bar.close()

    tables = _tables(scores, grid)
    report = {
        "benchmark": "paper",
        "title": "The paper's four models on LISH-MoA-layout data, drug-grouped CV",
        "command": command,
        "package_version": __version__,
        "data": {"source": data.source, "fingerprint": full_fingerprint, "rows": full_rows,
                 "subsample_rows": None if len(data.features) == full_rows else len(data.features),
                 "subsample_fingerprint": None if len(data.features) == full_rows else data.fingerprint()},
        "quick": quick,
        "grid": asdict(grid),
        "seed": seed,
        "folds": n_splits,
        "grouped_by_drug": grouped,
        "rows_scored": describe_rows(data),
        "metric": "mean column-wise log loss (out-of-fold, treated rows; probabilities clipped to [1e-15, 1-1e-15])",
        "device": device,
        "torch_threads": torch_threads if device == "cpu" else None,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "timings_seconds": {k: {"per_fold": [round(v, 2) for v in vals], "total": round(sum(vals), 2)}
                            for k, vals in timings.items()},
        "net_training_rows_per_fold": net_rows,
        "prior": {"score": prior.score, "fold_scores": prior.fold_scores},
        "tables": tables,
        "summary": _summary(tables, prior.score),
        "paper_published": PAPER_PUBLISHED,
        "prior_real_cv": PRIOR_REAL_CV,
        "notes": [
            "Features are SIMULATED (the real ones cannot be obtained here): compare models side by side, "
            "not with the paper's absolute numbers, which are private-leaderboard scores on the real features.",
            "Paper-style scoring: BRkNN-a/-b and ML-kNN output hard 0/1 label sets (log loss charges ~34.5 per "
            "wrong cell); their probability outputs are neighbour label frequencies (BRkNN) and the posterior "
            "(ML-kNN).",
            "BRkNN-a 'labels' applies the published rule (labels in >= half the neighbours, else the most "
            "confident one); 'labels, scikit-multilearn rule' is that library's BRkNNaClassifier (rint of the "
            "frequencies, no fallback), shown because a Python paper most likely ran it.",
            "kNN models use treated training rows (controls are not neighbours); the paper net trains on all rows, "
            "controls included, as published. Inputs: 875 raw columns, Euclidean distance, no scaling.",
        ],
    }
    return report


def _tables(scores: _Scores, grid: Grid) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for model, values, param, outputs in (
        ("brknn-a", grid.brknn_a, "k", ("labels", "frequencies", "labels_skmultilearn")),
        ("brknn-b", grid.brknn_b, "k", ("labels", "frequencies")),
        ("ml-knn", grid.ml_knn, "k", ("labels", "probabilities")),
        ("paper-nn", grid.epochs, "epochs", ("probabilities",)),
    ):
        rows = []
        for v in sorted(values):
            row: dict[str, Any] = {param: v}
            for o in outputs:
                row[o] = scores.score((model, v, o))
                row[f"{o}_fold_scores"] = scores.folds[(model, v, o)]
            pub = PAPER_PUBLISHED[model]
            row["paper"] = pub["score"] if pub["value"] == v else None
            rows.append(row)
        out[model] = rows
    return out


def _best(rows: list[dict[str, Any]], output: str, param: str) -> tuple[float, int]:
    row = min(rows, key=lambda r: r[output])
    return row[output], row[param]


def _summary(tables: dict[str, list[dict[str, Any]]], prior_score: float) -> list[dict[str, Any]]:
    """The Table 9 / Table 11 analogue: the best of each model, as the paper scored it and as probabilities."""
    summary = [{"model": "prior", "label": LABELS["prior"], "paper_style": prior_score, "paper_style_at": None,
                "probabilities": prior_score, "probabilities_at": None, "paper": None, "paper_at": None,
                "at_paper_setting": None, "reference_real_cv": PRIOR_REAL_CV}]
    for model, rows in tables.items():
        pub = PAPER_PUBLISHED[model]
        param = pub["param"]
        ps, ps_at = _best(rows, PAPER_STYLE[model], param)
        pr, pr_at = _best(rows, PROBA_OUTPUT[model], param)
        at_paper = next((r[PAPER_STYLE[model]] for r in rows if r[param] == pub["value"]), None)
        summary.append({"model": model, "label": LABELS[model], "param": param,
                        "paper_style": ps, "paper_style_at": ps_at, "probabilities": pr, "probabilities_at": pr_at,
                        "paper": pub["score"], "paper_at": pub["value"], "at_paper_setting": at_paper})
        if "labels_skmultilearn" in rows[0]:
            sk, sk_at = _best(rows, "labels_skmultilearn", param)
            summary[-1].update(labels_skmultilearn=sk, labels_skmultilearn_at=sk_at, labels_skmultilearn_at_paper=next(
                (r["labels_skmultilearn"] for r in rows if r[param] == pub["value"]), None))
    return summary
