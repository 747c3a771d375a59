"""MoA sets with a recall guarantee on new compounds: conformal risk control (CRC) with compounds as the unit.

A set at level 1 − α is ``{MoA j : p_j ≥ λ(α)}``, one threshold for every MoA and profile, so sets are nested
as the level rises (λ only falls). λ is calibrated on compound-grouped out-of-fold predictions.

Why compounds, not profiles, are the unit: a compound's 6 profiles (2 doses × 3 times) share labels and
response, so they are not exchangeable with each other; a new compound is exchangeable with the calibration
COMPOUNDS. Per compound c, the loss is its missed true (profile, MoA) pairs ``m_c(λ)`` divided by the mean
number of true pairs per compound n̄, bounded by B = max_c n_c / n̄. The CRC bound (Angelopoulos et al., 2022)

    C/(C+1) · mean_c L_c(λ) + B/(C+1) ≤ α,   where mean_c L_c(λ) = Σ_c m_c(λ) / Σ_c n_c  (the pooled miss rate),

gives E[m_new / n̄] ≤ α for a new compound: the expected share of true MoAs missed, pooled over profiles, is at
most α. ``per_profile`` control uses the mean over a compound's labelled profiles of the share of that profile's
MoAs missed (bounded by 1) instead.

Hand-written rather than MAPIE's ``risk_control``: MAPIE treats rows as exchangeable (no groups) and controls
the mean per-row recall; the grouped, pooled form above is ten lines of numpy and has no extra dependency.

Single-label layouts get classic split-conformal sets (LAC or APS), again one calibration score per compound.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LEVELS = tuple(round(0.50 + 0.01 * i, 2) for i in range(50))
"""The levels whose thresholds are stored in bundles: 0.50, 0.51, ..., 0.99."""


def _groups(groups: np.ndarray | None, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return codes


def crc_threshold(P: np.ndarray, Y: np.ndarray, groups: np.ndarray | None, level: float,
                  control: str = "pooled") -> float:
    """λ for `level`: the largest threshold whose grouped CRC bound on the missed share is ≤ 1 − level.

    `P`, `Y`: (profiles, MoAs) calibration probabilities and 0/1 labels (treated profiles only); `groups`: each
    profile's compound (None: every profile its own unit). Returns 0.0 (every MoA in every set) when even that
    cannot be certified (too few compounds for the level)."""
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y) > 0
    alpha = 1.0 - float(level)
    codes = _groups(groups, len(P))
    n_units = int(codes.max()) + 1 if len(codes) else 0
    if control == "pooled":
        pos_unit = np.repeat(codes, Y.sum(axis=1))
        n_per_unit = np.bincount(pos_unit, minlength=n_units)
        labelled = n_per_unit > 0
        C = int(labelled.sum())
        if C == 0:
            return 0.0
        B = n_per_unit.max() / n_per_unit[labelled].mean()
        allowed = (alpha * (C + 1) - B) / C  # largest pooled miss rate that keeps the bound ≤ α
        scores = np.sort(P[Y])
        if allowed < 0:
            return 0.0
        k = int(np.floor(allowed * len(scores) + 1e-9))  # misses allowed on the calibration pairs
        return float(np.nextafter(scores[-1], 2.0)) if k >= len(scores) else float(scores[k])
    if control == "per_profile":
        has = Y.any(axis=1)
        P, Y, codes = P[has], Y[has], codes[has]
        _, codes = np.unique(codes, return_inverse=True)
        C = int(codes.max()) + 1 if len(codes) else 0
        if C == 0:
            return 0.0
        candidates = np.unique(P[Y])[::-1]  # from the strictest threshold down
        n_pos = Y.sum(axis=1)
        size = np.bincount(codes, minlength=C)

        def certified(lam: float) -> bool:
            miss = ((P < lam) & Y).sum(axis=1) / n_pos
            unit = np.bincount(codes, weights=miss, minlength=C) / size
            return (C * unit.mean() + 1.0) / (C + 1) <= alpha

        # the loss only falls as λ falls: binary search for the first (strictest) certified candidate
        lo, hi = 0, len(candidates)
        while lo < hi:
            mid = (lo + hi) // 2
            if certified(candidates[mid]):
                hi = mid
            else:
                lo = mid + 1
        return float(candidates[lo]) if lo < len(candidates) else 0.0
    raise ValueError(f"unknown control {control!r}: pooled or per_profile")


def thresholds(P: np.ndarray, Y: np.ndarray, groups: np.ndarray | None, levels: tuple[float, ...] = LEVELS,
               control: str = "pooled") -> np.ndarray:
    """λ for every level, made non-increasing in the level (so the sets are nested)."""
    lam = np.array([crc_threshold(P, Y, groups, lv, control) for lv in levels])
    order = np.argsort(levels)
    lam[order] = np.minimum.accumulate(lam[order])
    return lam


def prediction_sets(P: np.ndarray, threshold: float) -> np.ndarray:
    """(rows, MoAs) booleans: MoA j is in row i's set when p_ij ≥ threshold."""
    return np.asarray(P) >= threshold


