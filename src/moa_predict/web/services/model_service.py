"""What the web app does, without any HTTP: read + validate an upload (the CLI's own functions),
predict with the bundle loaded once, keep the result, and describe the model.

Every check on uploaded data is :func:`moa_predict.data.formats.chunks.load_upload` (``moa predict``'s CSV reader,
then :func:`moa_predict.data.load_features` for other files) / :func:`moa_predict.data.profiles.validate.validate_features`,
exactly as ``moa predict`` runs it.
"""

from __future__ import annotations

import io
import math
import os
import threading
import time
from functools import lru_cache
from collections.abc import Callable
from typing import IO, Any

import numpy as np
import pandas as pd

from ...bundle import Bundle, Predictor, Result
from ...data.profiles import schema
from ...data.formats.io import jsonable
from ...data.errors import DataError
from .card import NOT_PREDICTABLE, model_card, predictable_mask
from .explainer import Explainer
from ..core.options import ExplainOptions
from ..core.settings import WebSettings
from ..core.store import Prediction, ResultStore, open_store

EXAMPLE_ROWS = 40
EXAMPLE_SEED = 0
EXAMPLE_FILENAME = "moa_example_profiles.csv"
MAX_NAME = 120


def display_name(filename: str | None, default: str = "upload") -> str:
    """The base name of an uploaded file, for messages only (never used as a path)."""
    name = os.path.basename((filename or "").replace("\\", "/")).strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return (name or default)[:MAX_NAME]


