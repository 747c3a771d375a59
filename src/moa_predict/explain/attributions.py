"""Which input features push a predicted MoA probability up or down: integrated gradients (Captum).

Attributions name the user's own columns (each g-/c- feature). A model opts in through the ``MoAModel``
capability (``supports_attributions``, ``attribution_inputs``, ``attribution_forward`` and, for networks,
``attribution_split``): networks implement it through torch mirrors of their fitted preprocessing
(features/torch_transforms.py); kNN and the prior do not, and say so.

- Baseline, per profile: every g-/c- feature 0 (the features are z-scores against vehicle controls, so zero
  is "no response") at the profile's OWN dose and time (``no_response_baseline``). An attribution is the
  feature's share of ``p(profile) − p(no response at this dose and time)``.
- Dose and time are not attributed (they do not move along the path). Their effect is measured on inputs the
  model knows, in ``dose_time``: the probability with the profile's features at each real time (24/48/72 h)
  and dose (D1/D2), and ``effect`` = p − the mean over the levels. (An "averaged" one-hot baseline, 1/3 per
  time and 1/2 per dose, is an input no training profile had; it made ``cp_time`` rank first for some MoAs.)
- The path: a straight line in the model's per-column RankGauss'd space (``attribution_split``'s
  ``columnwise``), i.e. a monotone path in each raw column. RankGauss JUMPS where a column's training values
  tie at its minimum or maximum (data clipped at ±10: the value AT the floor maps to −5.2, values just above it
  to about −2.5); a straight raw-space path ending on such a value integrated the gradient up to the jump and
  missed the jump, so the attributions did not add up to the prediction (the "⚠ off" calls). In the
  columnwise space the rest of the model (PCA, network, sigmoid, blend, calibration) is continuous.
- Integrated gradients with ``n_steps`` Gauss–Legendre points. Completeness: the attributions of one
  (profile, MoA) sum to p(profile) − p(baseline); the difference is ``completeness_error``; it passes when
  ``|error| ≤ max(TOLERANCE_ABS, TOLERANCE_REL · |p − p0|)``. Rows that fail are recomputed with 4× the steps
  (twice at most); a row still failing is marked ``completeness_ok: false`` with a note saying why.
- Blends: ``BlendModel`` implements the capability itself (stack included). A duck-typed model holding
  ``members_`` and ``weights_`` is attributed as Σ wᵢ·fᵢ(x) over its differentiable members; kNN and prior
  members cannot be attributed, their weighted part is left out, and ``covered_weight`` says how much of the
  blend is explained.
- Global view per MoA (``global_attributions``): over a random sample of training profiles labelled with
  the MoA, the MEAN ABSOLUTE attribution ranks features (a feature matters whichever way it pushes in a
  given profile; signed means cancel for features whose effect flips with dose or cell context), reported
  with the MEAN SIGNED attribution and the fraction of profiles agreeing with its sign (direction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.profiles import schema
from ..data.profiles.dataset import control_mask
from ..data.identities import feature_fields
from ..features.torch_transforms import (N_META, is_generic, no_response_baseline, raw_inputs, raw_names,
                                         shared_columnwise)
from ..runtime.threads import limit_threads, single_threaded

DEFAULT_STEPS = 64
TOLERANCE_ABS = 2e-3
TOLERANCE_REL = 0.02
"""Completeness passes when |Σ attributions − (p − p0)| ≤ max(TOLERANCE_ABS, TOLERANCE_REL · |p − p0|)."""
_ROWS_PER_PASS = 4096  # rows per forward pass (profiles × steps)
BASELINE = "every g-/c- feature 0 (no response vs vehicle controls) at the profile's own dose and time"
BASELINE_LAYOUT = ("every feature 0 (no response: the layout's features are read as normalised to its controls) at "
                   "the profile's own meta values")
META_HELD = "not attributed (the layout's meta inputs are held at the profile's own values along the path)"
DOSE_TIME = ("not attributed (held at the profile's own values along the path); 'dose_time' gives the probability "
             "with the profile's features at each real time and dose, and effect = p - mean over the levels")


class AttributionUnavailable(Exception):
    """The model cannot be attributed (not differentiable); the message says so in plain words."""


@dataclass(frozen=True)
class RawLayout:
    """The raw attribution layout of a model: feature names (then `n_meta` meta inputs), each feature's block."""

    names: list[str]
    n_features: int
    blocks: dict[str, str]
    generic: bool
    pre: Any = None

    @property
    def n_meta(self) -> int:
        return len(self.names) - self.n_features

    def inputs(self, X: pd.DataFrame, model: Any = None) -> np.ndarray:
        if self.generic:
            return raw_inputs(X, pre=self.pre)
        if model is not None and getattr(model, "supports_attributions", False):
            return model.attribution_inputs(X)[0]
        return raw_inputs(X)


