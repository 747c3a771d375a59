"""Explanations in the web app: attributions, similar reference profiles, OOD flags and compound calls.

Everything here calls the explanations library (``moa_predict.explain``); this module only decides what is
computed when, caches it, and shapes it for the pages:

- ``POST /api/explain`` and ``GET /api/results/{id}/explain`` answer ``explain_upload``'s dict
  (:meth:`Explainer.explain`, :meth:`Explainer.explain_stored`), for the MoAs or, with ``label_set``, for one of
  the bundle's label sets (the protein targets: :meth:`Explainer.model_of`, as ``moa explain --label-set``).
- The results page computes, for the profiles of the page being shown only, the OOD details, the similar
  reference profiles and the enriched MoAs (:meth:`Explainer.reference_rows`: one batched search); the
  attribution charts are fetched by ``app.js`` from ``GET /api/results/{id}/explain?sig_ids=...`` when a
  profile scrolls into view, so the page itself never waits for integrated gradients.
- The summary's OOD count (:meth:`Explainer.ood_mask`) and the compound page (:meth:`Explainer.compounds`)
  are computed once per stored result, on first use.

Small interactive computations run with ONE torch thread and one BLAS thread
(:func:`moa_predict.runtime.threads.limit_threads`): on a busy 2-core machine, torch's 2-thread OpenMP pool
made a 64-step forward pass of a small MLP 140x slower (0.2 s instead of 1.4 ms).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...data.errors import DataError
from ...bundle.predictor import ood_table
from ...runtime.threads import limit_threads
from ..core.options import MOA_LABEL_SET, ExplainOptions
from ..core.settings import ExplainSettings
from ..core.store import Prediction

# ------------------------------------------------------------------------------------------------
# The explainer of one bundle
# ------------------------------------------------------------------------------------------------


class Explainer:
    """Explanations for the web app's bundle: cached, computed only for what is shown or asked for."""

    def __init__(self, bundle: Any, settings: ExplainSettings, confident: float = 0.0) -> None:
        self.bundle = bundle
        self.settings = settings
        self.confident = confident
        """Compound agreement counts a profile only when the MoA's probability there is at least this."""
        self.targets = list(bundle.target_names)
        self._cache: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._attribution_messages: dict[str | None, str | None] = {}

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

    @property
    def attributions_message(self) -> str | None:
        """None when the model can be attributed, else the plain sentence saying why not."""
        return self.label_set_attributions_message(None)

    def label_set_attributions_message(self, label_set: str | None) -> str | None:
        """:attr:`attributions_message` of the model of `label_set` (None: the MoAs'), e.g. the target model's."""
        if label_set in self._attribution_messages:
            return self._attribution_messages[label_set]
        from ...explain.attributions import AttributionUnavailable, attribution_function

        try:
            attribution_function(self.model_of(label_set).model)
            message = None
        except AttributionUnavailable as exc:
            message = str(exc)
        self._attribution_messages[label_set] = message
        return message

    def model_of(self, label_set: str | None) -> Any:
        """The bundle explained for `label_set`: this one for the MoAs (None), else its label set's
        (``Bundle.label_set``, as ``moa explain --label-set`` does); a DataError when it has none."""
        return self.bundle if label_set is None else self.bundle.label_set(label_set)

    # -- the API ------------------------------------------------------------------------------------------
    def explain(self, features: pd.DataFrame, options: ExplainOptions) -> dict[str, Any]:
        """``explain_upload`` on validated features (POST /api/explain), for the MoAs or the label set the
        options name (``label_set``: the target model's calls explained in genes)."""
        from ...bundle import Predictor
        from ...explain.report import explain_upload, select_profiles

        bundle = self.model_of(options.label_set)
        features = select_profiles(features, options.sig_ids)
        with limit_threads(1):  # the answer explained is the one every shell gives: the Predictor's
            proba = Predictor(bundle, ood=False).predict(features).proba
            report = explain_upload(bundle, features, moas=options.moas, top_moas=options.top_moas,
                                    top_k=options.top_k, neighbours=options.neighbours,
                                    max_attributed=options.max_attributed, proba=proba)
        return {"label_set": options.label_set or MOA_LABEL_SET, **report}

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
            while len(self._cache) > self.settings.cache_items:
                self._cache.popitem(last=False)
        return result

    # -- the results page -----------------------------------------------------------------------------------
    def reference_rows(self, pred: Prediction, rows: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Per row position: ``ood`` (flag, reasons, distance ...), ``neighbours`` and ``enrichment``; one
        batched search for the rows not seen before, kept with the result. {} without a reference index."""
        index = self.index
        if index is None or pred.features is None:
            return {}
        from ...reference.ood import ood_scores

        with pred.lock:
            cache = pred.derived.setdefault("reference_rows", {})
            todo = [int(r) for r in rows if int(r) not in cache]
        if todo:
            X = pred.features.iloc[todo]
            with limit_threads(1):
                found = index.neighbours(X, k=self.settings.neighbours.default)
                oods = ood_scores(index, X, self.bundle.simulated)
            with pred.lock:
                for r, f, o in zip(todo, found, oods):
                    cache[r] = {"ood": o, "neighbours": f["neighbours"], "enrichment": f["enrichment"][:self.settings.page_enriched]}
        return {int(r): cache[int(r)] for r in rows}

    def ood_table(self, pred: Prediction) -> pd.DataFrame | None:
        """``ood`` / ``ood_reason`` of every profile of a stored result (computed once, positional index), or None
        without an index."""
        index = self.index
        if index is None or pred.features is None:
            return None
        return pred.derive("ood_table", lambda: ood_table(self.bundle, pred.features))  # the Predictor's flags

    def ood_mask(self, pred: Prediction) -> np.ndarray | None:
        """The OOD flag of every profile of a stored result (computed once), or None without an index."""
        table = self.ood_table(pred)
        return None if table is None else table["ood"].to_numpy(dtype=bool)

    def compounds(self, pred: Prediction) -> tuple[str | None, pd.DataFrame | None]:
        """(compound column, compound_calls DataFrame) of a stored result, computed once; (None, None) when the
        upload has no drug_id / compound / compound_id column."""
        return pred.derive("compounds", lambda: self._compounds(pred))

    def _compounds(self, pred: Prediction) -> tuple[str | None, pd.DataFrame | None]:
        from ...data.profiles.dataset import find_compound_column
        from ...explain.compounds import compound_calls

        group = self.bundle.layout.group
        column = None
        if pred.features is not None:  # the layout's compound (group) column, else a known compound column
            column = group if group in pred.features.columns else find_compound_column(pred.features)
        calls = None
        if column is not None:
            calls = compound_calls(pred.features, pred.proba, self.targets, column=column,
                                   top_k=self.settings.compound_top_k, n_moas=self.settings.compound_moas,
                                   min_probability=self.confident)
        return column, calls
