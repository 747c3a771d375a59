"""Confident calls: one MoA (or a MoA family) per profile when the model is usually right, else a plain "no call".

A profile's **call** is its most probable MoA when that probability reaches a threshold λ(P) chosen so that the
precision of calls on NEW compounds is at least P (0.5 ... 0.95); otherwise no call, with the reason. λ is fit
by Learn-then-Test (Angelopoulos et al., 2021) on compound-grouped out-of-fold predictions, compounds as the unit:

- unit c (a compound, or a profile when it has no compound): its loss at λ is 1 when any of its called profiles'
  calls is wrong (at least the share of its calls that are wrong, so bounding it bounds the precision); it counts
  when it has at least one call (the *selective* risk);
- for each threshold of a fixed descending grid, H_λ: "risk(λ) > 1 − P" is tested with the exact binomial tail
  over the selected compounds, which are i.i.d. given how many were selected (``grid_risks`` says why not the
  share wrong with Hoeffding-Bentkus, the earlier form);
- fixed-sequence testing from the strictest threshold down: λ(P) is the lowest threshold before the first
  non-rejection, so with probability ≥ 1 − δ (δ = 0.1) over the calibration compounds, the precision on new
  compounds at λ(P) is at least P. The sequence starts at the first grid point calling enough compounds for a
  test to reject at half the allowed error rate (``power_units``; with fewer compounds than that, enough to
  reject at all): one early error among the handful of most confident compounds would otherwise end it. The
  start depends on how many compounds each threshold calls (the scores), never on whether the calls are right.
  When no threshold passes, the level makes no calls.

**Families** (``data/moa_families``): MoAs whose Drug Repurposing Hub target sets overlap. A profile without an
MoA call gets its best family's call (the family's summed probability) when that passes its own threshold, fit
the same way on the profiles left without an MoA call; the family call is right when a true MoA is in the family.

**Measured, nested**: for each CV fold, thresholds fit on the other folds' out-of-fold predictions and applied to
this fold's; precision and coverage (profiles and compounds with a call) pooled over folds.

Why a threshold fit on out-of-fold predictions holds for the refit model that answers: the refit model is
trained on 1/(k−1) more compounds than each fold model; its scores on new compounds are not those of the fold
models. The high-probability (1 − δ) bound leaves a margin that absorbs a small shift, and the README checks it on
two drug-disjoint, independently simulated data sets the calibration never saw (precision at least P at every
level on both). Only compounds held out whole by the CV calibrate (``trust.held_out_whole``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data.errors import DataError

CALL_LEVELS = tuple(round(0.50 + 0.05 * i, 2) for i in range(10))
"""The precision levels whose thresholds bundles keep: 0.50, 0.55, ..., 0.95."""
DEFAULT_PRECISION = 0.8
REPORT_LEVELS = (0.7, 0.8, 0.9)
DELTA = 0.1
"""Learn-then-Test's error rate: the precision promise holds with probability ≥ 1 − DELTA over calibration."""
GRID = np.unique(1.0 / (1.0 + np.exp(-np.linspace(-9.0, 9.0, 361))))[::-1]
"""Candidate thresholds, strictest first (fixed in advance: a logit grid from 0.9999 to 0.0001)."""

NOT_CONFIDENT = "not confident enough"
UNLIKE = "unlike anything in the reference"
CONTROL = "control"


# ------------------------------------------------------------------------------------------------------------
# The test behind each threshold
# ------------------------------------------------------------------------------------------------------------

def _kl(a: float, b: float) -> float:
    a = min(max(a, 0.0), 1.0)
    out = 0.0
    if a > 0:
        out += a * np.log(a / b)
    if a < 1:
        out += (1 - a) * np.log((1 - a) / (1 - b))
    return out


def risk_pvalue(losses_sum: float, m: int, alpha: float, binary: bool) -> float:
    """p-value of H: "mean loss > alpha" from `m` i.i.d. unit losses in [0, 1] summing to `losses_sum`:
    the exact binomial tail for 0/1 losses, Hoeffding-Bentkus otherwise."""
    from scipy.stats import binom

    if m <= 0:
        return 1.0
    if binary:
        return float(binom.cdf(int(round(losses_sum)), m, alpha))
    r = losses_sum / m
    hoeffding = np.exp(-m * _kl(min(r, alpha), alpha))
    bentkus = np.e * binom.cdf(int(np.ceil(m * r - 1e-9)), m, alpha)
    return float(min(1.0, hoeffding, bentkus))