def _layout_preprocessor(model: Any) -> Any:
    """The fitted preprocessor of a network (or of a blend's first used member) when it was fit on another layout
    than LISH-MoA, else None."""
    pre = getattr(model, "preprocessor_", None)
    if pre is None and getattr(model, "members_", None) is not None and getattr(model, "weights_", None) is not None:
        members = list(model.members_.values()) if isinstance(model.members_, dict) else list(model.members_)
        weights = list(model.weights_.values()) if isinstance(model.weights_, dict) else list(model.weights_)
        pre = next((getattr(m, "preprocessor_", None) for m, w in zip(members, weights)
                    if w > 0 and getattr(m, "supports_attributions", False)), None)
    return pre if is_generic(pre) else None


def raw_layout(model: Any) -> RawLayout:
    """What attributions are computed on: LISH-MoA's 872 g-/c- columns + one-hot dose/time, or another layout's
    feature columns (bundle order) + its meta inputs (``features.torch_transforms``)."""
    pre = _layout_preprocessor(model)
    if pre is None:
        names = raw_names()
        return RawLayout(names, len(names) - N_META, {}, False)
    blocks = {c: b for b, (start, stop, _) in pre.blocks_.items() for c in pre.columns_[int(start):int(stop)]}
    return RawLayout(raw_names(pre=pre), len(pre.columns_), blocks, True, pre)


@dataclass(frozen=True)
class AttributionPath:
    """What integrated gradients walks: ``head(columnwise(raw))`` is the model's probabilities; the path is a
    straight line in the columnwise space (None: the raw space itself)."""

    columnwise: Callable[[torch.Tensor], torch.Tensor] | None
    head: Callable[[torch.Tensor], torch.Tensor]
    covers: dict[str, Any] = field(default_factory=dict)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.head(raw if self.columnwise is None else self.columnwise(raw))

    @property
    def space(self) -> str:
        return ("straight in the model's RankGauss'd space (each column's own monotone transform), so a monotone "
                "path in each raw column" if self.columnwise is not None else "straight in the raw input space")


def _split(model: Any) -> tuple[Callable | None, Callable]:
    split = getattr(model, "attribution_split", None)
    return split() if split is not None else (None, model.attribution_forward)


def attribution_path(model: Any) -> AttributionPath:
    """The differentiable raw → probabilities function of `model` as a path, and what it covers."""
    if getattr(model, "supports_attributions", False):
        columnwise, head = _split(model)
        return AttributionPath(columnwise, head, {"members": [model.name], "covered_weight": 1.0})
    members, weights = getattr(model, "members_", None), getattr(model, "weights_", None)
    if members is not None and weights is not None:
        members = list(members.values()) if isinstance(members, dict) else list(members)
        weights = np.asarray(list(weights.values()) if isinstance(weights, dict) else weights, dtype=np.float64)
        parts = [(m, float(w)) for m, w in zip(members, weights) if getattr(m, "supports_attributions", False)]
        if parts:
            total = float(np.abs(weights).sum()) or 1.0
            splits = [_split(m) for m, _ in parts]
            columnwise = shared_columnwise([c for c, _ in splits])
            fs = [h for _, h in splits] if columnwise is not None else [m.attribution_forward for m, _ in parts]
            ws = [w for _, w in parts]

            def head(u: torch.Tensor) -> torch.Tensor:
                return sum(w * f(u) for f, w in zip(fs, ws))

            return AttributionPath(columnwise, head, {
                "members": [m.name for m, _ in parts],
                "covered_weight": round(sum(abs(w) for _, w in parts) / total, 4),
                "left_out": [m.name for m in members if not getattr(m, "supports_attributions", False)]})
    message = model._no_attributions() if hasattr(model, "_no_attributions") else (
        f"model {getattr(model, 'name', type(model).__name__)!r} cannot explain its predictions by attributions")
    raise AttributionUnavailable(message)


