"""The figures the field reports for MoA prediction, each beside the prior's and a shuffled-label control.

One implementation, used by the CV report (``moa train``), ``moa evaluate`` and the model card:

- **top-k accuracy** (k = 1, 5): the share of labelled profiles (at least one true MoA) with a true MoA among
  the k most probable;
- **micro PR-AUC**: average precision over the flattened profile x MoA matrix (Way et al. 2022, Cell Systems
  13:911, report 0.155 for L1000);
- **macro ROC-AUC**: the mean over MoAs with both classes among the scored profiles;
- **retrieval mAP** through ``copairs`` (the field's library): compounds (profiles averaged per compound)
  ranked by cosine similarity, a pair relevant when the two compounds share a MoA; the mean over MoAs of their
  mAP, and the share of MoAs whose mAP beats copairs' permutation null at a 5 % false discovery rate;
- the mean column-wise **log loss** (the competition metric).

A figure alone says little on small or skewed data, so each is computed for the model and for two controls
scored the same way: the **prior** (each fold's training prevalence: ``skill.prior_oof``) and a
**shuffled-label control** (labels permuted across compounds; ``training.controls`` either refits the
model on them or scores the model's predictions against them, and says which).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from .metrics import columnwise_log_loss

TOP_K = (1, 5)
MAP_MAX_COMPOUNDS = 1000
"""Retrieval is quadratic in compounds: above this many labelled compounds a seeded sample is scored (said so)."""
MAP_NULL_SIZE = 1000
MAP_ALPHA = 0.05
JITTER = 1e-3
"""Ties broken at random: copairs ranks tied pairs positives first, which would flatter a constant prediction
(the prior's) with a perfect score; it keeps similarities in float32, so near-identical vectors tie too. A
jitter of 1e-3 of the values' RMS separates them (cosine differences of about 1e-6) without moving real
differences."""

FIGURES = ("top1_accuracy", "top5_accuracy", "micro_pr_auc", "macro_roc_auc", "macro_roc_auc_judged", "map",
           "map_significant", "log_loss")
FIGURE_NAMES = {"top1_accuracy": "top-1 accuracy", "top5_accuracy": "top-5 accuracy",
                "micro_pr_auc": "micro PR-AUC", "macro_roc_auc": "macro ROC-AUC",
                "macro_roc_auc_judged": "macro ROC-AUC, MoAs with ≥ 2 other compounds in training",
                "map": "retrieval mAP", "map_significant": "MoAs retrieved (mAP p < 0.05, FDR)",
                "log_loss": "log loss"}
LOWER_IS_BETTER = frozenset({"log_loss"})


@dataclass
class Scored:
    """Predictions `P` and the labels `Y` they are scored against (a control may permute either); `R`: what
    retrieval compares instead of `P` (None: `P`)."""

    Y: np.ndarray
    P: np.ndarray
    R: np.ndarray | None = None


def topk_accuracy(Y: np.ndarray, P: np.ndarray, k: int) -> float | None:
    """Share of labelled rows (at least one true MoA) with a true MoA among the k most probable (None: none)."""
    Y = np.asarray(Y) > 0
    keep = Y.any(axis=1)
    if not keep.any():
        return None
    Y, P = Y[keep], np.asarray(P, dtype=np.float64)[keep]
    k = min(k, P.shape[1])
    top = np.argsort(-P, axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(Y, top, axis=1).any(axis=1).mean())


def micro_pr_auc(Y: np.ndarray, P: np.ndarray) -> float | None:
    """Average precision over the flattened rows x MoAs matrix (None without a positive)."""
    y = (np.asarray(Y) > 0).ravel()
    if not y.any() or y.all():
        return None
    return float(average_precision_score(y, np.asarray(P, dtype=np.float64).ravel()))


def macro_roc_auc(Y: np.ndarray, P: np.ndarray, targets: np.ndarray | None = None) -> float | None:
    """Mean ROC AUC over the MoAs that have both classes among these rows (None: no such MoA); `targets`: a
    mask restricting the mean to some MoAs."""
    Y = np.asarray(Y) > 0
    P = np.asarray(P, dtype=np.float64)
    pos = Y.sum(axis=0)
    ok = (pos > 0) & (pos < len(Y))
    cols = np.flatnonzero(ok if targets is None else ok & np.asarray(targets, dtype=bool))
    if not len(cols):
        return None
    return float(np.mean([roc_auc_score(Y[:, j], P[:, j]) for j in cols]))


def ranking_figures(Y: np.ndarray, P: np.ndarray, judged: np.ndarray | None = None) -> dict[str, float | None]:
    """Every figure but retrieval, for one set of predictions (`judged`: the MoAs of the second macro ROC-AUC)."""
    out: dict[str, float | None] = {f"top{k}_accuracy": topk_accuracy(Y, P, k) for k in TOP_K}
    out["micro_pr_auc"] = micro_pr_auc(Y, P)
    out["macro_roc_auc"] = macro_roc_auc(Y, P)
    if judged is not None:
        out["macro_roc_auc_judged"] = macro_roc_auc(Y, P, judged)
    out["log_loss"] = float(columnwise_log_loss(Y, P).mean())
    return out


def permute_by_compound(Y: np.ndarray, groups: np.ndarray | None, seed: int = 0) -> np.ndarray:
    """The labels permuted across compounds: every profile of a compound gets the label row of another compound
    (that compound's first profile), so the label distribution and the compound structure stay as they were and
    only the link between a compound's profiles and its MoAs is broken. Without compounds, rows are permuted."""
    Y = np.asarray(Y)
    rng = np.random.default_rng(seed)
    if groups is None:
        return Y[rng.permutation(len(Y))]
    _, first, inverse = np.unique(np.asarray(groups).astype(str), return_index=True, return_inverse=True)
    donor = first[rng.permutation(len(first))]
    return Y[donor[inverse]]


def compound_means(values: np.ndarray, Y: np.ndarray, groups: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per compound: the mean of its rows' `values`, its MoAs (any of its rows) and its name (rows: themselves)."""
    values = np.asarray(values, dtype=np.float64)
    Y = np.asarray(Y) > 0
    if groups is None:
        return values, Y, np.arange(len(values)).astype(str)
    names, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(names)).astype(np.float64)
    means = np.zeros((len(names), values.shape[1]))
    np.add.at(means, inverse, values)
    labels = np.zeros((len(names), Y.shape[1]), dtype=bool)
    np.logical_or.at(labels, inverse, Y)
    return means / counts[:, None], labels, names


def random_ranking_ap(n_pos: np.ndarray, n_total: np.ndarray) -> np.ndarray:
    """Expected average precision of a random ranking of `n_total` items of which `n_pos` are relevant:
    (1/N) * ((R - 1) / (N - 1) * (N - H_N) + H_N), H_N the N-th harmonic number."""
    R = np.asarray(n_pos, dtype=np.float64)
    N = np.asarray(n_total, dtype=np.float64)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, int(N.max(initial=0)) + 1))])
    H = harmonic[N.astype(np.int64)]
    frac = np.divide(R - 1, N - 1, out=np.ones_like(N), where=N > 1)
    return (frac * (N - H) + H) / np.maximum(N, 1)


