"""One path from profiles to answers: a ``Predictor`` asks a bundle everything it can say about a table of profiles
(probabilities, out-of-distribution flags, MoA sets with their abstentions, confident calls, protein targets) and
returns ONE ``Result``. ``moa predict`` (streamed or on a Dask cluster), the web app, ``moa explain`` and the
notebook API all predict through it, so a profile gets the same answer from every shell.

What a shell chooses (the options): whether to check OOD, the MoA-set level, the call precision, whether to answer
the bundle's target label set, and what happens when the bundle cannot answer a question (``strict``: a clear
``DataError`` for ``moa predict``; left out for the notebook API; the web app says why on the page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..data.profiles import schema
from ..data.errors import DataError
from .artifact import Bundle

OOD_COLUMNS = ("ood", "ood_reason")
"""What ``moa predict`` writes per profile after the pass-through columns (``--keep-columns``) and in the sets file."""
CALL_COLUMNS = ("call", "kind", "estimated_precision", "reason")
"""The columns of a calls file after the id."""


@dataclass
class Result:
    """What a bundle says about one table of profiles (one file, one chunk, one cluster partition, one upload).

    Every per-profile array is positional (row i of ``features``)."""

    answer: Bundle
    """The bundle that answered: the one asked, or its gene-only companion for profiles without cell viability."""
    features: pd.DataFrame
    """The validated profiles as the model read them (index: profile id)."""
    proba: np.ndarray
    """(rows, targets) float32 probabilities, in ``answer.target_names`` order; controls are 0."""
    frame: pd.DataFrame | None = None
    """The predictions table: ``sig_id``, one column per target, the pass-through columns (``keep_columns``), then
    ``ood`` / ``ood_reason`` when OOD was checked."""
    ood: pd.DataFrame | None = None
    """``ood`` (bool) / ``ood_reason`` per profile (positional index); None: no reference index, or not asked."""
    set_level: float | None = None
    sets: np.ndarray | None = None
    """(rows, targets) booleans: each profile's MoA set at ``set_level`` (empty where it abstains)."""
    abstentions: list[str | None] | None = None
    """Why a profile has no MoA set (control, out of distribution, no confident MoA ...); None where it has one."""
    call_precision: float | None = None
    calls: pd.DataFrame | None = None
    """Per profile: ``call``, ``kind``, ``probability``, ``estimated_precision``, ``reason`` (``trust.calls``)."""
    targets: "Result | None" = None
    """The target label set's answer on the same profiles (its probabilities and calls), when asked for."""
    id_name: str = schema.SIG_ID
    """The id column of the calls table (the layout's id column)."""

    @property
    def target_names(self) -> list[str]:
        return list(self.answer.target_names)

    @property
    def control(self) -> np.ndarray:
        return (self.features[schema.CP_TYPE] == schema.CONTROL).to_numpy()

    @property
    def ood_mask(self) -> np.ndarray | None:
        return None if self.ood is None else self.ood["ood"].to_numpy(bool)

    def ids(self) -> np.ndarray:
        return self.features.index.to_numpy()

    def written(self, keep_columns: bool) -> pd.DataFrame:
        """The predictions table as ``moa predict`` writes it: the OOD columns only with `keep_columns` (else the
        submission layout)."""
        frame = self.frame
        return frame if keep_columns else frame.drop(columns=[c for c in OOD_COLUMNS if c in frame.columns])

    def set_frame(self) -> pd.DataFrame:
        """``sig_id, moa_set, abstention`` (then ``ood, ood_reason``): the MoA set joined by ``|`` (empty when
        empty), and why a profile has no set, empty otherwise (``--sets-out``)."""
        names = pd.Index(self.target_names)
        out = pd.DataFrame({schema.SIG_ID: self.ids(),
                            "moa_set": ["|".join(names[row]) for row in self.sets],
                            "abstention": [w or "" for w in self.abstentions]})
        if self.ood is not None:
            out[list(OOD_COLUMNS)] = self.ood.to_numpy()
        return out

    def call_frame(self) -> pd.DataFrame:
        """``id, call, kind, estimated_precision, reason`` (``--calls-out``)."""
        calls = self.calls.copy()
        calls.insert(0, self.id_name, self.ids())
        return calls[[self.id_name, *CALL_COLUMNS]]

    def target_tops(self, top: int) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any] | None]]:
        """Per profile, the `top` protein targets with their probabilities (none for controls), and whether they
        agree with the top MoA (``evaluation.consistency``: the training annotations' MoA -> target links; None
        where there is nothing to compare)."""
        from ..evaluation.consistency import consistency, top_labels

        part = self.targets
        tops = top_labels(part.proba, part.target_names, top)
        links = part.answer.info.get("links") or {}
        best = np.argmax(self.proba, axis=1)
        names = self.target_names
        agree = [consistency(names[int(b)], [t["target"] for t in row], links) if row else None
                 for row, b in zip(tops, best)]
        return tops, agree

    def set_members(self) -> list[list[int]]:
        """Each profile's MoA set as target indices by decreasing probability (the API's and the pages' order)."""
        order = np.argsort(-self.proba, axis=1, kind="stable")
        return [[int(j) for j in order[i] if self.sets[i, j]] for i in range(len(self.sets))]


