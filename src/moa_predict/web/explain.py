"""Explanations in the web app: attributions, similar reference profiles, OOD flags and compound calls.

Everything here calls the explanations library (``moa_predict.explain``); this module only decides what is
computed when, caches it, and shapes it for the pages:

- ``POST /api/explain`` and ``GET /api/results/{id}/explain`` answer ``explain_upload``'s dict
  (:meth:`Explainer.explain`, :meth:`Explainer.explain_stored`).
- The results page computes, for the profiles of the page being shown only, the OOD details, the similar
  reference profiles and the enriched MoAs (:meth:`Explainer.reference_rows`: one batched search); the
  attribution charts are fetched by ``app.js`` from ``GET /api/results/{id}/explain?sig_ids=...`` when a
  profile scrolls into view, so the page itself never waits for integrated gradients.
- The summary's OOD count (:meth:`Explainer.ood_mask`) and the compound page (:meth:`Explainer.compounds`)
  are computed once per stored result, on first use.

Small interactive computations run with ONE torch thread and one BLAS thread (:func:`few_threads`): on a
busy 2-core machine, torch's 2-thread OpenMP pool made a 64-step forward pass of a small MLP 140x slower
(0.2 s instead of 1.4 ms).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..data.errors import DataError
from .store import Prediction

TOP_MOAS = 3
"""MoAs explained per profile on the results page (its most probable ones)."""
TOP_K = 10
"""Features shown per attribution chart."""
NEIGHBOURS = 10
"""Similar reference profiles listed per profile."""
ENRICHED = 5
"""Enriched MoAs listed per profile on the page (the API gives up to 10)."""
COMPOUND_TOP_K = 5
"""A MoA 'agrees' in a profile when it is among that profile's 5 most probable MoAs."""
COMPOUND_MOAS = 10
"""MoAs kept per compound (the compound page shows the first N of them, the CSV all)."""
CACHE_ITEMS = 256


# ------------------------------------------------------------------------------------------------
# Threads
# ------------------------------------------------------------------------------------------------

_threads_lock = threading.Lock()
_threads_depth = 0
_threads_saved: tuple[int, Any] | None = None


@contextmanager
def few_threads() -> Iterator[None]:
    """One torch thread and one BLAS thread while any thread of this process is inside (reference-counted,
    so concurrent requests do not restore each other's settings half-way); restored when the last leaves.

    Explanations of a page are small (a few profiles x 64 path points): thread pools only add waiting, and
    on a shared 2-core machine a waiting OpenMP thread costs far more than it brings."""
    global _threads_depth, _threads_saved
    with _threads_lock:
        if _threads_depth == 0:
            import torch

            from ..explain.neighbours import one_blas_thread

            _threads_saved = (torch.get_num_threads(), one_blas_thread())
            torch.set_num_threads(1)
        _threads_depth += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_depth -= 1
            if _threads_depth == 0 and _threads_saved is not None:
                import torch

                n, limiter = _threads_saved
                torch.set_num_threads(n)
                limiter.restore_original_limits()
                _threads_saved = None