def attribution_function(model: Any) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """The differentiable raw → probabilities function of `model`, and what it covers."""
    path = attribution_path(model)
    return path.forward, path.covers


def completeness_tolerance(gap: np.ndarray) -> np.ndarray:
    """The largest |completeness error| that passes, for changes `gap` = p − p0."""
    return np.maximum(TOLERANCE_ABS, TOLERANCE_REL * np.abs(np.asarray(gap, dtype=np.float64)))


@lru_cache(maxsize=16)
def gauss_legendre(n_steps: int) -> tuple[list[float], list[float]]:
    """Step sizes and path points (alphas) of the `n_steps`-point Gauss-Legendre rule on [0, 1], as Captum
    computes them (``approximation_parameters("gausslegendre")``), once per `n_steps` and process."""
    with limit_threads(1):
        points, weights = np.polynomial.legendre.leggauss(int(n_steps))
    return (0.5 * weights).tolist(), (0.5 * (1 + points)).tolist()


@single_threaded
def integrated_gradients(forward: Callable[[torch.Tensor], torch.Tensor] | AttributionPath, inputs: np.ndarray,
                         targets: Sequence[int], baseline: np.ndarray | None = None, *, n_steps: int = DEFAULT_STEPS,
                         refine: int = 2, progress: bool = False, n_meta: int = N_META) -> dict[str, np.ndarray]:
    """Attributions (n, d) of raw rows `inputs` for output column targets[i] of row i, with the check values.

    `forward`: an ``AttributionPath`` (the path is straight in its columnwise space) or a plain function of the
    raw layout (straight raw path). `baseline`: one row or one per row; None = ``no_response_baseline`` (the
    last `n_meta` columns are meta inputs, held at the row's own values).
    Returns ``attributions``, ``probability`` (f(x)), ``baseline_probability`` (f(baseline)),
    ``completeness_error`` (sum of attributions − (f(x) − f(baseline))), ``tolerance`` and ``steps`` (the
    Gauss-Legendre points each row was last integrated with)."""
    from captum.attr import IntegratedGradients

    path = forward if isinstance(forward, AttributionPath) else AttributionPath(None, forward)
    x = torch.as_tensor(np.ascontiguousarray(inputs, dtype=np.float32))
    n, d = x.shape
    base = (no_response_baseline(inputs, d - n_meta, n_meta) if baseline is None
            else np.asarray(baseline, np.float32))
    base = torch.as_tensor(np.array(np.broadcast_to(base.reshape(-1, d), (n, d))))
    with torch.no_grad():
        if path.columnwise is not None:  # the path's end points in the columnwise space
            x, base = path.columnwise(x).contiguous(), path.columnwise(base).contiguous()
    targets = [int(t) for t in targets]
    rows = torch.arange(n)
    with torch.no_grad():
        fx = path.head(x)[rows, targets].double().numpy()
        fb = path.head(base)[rows, targets].double().numpy()
    attr = np.zeros((n, d), dtype=np.float64)
    delta = np.zeros(n, dtype=np.float64)
    used = np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    steps = int(n_steps)
    ig = IntegratedGradients(path.head)
    tol = completeness_tolerance(fx - fb)
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
        used[todo] = steps
        delta[todo] = attr[todo].sum(axis=1) - (fx[todo] - fb[todo])
        todo = todo[np.abs(delta[todo]) > tol[todo]]
        if not len(todo) or round_ == refine:
            break
        steps *= 4
    bar.close()
    return {"attributions": attr.astype(np.float32), "probability": fx, "baseline_probability": fb,
            "completeness_error": delta, "tolerance": tol, "steps": used}