def min_units(alpha: float, delta: float = DELTA) -> int:
    """The fewest selected units with which a test at (alpha, delta) can reject (all losses 0)."""
    return int(np.ceil(np.log(delta) / np.log(1.0 - alpha) - 1e-9))


def power_units(alpha: float, delta: float = DELTA) -> int:
    """The fewest selected units with which a test at (alpha, delta) rejects when half the allowed losses occur
    (a loss rate of alpha / 2): where the fixed sequence starts, so one early error among a handful of the most
    confident compounds does not end it."""
    from scipy.stats import binom

    for m in range(min_units(alpha, delta), 20_000):
        if binom.cdf(int(np.floor(m * alpha / 2)), m, alpha) <= delta:
            return m
    return 20_000


def _unit_codes(units: np.ndarray | None, n: int) -> np.ndarray:
    if units is None:
        return np.arange(n)
    return pd.factorize(pd.Series(np.asarray(units)).astype(str), sort=True)[0]


def grid_risks(score: np.ndarray, wrong: np.ndarray, units: np.ndarray | None,
               grid: np.ndarray = GRID) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per grid threshold: the number of units with a call and how many of them have a wrong call; and True (the
    unit losses are 0/1, so the exact binomial tail tests them).

    A unit's loss is 1 when ANY of its calls is wrong: at least the share of its calls that are wrong, so a bound
    on it bounds the precision too. Why not the share itself, tested by Hoeffding-Bentkus: a compound's profiles
    are mostly all right or all wrong, so the two losses are nearly equal, while Bentkus's bound pays a factor e
    over the exact tail. Measured nested, the exact test certifies more at the same or higher precision (BBBC021
    treatments, knn, P = 0.85: 96.4 % precision on 81.6 % of treatments instead of 0 % on 2.9 %; simulated
    LISH-MoA, logreg, P = 0.9: 95.7 % on 7.5 % of profiles instead of 93.2 % on 1.6 %)."""
    score = np.asarray(score, dtype=np.float64)
    wrong = np.asarray(wrong, dtype=np.float64)
    codes = _unit_codes(units, len(score))
    n_units = int(codes.max()) + 1 if len(codes) else 0
    m = np.zeros(len(grid), dtype=np.int64)
    s = np.zeros(len(grid))
    for k, lam in enumerate(grid):
        called = score >= lam
        if not called.any():
            continue
        n = np.bincount(codes[called], minlength=n_units)
        w = np.bincount(codes[called], weights=wrong[called], minlength=n_units)
        sel = n > 0
        m[k] = int(sel.sum())
        s[k] = float((w[sel] > 0).sum())
    return m, s, True


def ltt_threshold(m: np.ndarray, s: np.ndarray, binary: bool, level: float, delta: float = DELTA,
                  grid: np.ndarray = GRID) -> float | None:
    """The lowest grid threshold certified by fixed-sequence testing (see the module docstring), or None."""
    alpha = 1.0 - float(level)
    need = power_units(alpha, delta)
    if m.max(initial=0) < need:  # too few units for that: start where a test can reject at all
        need = min_units(alpha, delta)
    start = np.flatnonzero(m >= need)
    if not len(start):
        return None
    chosen = None
    for k in range(int(start[0]), len(grid)):
        if risk_pvalue(s[k], int(m[k]), alpha, binary) > delta:
            break
        chosen = float(grid[k])
    return chosen


def call_thresholds(score: np.ndarray, wrong: np.ndarray, units: np.ndarray | None,
                    levels: tuple[float, ...] = CALL_LEVELS, delta: float = DELTA) -> list[float | None]:
    """λ(P) for every precision level (None: no threshold certified, no calls at that level)."""
    m, s, binary = grid_risks(score, wrong, units)
    return [ltt_threshold(m, s, binary, lv, delta) for lv in levels]


# ------------------------------------------------------------------------------------------------------------
# Scores: the top MoA and the best family
# ------------------------------------------------------------------------------------------------------------

def top_calls(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, probability) of each row's most probable MoA."""
    P = np.asarray(P, dtype=np.float64)
    j = np.argmax(P, axis=1) if P.shape[1] else np.zeros(len(P), dtype=np.int64)
    return j, P[np.arange(len(P)), j] if P.shape[1] else np.zeros(len(P))


def family_matrix(families: list[list[int]], n_targets: int) -> np.ndarray:
    """(targets, families) 0/1 membership."""
    M = np.zeros((n_targets, len(families)))
    for f, members in enumerate(families):
        M[members, f] = 1.0
    return M