# ------------------------------------------------------------------------------------------------
# Options of the explain endpoints
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplainOptions:
    """What to explain. One parser for query parameters, JSON body keys and multipart form fields."""

    sig_ids: tuple[str, ...] | None = None
    moas: tuple[str, ...] | None = None
    top_moas: int = TOP_MOAS
    top_k: int = TOP_K
    neighbours: int = NEIGHBOURS
    max_attributed: int = 50

    LIMITS = {"top_moas": (1, 20), "top_k": (1, 100), "neighbours": (0, 50), "max_attributed": (0, 500)}
    HELP = {"sig_ids": "explain only these profiles (ids from the upload's sig_id column; repeat the parameter)",
            "moas": "attribute these MoAs (names as in GET /api/model) instead of each profile's top ones",
            "top_moas": "how many of each profile's most probable MoAs to attribute",
            "top_k": "features listed per attribution (largest |attribution| first)",
            "neighbours": "similar reference profiles per profile (0: none; OOD flags are always given)",
            "max_attributed": "attribute at most this many treated profiles (the first ones; attributions "
                              "cost ~10-40 ms per profile and MoA)"}

    @classmethod
    def parse(cls, values: Mapping[str, Any], targets: Sequence[str]) -> "ExplainOptions":
        """`values`: name -> value or list of values (``sig_id`` is accepted for ``sig_ids``, ``moa`` for
        ``moas``). Bad values raise DataError (answered 422 with the usual error JSON)."""
        numbers = {}
        for name, (low, high) in cls.LIMITS.items():
            raw = values.get(name)
            if isinstance(raw, (list, tuple)):
                raw = raw[-1] if raw else None
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                numbers[name] = getattr(cls, name)
                continue
            try:
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                number = int(str(raw).strip()) if isinstance(raw, str) else int(raw)
            except (TypeError, ValueError):
                number = None
            if number is None or not low <= number <= high:
                raise DataError(f"invalid request: {name} must be a whole number from {low} to {high} "
                                f"(got {str(raw)[:40]!r}).")
            numbers[name] = number
        sig_ids = _texts(values, "sig_ids", "sig_id")
        moas = _texts(values, "moas", "moa")
        if moas:
            known = set(targets)
            unknown = [m for m in moas if m not in known]
            if unknown:
                raise DataError(f"unknown MoA name(s): {', '.join(repr(m[:60]) for m in unknown[:5])}. The model "
                                f"predicts {len(targets)} MoAs, named as in GET /api/model (e.g. "
                                f"{', '.join(targets[:2])}).")
        return cls(sig_ids=tuple(sig_ids) or None, moas=tuple(moas) or None, **numbers)


def _texts(values: Mapping[str, Any], *names: str) -> list[str]:
    out: list[str] = []
    for name in names:
        raw = values.get(name)
        if raw is None:
            continue
        items = raw if isinstance(raw, (list, tuple)) else [raw]
        for item in items:
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise DataError(f"invalid request: {names[0]} must be a list of texts.")
            text = str(item).strip()
            if text:
                out.append(text)
    return list(dict.fromkeys(out))


# ------------------------------------------------------------------------------------------------
# The explainer of one bundle
# ------------------------------------------------------------------------------------------------


