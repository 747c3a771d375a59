"""Which input features push a predicted MoA probability up or down: integrated gradients (Captum).

Attributions are computed in the RAW input space, so they name the user's own columns: each g-/c- feature,
and dose and time. A model opts in through the ``MoAModel`` capability (``supports_attributions``,
``attribution_inputs``, ``attribution_forward``): networks implement it through torch mirrors of their
fitted preprocessing (features/torch_transforms.py); kNN and the prior do not, and say so.

- Baseline: zero for every g-/c- feature (the features are z-scores against vehicle controls, so zero is "no
  response") and the average one-hot for dose and time (1/3 per time, 1/2 per dose). An attribution is then
  the feature's share of ``p(profile) − p(no response)``.
- Integrated gradients with ``n_steps`` Gauss–Legendre points along the straight path. Completeness: the
  attributions of one (profile, MoA) sum to p(profile) − p(baseline); the difference (Captum's
  convergence delta) is reported as ``completeness_error``. Rows whose error exceeds
  ``max(tolerance_abs, tolerance_rel · |p − p0|)`` are recomputed with 4× the steps (twice at most).
- Dose and time are reported as one feature each (``cp_time``, ``cp_dose``): the sum of their one-hot
  columns' attributions; their ``value`` is the profile's time (24/48/72) or dose (D1/D2).
- Blends: a model holding fitted ``members_`` and ``weights_`` (models/blend.py) that does not implement
  the capability itself is attributed as Σ wᵢ·fᵢ(x) over its differentiable members. Non-differentiable
  members (kNN, prior) cannot be attributed; their weighted part is left out, so the attributions sum to
  the change of the differentiable part, and ``covered_weight`` (the differentiable members' share of the
  weights) says how much of the blend is explained.
- Global view per MoA (``global_attributions``): over a random sample of training profiles labelled with
  the MoA, the MEAN ABSOLUTE attribution ranks features (a feature matters whichever way it pushes in a
  given profile; signed means cancel for features whose effect flips with dose or cell context), reported
  with the MEAN SIGNED attribution and the fraction of profiles agreeing with its sign (direction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data import schema
from ..data.dataset import control_mask
from ..features.torch_transforms import META_NAMES, N_META, raw_baseline
from ..runtime.threads import limit_threads

DEFAULT_STEPS = 64
TOLERANCE_ABS = 2e-3
TOLERANCE_REL = 0.02
_ROWS_PER_PASS = 4096  # rows per forward pass (profiles × steps)


class AttributionUnavailable(Exception):
    """The model cannot be attributed (not differentiable); the message says so in plain words."""


def attribution_function(model: Any) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """The differentiable raw → probabilities function of `model`, and what it covers."""
    if getattr(model, "supports_attributions", False):
        return model.attribution_forward, {"members": [model.name], "covered_weight": 1.0}
    members, weights = getattr(model, "members_", None), getattr(model, "weights_", None)
    if members is not None and weights is not None:
        members = list(members.values()) if isinstance(members, dict) else list(members)
        weights = np.asarray(list(weights.values()) if isinstance(weights, dict) else weights, dtype=np.float64)
        parts = [(m, float(w)) for m, w in zip(members, weights) if getattr(m, "supports_attributions", False)]
        if parts:
            total = float(np.abs(weights).sum()) or 1.0

            def forward(raw: torch.Tensor) -> torch.Tensor:
                return sum(w * m.attribution_forward(raw) for m, w in parts)

            return forward, {"members": [m.name for m, _ in parts],
                             "covered_weight": round(sum(abs(w) for _, w in parts) / total, 4),
                             "left_out": [m.name for m in members if not getattr(m, "supports_attributions", False)]}
    message = model._no_attributions() if hasattr(model, "_no_attributions") else (
        f"model {getattr(model, 'name', type(model).__name__)!r} cannot explain its predictions by attributions")
    raise AttributionUnavailable(message)


@lru_cache(maxsize=16)
def gauss_legendre(n_steps: int) -> tuple[list[float], list[float]]:
    """Step sizes and path points (alphas) of the `n_steps`-point Gauss-Legendre rule on [0, 1], as Captum
    computes them (``approximation_parameters("gausslegendre")``), once per `n_steps` and process."""
    with limit_threads(1):
        points, weights = np.polynomial.legendre.leggauss(int(n_steps))
    return (0.5 * weights).tolist(), (0.5 * (1 + points)).tolist()


def integrated_gradients(forward: Callable[[torch.Tensor], torch.Tensor], inputs: np.ndarray,
                         targets: Sequence[int], baseline: np.ndarray | None = None, *, n_steps: int = DEFAULT_STEPS,
                         refine: int = 2, progress: bool = False) -> dict[str, np.ndarray]:
    """Attributions (n, d) of rows `inputs` for output column targets[i] of row i, with the check values.

    Returns ``attributions``, ``probability`` (f(x)), ``baseline_probability`` (f(baseline)) and
    ``completeness_error`` (sum of attributions − (f(x) − f(baseline)))."""
    from captum.attr import IntegratedGradients

    x = torch.as_tensor(np.ascontiguousarray(inputs, dtype=np.float32))
    n, d = x.shape
    base = torch.as_tensor(raw_baseline(d - N_META) if baseline is None else np.asarray(baseline, np.float32))
    base = base.reshape(1, d).expand(n, d).contiguous()
    targets = [int(t) for t in targets]
    rows = torch.arange(n)
    with torch.no_grad():
        fx = forward(x)[rows, targets].double().numpy()
        fb = forward(base)[rows, targets].double().numpy()
    attr = np.zeros((n, d), dtype=np.float64)
    delta = np.zeros(n, dtype=np.float64)
    todo = np.arange(n)
    steps = int(n_steps)
    ig = IntegratedGradients(forward)
    bar = tqdm(total=n, desc="attributions", unit=" (profile, MoA)", disable=not progress, leave=False)
    for round_ in range(refine + 1):
        per_pass = max(1, _ROWS_PER_PASS // steps)
        nodes = gauss_legendre(steps)
        if round_:  # the rows whose completeness check failed, again with 4x the steps
            bar.total += len(todo)
            bar.set_description(f"attributions ({steps} steps)")
        for i in range(0, len(todo), per_pass):
            r = todo[i:i + per_pass]
            # Captum's attribute() would recompute the Gauss-Legendre nodes (an n x n eigenvalue problem) on
            # every call: 2.5 s per call for n = 1024 on a busy 2-core machine. Cached nodes, same integral.
            (a,) = ig._attribute((x[r],), (base[r],), target=[targets[j] for j in r], n_steps=steps,
                                 method="gausslegendre", step_sizes_and_alphas=nodes)
            attr[r] = a.detach().double().numpy()
            bar.update(len(r))
        delta[todo] = attr[todo].sum(axis=1) - (fx[todo] - fb[todo])
        tol = np.maximum(TOLERANCE_ABS, TOLERANCE_REL * np.abs(fx - fb))
        todo = np.flatnonzero(np.abs(delta) > tol)
        if not len(todo) or round_ == refine:
            break
        steps *= 4
    bar.close()
    return {"attributions": attr.astype(np.float32), "probability": fx, "baseline_probability": fb,
            "completeness_error": delta}


def _feature_view(attr: np.ndarray, raw: np.ndarray, names: Sequence[str], cp_time: Any,
                  cp_dose: Any) -> tuple[list[str], np.ndarray, list[Any]]:
    """Per-feature attributions with dose and time folded into one feature each."""
    n_feat = len(names) - N_META
    meta = attr[n_feat:]
    names_out = list(names[:n_feat]) + [schema.CP_TIME, schema.CP_DOSE]
    values = [round(float(v), 5) for v in raw[:n_feat]] + [cp_time, cp_dose]
    folded = np.concatenate([attr[:n_feat], [meta[:3].sum(), meta[3:].sum()]])
    return names_out, folded, values


def _block(name: str) -> str:
    if name.startswith("g-"):
        return "gene"
    if name.startswith("c-"):
        return "cell viability"
    return "treatment"


def _top(names: list[str], attr: np.ndarray, values: list[Any], k: int) -> list[dict[str, Any]]:
    order = np.argsort(-np.abs(attr), kind="stable")[:k]
    return [{"feature": names[j], "value": values[j], "attribution": round(float(attr[j]), 6),
             "block": _block(names[j])} for j in order]


def explain_predictions(model: Any, features: pd.DataFrame, target_names: Sequence[str], *,
                        proba: np.ndarray | None = None, moas: Sequence[str] | None = None, top_moas: int = 3,
                        top_k: int = 10, n_steps: int = DEFAULT_STEPS, progress: bool = False) -> dict[str, Any]:
    """Attributions for each profile and MoA: the MoAs named in `moas`, else each profile's `top_moas` most
    probable. Returns ``{"method": {...}, "profiles": [{"sig_id", "explanations": [...]}, ...]}`` with, per
    explanation, ``moa``, ``probability``, ``baseline_probability``, ``attribution_sum``,
    ``completeness_error``, ``features`` (the `top_k` largest |attribution|, signed) and the totals pushing up
    and down. Control profiles are predicted 0 and not attributed. Raises ``AttributionUnavailable``."""
    forward, covers = attribution_function(model)
    target_names = list(target_names)
    if moas is not None:
        unknown = [m for m in moas if m not in target_names]
        if unknown:
            from ..data.errors import DataError

            raise DataError(f"unknown MoA(s) {', '.join(map(repr, unknown[:5]))}; the bundle predicts "
                            f"{len(target_names)} scored MoAs such as {', '.join(target_names[:3])}.")
    if proba is None:
        proba = model.predict_proba(features)
    raw, names = (model.attribution_inputs(features) if getattr(model, "supports_attributions", False)
                  else _raw_for_blend(features))
    treated = ~control_mask(features)
    pairs: list[tuple[int, int]] = []
    for i in np.flatnonzero(treated):
        chosen = ([target_names.index(m) for m in moas] if moas is not None
                  else list(np.argsort(-proba[i], kind="stable")[:top_moas]))
        pairs += [(int(i), int(t)) for t in chosen]
    result = {"attributions": np.zeros((0, raw.shape[1]), np.float32), "probability": np.zeros(0),
              "baseline_probability": np.zeros(0), "completeness_error": np.zeros(0)}
    if pairs:
        rows = np.array([p[0] for p in pairs])
        result = integrated_gradients(forward, raw[rows], [p[1] for p in pairs], n_steps=n_steps, progress=progress)
    by_row: dict[int, list[dict[str, Any]]] = {}
    for j, (i, t) in enumerate(pairs):
        row = features.iloc[i]
        fnames, attr, values = _feature_view(result["attributions"][j], raw[i], names, int(row[schema.CP_TIME]),
                                             str(row[schema.CP_DOSE]))
        by_row.setdefault(i, []).append({
            "moa": target_names[t],
            "probability": round(float(proba[i, t]), 6),
            "model_probability": round(float(result["probability"][j]), 6),
            "baseline_probability": round(float(result["baseline_probability"][j]), 6),
            "attribution_sum": round(float(attr.sum()), 6),
            "completeness_error": round(float(result["completeness_error"][j]), 6),
            "pushing_up": round(float(attr[attr > 0].sum()), 6),
            "pushing_down": round(float(attr[attr < 0].sum()), 6),
            "features": _top(fnames, attr, values, top_k),
        })
    profiles = []
    for i, sig in enumerate(features.index):
        entry: dict[str, Any] = {"sig_id": str(sig)}
        if not treated[i]:
            entry["note"] = "control (vehicle) profile: no MoA is predicted, nothing to attribute"
        entry["explanations"] = by_row.get(i, [])
        profiles.append(entry)
    errors = np.abs(result["completeness_error"])
    consistency = float(np.abs(result["probability"] - np.array([proba[i, t] for i, t in pairs])).max()) \
        if pairs else 0.0
    method = {
        "method": "integrated gradients (Captum), Gauss-Legendre path integral",
        "n_steps": int(n_steps),
        "baseline": "g-/c- features 0 (no response vs controls); dose/time one-hot averaged (1/3, 1/2)",
        "space": "raw inputs: g-/c- z-scores as uploaded, cp_time and cp_dose (one-hot columns summed)",
        "completeness": "sum of attributions = probability - baseline_probability + completeness_error",
        "max_completeness_error": round(float(errors.max()) if len(errors) else 0.0, 6),
        "forward_consistency": round(consistency, 6),
        **covers,
    }
    return {"method": method, "profiles": profiles}


def _raw_for_blend(features: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    from ..features.torch_transforms import raw_inputs, raw_names

    return raw_inputs(features), raw_names()


def global_attributions(model: Any, features: pd.DataFrame, targets: pd.DataFrame, *,
                        moas: Sequence[str] | None = None, n_profiles: int = 32, top_k: int = 20,
                        n_steps: int = 32, seed: int = 0) -> dict[str, Any]:
    """Per MoA, the features that matter most across (a sample of) its positive training profiles.

    Returns ``{moa: {"n_profiles", "features": [{feature, mean_abs_attribution, mean_attribution,
    sign_agreement, block}], "mean_probability"}}``, features ranked by mean |attribution|."""
    forward, _ = attribution_function(model)
    names = list(schema.FEATURE_COLUMNS) + list(META_NAMES)
    rng = np.random.default_rng(seed)
    treated = ~control_mask(features)
    moas = list(targets.columns) if moas is None else list(moas)
    out: dict[str, Any] = {}
    jobs: list[tuple[str, np.ndarray]] = []
    for moa in moas:
        pos = np.flatnonzero(treated & (targets[moa].to_numpy() > 0))
        if len(pos) == 0:
            out[moa] = {"n_profiles": 0, "features": [], "mean_probability": None}
            continue
        jobs.append((moa, np.sort(rng.choice(pos, min(n_profiles, len(pos)), replace=False))))
    if not jobs:
        return out
    rows = np.concatenate([r for _, r in jobs])
    tcol = np.concatenate([[list(targets.columns).index(m)] * len(r) for m, r in jobs])
    raw = _raw_for_blend(features.iloc[rows])[0]
    res = integrated_gradients(forward, raw, tcol, n_steps=n_steps, refine=0)
    start = 0
    for moa, r in jobs:
        a = res["attributions"][start:start + len(r)].astype(np.float64)
        p = res["probability"][start:start + len(r)]
        start += len(r)
        folded = np.hstack([a[:, :-N_META], a[:, -N_META:-2].sum(1, keepdims=True), a[:, -2:].sum(1, keepdims=True)])
        fnames = names[:-N_META] + [schema.CP_TIME, schema.CP_DOSE]
        mean_abs, mean = np.abs(folded).mean(0), folded.mean(0)
        agree = (np.sign(folded) == np.sign(mean)[None, :]).mean(0)
        order = np.argsort(-mean_abs, kind="stable")[:top_k]
        out[moa] = {"n_profiles": int(len(r)), "mean_probability": round(float(p.mean()), 6),
                    "features": [{"feature": fnames[j], "mean_abs_attribution": round(float(mean_abs[j]), 6),
                                  "mean_attribution": round(float(mean[j]), 6),
                                  "sign_agreement": round(float(agree[j]), 3), "block": _block(fnames[j])}
                                 for j in order]}
    return out