def family_calls(P: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(family index, score) of each row's best family: the sum of its MoAs' probabilities, at most 1."""
    if M.shape[1] == 0:
        return np.zeros(len(P), dtype=np.int64), np.zeros(len(P))
    F = np.minimum(np.asarray(P, dtype=np.float64) @ M, 1.0)
    f = np.argmax(F, axis=1)
    return f, F[np.arange(len(F)), f]


def _wrong(Y: np.ndarray, j: np.ndarray) -> np.ndarray:
    return 1.0 - (np.asarray(Y)[np.arange(len(j)), j] > 0)


def _family_wrong(Y: np.ndarray, M: np.ndarray, f: np.ndarray) -> np.ndarray:
    if M.shape[1] == 0:
        return np.ones(len(Y))
    hits = (np.asarray(Y, dtype=np.float64) @ M) > 0
    return 1.0 - hits[np.arange(len(f)), f]


# ------------------------------------------------------------------------------------------------------------
# Fitting and measuring
# ------------------------------------------------------------------------------------------------------------

def fit_calls(P: np.ndarray, Y: np.ndarray, units: np.ndarray | None, M: np.ndarray | None = None,
              levels: tuple[float, ...] = CALL_LEVELS, delta: float = DELTA) -> dict[str, list[float | None]]:
    """MoA thresholds per level and, with families `M`, family thresholds fit on the profiles each level leaves
    without an MoA call."""
    j, top = top_calls(P)
    lam = call_thresholds(top, _wrong(Y, j), units, levels, delta)
    out: dict[str, list[float | None]] = {"thresholds": lam}
    if M is not None and M.shape[1]:
        f, fs = family_calls(P, M)
        fwrong = _family_wrong(Y, M, f)
        fam = []
        for lv, t in zip(levels, lam):
            rest = top < t if t is not None else np.ones(len(top), dtype=bool)
            if not rest.any():
                fam.append(None)
                continue
            m, s, binary = grid_risks(fs[rest], fwrong[rest], None if units is None else np.asarray(units)[rest])
            fam.append(ltt_threshold(m, s, binary, lv, delta))
        out["family_thresholds"] = fam
    return out


def apply_calls(P: np.ndarray, threshold: float | None, family_threshold: float | None = None,
                M: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: kind (0 none, 1 MoA, 2 family), the called index (MoA or family), and its score."""
    j, top = top_calls(P)
    kind = np.zeros(len(top), dtype=np.int8)
    idx = j.copy()
    sc = top.copy()
    if threshold is not None:
        kind[top >= threshold] = 1
    if M is not None and M.shape[1] and family_threshold is not None:
        f, fs = family_calls(P, M)
        fam = (kind == 0) & (fs >= family_threshold)
        kind[fam], idx[fam], sc[fam] = 2, f[fam], fs[fam]
    return kind, idx, sc


def _score_calls(Y: np.ndarray, kind: np.ndarray, idx: np.ndarray, units: np.ndarray | None,
                 M: np.ndarray | None) -> dict[str, Any]:
    Y = np.asarray(Y)
    right = np.zeros(len(kind), dtype=bool)
    moa = kind == 1
    right[moa] = Y[np.flatnonzero(moa), idx[moa]] > 0
    fam = kind == 2
    if fam.any() and M is not None:
        right[fam] = ((Y[fam].astype(np.float64) @ M) > 0)[np.arange(int(fam.sum())), idx[fam]]
    codes = _unit_codes(units, len(kind))
    G = int(codes.max()) + 1 if len(codes) else 0
    called = kind > 0
    n_c = np.bincount(codes[called], minlength=G)
    r_c = np.bincount(codes[called], weights=right[called], minlength=G)
    sel = n_c > 0

    def share(a: np.ndarray) -> float | None:
        return float(a.mean()) if len(a) else None

    per_family = {}
    for f in np.unique(idx[fam]):
        hit = fam & (idx == f)
        per_family[str(int(f))] = {"calls": int(hit.sum()), "right": int(right[hit].sum())}
    return {"calls": int(called.sum()), "moa_calls": int(moa.sum()), "family_calls": int(fam.sum()),
            "per_family": per_family,
            "precision": share(right[called]), "precision_moa": share(right[moa]),
            "precision_family": share(right[fam]),
            "precision_compounds": share(r_c[sel] / n_c[sel]),
            "coverage_profiles": share(called) or 0.0, "coverage_profiles_moa": share(moa) or 0.0,
            "coverage_compounds": float(sel.mean()) if G else None,
            "coverage_compounds_moa": (float((np.bincount(codes[moa], minlength=G) > 0).mean()) if G else None),
            "profiles": int(len(kind)), "compounds": G}


def measure_calls(P: np.ndarray, Y: np.ndarray, units: np.ndarray | None, fold: np.ndarray,
                  M: np.ndarray | None = None, levels: tuple[float, ...] = CALL_LEVELS,
                  delta: float = DELTA) -> list[dict[str, Any]]:
    """Nested: per fold, thresholds fit on the other folds and applied to this one; per level, pooled."""
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y) > 0
    fold = np.asarray(fold)
    units = None if units is None else np.asarray(units)
    kinds = np.zeros((len(levels), len(P)), dtype=np.int8)
    idxs = np.zeros((len(levels), len(P)), dtype=np.int64)
    for k in np.unique(fold):
        cal, test = fold != k, fold == k
        fit = fit_calls(P[cal], Y[cal], None if units is None else units[cal], M, levels, delta)
        for i in range(len(levels)):
            ft = (fit.get("family_thresholds") or [None] * len(levels))[i]
            kind, idx, _ = apply_calls(P[test], fit["thresholds"][i], ft, M)
            kinds[i, test], idxs[i, test] = kind, idx
    return [{"level": float(lv), **_score_calls(Y, kinds[i], idxs[i], units, M)} for i, lv in enumerate(levels)]


