"""The Python API for notebooks: the CLI's answers as DataFrames.

    import moa_predict as mp
    model = mp.load("l1000-reference")          # a built-in name or a bundle directory
    res = model.predict(df)                    # probabilities + call, moa_set, ood per profile
    res = model.predict("signatures.gctx")     # any file `moa predict` reads
    by_drug = model.predict(df, level="compound")
    report = model.explain(df, moa="HMGCR inhibitor")
    profiles = mp.normalize(df, "layout.toml")   # a layout's profiling steps alone (pycytominer style)

A DataFrame goes through the very reader and checks a file goes through (it is handed over as an in-memory
Parquet file): the same validation, gene matching, errors (``DataError``) and answers as ``moa predict``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .data.errors import DataError
from .data.formats.io import Source

FRAME_NAME = "DataFrame"
"""How a DataFrame is named in messages (``DataFrame.parquet: row 3, column 'g-0': ...``)."""


def _as_source(data: pd.DataFrame | str | os.PathLike, name: str | None) -> tuple[Source, str]:
    """(something the readers take, its name): a path as it is, a DataFrame as an in-memory Parquet file (CSV
    when a column mixes types Parquet cannot store)."""
    if isinstance(data, (str, os.PathLike)):
        return data, name or Path(data).name
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"expected a DataFrame or a file path, got {type(data).__name__}")
    frame = data.reset_index() if any(n is not None for n in data.index.names) else data
    frame = frame.rename(columns=str)  # a new frame: the caller's keeps its column labels
    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer, index=False)
        label = f"{name or FRAME_NAME}.parquet"
    except Exception:  # noqa: BLE001 - pyarrow raises many types for columns it cannot store
        buffer = io.BytesIO(frame.to_csv(index=False).encode("utf-8"))
        label = f"{name or FRAME_NAME}.csv"
    buffer.seek(0)
    buffer.name = label
    return buffer, label


class Model:
    """A trained bundle with the questions a notebook asks of it. ``bundle_`` is the underlying
    ``bundle.Bundle`` (probabilities, sets, calls, reference index)."""

    def __init__(self, bundle: Any) -> None:
        self.bundle_ = bundle

    def __repr__(self) -> str:
        return (f"Model({self.bundle_.answers!r}, {len(self.moas)} MoAs, "
                f"{len(self.bundle_.feature_columns)} features)")

    @property
    def moas(self) -> list[str]:
        return list(self.bundle_.target_names)

    @property
    def card(self) -> dict[str, Any]:
        """What the model card shows: training data, CV figures, per-MoA skill (the bundle's ``info``)."""
        return dict(self.bundle_.info)

    def features(self, data: pd.DataFrame | str | os.PathLike, *, name: str | None = None) -> pd.DataFrame:
        """The profiles as the model reads them (validated, genes matched, the layout's normalisation applied)."""
        src, label = _as_source(data, name)
        return self.bundle_.read_profiles(src, name=label)

    def predict(self, data: pd.DataFrame | str | os.PathLike, *, level: str = "profile",
                call_precision: float | None = 0.8, set_level: float | None = None, ood: bool = True,
                name: str | None = None) -> pd.DataFrame:
        """One row per profile (or per treatment / compound with `level`), indexed by its id: one probability
        per MoA, then ``call`` (the MoA or family called at `call_precision`, empty when none), ``call_kind``,
        ``call_precision`` (measured on held-out compounds), ``call_reason`` (why no call), ``moa_set`` (the MoAs
        at `set_level`, ``|``-joined; default: the bundle's level), ``set_abstention``, ``ood`` and
        ``ood_reason``. A model trained without cross-validation has no calls or sets: those columns are left
        out (``call_precision=None`` leaves calls out on purpose)."""
        from .bundle import Predictor
        from .inference.levels import predict_level

        if level != "profile":
            src, label = _as_source(data, name)
            out, calls = predict_level(self.bundle_, src, level, name=label, call_precision=call_precision)
            out = out.set_index(level)
            if calls is not None:
                calls = calls.set_index(level)
                out = out.join(calls.rename(columns=_CALL_NAMES))
            return out
        features = self.features(data, name=name)
        predictor = Predictor(self.bundle_, ood=ood, sets=True, set_level=set_level, strict=False,
                              calls=call_precision is not None, call_precision=call_precision)
        result = predictor.predict(features)
        frame = result.frame.set_index(result.frame.columns[0])
        ids = frame.index
        if result.calls is not None:
            calls = result.calls[list(_CALL_NAMES)].set_index(ids)
            frame = frame.join(calls.rename(columns=_CALL_NAMES))
        if result.sets is not None:
            sets = result.set_frame()
            frame["moa_set"] = sets["moa_set"].to_numpy()
            frame["set_abstention"] = sets["abstention"].to_numpy()
        if "ood" in frame.columns:  # last, as in `moa predict --keep-columns`
            frame = frame[[c for c in frame.columns if c not in ("ood", "ood_reason")] + ["ood", "ood_reason"]]
        frame.index.name = ids.name or "id"
        return frame

    def targets(self, data: pd.DataFrame | str | os.PathLike, *, top: int = 5,
                name: str | None = None) -> pd.DataFrame:
        """The protein targets beside the MoAs (a bundle with a target model, such as the built-in reference): one
        row per profile indexed by its id, one probability per target, then ``top_targets`` (the `top` most likely,
        ``|``-joined) and ``consistency`` (empty when the top MoA and these targets agree with the training
        annotations' MoA -> target links, else the note saying they do not)."""
        from .bundle import Predictor

        features = self.features(data, name=name)
        result = Predictor(self.bundle_, ood=False, targets=True).predict(features)
        part = result.targets
        frame = pd.DataFrame(part.proba, index=features.index, columns=part.target_names)
        tops, agree = result.target_tops(top)
        frame["top_targets"] = ["|".join(t["target"] for t in row) for row in tops]
        frame["consistency"] = ["" if found is None or found["agree"] else found["note"] for found in agree]
        return frame

    def explain(self, data: pd.DataFrame | str | os.PathLike, *, moa: str | Sequence[str] | None = None,
                ids: Sequence[str] | None = None, top: int = 10, neighbours: int = 10,
                name: str | None = None) -> dict[str, Any]:
        """What ``moa explain`` writes, as a dict: per profile its top MoAs, the genes / features that drove
        each (integrated gradients), its nearest reference profiles and the OOD check. `moa`: explain these MoAs
        (default: each profile's top 3); `ids`: only these profiles."""
        from .bundle import Predictor
        from .explain.report import explain_upload, select_profiles

        features = select_profiles(self.features(data, name=name), ids)
        bundle = self.bundle_.for_features(features)
        moas = [moa] if isinstance(moa, str) else (list(moa) if moa is not None else None)
        if moas is not None:
            unknown = [m for m in moas if m not in bundle.target_names]
            if unknown:
                raise DataError(f"MoA {unknown[0]!r} is not one this model predicts; see Model.moas.")
        proba = Predictor(bundle, ood=False).predict(features).proba  # the answer Model.predict gives, explained
        return explain_upload(bundle, features, moas=moas, top_k=top, neighbours=neighbours, proba=proba)


_CALL_NAMES = {"call": "call", "kind": "call_kind", "estimated_precision": "call_precision", "reason": "call_reason"}


def load(bundle: str | os.PathLike = "l1000-reference") -> Model:
    """A trained model: a built-in name (``l1000-reference``) or a bundle directory written by ``moa train``."""
    from .bundle import load_bundle

    return Model(load_bundle(bundle))


def normalize(data: pd.DataFrame | str | os.PathLike, layout: Any, *, name: str | None = None) -> pd.DataFrame:
    """A profile table read through a layout (a ``Layout`` or the path of its TOML file): ids, control mask as
    ``cp_type``, meta columns and the normalised features (per-plate normalisation to control wells, clipping,
    whitening, per-profile scaling, as the layout says), fit on this table's own control wells: the profiling
    step alone, as pycytominer's ``normalize`` is, without training anything."""
    from .data.profiles.layout import Layout, load_layout
    from .data.profiles.reader import load_profiles

    spec = layout if isinstance(layout, Layout) else load_layout(layout)
    src, label = _as_source(data, name)
    return load_profiles(src, spec, name=label, labels=False).features