@single_threaded
def dose_time_effects(forward: Callable[[torch.Tensor], torch.Tensor], inputs: np.ndarray,
                      targets: Sequence[int]) -> np.ndarray:
    """(n, times, doses) probabilities of output targets[i] with row i's features at every real dose and time.

    Dose and time are measured on inputs the model was trained on (one-hot), never on fractions of them."""
    raw = np.asarray(inputs, dtype=np.float32)
    n, d = raw.shape
    n_times, n_doses = len(schema.CP_TIMES), len(schema.CP_DOSES)
    grid = np.repeat(raw, n_times * n_doses, axis=0).reshape(n, n_times, n_doses, d)
    grid[..., d - N_META:] = 0.0
    for t in range(n_times):
        grid[:, t, :, d - N_META + t] = 1.0
    for k in range(n_doses):
        grid[:, :, k, d - N_META + n_times + k] = 1.0
    flat = torch.as_tensor(grid.reshape(-1, d))
    cols = np.repeat(np.asarray(targets, dtype=np.int64), n_times * n_doses)
    out = np.empty(len(flat), dtype=np.float64)
    with torch.no_grad():
        for i in range(0, len(flat), _ROWS_PER_PASS):
            p = forward(flat[i:i + _ROWS_PER_PASS])
            out[i:i + _ROWS_PER_PASS] = p[torch.arange(len(p)), torch.as_tensor(cols[i:i + _ROWS_PER_PASS])].numpy()
    return out.reshape(n, n_times, n_doses)


def _dose_time_json(probs: np.ndarray, cp_time: int, cp_dose: str) -> dict[str, Any]:
    """The dose/time part of one explanation: p at each level (the other factor at the profile's own value)."""
    t, k = list(schema.CP_TIMES).index(int(cp_time)), list(schema.CP_DOSES).index(str(cp_dose))
    at_time, at_dose = probs[:, k], probs[t, :]
    return {schema.CP_TIME: {"value": int(cp_time), "effect": round(float(probs[t, k] - at_time.mean()), 6),
                             "probability_at": {str(v): round(float(q), 6) for v, q in zip(schema.CP_TIMES, at_time)}},
            schema.CP_DOSE: {"value": str(cp_dose), "effect": round(float(probs[t, k] - at_dose.mean()), 6),
                             "probability_at": {str(v): round(float(q), 6) for v, q in zip(schema.CP_DOSES, at_dose)}}}


def _block(name: str, blocks: dict[str, str] | None = None) -> str:
    if blocks:
        return blocks.get(name, "meta")
    if name.startswith("g-"):
        return "gene"
    if name.startswith("c-"):
        return "cell viability"
    return "treatment"


def _top(names: list[str], attr: np.ndarray, values: list[Any], k: int,
         blocks: dict[str, str] | None = None, genes: dict[str, int | None] | None = None) -> list[dict[str, Any]]:
    order = np.argsort(-np.abs(attr), kind="stable")[:k]
    return [{**feature_fields(names[j], genes), "value": values[j], "attribution": round(float(attr[j]), 6),
             "block": _block(names[j], blocks)} for j in order]


def _completeness_note(ok: bool, constant: bool, steps: int) -> str | None:
    if constant:
        return ("this MoA's probability does not depend on the profile (the model predicts it at its training "
                "frequency): nothing to attribute")
    if ok:
        return None
    return (f"the attributions still miss the prediction by more than the tolerance after {steps} integration "
            "steps: the model changes too abruptly along the path; read the bars as approximate")