def id_column(bundle: Bundle) -> str:
    """The name of the id column in outputs: the layout's id column (``id`` when it joins several)."""
    ids = bundle.layout.id
    return ids[0] if len(ids) == 1 else "id"


def call_model_of(bundle: Bundle) -> Any:
    """The bundle's calls (``trust.calls.CallModel``), or one clear DataError saying why there are none."""
    trust = bundle.trust
    model = None if trust is None else trust.call_model
    if model is None:
        raise DataError("this model has no calibrated calls: it was trained without cross-validation (or before "
                        "moa-predict made calls), so no threshold with a measured precision exists. Retrain it with "
                        "'moa train' (with cross-validation) to get --calls-out.", source=str(bundle.path or "bundle"))
    return model


def ood_table(bundle: Bundle, features: pd.DataFrame) -> pd.DataFrame | None:
    """``ood`` / ``ood_reason`` of each profile (positional index; ``reference.ood``), None without a reference index.
    A control unlike the training controls is flagged too: it says something about the plate."""
    if bundle.reference is None:
        return None
    from ..reference.ood import ood_columns

    return ood_columns(bundle.reference, features, bundle.simulated).reset_index(drop=True)


def ood_mask(bundle: Bundle, features: pd.DataFrame) -> np.ndarray | None:
    """The OOD flags alone (``reference.ood``), None when the bundle has no reference index."""
    if bundle.reference is None:
        return None
    from ..reference.ood import ood_mask as mask

    return mask(bundle.reference, features)


