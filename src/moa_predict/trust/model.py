"""Answers a scientist can trust, fit once in training from compound-grouped out-of-fold predictions:

- calibration on new compounds (``calibration``: ECE before/after, reliability data, a nested recalibration);
- MoA sets with a recall guarantee (``conformal``: one threshold per level, with the recall MEASURED on held-out
  compounds: λ calibrated on the other CV folds' compounds, sets scored on this fold's);
- abstention: "no confident MoA" (empty set) and "unlike anything in the reference" (the OOD flag);
- compound consensus: a compound's profiles pooled (mean logit, then a Platt map fit on compound-level OOF) into
  one call with its own set, and the agreement of its profiles;
- confident calls (``calls``): one MoA, or a MoA family, when precision on new compounds is at least P; else
  no call and the reason. Sets are shown only when they narrow things down (fewer than half the MoAs).

``TrustModel`` is plain JSON (``to_dict`` / ``from_dict``), stored under ``"trust"`` in bundle.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data.errors import DataError
from .calls import CallModel, fit_call_model
from .calibration import Recalibrator, calibration_report, fit_platt, logit, nested_recalibration, sigmoid
from .conformal import (LEVELS, grouped_coverage, positive_ranks, prediction_sets, set_recall, thresholds,
                        top_k_for_recall)

DEFAULT_LEVEL = 0.9
NO_CONFIDENT = "no confident MoA"
UNLIKE = "unlike anything in the reference"
CONTROL = "control: no MoA by definition"
NOT_APPLICABLE_POOLING = "not applicable: no compound has 2 or more profiles"
NO_NARROW = "the model cannot narrow this profile down at this level"
"""A set holding half the MoAs or more says nothing a scientist can act on: it is not shown."""
MAX_DRUG_SIZE = 18
"""As ``folds.DrugGroupedFolds``: larger drugs are split by rows across folds, so their profiles are units."""


def compound_units(drugs: np.ndarray | None, max_size: int = MAX_DRUG_SIZE) -> np.ndarray | None:
    """The exchangeable unit of each profile: its drug, or the profile itself for drugs with more than
    `max_size` profiles (split by rows across folds, so never held out whole)."""
    if drugs is None:
        return None
    drugs = np.asarray(drugs).astype(str)
    _, inverse, counts = np.unique(drugs, return_inverse=True, return_counts=True)
    big = counts[inverse] > max_size
    return np.where(big, np.char.add("row:", np.arange(len(drugs)).astype(str)), drugs)


def held_out_whole(units: np.ndarray | None, n: int) -> np.ndarray:
    """Profiles whose compound was held out whole by the CV (``compound_units`` not a ``row:`` unit): only their
    out-of-fold predictions stand for a new compound. A large drug split by rows across folds was seen by its own
    fold's model, so its out-of-fold scores are optimistic; counted in the calibration it made the sets and the
    calls promise more than they kept on new drugs (see docs/trust, the drug-disjoint check)."""
    if units is None:
        return np.ones(n, dtype=bool)
    return ~np.char.startswith(np.asarray(units).astype(str), "row:")


def pool_logits(P: np.ndarray, codes: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean logit per group and the group sizes."""
    z = logit(P)
    sums = np.zeros((n_groups, P.shape[1]))
    np.add.at(sums, codes, z)
    n = np.bincount(codes, minlength=n_groups)
    return sums / np.maximum(n, 1)[:, None], n