@single_threaded
def explain_predictions(model: Any, features: pd.DataFrame, target_names: Sequence[str], *,
                        proba: np.ndarray | None = None, moas: Sequence[str] | None = None, top_moas: int = 3,
                        top_k: int = 10, n_steps: int = DEFAULT_STEPS, progress: bool = False,
                        genes: dict[str, int | None] | None = None) -> dict[str, Any]:
    """Attributions for each profile and MoA: the MoAs named in `moas`, else each profile's `top_moas` most
    probable. Returns ``{"method": {...}, "profiles": [{"sig_id", "explanations": [...]}, ...]}`` with, per
    explanation, ``moa``, ``probability``, ``baseline_probability`` (no response at the profile's dose and
    time), ``attribution_sum``, ``completeness_error``, ``completeness_ok`` (and ``completeness_note`` when
    there is something to say), ``features`` (the `top_k` g-/c- features with the largest |attribution|,
    signed; each named by ``feature`` (the column), ``label`` and ``info``: ``data.identities.feature_fields``),
    the totals pushing up and down, and ``dose_time`` (``dose_time_effects``). Control profiles are predicted 0
    and not attributed. `genes`: the layout's gene columns (column -> Entrez id, ``gene_blocks.layout_genes``),
    so attributions name them by symbol. Raises ``AttributionUnavailable``."""
    path = attribution_path(model)
    target_names = list(target_names)
    if moas is not None:
        unknown = [m for m in moas if m not in target_names]
        if unknown:
            from ..data.errors import DataError

            raise DataError(f"unknown MoA(s) {', '.join(map(repr, unknown[:5]))}; the bundle predicts "
                            f"{len(target_names)} scored MoAs such as {', '.join(target_names[:3])}.")
    if proba is None:
        proba = model.predict_proba(features)
    layout = raw_layout(model)
    raw, names = layout.inputs(features, model), layout.names
    n_feat, n_meta = layout.n_features, layout.n_meta
    genes = dict(genes or {})
    treated = ~control_mask(features)
    pairs: list[tuple[int, int]] = []
    for i in np.flatnonzero(treated):
        chosen = ([target_names.index(m) for m in moas] if moas is not None
                  else list(np.argsort(-proba[i], kind="stable")[:top_moas]))
        pairs += [(int(i), int(t)) for t in chosen]
    result = {"attributions": np.zeros((0, raw.shape[1]), np.float32), "probability": np.zeros(0),
              "baseline_probability": np.zeros(0), "completeness_error": np.zeros(0), "tolerance": np.zeros(0),
              "steps": np.zeros(0, np.int64)}
    effects = np.zeros((0, len(schema.CP_TIMES), len(schema.CP_DOSES)))
    if pairs:
        rows = np.array([p[0] for p in pairs])
        result = integrated_gradients(path, raw[rows], [p[1] for p in pairs], n_steps=n_steps,
                                      progress=progress, n_meta=n_meta)
        if not layout.generic:
            effects = dose_time_effects(path.forward, raw[rows], [p[1] for p in pairs])
    by_row: dict[int, list[dict[str, Any]]] = {}
    for j, (i, t) in enumerate(pairs):
        row = features.iloc[i]
        attr = result["attributions"][j, :n_feat].astype(np.float64)
        values = [round(float(v), 5) for v in raw[i, :n_feat]]
        err = float(result["completeness_error"][j])
        ok = bool(abs(err) <= result["tolerance"][j])
        gap = float(result["probability"][j] - result["baseline_probability"][j])
        constant = gap == 0.0 and not np.any(attr)
        expl = {
            "moa": target_names[t],
            "probability": round(float(proba[i, t]), 6),
            "model_probability": round(float(result["probability"][j]), 6),
            "baseline_probability": round(float(result["baseline_probability"][j]), 6),
            "attribution_sum": round(float(attr.sum()), 6),
            "completeness_error": round(err, 6),
            "completeness_ok": ok,
            "pushing_up": round(float(attr[attr > 0].sum()), 6),
            "pushing_down": round(float(attr[attr < 0].sum()), 6),
            "features": _top(list(names[:n_feat]), attr, values, top_k, layout.blocks, genes),
            "dose_time": (None if layout.generic else
                          _dose_time_json(effects[j], int(row[schema.CP_TIME]), str(row[schema.CP_DOSE]))),
        }
        note = _completeness_note(ok, constant, int(result["steps"][j]))
        if note:
            expl["completeness_note"] = note
        by_row.setdefault(i, []).append(expl)
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
        "max_steps": int(result["steps"].max()) if len(result["steps"]) else int(n_steps),
        "baseline": BASELINE_LAYOUT if layout.generic else BASELINE,
        "path": path.space,
        "space": ("attributions per raw input column: the layout's feature columns as read (after its plate "
                  "normalisation, when it has one)" if layout.generic
                  else "attributions per raw input column: the g-/c- z-scores as uploaded"),
        "dose_time": META_HELD if layout.generic else DOSE_TIME,
        **({"meta_inputs": names[n_feat:]} if layout.generic else {}),
        "completeness": "sum of attributions = probability - baseline_probability + completeness_error",
        "tolerance": {"abs": TOLERANCE_ABS, "rel": TOLERANCE_REL,
                      "rule": "passes when |completeness_error| <= max(abs, rel * |probability - baseline|)"},
        "max_completeness_error": round(float(errors.max()) if len(errors) else 0.0, 6),
        "n_failing": int((errors > result["tolerance"]).sum()),
        "forward_consistency": round(consistency, 6),
        **path.covers,
    }
    return {"method": method, "profiles": profiles}