class ModelService:
    """The bundle (loaded once, read-only) plus the result store; safe to call from many threads."""

    def __init__(self, bundle: Bundle, settings: WebSettings, *, store: ResultStore | None = None,
                 name: str | None = None, slots: threading.BoundedSemaphore | None = None) -> None:
        self.bundle = bundle
        self.name = name or bundle.model_name
        """This model's name on the server (``web.services.registry``): the ``model`` field of an upload, named by every
        answer and kept with every result."""
        self.layout = bundle.layout
        """The bundle's profile layout (``data.profiles.layout``; LISH-MoA's for LISH-MoA bundles)."""
        self.layout_name = None if self.layout.is_lish_moa else self.layout.name
        """The layout named in answers and pages: None for LISH-MoA (its columns are described as such)."""
        self.settings = settings
        self.targets: list[str] = list(bundle.target_names)
        self.target_index = {name: i for i, name in enumerate(self.targets)}
        self.store = store if store is not None else open_store(settings)
        self._slots = slots or threading.BoundedSemaphore(settings.max_parallel)
        self.card = model_card(bundle)
        self.predictable = predictable_mask(self.card)
        """Per target: False where the card marks the MoA not predictable from this training data."""
        self.predictable_known = self.card["not_predictable"] is not None
        """False for bundles that do not say (written before the per-MoA skill report): `predictable` is null."""
        self.started = time.time()
        self.explainer = Explainer(bundle, settings.explain, confident=settings.confident)
        self._gene_explainer: Explainer | None = None
        self.predictor = Predictor(bundle, ood=False, strict=False)
        """The one prediction path (``bundle.Predictor``): probabilities at upload; sets, calls and targets of a
        stored result on first use (OOD flags come from the explainer's cache)."""

    def identity(self) -> dict[str, Any]:
        """What this model is, in a few words (``GET /api/models``, the upload form's chooser, every answer)."""
        training = self.card.get("training_data") or {}
        return {"model": self.bundle.model_name, "layout": self.layout_name,
                "n_targets": len(self.targets), "simulated_training_data": self.card["simulated_training_data"],
                "trained_on": training.get("description") if isinstance(training, dict) else None,
                "answers": self.bundle.answers}

    # -- which model answers ----------------------------------------------------------
    def answering(self, features: pd.DataFrame) -> Bundle:
        """The bundle that answers these profiles: the full model, or its gene-only companion for profiles
        without a cell-viability block (CMap files)."""
        return self.bundle.for_features(features)

    def explainer_for(self, features: pd.DataFrame) -> Explainer:
        """The explainer of the model that answered these profiles (built on first use for the gene-only one)."""
        answer = self.answering(features)
        if answer is self.bundle:
            return self.explainer
        if self._gene_explainer is None:
            self._gene_explainer = Explainer(answer, self.settings.explain, confident=self.settings.confident)
        return self._gene_explainer

    # -- reading: the one validation path of every upload (pages, /api/predict, /api/explain) -------------
    def read_file(self, handle: IO[bytes], filename: str | None) -> tuple[pd.DataFrame, str]:
        """Read and validate an uploaded CSV/Parquet file object (a spooled temporary file): (features, name)."""
        name = display_name(filename)
        return self.bundle.read_profiles(handle, name=name, max_bytes=self.settings.max_upload_bytes), name

    def read_rows(self, rows: Any, source: str = "request body") -> pd.DataFrame:
        """Validate JSON rows: a list of objects, one per profile, keyed by column name."""
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            columns = ("the layout's id, meta and feature columns" if self.layout_name is not None
                       else "sig_id, cp_type, cp_time, cp_dose, g-0 ...")
            raise DataError("'rows' must be a list of objects, one per profile, each mapping column names "
                            f"({columns}) to values.", source=source)
        if not rows:
            raise DataError("no rows. Send at least one profile.", source=source)
        return self.bundle.read_records(pd.DataFrame.from_records(rows), source)

    # -- predicting ----------------------------------------------------------------
    def predict_file(self, handle: IO[bytes], filename: str | None,
                     progress: Callable[[str, float], None] | None = None,
                     then: Callable[[Prediction], Any] | None = None) -> Any:
        """Read, validate and predict an uploaded CSV/Parquet file object (a spooled temporary file);
        `progress(stage, fraction)` is told each step (background jobs show it). The Prediction, or
        ``then(prediction)`` computed in the same slot (the API's answer: its memory counts against the slots
        too)."""
        t0 = time.perf_counter()
        step = progress or (lambda stage, fraction: None)
        with self._slots:
            step("reading and validating the file", 0.1)
            features, name = self.read_file(handle, filename)
            step(f"predicting {len(features):,} profiles", 0.5)
            pred = self._predict(features, name, t0, step)
            return pred if then is None else then(pred)

    def predict_rows(self, rows: Any, source: str = "request body",
                     then: Callable[[Prediction], Any] | None = None) -> Any:
        """Predict JSON rows: a list of objects, one per profile, keyed by column name (``then`` as for files)."""
        t0 = time.perf_counter()
        with self._slots:
            features = self.read_rows(rows, source)
            pred = self._predict(features, source, t0)
            return pred if then is None else then(pred)

    # -- explaining (attributions, similar reference profiles, OOD flags, compound calls) --------------------
    def explain_file(self, handle: IO[bytes], filename: str | None, options: ExplainOptions) -> dict[str, Any]:
        """POST /api/explain with a file: read + validate exactly as for predictions, then explain."""
        with self._slots:
            features, _ = self.read_file(handle, filename)
            return self.explainer_for(features).explain(features, options)

    def explain_rows(self, rows: Any, options: ExplainOptions, source: str = "request body") -> dict[str, Any]:
        with self._slots:
            features = self.read_rows(rows, source)
            return self.explainer_for(features).explain(features, options)

    def explain_result(self, pred: Prediction, options: ExplainOptions) -> dict[str, Any]:
        """Explain (some of) a stored result's profiles (cached per result and options)."""
        with self._slots:
            return self.explainer_for(pred.features).explain_stored(pred, options)

    def _predict(self, features: pd.DataFrame, source: str, t0: float,
                 step: Callable[[str, float], None] = lambda stage, fraction: None) -> Prediction:
        result = self.predictor.predict(features)
        proba = result.frame[self.targets].to_numpy(dtype=np.float32)
        extra_cols = result.answer.pass_through_columns(features)
        extra = features[extra_cols].reset_index(drop=True) if extra_cols else None
        pred = Prediction(
            source=source,
            sig_ids=features.index.to_numpy(dtype=object),
            cp_type=features[schema.CP_TYPE].to_numpy(dtype=object),
            cp_time=features[schema.CP_TIME].to_numpy() if schema.CP_TIME in features.columns else None,
            cp_dose=features[schema.CP_DOSE].to_numpy(dtype=object) if schema.CP_DOSE in features.columns else None,
            proba=proba,
            extra=extra,
            seconds=time.perf_counter() - t0,
            features=features,
            model=self.name,
        )
        step("saving the result", 0.9)
        self.store.put(pred)
        return pred

    def _result(self, pred: Prediction, ood: bool = True) -> Result:
        """A stored result as the Predictor's ``Result`` (its OOD flags from the explainer's cache)."""
        table = self.explainer_for(pred.features).ood_table(pred) if ood else None  # cached with the result
        return self.predictor.result(pred.features, pred.proba, table)

    # -- output forms --------------------------------------------------------------
    def submission_frame(self, pred: Prediction) -> pd.DataFrame:
        """sample_submission.csv layout: sig_id, one column per target, then the upload's extra columns."""
        frame = pd.DataFrame(pred.proba, columns=self.targets)
        frame.insert(0, schema.SIG_ID, pred.sig_ids)
        if pred.extra is not None:
            for col in pred.extra.columns:
                name = col if col not in frame.columns else f"input_{col}"
                frame[name] = pred.extra[col].to_numpy()
        return frame

    def csv_bytes(self, pred: Prediction) -> bytes:
        buf = io.StringIO()
        self.submission_frame(pred).to_csv(buf, index=False)
        return buf.getvalue().encode("utf-8")

    def predictable_of(self, moas: pd.Series) -> pd.Series:
        """The `predictable` download column for these MoA names (nullable: empty when the bundle does not say)."""
        flags = [bool(self.predictable[self.target_index[m]]) if self.predictable_known else None for m in moas]
        return pd.Series(flags, index=moas.index, dtype="boolean")

    def top_frame(self, pred: Prediction, n: int, ood: np.ndarray | None = None) -> pd.DataFrame:
        """The long "top N per profile" table: sig_id, cp_type, cp_time, cp_dose (LISH-MoA only; another layout's
        meta columns come with the extra columns), out_of_distribution, the upload's extra columns, then rank,
        moa, probability, predictable. A control keeps one row with no MoA
        (it has none by definition), so every profile of the upload is there."""
        n = clamp(n, 1, len(self.targets))
        control = pred.is_control
        reps = np.where(control, 1, n)
        rows = np.repeat(np.arange(pred.n_rows), reps)
        frame = pd.DataFrame({schema.SIG_ID: pred.sig_ids[rows], schema.CP_TYPE: pred.cp_type[rows],
                              **({schema.CP_TIME: pred.cp_time[rows], schema.CP_DOSE: pred.cp_dose[rows]}
                                 if pred.cp_time is not None else {})})
        frame["out_of_distribution"] = pd.Series(ood[rows] if ood is not None else pd.NA, index=frame.index,
                                                 dtype="boolean")
        if pred.extra is not None:
            for col in pred.extra.columns:
                name = col if col not in frame.columns else f"input_{col}"
                frame[name] = pred.extra[col].to_numpy()[rows]
        rank = np.concatenate([[0] if c else np.arange(1, n + 1) for c in control]) if len(rows) else np.zeros(0)
        target = pred.order[rows, np.maximum(rank - 1, 0)].astype(np.int64)
        treated = rank > 0
        frame["rank"] = pd.Series(rank, dtype="Int64").mask(~treated)
        frame["moa"] = np.where(treated, np.asarray(self.targets, dtype=object)[target], "")
        frame["probability"] = np.where(treated, pred.proba[rows, target].astype(np.float64), 0.0).round(6)
        frame["predictable"] = pd.Series(self.predictable[target], dtype="boolean").mask(
            ~treated | (not self.predictable_known))
        return frame

    def sets(self, pred: Prediction, level: float | None = None) -> dict[str, Any]:
        """The MoA sets of a stored result at `level` (default: the bundle's): ``available``, ``level``,
        ``measured_recall``, ``sentence``, and per row ``moa_sets`` (MoA indices) and ``abstentions``; computed
        once per level and kept with the result. Without a trust layer: available False and a message."""
        answer = self.answering(pred.features)
        trust = getattr(answer, "trust", None)
        if trust is None:
            return {"available": False, "message": sets_unavailable(answer)}
        level = trust.levels[trust.level_index(trust.default_level if level is None else level)]
        return pred.derive(f"sets@{level:.2f}", lambda: self._sets(pred, answer, trust, level))

    def _sets(self, pred: Prediction, answer: Any, trust: Any, level: float) -> dict[str, Any]:
        result = self.predictor.add_sets(self._result(pred), level)
        ood = result.ood_mask
        members, why = result.set_members(), result.abstentions
        simulated = answer.simulated
        group = _group_column(self.layout, pred.features)
        compounds = None if pred.features is None else trust.compound_consensus(
            pred.features, pred.proba, self.targets, level, column=group, ood=ood)
        m = trust.measured_at(level)
        recall = round(m["pooled_recall"], 4)
        out = {"available": True, "level": level, "measured_recall": recall,  # never without the sets' size:
               "set_size_quantiles": m.get("set_size_quantiles"), "narrowing_share": m.get("narrowing_share"),
               "sentence": trust.sentence(level, simulated), "compounds": compounds or None,
               "moa_sets": members, "abstentions": why}
        return out

    def calls(self, pred: Prediction, precision: float | None = None) -> dict[str, Any]:
        """The confident calls of a stored result at `precision` (default 0.8; ``trust.calls``):
        ``available``, ``precision``, ``measured`` (precision and coverage on held-out compounds), ``rule``, per row
        ``rows`` (call, kind, estimated_precision, reason, sentence) and per compound ``compounds`` (pooled);
        computed once per level and kept with the result. Without calls: available False and the reason."""
        from ...trust.calls import DEFAULT_PRECISION

        answer = self.answering(pred.features)
        trust = getattr(answer, "trust", None)
        model = None if trust is None else trust.call_model
        if model is None:
            return {"available": False, "message": "this model has no calibrated calls: it was trained without "
                                                   "cross-validation (or before calls existed); retrain it with "
                                                   "'moa train' to get them"}
        precision = model.levels[model.level_index(DEFAULT_PRECISION if precision is None else precision)]
        return pred.derive(f"calls@{precision:.2f}", lambda: self._calls(pred, answer, trust, model, precision))

    def _calls(self, pred: Prediction, answer: Any, trust: Any, model: Any, precision: float) -> dict[str, Any]:
        result = self.predictor.add_calls(self._result(pred), precision)
        ood = result.ood_mask
        simulated = answer.simulated
        rows = [_call_json(r, simulated) for r in result.calls.to_dict("records")]
        group = _group_column(self.layout, pred.features)
        compounds = [] if pred.features is None or trust is None else trust.compound_consensus(
            pred.features, pred.proba, self.targets, trust.default_level, column=group, ood=ood,
            call_precision=precision)
        m = model.measured_at(precision)
        out = {"available": True, "precision": precision, "rule": model.state.get("rule"),
               "measured": {k: m.get(k) for k in ("precision", "precision_moa", "precision_family",
                                                  "coverage_profiles", "coverage_compounds")},
               "simulated": simulated,
               "compounds": [{"compound": c["compound"], "n_profiles": c["n_profiles"],
                              "call": _call_json(c["call"], simulated)} for c in compounds if "call" in c] or None,
               "rows": rows}
        return out

    def protein_targets(self, pred: Prediction, top: int = 5) -> dict[str, Any]:
        """The bundle's target model (``Bundle.label_sets``: protein targets beside the MoAs) on a stored result:
        ``available``, per row the `top` targets with probabilities (``rows``), whether they agree with the top MoA
        (``consistency``: the training annotations' MoA -> target links) and the confident target call with its
        measured precision (``calls``); computed once and kept with the result."""
        part = self.bundle.label_sets.get("target") or (next(iter(self.bundle.label_sets.values()))
                                                         if len(self.bundle.label_sets) == 1 else None)
        if part is None or pred.features is None or self.answering(pred.features) is not self.bundle:
            return {"available": False, "message": "this model has no target model (train it from a layout with "
                                                   "[label_sets.target]; docs/layout.md)"}
        return pred.derive(f"protein_targets@{top}", lambda: self._protein_targets(pred, part, top))

    def _protein_targets(self, pred: Prediction, part: Any, top: int) -> dict[str, Any]:
        from ...trust.calls import DEFAULT_PRECISION

        result = self._result(pred, ood=False)
        result.targets = answer = Predictor(
            self.bundle, target_calls=part.trust is not None and part.trust.call_model is not None,
            call_precision=DEFAULT_PRECISION, strict=False).target_result(pred.features)
        tops, agree = result.target_tops(top)
        calls, measured = None, None
        if answer.calls is not None:
            simulated = part.simulated
            calls = [_call_json(r, simulated) for r in answer.calls.to_dict("records")]
            m = part.trust.call_model.measured_at(DEFAULT_PRECISION)
            measured = {k: m.get(k) for k in ("precision", "coverage_profiles")}
        skill = (part.info.get("cv") or {}).get("field", {}).get("figures") or {}
        out = {"available": True, "label_set": part.info.get("label_set", "target"), "n_targets": len(part.target_names),
               "top": top, "rows": tops, "consistency": agree, "calls": calls, "call_precision": DEFAULT_PRECISION,
               "measured": measured,
               "cv": {k: (skill[k] or {}).get("model") for k in ("top1_accuracy", "top5_accuracy", "micro_pr_auc")
                      if k in skill} or None}
        return out

    def result_json(self, pred: Prediction, *, top: int, probabilities: bool = True,
                    base_url: str = "", set_level: float | None = None,
                    call_precision: float | None = None) -> dict[str, Any]:
        """The API's answer (and the JSON download): summary, then per profile its call, the top-N, its MoA set
        and abstention, and all probabilities."""
        top = clamp(top, 1, len(self.targets))
        sets = self.sets(pred, set_level)
        calls = self.calls(pred, call_precision)
        targets = self.protein_targets(pred)
        # each row goes to orjson as a (C-contiguous) array: the digits of Python floats, without building 800,000
        # of them for a 4,000-profile answer
        rounded = np.round(np.ascontiguousarray(pred.proba, dtype=np.float64), 6)
        top_idx = pred.order[:, :top].astype(np.intp)
        top_p = np.take_along_axis(rounded, top_idx, axis=1).tolist()
        top_idx = top_idx.tolist()
        extras = _records(pred.extra) if pred.extra is not None else None
        ood = self.explainer_for(pred.features).ood_table(pred) if pred.features is not None else None
        if ood is not None:  # plain lists: a pandas lookup per row cost more than the rest of the answer
            ood_flags = ood["ood"].to_numpy(dtype=bool).tolist()
            ood_reasons = [str(r) or None for r in ood["ood_reason"].to_numpy(dtype=object)]
        predictable = ([bool(p) for p in self.predictable] if self.predictable_known
                       else [None] * len(self.targets))
        out = []
        for i in range(pred.n_rows):
            control = bool(pred.cp_type[i] == schema.CONTROL)
            row: dict[str, Any] = {
                "sig_id": str(pred.sig_ids[i]),
                "cp_type": str(pred.cp_type[i]),
                **({"cp_time": int(pred.cp_time[i]), "cp_dose": str(pred.cp_dose[i])}
                   if pred.cp_time is not None else {}),
                "control": control,
                **({"call": calls["rows"][i]} if calls["available"] else {}),
                "top": [] if control else [
                    {"rank": r + 1, "moa": self.targets[j], "moa_id": int(j) + 1, "probability": top_p[i][r],
                     "predictable": predictable[j]}
                    for r, j in enumerate(top_idx[i])],
            }
            if ood is not None:
                row["ood"] = ood_flags[i]
                row["ood_reason"] = ood_reasons[i]
            if sets["available"]:
                row["moa_set"] = [self.targets[j] for j in sets["moa_sets"][i]]
                row["abstention"] = sets["abstentions"][i]
            if targets["available"]:
                row["protein_targets"] = targets["rows"][i]
                row["target_consistency"] = targets["consistency"][i]
                if targets["calls"] is not None:
                    row["target_call"] = targets["calls"][i]
            if probabilities:
                row["probabilities"] = rounded[i]
            if extras is not None:
                row["extra"] = extras[i]
            out.append(row)
        base = f"{base_url.rstrip('/')}/results/{pred.id}"
        return {
            "result_id": pred.id,
            "model": self.bundle.model_name,
            "model_id": self.name,
            "layout": self.layout_name,
            "answered_by": self.answering(pred.features).answers if pred.features is not None else None,
            "simulated_training_data": self.card["simulated_training_data"],
            "summary": pred.summary(),
            "input": input_report(pred.features, ood),
            "top_n": top,
            "targets": self.targets if probabilities else None,
            "note": f"control rows ({self.card['layout']['controls'] if self.card['layout'] else 'ctl_vehicle'})"
                    " carry no MoA by definition: all their probabilities are 0 and their top list is empty",
            "predictable_note": f"predictable false: {NOT_PREDICTABLE} (the model answers its training "
                                "frequency); see GET /api/model",
            "sets": {k: v for k, v in sets.items() if k not in ("moa_sets", "abstentions")},
            "calls": {k: v for k, v in calls.items() if k != "rows"},
            "protein_targets": {k: v for k, v in targets.items() if k not in ("rows", "consistency", "calls")},
            "predictions": out,
            "links": {"results_page": base, "csv": f"{base}/predictions.csv", "json": f"{base}/predictions.json",
                      "top_csv": f"{base}/top.csv?n={top}"},
        }