@dataclass
class Predictor:
    """A bundle and the questions a shell asks it; ``predict(features)`` answers them all in one ``Result``.

    - `ood`: check each profile against the reference index (the ``ood`` columns of the predictions);
      sets and calls always abstain on flagged profiles, whether or not the columns are asked for;
    - `sets` at `set_level` (default: the bundle's level), `calls` at `call_precision` (default 0.8);
    - `targets`: also answer the bundle's target label set (``Bundle.label_set``), with its calls when
      `target_calls`;
    - `keep_columns`: the upload's pass-through columns in the predictions table;
    - `strict`: a bundle that cannot answer a question asked (no calibration) is a DataError; else the answer
      is left out (None)."""

    bundle: Bundle
    ood: bool = True
    sets: bool = False
    set_level: float | None = None
    calls: bool = False
    call_precision: float | None = None
    targets: bool = False
    target_calls: bool = False
    label_set: str | None = None
    keep_columns: bool = False
    strict: bool = True

    def __post_init__(self) -> None:
        from ..trust.calls import DEFAULT_PRECISION

        trust = self.bundle.trust
        if self.sets:
            if trust is None and self.strict:
                raise DataError("this bundle has no MoA-set calibration (trained without cross-validation, or before "
                                "moa-predict made sets); retrain it with 'moa train' (with CV) to get --sets-out.",
                                source=str(self.bundle.path or "bundle"))
            if trust is not None:  # a bad level fails before any work
                trust.level_index(trust.default_level if self.set_level is None else self.set_level)
        if self.calls or self.target_calls:
            self.call_precision = DEFAULT_PRECISION if self.call_precision is None else self.call_precision
        if self.calls and self.strict:
            for answer in (self.bundle, self.bundle.gene_only):  # no calls or a bad level fail before any work
                if answer is not None and (answer is self.bundle or answer.trust is not None):
                    call_model_of(answer).level_index(self.call_precision)
        if self.targets or self.target_calls:
            part = self.bundle.label_set(self.label_set)
            if self.target_calls and self.strict:
                call_model_of(part).level_index(self.call_precision)

    # -- the one entry point ---------------------------------------------------------------------------------
    def predict(self, features: pd.DataFrame) -> Result:
        """Everything asked for, for these validated profiles (``Bundle.read_profiles``)."""
        answer = self.bundle.for_features(features)
        frame = answer.predict_frame(features, keep_columns=self.keep_columns)
        proba = frame[answer.target_names].to_numpy()
        result = Result(answer, features, proba, frame=frame, id_name=id_column(self.bundle))
        if self.ood or self.sets or self.calls:  # sets and calls abstain on OOD profiles even without the columns
            result.ood = ood_table(answer, features)
        if self.ood and result.ood is not None:
            frame[list(OOD_COLUMNS)] = result.ood.to_numpy()
            frame["ood"] = frame["ood"].astype(bool)
        if self.sets:
            self.add_sets(result, self.set_level)
        if self.calls:
            self.add_calls(result, self.call_precision)
        if self.targets or self.target_calls:
            result.targets = self.target_result(features)
        return result

    def result(self, features: pd.DataFrame, proba: np.ndarray, ood: pd.DataFrame | None = None) -> Result:
        """The Result of probabilities already made (a stored web result), to ask its sets and calls."""
        return Result(self.bundle.for_features(features), features, proba, ood=ood, id_name=id_column(self.bundle))

    # -- the parts -------------------------------------------------------------------------------------------
    def add_sets(self, result: Result, level: float | None) -> Result:
        """The MoA sets at `level` (default: the bundle's) and their abstentions (``TrustModel.profile_sets``);
        left None when the answering model has no calibration and the predictor is not strict."""
        trust = result.answer.trust
        if trust is None:  # a gene-only companion trained without cross-validation
            if not self.strict:
                return result
            raise DataError("the model that answered these profiles has no MoA-set calibration; retrain the bundle "
                            "with 'moa train' (with cross-validation) to get --sets-out.",
                            source=str(result.answer.path or ""))
        level = trust.default_level if level is None else level
        result.set_level = level
        result.sets, result.abstentions = trust.profile_sets(result.proba, level, result.control, result.ood_mask)
        return result

    def add_calls(self, result: Result, precision: float) -> Result:
        """The confident call of each profile at `precision` (``trust.calls``), abstaining on controls and OOD
        profiles; left None when the answering model has none and the predictor is not strict."""
        answer = result.answer
        if not self.strict and (answer.trust is None or answer.trust.call_model is None):
            return result
        result.call_precision = precision
        result.calls = call_model_of(answer).call(result.proba, answer.target_names, precision, "profile",
                                                  result.control, result.ood_mask)
        return result

    def target_result(self, features: pd.DataFrame) -> Result:
        """The target label set's answer on the same profiles: probabilities (controls 0) and, with
        `target_calls`, its confident calls (abstaining where its own reference index flags a profile)."""
        from ..evaluation.consistency import label_set_proba

        part = self.bundle.label_set(self.label_set)
        proba = label_set_proba(part, features)
        frame = pd.DataFrame(proba, columns=part.target_names, index=features.index)
        frame.index.name = schema.SIG_ID
        result = Result(part, features, proba, frame=frame.reset_index(), id_name=id_column(part))
        if self.target_calls:
            result.ood = ood_table(part, features)
            Predictor(part, strict=self.strict).add_calls(result, self.call_precision)
        return result