def global_attributions(model: Any, features: pd.DataFrame, targets: pd.DataFrame, *,
                        moas: Sequence[str] | None = None, n_profiles: int = 32, top_k: int = 20,
                        n_steps: int = 32, seed: int = 0, genes: dict[str, int | None] | None = None
                        ) -> dict[str, Any]:
    """Per MoA, the features that matter most across (a sample of) its positive training profiles (`genes`: as
    ``explain_predictions``).

    Returns ``{moa: {"n_profiles", "features": [{feature, label, info, mean_abs_attribution, mean_attribution,
    sign_agreement, block}], "mean_probability", "dose_time": {cp_time, cp_dose: mean |effect|}}}``, features
    ranked by mean |attribution|."""
    path = attribution_path(model)
    layout = raw_layout(model)
    names = list(layout.names[:layout.n_features])
    n_feat = len(names)
    genes = dict(genes or {})
    rng = np.random.default_rng(seed)
    treated = ~control_mask(features)
    moas = list(targets.columns) if moas is None else list(moas)
    out: dict[str, Any] = {}
    jobs: list[tuple[str, np.ndarray]] = []
    for moa in moas:
        pos = np.flatnonzero(treated & (targets[moa].to_numpy() > 0))
        if len(pos) == 0:
            out[moa] = {"n_profiles": 0, "features": [], "mean_probability": None, "dose_time": None}
            continue
        jobs.append((moa, np.sort(rng.choice(pos, min(n_profiles, len(pos)), replace=False))))
    if not jobs:
        return out
    rows = np.concatenate([r for _, r in jobs])
    tcol = np.concatenate([[list(targets.columns).index(m)] * len(r) for m, r in jobs])
    frame = features.iloc[rows]
    raw = layout.inputs(frame, model)
    res = integrated_gradients(path, raw, tcol, n_steps=n_steps, refine=0, n_meta=layout.n_meta)
    effects = None if layout.generic else dose_time_effects(path.forward, raw, tcol)
    start = 0
    for moa, r in jobs:
        a = res["attributions"][start:start + len(r), :n_feat].astype(np.float64)
        p = res["probability"][start:start + len(r)]
        dt = [] if effects is None else [
            _dose_time_json(e, int(ti), str(do)) for e, ti, do in
            zip(effects[start:start + len(r)], frame[schema.CP_TIME].iloc[start:start + len(r)],
                frame[schema.CP_DOSE].iloc[start:start + len(r)])]
        start += len(r)
        mean_abs, mean = np.abs(a).mean(0), a.mean(0)
        agree = (np.sign(a) == np.sign(mean)[None, :]).mean(0)
        order = np.argsort(-mean_abs, kind="stable")[:top_k]
        out[moa] = {"n_profiles": int(len(r)), "mean_probability": round(float(p.mean()), 6),
                    "features": [{**feature_fields(names[j], genes), "mean_abs_attribution": round(float(mean_abs[j]), 6),
                                  "mean_attribution": round(float(mean[j]), 6),
                                  "sign_agreement": round(float(agree[j]), 3),
                                  "block": _block(names[j], layout.blocks)}
                                 for j in order],
                    "dose_time": None if not dt else {f: round(float(np.mean([abs(d[f]["effect"]) for d in dt])), 6)
                                                      for f in (schema.CP_TIME, schema.CP_DOSE)}}
    return out