# ------------------------------------------------------------------------------------------------------------
# What a bundle keeps and how a call is read
# ------------------------------------------------------------------------------------------------------------

class CallModel:
    """The calls of one bundle: thresholds per level at each unit of answer (``profile``, and ``compound`` /
    ``treatment`` when fit), the MoA families, and the nested measurements. Plain JSON."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.levels: list[float] = [float(v) for v in state["levels"]]
        self.families: list[dict[str, Any]] = list(state.get("families") or [])

    def to_dict(self) -> dict[str, Any]:
        return self.state

    # -- levels ---------------------------------------------------------------------------------------------
    def level_index(self, level: Any) -> int:
        """The stored level for `level`; one clear DataError outside 0.5-0.95 or between stored levels."""
        try:
            value = float(level)
        except (TypeError, ValueError):
            raise DataError(f"call precision must be a number between {min(self.levels):g} and "
                            f"{max(self.levels):g} (e.g. 0.8), got {str(level)[:40]!r}.") from None
        if not (min(self.levels) - 1e-9 <= value <= max(self.levels) + 1e-9):
            raise DataError(f"call precision {value:g} is outside {min(self.levels):g}-{max(self.levels):g}: give "
                            "the share of calls that should be right on new compounds, e.g. 0.8 for 8 in 10.")
        i = int(np.argmin(np.abs(np.asarray(self.levels) - value)))
        if abs(self.levels[i] - value) > 1e-6:
            raise DataError(f"call precision {value:g} is not one of the stored levels "
                            f"({', '.join(f'{v:g}' for v in self.levels)}); pick one of them.")
        return i

    def units(self) -> list[str]:
        return [u for u in ("profile", "treatment", "compound") if u in self.state]

    def measured_at(self, level: float, unit: str = "profile") -> dict[str, Any]:
        return self.state[unit]["measured"][self.level_index(level)]

    def family_matrix(self, n_targets: int) -> np.ndarray:
        return family_matrix([f["members"] for f in self.families], n_targets)

    # -- applying -------------------------------------------------------------------------------------------
    def call(self, P: np.ndarray, target_names: list[str], level: float = DEFAULT_PRECISION,
             unit: str = "profile", control: np.ndarray | None = None,
             ood: np.ndarray | None = None) -> pd.DataFrame:
        """Per row: ``call`` (an MoA, a family, or empty), ``kind`` (moa / family / none), ``probability`` (the
        call's score), ``estimated_precision`` (measured on held-out compounds at this level, for this kind),
        ``reason`` (empty with a call, else control / unlike anything in the reference / not confident enough)."""
        if unit not in self.state:
            raise DataError(f"this bundle has no calls fit at the {unit} level; use one of {', '.join(self.units())}.")
        i = self.level_index(level)
        fit = self.state[unit]
        M = self.family_matrix(len(target_names))
        fam_t = (fit.get("family_thresholds") or [None] * len(self.levels))[i]
        kind, idx, sc = apply_calls(P, fit["thresholds"][i], fam_t, M)
        n = len(kind)
        control = np.zeros(n, dtype=bool) if control is None else np.asarray(control, dtype=bool)
        ood = np.zeros(n, dtype=bool) if ood is None else np.asarray(ood, dtype=bool)
        kind[control | ood] = 0
        m = fit["measured"][i]
        prec = {1: m.get("precision_moa"), 2: m.get("precision_family")}
        names = np.asarray(target_names, dtype=object)
        fam_names = np.asarray([f["name"] for f in self.families] or [""], dtype=object)
        call = np.where(kind == 1, names[np.minimum(idx, len(names) - 1)],
                        np.where(kind == 2, fam_names[np.minimum(idx, len(fam_names) - 1)], ""))
        reason = np.where(control, CONTROL, np.where(ood, UNLIKE, np.where(kind == 0, NOT_CONFIDENT, "")))
        return pd.DataFrame({
            "call": call.astype(object),
            "kind": np.choose(kind, ["none", "moa", "family"]).astype(object),
            "probability": np.where(kind > 0, np.round(sc, 6), np.nan),
            "estimated_precision": [None if k == 0 or prec.get(int(k)) is None else round(float(prec[int(k)]), 4)
                                    for k in kind],
            "reason": reason.astype(object),
        })

    def family_report(self, level: float = DEFAULT_PRECISION, unit: str = "profile") -> list[dict[str, Any]]:
        """Each family, its MoAs, shared targets, and its held-out calls at `level`: how many, how many right."""
        per = self.measured_at(level, unit).get("per_family") or {}
        out = []
        for i, fam in enumerate(self.families):
            got = per.get(str(i), {"calls": 0, "right": 0})
            out.append({"name": fam["name"], "moas": fam["moas"], "shared_targets": fam.get("shared_targets"),
                        "held_out_calls": got["calls"],
                        "precision": got["right"] / got["calls"] if got["calls"] else None})
        return out

    def summary(self) -> dict[str, Any]:
        """The report form: per unit, precision and coverage at 0.7 / 0.8 / 0.9; the families."""
        out: dict[str, Any] = {"delta": self.state.get("delta"), "rule": self.state.get("rule"),
                               "families": len(self.families), "families_source": self.state.get("families_source")}
        for unit in self.units():
            out[unit] = [{k: v for k, v in m.items() if k != "per_family"} for m in self.state[unit]["measured"]
                         if any(abs(m["level"] - lv) < 1e-9 for lv in REPORT_LEVELS)]
        return out


def call_sentence(call: str, estimated_precision: float | None, simulated: bool = False) -> str:
    """The call in words: "X — right about 8 times in 10 on compounds the model had not seen"."""
    if not call or estimated_precision is None:
        return call
    tens = int(round(10 * float(estimated_precision)))
    text = f"{call} — right about {tens} times in 10 on compounds the model had not seen"
    return text + (" (measured on SIMULATED profiles)" if simulated else "")


def fit_call_model(units_P: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]],
                   target_names: list[str], families: list[dict[str, Any]] | None = None,
                   levels: tuple[float, ...] = CALL_LEVELS, delta: float = DELTA) -> CallModel:
    """The calls of a bundle from out-of-fold predictions at each unit of answer: ``{unit: (P, Y, compounds,
    fold)}``. Thresholds fit on all folds; the measurement nested."""
    families = list(families or [])
    M = family_matrix([f["members"] for f in families], len(target_names)) if families else None
    state: dict[str, Any] = {
        "levels": list(levels), "delta": delta, "families": families,
        "rule": f"Learn-then-Test on compound-grouped out-of-fold predictions, compounds as the unit: precision on "
                f"new compounds at least P with probability {1 - delta:.0%}; measured nested (thresholds fit on "
                "the other folds)",
    }
    for unit, (P, Y, compounds, fold) in units_P.items():
        fit = fit_calls(P, Y, compounds, M, levels, delta)
        measured = measure_calls(P, Y, compounds, fold, M, levels, delta)
        state[unit] = {**fit, "measured": measured}
    return CallModel(state)


def set_size_distribution(sizes: np.ndarray, n_targets: int) -> dict[str, Any]:
    """Quantiles of the set sizes and the share of sets that narrow things down (fewer than half the MoAs)."""
    sizes = np.asarray(sizes)
    if not len(sizes):
        return {}
    q = np.quantile(sizes, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {"p10": float(q[0]), "p25": float(q[1]), "median": float(q[2]), "p75": float(q[3]), "p90": float(q[4]),
            "narrowing_share": float((sizes < n_targets / 2).mean()), "half_of_moas": n_targets / 2}