def _row_log_loss(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    p = np.clip(P, 1e-15, 1 - 1e-15)
    return -(Y * np.log(p) + (1 - Y) * np.log1p(-p)).mean(axis=1)


@dataclass
class TrustModel:
    """Thresholds, measured recalls, recalibration and compound pooling of one bundle (see module docstring)."""

    levels: list[float]
    thresholds: list[float]
    measured: list[dict[str, Any]]
    recalibration: Recalibrator = field(default_factory=Recalibrator)
    calibration: dict[str, Any] = field(default_factory=dict)
    compound: dict[str, Any] | None = None
    grouped: bool = True
    default_level: float = DEFAULT_LEVEL
    calls: dict[str, Any] | None = None
    """``trust.calls.CallModel`` state: call thresholds per precision level, families, measured precision."""

    @property
    def call_model(self) -> CallModel | None:
        return None if self.calls is None else CallModel(self.calls)

    # -- levels ----------------------------------------------------------------------------------------------
    def level_index(self, level: float) -> int:
        """The stored level nearest to `level`; a clear DataError outside the stored range."""
        try:
            level = float(level)
        except (TypeError, ValueError):
            raise DataError(f"set level must be a number between {min(self.levels)} and {max(self.levels)} "
                            f"(e.g. 0.9), got {str(level)[:40]!r}.") from None
        if not (min(self.levels) - 0.005 <= level <= max(self.levels) + 0.005):
            raise DataError(f"set level {level:g} is outside {min(self.levels)}-{max(self.levels)}: give the share "
                            "of true MoAs the sets should contain, e.g. 0.9 for 90 %.")
        return int(np.argmin(np.abs(np.asarray(self.levels) - level)))

    def threshold(self, level: float) -> float:
        return float(self.thresholds[self.level_index(level)])

    def measured_at(self, level: float) -> dict[str, Any]:
        return self.measured[self.level_index(level)]

    def sentence(self, level: float, simulated: bool = False) -> str:
        """The set's guarantee in words, with the MEASURED held-out recall (not the nominal level)."""
        m = self.measured_at(level)
        nominal = self.levels[self.level_index(level)]
        text = (f"On compounds this model has not seen, sets at the {100 * nominal:.0f} % level contained the true "
                f"MoA for {100 * m['pooled_recall']:.1f} % of MoAs")
        median = (m.get("set_size_quantiles") or {}).get("median")
        if median is not None:  # the recall never without the size of the sets that reach it
            text += f", with a median of {median:.0f} MoAs per set"
            if m.get("narrowing_share") is not None:
                text += (f"; {100 * m['narrowing_share']:.0f} % of profiles got a set of fewer than half the MoAs "
                         "(the others are not shown)")
        if not self.grouped:
            text += " (measured without compound ids: optimistic)"
        return text + (" (measured on SIMULATED profiles)." if simulated else ".")

    # -- applying --------------------------------------------------------------------------------------------
    def sets(self, proba: np.ndarray, level: float) -> np.ndarray:
        return prediction_sets(proba, self.threshold(level))

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """Recalibrated probabilities (a global monotone map: rankings and sets unchanged)."""
        return self.recalibration.transform(proba)

    def profile_sets(self, proba: np.ndarray, level: float, control: np.ndarray,
                     ood: np.ndarray | None = None) -> tuple[np.ndarray, list[str | None]]:
        """The sets (rows × MoAs booleans; empty for controls and out-of-distribution profiles, where the
        guarantee does not hold, and for sets of half the MoAs or more, which narrow nothing down) and each profile's abstention (None when it has a set)."""
        S = self.sets(proba, level)
        control = np.asarray(control, dtype=bool)
        ood = np.zeros(len(S), dtype=bool) if ood is None else np.asarray(ood, dtype=bool)
        wide = S.sum(axis=1) >= S.shape[1] / 2
        S[control | ood | wide] = False
        return S, abstentions(S, control, ood, wide)

    def compound_consensus(self, features: pd.DataFrame, proba: np.ndarray, target_names: list[str],
                           level: float, column: str | None = None, ood: np.ndarray | None = None,
                           top: int = 5, call_precision: float | None = None) -> list[dict[str, Any]]:
        """Per compound of the upload: its pooled probabilities' top MoAs, its set with each MoA's agreement (the
        share of the compound's profiles whose own set holds it), and its abstention; with `call_precision`, its
        confident call (``trust.calls``, thresholds fit on pooled held-out compounds). A compound with one
        profile gets exactly that profile's probabilities and set."""
        from ..data.profiles.dataset import control_mask
        from ..data.profiles.dataset import find_compound_column

        col = find_compound_column(features, column)
        if col is None:
            return []
        names = features[col].astype("string").str.strip()
        control = control_mask(features)
        keep = ~control & names.notna().to_numpy() & (names.fillna("") != "").to_numpy()
        if not keep.any():
            return []
        S, _ = self.profile_sets(proba, level, control, ood)
        codes, uniques = pd.factorize(names[keep], sort=True)
        rows = np.flatnonzero(keep)
        zbar, n = pool_logits(np.asarray(proba, dtype=np.float64)[rows], codes, len(uniques))
        pooled = self.pool(zbar, n)
        lam = self.compound_threshold(level, n)
        calls = None
        if call_precision is not None and self.call_model is not None:
            cm = self.call_model
            all_ood_c = None if ood is None else (
                np.bincount(codes, weights=np.asarray(ood, dtype=float)[rows], minlength=len(uniques)) >= n)
            calls = cm.call(pooled, target_names, call_precision, "compound" if "compound" in cm.units()
                            else "profile", ood=all_ood_c).to_dict("records")
        out = []
        for c, name in enumerate(uniques):
            idx = rows[codes == c]
            p = pooled[c]
            members = np.flatnonzero(p >= lam[c])
            all_ood = ood is not None and bool(np.asarray(ood)[idx].all())
            wide = len(members) >= len(target_names) / 2
            if all_ood or wide:
                members = members[:0]
            agreement = S[idx].mean(axis=0)
            order = np.argsort(-p, kind="stable")[:top]
            out.append({
                "compound": str(name), "n_profiles": int(len(idx)),
                "set": [{"moa": target_names[j], "probability": round(float(p[j]), 6),
                         "agreement": round(float(agreement[j]), 4)}
                        for j in members[np.argsort(-p[members], kind="stable")]],
                "top": [{"moa": target_names[j], "probability": round(float(p[j]), 6)} for j in order],
                "abstention": (UNLIKE if all_ood else NO_NARROW if wide
                               else NO_CONFIDENT if len(members) == 0 else None),
                **({"call": calls[c]} if calls is not None else {}),
            })
        return out

    def pool(self, zbar: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Pooled probabilities from mean logits: the compound-level Platt map for compounds with ≥ 2 profiles,
        the profile itself (identity) for one profile."""
        zbar = np.asarray(zbar, dtype=np.float64)
        if self.compound is None:
            return sigmoid(zbar)
        a, b = self.compound["platt"]["a"], self.compound["platt"]["b"]
        return np.where(np.asarray(n)[:, None] >= 2, sigmoid(a * zbar + b), sigmoid(zbar))

    def compound_threshold(self, level: float, n: np.ndarray) -> np.ndarray:
        """Per compound: the compound-level λ (≥ 2 profiles) or the profile λ (one profile)."""
        i = self.level_index(level)
        lam_c = self.thresholds[i] if self.compound is None else self.compound["thresholds"][i]
        return np.where(np.asarray(n) >= 2, lam_c, self.thresholds[i])

    # -- persistence -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"levels": list(self.levels), "thresholds": [float(t) for t in self.thresholds],
                "measured": self.measured, "recalibration": self.recalibration.to_dict(),
                "calibration": self.calibration, "compound": self.compound, "grouped": self.grouped,
                "default_level": self.default_level, **({"calls": self.calls} if self.calls is not None else {})}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "TrustModel":
        return cls(levels=[float(v) for v in state["levels"]], thresholds=[float(t) for t in state["thresholds"]],
                   measured=list(state["measured"]), recalibration=Recalibrator.from_dict(state["recalibration"]),
                   calibration=dict(state.get("calibration") or {}), compound=state.get("compound"),
                   grouped=bool(state.get("grouped", True)),
                   default_level=float(state.get("default_level", DEFAULT_LEVEL)),
                   calls=state.get("calls") if isinstance(state.get("calls"), dict) else None)

    def summary(self) -> dict[str, Any]:
        """The short form for reports and the model card: ECE before/after and the sets at 80/90/95 %."""
        cal = self.calibration
        return {
            "ece": {"pairs_before": cal.get("before", {}).get("pairs", {}).get("ece"),
                    "pairs_after": cal.get("after", {}).get("pairs", {}).get("ece"),
                    "top1_before": cal.get("before", {}).get("top1", {}).get("ece"),
                    "top1_after": cal.get("after", {}).get("top1", {}).get("ece"),
                    "recalibration": self.recalibration.method},
            "sets": [{k: m[k] for k in ("level", "pooled_recall", "per_profile_recall", "mean_set_size",
                                        "set_size_quantiles", "narrowing_share", "empty_share") if k in m}
                     for m in self.measured if any(abs(m["level"] - lv) < 1e-9 for lv in (0.8, 0.9, 0.95))],
            "compound_pooling": self.compound.get("gain") if self.compound is not None else (
                NOT_APPLICABLE_POOLING if self.grouped else "not applicable: no compound ids"),
            "calls": None if self.calls is None else CallModel(self.calls).summary(),
        }


def abstentions(S: np.ndarray, control: np.ndarray, ood: np.ndarray | None = None,
                wide: np.ndarray | None = None) -> list[str | None]:
    """Per profile: CONTROL, UNLIKE (out of distribution), NO_NARROW (a set of half the MoAs or more),
    NO_CONFIDENT (empty set) or None (a set)."""
    ood = np.zeros(len(S), dtype=bool) if ood is None else np.asarray(ood, dtype=bool)
    wide = np.zeros(len(S), dtype=bool) if wide is None else np.asarray(wide, dtype=bool)
    empty = ~np.asarray(S, dtype=bool).any(axis=1)
    return [CONTROL if c else UNLIKE if o else NO_NARROW if w else NO_CONFIDENT if e else None
            for c, o, w, e in zip(np.asarray(control, dtype=bool), ood, wide, empty)]


def fit_trust(result: Any, data: Any, levels: tuple[float, ...] = LEVELS) -> TrustModel:
    """Everything above from a cross-validation's OOF predictions (``CVResult.oof`` / ``.fold``) and its data
    (targets, drugs). The recall at each level is measured with the CV folds as the outer split."""
    rows = np.asarray(result.fold) >= 0
    P = np.asarray(result.oof, dtype=np.float64)[rows]
    Y = data.targets.to_numpy()[rows].astype(np.float64)
    fold = np.asarray(result.fold)[rows]
    drugs = None if data.drugs is None else data.drugs.to_numpy()[rows]
    units = compound_units(drugs)
    names = list(data.target_names)
    nested, P_after = nested_recalibration(Y, P, fold)
    recal = Recalibrator(nested["chosen"]).fit(Y, P)
    calibration = {"before": calibration_report(Y, P, names), "after": calibration_report(Y, P_after, names),
                   "nested": nested,
                   "rows": "treated profiles, out-of-fold predictions on compound-grouped folds"}
    # sets calibrated and measured on compounds held out whole only (as the calls): see ``held_out_whole``
    whole = held_out_whole(units, len(P))
    units_w = None if units is None else units[whole]
    lam = thresholds(P[whole], Y[whole], units_w, levels)
    measured = grouped_coverage(P[whole], Y[whole], units_w, fold[whole], levels)
    ranks = positive_ranks(Y[whole], P[whole])
    for m in measured:
        m["top_k_same_recall"] = top_k_for_recall(ranks, m["pooled_recall"])
    compound, pooled = (None, None) if drugs is None else _fit_compound(P, Y, drugs, fold, levels)
    return TrustModel(levels=list(levels), thresholds=lam.tolist(), measured=measured, recalibration=recal,
                      calibration=calibration, compound=compound, grouped=drugs is not None,
                      calls=fit_calls_of(data, rows, P, Y, fold, units, pooled))


def fit_calls_of(data: Any, rows: np.ndarray, P: np.ndarray, Y: np.ndarray, fold: np.ndarray,
                 units: np.ndarray | None, pooled: tuple | None) -> dict[str, Any]:
    """The calls (``trust.calls``) at every unit a bundle answers: profiles, compounds pooled (when the data
    has compounds), a custom layout's treatments; with the MoA families of the bundle's targets."""
    from ..data.moa_families import hub_targets, moa_families

    whole = held_out_whole(units, len(P))  # only compounds held out whole stand for new compounds
    units_P = {"profile": (P[whole], Y[whole], None if units is None else np.asarray(units)[whole], fold[whole])}
    if pooled is not None:
        units_P["compound"] = pooled
    treatment = _treatment_pooled(data, rows, P, Y, fold, units)
    if treatment is not None:
        units_P["treatment"] = treatment
    names = list(data.target_names)
    families = moa_families(names)
    calls = fit_call_model(units_P, names, families).to_dict()
    if families:
        calls["families_source"] = hub_targets()[1]
    return calls


def _treatment_pooled(data: Any, rows: np.ndarray, P: np.ndarray, Y: np.ndarray, fold: np.ndarray,
                      units: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray] | None:
    """A custom layout's treatments (its treatment columns, within a fold): the wells' out-of-fold predictions
    pooled (mean logit), as ``--level treatment`` calls pool the wells it predicts; None without treatments."""
    layout = getattr(data, "layout", None)
    cols = list(getattr(layout, "treatment", None) or []) if layout is not None else []
    if not cols or any(c not in data.features.columns for c in cols):
        return None
    from ..data.profiles.reader import treatment_keys

    keys = treatment_keys(data.features.loc[rows], cols).to_numpy().astype(str)
    keys = np.char.add(np.char.add(keys, "|"), fold.astype(str))
    codes, uniques = pd.factorize(keys, sort=True)
    zbar, _ = pool_logits(P, codes, len(uniques))
    Yt = np.zeros((len(uniques), Y.shape[1]))
    np.maximum.at(Yt, codes, Y)
    fold_t = np.zeros(len(uniques), dtype=np.int64)
    fold_t[codes] = fold
    unit_t = None
    if units is not None:
        unit_t = np.empty(len(uniques), dtype=object)
        unit_t[codes] = np.asarray(units)
    return sigmoid(zbar), Yt, unit_t, fold_t


def _fit_compound(P: np.ndarray, Y: np.ndarray, drugs: np.ndarray, fold: np.ndarray,
                  levels: tuple[float, ...]
                  ) -> tuple[dict[str, Any] | None, tuple[np.ndarray, np.ndarray, None, np.ndarray]]:
    """Compound-level pooling: one row per (drug, fold) (a large drug split over folds is one compound per
    fold); the Platt map and set thresholds fit on compounds with ≥ 2 profiles; its gain measured nested.
    Also the compounds' nested pooled probabilities, labels and folds (the calls at the compound level). The
    pooling is None when no compound has 2 profiles (a table of one consensus profile per compound): it does not
    apply, and single profiles pass through."""
    keys = np.char.add(np.char.add(np.asarray(drugs).astype(str), "|"), fold.astype(str))
    codes, uniques = pd.factorize(keys, sort=True)
    G = len(uniques)
    zbar, n = pool_logits(P, codes, G)
    Yc = np.zeros((G, Y.shape[1]))
    np.maximum.at(Yc, codes, Y)
    fold_c = np.zeros(G, dtype=np.int64)
    fold_c[codes] = fold
    multi = n >= 2
    if not multi.any():  # one profile per compound: nothing to pool (see NOT_APPLICABLE_POOLING)
        return None, (sigmoid(zbar), Yc, None, fold_c)
    Pc = np.empty_like(zbar)
    for k in np.unique(fold_c):  # nested: the map fit on the other folds' compounds
        train, test = multi & (fold_c != k), fold_c == k
        ab = fit_platt(zbar[train], Yc[train]) if train.any() else {"a": 1.0, "b": 0.0}
        Pc[test] = np.where(multi[test, None], sigmoid(ab["a"] * zbar[test] + ab["b"]), sigmoid(zbar[test]))
    per_profile = np.bincount(codes, weights=_row_log_loss(Y, P), minlength=G) / n
    gain = {
        "compounds": int(G), "compounds_with_2_or_more_profiles": int(multi.sum()),
        "log_loss_per_profile": float(per_profile[multi].mean()),
        "log_loss_mean_logit": float(_row_log_loss(Yc[multi], sigmoid(zbar[multi])).mean()),
        "log_loss_pooled_calibrated": float(_row_log_loss(Yc[multi], Pc[multi]).mean()),
        "note": "mean over compounds (≥ 2 profiles) of the mean log loss over MoAs: each profile's own "
                "prediction against its labels, averaged over the compound's profiles, vs the compound's pooled "
                "call (mean logit, Platt map fit on the other folds' compounds) against the compound's labels",
    }
    drug_of = np.array([k.rsplit("|", 1)[0] for k in uniques])
    names, counts = np.unique(np.asarray(drugs).astype(str), return_counts=True)
    big = set(names[counts > MAX_DRUG_SIZE])
    whole = np.array([d not in big for d in drug_of], dtype=bool)  # held out whole: stands for a new compound
    cal = multi & whole  # the compound sets, as the profile sets, calibrated on compounds held out whole
    if not cal.any():
        cal = multi
    measured = grouped_coverage(Pc[cal], Yc[cal], None, fold_c[cal], levels)
    return ({"platt": fit_platt(zbar[multi], Yc[multi]), "thresholds": thresholds(Pc[cal], Yc[cal], None,
                                                                               levels).tolist(),
             "measured": measured, "gain": gain}, (Pc[whole], Yc[whole], None, fold_c[whole]))


def trust_of(bundle: Any) -> TrustModel | None:
    """The bundle's TrustModel, or None for bundles trained before sets existed (or without CV)."""
    return getattr(bundle, "trust", None)


__all__ = ["TrustModel", "fit_trust", "abstentions", "compound_units", "set_recall", "trust_of", "DEFAULT_LEVEL",
           "NO_CONFIDENT", "NO_NARROW", "UNLIKE", "CONTROL"]