def set_recall(Y: np.ndarray, S: np.ndarray) -> dict[str, Any]:
    """Pooled recall (true pairs inside the sets / all true pairs), per-profile recall (mean over profiles with
    a true MoA of the share of theirs inside the set), mean set size and its quantiles, the share of empty sets,
    and the share of sets that narrow things down (fewer than half the MoAs)."""
    Y = np.asarray(Y) > 0
    S = np.asarray(S, dtype=bool)
    hit = (Y & S).sum(axis=1)
    n_pos = Y.sum(axis=1)
    has = n_pos > 0
    size = S.sum(axis=1)
    q = np.quantile(size, [0.1, 0.25, 0.5, 0.75, 0.9]) if len(size) else np.zeros(5)
    return {"pooled_recall": float(hit.sum() / max(n_pos.sum(), 1)),
            "per_profile_recall": float((hit[has] / n_pos[has]).mean()) if has.any() else None,
            "mean_set_size": float(size.mean()) if len(size) else 0.0,
            "empty_share": float((size == 0).mean()) if len(size) else 0.0,
            "set_size_quantiles": {"p10": float(q[0]), "p25": float(q[1]), "median": float(q[2]),
                                   "p75": float(q[3]), "p90": float(q[4])},
            "narrowing_share": float((size < S.shape[1] / 2).mean()) if len(size) else 0.0,
            "true_pairs": int(n_pos.sum()), "profiles": int(len(Y))}


def positive_ranks(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """The 0-based rank, within its profile's list, of every true (profile, MoA) pair, sorted."""
    Y = np.asarray(Y) > 0
    order = np.argsort(-np.asarray(P), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
    return np.sort(ranks[Y])


def top_k_for_recall(pos_ranks: np.ndarray, recall: float) -> dict[str, Any]:
    """The smallest plain top-k list (same k for every profile) whose pooled recall reaches `recall`
    (`pos_ranks`: ``positive_ranks``)."""
    if len(pos_ranks) == 0:
        return {"k": 0, "pooled_recall": None}
    need = int(np.ceil(recall * len(pos_ranks)))
    k = int(pos_ranks[max(need, 1) - 1]) + 1
    return {"k": k, "pooled_recall": float((pos_ranks < k).mean())}


def grouped_coverage(P: np.ndarray, Y: np.ndarray, groups: np.ndarray | None, outer: np.ndarray,
                     levels: tuple[float, ...] = LEVELS, control: str = "pooled") -> list[dict[str, Any]]:
    """The recall measured on held-out compounds: for each outer fold, λ calibrated on the other outer folds'
    compounds and the sets scored on this fold's; per level, pooled over folds (sizes weighted by rows)."""
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y) > 0
    outer = np.asarray(outer)
    groups = None if groups is None else np.asarray(groups)
    S_by_level = [np.zeros(P.shape, dtype=bool) for _ in levels]
    for k in np.unique(outer):
        cal, test = outer != k, outer == k
        lam = thresholds(P[cal], Y[cal], None if groups is None else groups[cal], levels, control)
        for i, t in enumerate(lam):
            S_by_level[i][test] = prediction_sets(P[test], t)
    return [{"level": float(lv), **set_recall(Y, S)} for lv, S in zip(levels, S_by_level)]


# ------------------------------------------------------------------------------------------------------------
# Single-label layouts: classic split-conformal classification sets
# ------------------------------------------------------------------------------------------------------------

def _single_label_scores(P: np.ndarray, labels: np.ndarray, method: str) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    rows = np.arange(len(P))
    if method == "lac":
        return 1.0 - P[rows, labels]
    if method == "aps":  # probability mass of the classes ranked at or above the true one
        p_true = P[rows, labels]
        return np.where(P >= p_true[:, None], P, 0.0).sum(axis=1)
    raise ValueError(f"unknown method {method!r}: lac or aps")


def single_label_quantile(P: np.ndarray, labels: np.ndarray, level: float, *, method: str = "lac",
                          groups: np.ndarray | None = None, seed: int = 0) -> float:
    """The conformal quantile of the calibration scores. With `groups` (compounds), one profile per compound is
    drawn (seeded), so the scores are exchangeable with a new compound's."""
    scores = _single_label_scores(P, np.asarray(labels), method)
    if groups is not None:
        codes = _groups(groups, len(scores))
        rng = np.random.default_rng(seed)
        pick = np.array([rng.choice(np.flatnonzero(codes == c)) for c in range(int(codes.max()) + 1)])
        scores = scores[pick]
    n = len(scores)
    q = np.ceil((n + 1) * float(level)) / n
    return float("inf") if q > 1 else float(np.quantile(scores, q, method="higher"))


def single_label_sets(P: np.ndarray, q: float, method: str = "lac") -> np.ndarray:
    """(rows, classes) booleans: the split-conformal set of each row for the quantile `q`."""
    P = np.asarray(P, dtype=np.float64)
    if method == "lac":
        return 1.0 - P <= q
    if method == "aps":  # every class whose APS score (mass at or above it) is within q, and always the top one
        order = np.argsort(-P, axis=1, kind="stable")
        sorted_p = np.take_along_axis(P, order, axis=1)
        cum = np.cumsum(sorted_p, axis=1)
        keep_sorted = cum <= q
        keep_sorted[:, 0] = True
        out = np.zeros_like(keep_sorted)
        np.put_along_axis(out, order, keep_sorted, axis=1)
        return out
    raise ValueError(f"unknown method {method!r}: lac or aps")