def input_report(features: pd.DataFrame | None, ood: pd.DataFrame | None) -> dict[str, Any]:
    """What the API says about the input beside the predictions: how many profiles are out of distribution (and
    why), and for CMap files how many genes matched and which times / doses the model was asked in place of the
    file's own (never a silent substitution)."""
    from ...data.profiles.gene_features import MAPPING_ATTR, SUBSTITUTED_ATTR, substitution_notes

    attrs = {} if features is None else features.attrs
    reasons = {} if ood is None else {str(k): int(v) for k, v in
                                     ood.loc[ood["ood"], "ood_reason"].str.split("; ").explode().value_counts().items()}
    return {"out_of_distribution": None if ood is None else int(ood["ood"].sum()),
            "out_of_distribution_reasons": reasons,
            "genes": attrs.get(MAPPING_ATTR),
            "notes": substitution_notes(attrs.get(SUBSTITUTED_ATTR))}


def input_notes(features: pd.DataFrame | None) -> dict[str, Any]:
    """What the pages say about how the file was read, in the CLI's and the API's words: how its genes matched
    (CMap files) and each time or dose the model was asked in place of the file's own (``substituted``: the
    columns concerned, so a profile's tag can say its time is the model's, not the file's)."""
    from ...data.profiles.gene_features import MAPPING_ATTR, SUBSTITUTED_ATTR, mapping_note, substitution_notes

    attrs = {} if features is None else features.attrs
    substituted = attrs.get(SUBSTITUTED_ATTR) or {}
    return {"genes": mapping_note(attrs.get(MAPPING_ATTR)), "notes": substitution_notes(substituted),
            "substituted": sorted(substituted)}