class Explainer:
    """Explanations for the web app's bundle: cached, computed only for what is shown or asked for."""

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        self.targets = list(bundle.target_names)
        self._cache: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def index(self) -> Any:
        """The bundle's reference index (similar profiles, OOD), or None for bundles trained without one."""
        return getattr(self.bundle, "reference", None)

    @property
    def reference_message(self) -> str | None:
        if self.index is not None:
            return None
        return ("this model bundle has no reference index, so there are no similar reference profiles and no "
                "out-of-distribution flags; retrain it with 'moa train' to get them.")

    @cached_property
    def attributions_message(self) -> str | None:
        """None when the model can be attributed, else the plain sentence saying why not."""
        from ..explain.attributions import AttributionUnavailable, attribution_function

        try:
            attribution_function(self.bundle.model)
        except AttributionUnavailable as exc:
            return str(exc)
        return None

    # -- the API ------------------------------------------------------------------------------------------
    def explain(self, features: pd.DataFrame, options: ExplainOptions) -> dict[str, Any]:
        """``explain_upload`` on validated features (POST /api/explain)."""
        from ..explain import explain_upload

        with few_threads():
            return explain_upload(self.bundle, features, sig_ids=options.sig_ids, moas=options.moas,
                                  top_moas=options.top_moas, top_k=options.top_k, neighbours=options.neighbours,
                                  max_attributed=options.max_attributed)

    def explain_stored(self, pred: Prediction, options: ExplainOptions) -> dict[str, Any]:
        """The same for a stored result's profiles; answers are cached (the page's charts ask per profile)."""
        key = (pred.id, options)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        if pred.features is None:
            raise DataError("this result keeps no profiles to explain; upload the file again.")
        result = {"result_id": pred.id, **self.explain(pred.features, options)}
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > CACHE_ITEMS:
                self._cache.popitem(last=False)
        return result

    # -- the results page -----------------------------------------------------------------------------------
    def reference_rows(self, pred: Prediction, rows: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Per row position: ``ood`` (flag, reasons, distance ...), ``neighbours`` and ``enrichment``; one
        batched search for the rows not seen before, kept with the result. {} without a reference index."""
        index = self.index
        if index is None or pred.features is None:
            return {}
        from ..explain.ood import ood_scores

        with pred.lock:
            cache = pred.derived.setdefault("reference_rows", {})
            todo = [int(r) for r in rows if int(r) not in cache]
        if todo:
            X = pred.features.iloc[todo]
            with few_threads():
                found = index.neighbours(X, k=NEIGHBOURS)
                oods = ood_scores(index, X)
            with pred.lock:
                for r, f, o in zip(todo, found, oods):
                    cache[r] = {"ood": o, "neighbours": f["neighbours"], "enrichment": f["enrichment"][:ENRICHED]}
        return {int(r): cache[int(r)] for r in rows}

    def ood_mask(self, pred: Prediction) -> np.ndarray | None:
        """The OOD flag of every profile of a stored result (computed once), or None without an index."""
        index = self.index
        if index is None or pred.features is None:
            return None
        with pred.lock:
            mask = pred.derived.get("ood_mask")
        if mask is None:
            from ..explain.ood import ood_mask

            mask = np.asarray(ood_mask(index, pred.features), dtype=bool)
            with pred.lock:
                pred.derived["ood_mask"] = mask
        return mask

    def compounds(self, pred: Prediction) -> tuple[str | None, pd.DataFrame | None]:
        """(compound column, compound_calls DataFrame) of a stored result, computed once; (None, None) when the
        upload has no drug_id / compound / compound_id column."""
        with pred.lock:
            hit = pred.derived.get("compounds")
        if hit is not None:
            return hit
        from ..explain.compounds import compound_calls, find_compound_column

        column = None if pred.features is None else find_compound_column(pred.features)
        calls = None
        if column is not None:
            calls = compound_calls(pred.features, pred.proba, self.targets, column=column, top_k=COMPOUND_TOP_K,
                                   n_moas=COMPOUND_MOAS)
        with pred.lock:
            pred.derived["compounds"] = (column, calls)
        return column, calls


# ------------------------------------------------------------------------------------------------
# The built-in panels of the results page
# ------------------------------------------------------------------------------------------------


def attribution_panel_batch(service: Any, pred: Prediction, rows: Sequence[int]) -> dict[int, Any]:
    """Per treated profile of the page: the MoAs whose attribution charts app.js will fetch and draw."""
    explainer: Explainer = service.explainer
    if explainer.attributions_message is not None:
        return {}
    from ..explain.attributions import TOLERANCE_ABS, TOLERANCE_REL
    from .views import _pct

    out = {}
    for r in rows:
        if pred.is_control[r]:
            continue
        moas = [{"name": service.targets[j], "p": float(pred.proba[r, j]), "pct": _pct(float(pred.proba[r, j]))}
                for j in pred.order[r, :TOP_MOAS].tolist()]
        out[int(r)] = {"moas": moas, "top_moas": TOP_MOAS, "top_k": TOP_K,
                       "tolerance_abs": TOLERANCE_ABS, "tolerance_rel": TOLERANCE_REL}
    return out


def neighbours_panel_batch(service: Any, pred: Prediction, rows: Sequence[int]) -> dict[int, Any]:
    """Per profile of the page: its similar reference profiles and the MoAs enriched among them."""
    found = service.explainer.reference_rows(pred, rows)
    return {r: f for r, f in found.items() if f.get("neighbours")}


def default_panels() -> tuple[list, list]:
    """(profile panels, page panels) that every app gets unless ``create_app(..., explanations=False)``."""
    from .app import ProfilePanel

    return ([ProfilePanel("attributions", "Why these MoAs: feature attributions", "_panel_attributions.html",
                          batch=attribution_panel_batch),
             ProfilePanel("neighbours", "Similar reference profiles", "_panel_neighbours.html",
                          batch=neighbours_panel_batch)], [])