def retrieval_map(values: np.ndarray, Y: np.ndarray, groups: np.ndarray | None, target_names: Sequence[str], *,
                  seed: int = 0, max_compounds: int = MAP_MAX_COMPOUNDS, null_size: int = MAP_NULL_SIZE,
                  ) -> dict[str, Any]:
    """MoA retrieval by cosine similarity, scored by copairs' mean average precision with permutation p-values.

    Compounds (rows averaged per compound) with at least one MoA are the items, each centred on the items' mean
    (predicted probabilities all lean towards the common MoAs, so raw cosines are all close to 1 and tie in
    copairs' float32; profiles normalised to controls barely move); a pair is relevant when the two
    share a MoA (copairs' multi-label mode), every other pair is a negative. Per MoA with at least two such
    compounds: its mAP and p-value (null: random rankings with the same numbers of positives and pairs;
    Benjamini-Hochberg across MoAs). Returns the mean mAP over those MoAs, the share significant at
    ``MAP_ALPHA`` and the counts; ``{"map": None, "note": ...}`` when nothing can be retrieved."""
    from copairs.map import mean_average_precision, multilabel
    from copairs.matching import UnpairedException

    X, L, _ = compound_means(values, Y, groups)
    keep = np.flatnonzero(L.any(axis=1))
    sampled = len(keep) > max_compounds
    rng = np.random.default_rng(seed)
    if sampled:
        keep = np.sort(rng.choice(keep, max_compounds, replace=False))
    X, L = X[keep], L[keep]
    names = np.asarray(target_names)
    shared = L.sum(axis=0) >= 2
    base = {"compounds": int(len(keep)), "sampled": bool(sampled)}
    if not shared.any() or len(keep) < 3:
        return {**base, "map": None, "map_significant": None, "moas": 0,
                "note": "no MoA is shared by two labelled compounds: nothing to retrieve"}
    scale = float(np.sqrt(np.mean(X ** 2))) or 1.0
    X = X - X.mean(axis=0)  # probabilities all lean towards the common MoAs: compare deviations from the mean
    rms = float(np.sqrt(np.mean(X ** 2)))
    constant = rms <= 1e-9 * scale  # one vector for all (the prior): rounding residue, not a difference
    if constant:
        X, rms = np.zeros_like(X), 1.0
    X = X + rng.normal(0.0, JITTER * rms, X.shape)
    meta = pd.DataFrame({"moa": [list(names[row]) for row in L]})
    try:
        ap = multilabel.average_precision(meta, X, pos_sameby=["moa"], pos_diffby=[], neg_sameby=[],
                                          neg_diffby=["moa"], multilabel_col="moa", progress_bar=False)
        if constant:  # a random ranking: its expected AP, not one draw (noisy on small sets)
            ap["average_precision"] = random_ranking_ap(ap["n_pos_pairs"].to_numpy(), ap["n_total_pairs"].to_numpy())
        scores = mean_average_precision(ap, sameby=["moa"], null_size=null_size, threshold=MAP_ALPHA, seed=seed,
                                        progress_bar=False)
    except UnpairedException as exc:
        return {**base, "map": None, "map_significant": None, "moas": 0, "note": str(exc)}
    return {**base, "map": float(scores["mean_average_precision"].mean()),
            "map_significant": float(scores["below_corrected_p"].mean()), "moas": int(len(scores))}