def sets_unavailable(bundle: Bundle) -> str:
    """Why a model offers no MoA sets, in words a user can act on."""
    if not (bundle.info or {}).get("cv"):
        return ("this model was not cross-validated, and MoA sets are calibrated on the compounds cross-validation "
                "holds out: train it with cross-validation ('moa train', or 'moa demo --cv') to get them")
    return "this model was trained before MoA sets existed: retrain it with 'moa train' to get them"


def _call_json(row: dict[str, Any], simulated: bool) -> dict[str, Any]:
    """One call as the API and the page give it (NaN and empty strings as null, with its sentence)."""
    from ...trust.calls import call_sentence

    call = row.get("call") or None
    precision = row.get("estimated_precision")
    precision = None if precision is None or (isinstance(precision, float) and math.isnan(precision)) else precision
    p = row.get("probability")
    return {"call": call, "kind": row.get("kind"), "estimated_precision": precision,
            "probability": None if p is None or (isinstance(p, float) and math.isnan(p)) else float(p),
            "reason": row.get("reason") or None,
            "sentence": call_sentence(call, precision, simulated) if call else None}


def _group_column(layout: Any, features: pd.DataFrame | None) -> str | None:
    """The layout's compound (group) column when the upload has it (pooled calls and sets per compound)."""
    return layout.group if features is not None and layout.group in features.columns else None


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe dicts (NaN -> None, numpy scalars -> Python)."""
    return [jsonable(row) for row in frame.astype(object).where(frame.notna(), None).to_dict("records")]


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, int(value)))


@lru_cache(maxsize=4)
def example_csv(rows: int = EXAMPLE_ROWS, seed: int = EXAMPLE_SEED) -> bytes:
    """A small, deterministic example upload: simulated profiles (controls included) with a ``compound`` column,
    most compounds profiled at 2 doses x 3 times, so the compound page has something to aggregate.

    The profiles are the training part of a tiny simulated set: only that part says which drug each profile
    belongs to. Drugs are renamed cmpd-01, cmpd-02 ... in order of appearance; controls have no compound."""
    from ...simulate import simulate

    data = simulate(n_train=rows, n_test=0, seed=seed)
    frame = data.train_features.copy()
    drugs = data.drugs.set_index(schema.SIG_ID)[schema.DRUG_ID].reindex(frame[schema.SIG_ID]).to_numpy(dtype=object)
    control = (frame[schema.CP_TYPE] == schema.CONTROL).to_numpy()
    names: dict[str, str] = {}
    for drug, ctl in zip(drugs, control):
        if not ctl and drug not in names:
            names[drug] = f"cmpd-{len(names) + 1:02d}"
    frame["compound"] = ["" if ctl else names[d] for d, ctl in zip(drugs, control)]
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.4g")
    return buf.getvalue().encode("utf-8")