def field_report(Y: np.ndarray, scored: dict[str, Scored], *, groups: np.ndarray | None,
                 target_names: Sequence[str], inputs: np.ndarray | None = None, seed: int = 0,
                 retrieval: bool = True, judged: np.ndarray | None = None,
                 notes: dict[str, str] | None = None) -> dict[str, Any]:
    """The field's figures for each entry of `scored` ("model", "prior", "shuffled": predictions and the labels
    they are scored against), on the same rows. `groups`: each row's compound (None: every row its own);
    `inputs`: the model's input profiles, whose retrieval mAP (no model) is reported beside; `judged`: a mask
    of the MoAs whose held-out compounds each had at least two others in training (``skill``), for a macro
    ROC-AUC over them alone (a MoA never seen in training when its only compound is held out ranks below
    chance, and single-compound MoAs dominate the plain mean on small reference sets).

    Returns ``{"figures": {figure: {entry: value}}, "rows", "labelled_rows", "compounds", "retrieval", "notes"}``.
    """
    Y = np.asarray(Y)
    figures: dict[str, dict[str, float | None]] = {f: {} for f in FIGURES}
    retrieval_info: dict[str, Any] = {}
    for name, s in scored.items():
        for fig, value in ranking_figures(s.Y, s.P, judged).items():
            figures[fig][name] = value
        if retrieval:
            r = retrieval_map(s.P if s.R is None else s.R, s.Y, groups, target_names, seed=seed)
            figures["map"][name], figures["map_significant"][name] = r["map"], r["map_significant"]
            retrieval_info[name] = r
    if judged is None:
        del figures["macro_roc_auc_judged"]
    if not retrieval:
        del figures["map"], figures["map_significant"]
    elif inputs is not None:
        retrieval_info["input_profiles"] = retrieval_map(inputs, Y, groups, target_names, seed=seed)
    n_compounds = len(Y) if groups is None else int(len(np.unique(np.asarray(groups).astype(str))))
    return {"figures": figures, "rows": int(len(Y)), "labelled_rows": int((Y > 0).any(axis=1).sum()),
            "compounds": n_compounds, "judged_moas": None if judged is None else int(np.sum(judged)), "retrieval": retrieval_info or None, "notes": dict(notes or {})}


def figure_rows(report: dict[str, Any], entries: Sequence[str] = ("model", "prior", "shuffled")
                ) -> list[tuple[str, list[str]]]:
    """The report as table rows (figure name, formatted value per entry), for the CLI and the card."""
    rows = []
    for fig in FIGURES:
        values = (report.get("figures") or {}).get(fig)
        if values is None:
            continue
        fmt = "{:.5f}" if fig == "log_loss" else "{:.3f}"
        rows.append((FIGURE_NAMES[fig], ["—" if values.get(e) is None else fmt.format(values[e]) for e in entries]))
    return rows
