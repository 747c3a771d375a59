"""Model bundles: a directory with ``bundle.json`` (everything readable) and
``weights.safetensors`` (every array). No pickles anywhere, so opening a bundle
cannot run code; loading checks the format and fails with a clear message.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from .. import __version__
from ..data.profiles import schema
from ..data.profiles.dataset import Dataset
from ..data.errors import DataError
from ..data.formats.io import DIR_MODE, FILE_MODE, Source, jsonable
from ..data.profiles.layout import Layout
from ..data.profiles.normalize import ProfileNormalizer
from ..data.profiles.reader import iter_profiles, load_profiles, streams
from ..models.base import MoAModel
from ..models.registry import make_model
from ..runtime.threads import map_row_chunks

FORMAT = "moa-predict-bundle"
FORMAT_VERSION = 2
"""v2: a blend's stack is fitted state (``state["stack"]``), not hyper-parameters; v1 bundles are migrated."""
META_FILE = "bundle.json"
GENE_ONLY_DIR = "gene_only"
LABEL_SETS_DIR = "label_sets"
WEIGHTS_FILE = "weights.safetensors"
NORM_PREFIX = "normalizer."


@dataclass
class Bundle:
    """A fitted model with everything needed to use it on new profiles."""

    model: MoAModel
    target_names: list[str]
    feature_columns: list[str] = field(default_factory=lambda: list(schema.FEATURE_COLUMNS))
    info: dict[str, Any] = field(default_factory=dict)
    """Training facts: CV report, data fingerprint, package version, created, command."""
    path: Path | None = None
    reference: Any = None
    """Optional ``reference.neighbours.ReferenceIndex`` of the training profiles (similar profiles, OOD flags);
    saved as arrays under ``reference.`` and settings under ``"reference"`` in bundle.json."""
    trust: Any = None
    """Optional ``trust.model.TrustModel`` (MoA sets, calibration, compound pooling), fit on the CV's OOF;
    saved under ``"trust"`` in bundle.json. None for bundles trained without CV or before it existed."""
    normalizer: Any = None
    """The fitted profile normalisation of a custom layout (``data.profiles.normalize.ProfileNormalizer``: pooled
    control scale, whitening), saved as arrays under ``normalizer.``; None for LISH-MoA bundles."""
    gene_only: "Bundle | None" = None
    """Optional companion trained on the gene block alone (saved in the ``gene_only/`` subdirectory): it answers
    profiles without cell-viability columns (CMap / L1000 signatures)."""
    label_sets: dict[str, "Bundle"] = field(default_factory=dict)
    """Models of the layout's extra label sets by name (``label_sets/NAME/``): the protein targets beside the
    MoAs. Each is a bundle of its own (CV report, calibration, calls), read through the same layout."""
    _warm: bool = field(default=False, init=False, repr=False, compare=False)
    """Whether the model has predicted once (its lazy caches built: ``predict_proba`` then shares every block)."""

    def label_set(self, name: str | None = None) -> "Bundle":
        """The model of label set `name` (None: the only one, else ``target``); a DataError when it has none."""
        if name is None and len(self.label_sets) == 1:
            return next(iter(self.label_sets.values()))
        found = self.label_sets.get(name or "target")
        if found is None:
            raise DataError(f"this model has no {name or 'target'!r} label set (it has "
                            f"{', '.join(map(repr, self.label_sets)) or 'none'}): train it from a layout with "
                            "[label_sets.NAME] (docs/layout.md).", source=str(self.path or "bundle"))
        return found

    def for_features(self, features: pd.DataFrame) -> "Bundle":
        """The bundle that answers these profiles: this one when they have every feature it was trained on,
        else the gene-only companion when they have the genes (CMap files), else a DataError saying what is
        missing."""
        if all(c in features.columns for c in self.feature_columns):
            return self
        if self.gene_only is not None and all(c in features.columns for c in self.gene_only.feature_columns):
            return self.gene_only
        missing = [c for c in self.feature_columns if c not in features.columns]
        raise DataError(f"these profiles lack {len(missing)} of the model's feature columns ({missing[0]} ... "
                        f"{missing[-1]}), and the bundle has no model trained without them. Provide the "
                        "LISH-MoA layout, or train a bundle whose gene-only model answers gene expression alone "
                        "(moa train does by default).")

    @property
    def layout(self) -> Layout:
        """The layout the model was trained on (``data.profiles.layout``): LISH-MoA's for a bundle saved without one
        (the package's own layout is not stored)."""
        d = self.info.get("layout")
        return Layout.lish_moa() if d is None else Layout.from_dict(d, source=str(self.path or "bundle"))

    def read_profiles(self, src: Source, *, name: str | None = None, max_bytes: int | None = None,
                      ids: Sequence[str] | None = None) -> pd.DataFrame:
        """An upload read as this bundle's training table was (``data.profiles.reader``): through its layout (plate
        normalisation included), validated, genes matched for CMap files. `ids`: only these profiles are needed."""
        if self.layout.fixed_columns:  # a fixed-column table (LISH-MoA) has fast readers of its own:
            from ..data.formats.chunks import load_upload, select_features

            if ids:  # a selection read in chunks, only it kept (moa explain --sig-id on a whole CMap file)
                return select_features(src, ids, feature_columns=self.feature_columns, name=name)
            if hasattr(src, "read"):  # an upload's plain CSV read by pyarrow in one go
                return load_upload(src, name=name, max_bytes=max_bytes, feature_columns=self.feature_columns,
                                   allow_gene_only=self.gene_only is not None)
        return self.read_dataset(src, name=name, max_bytes=max_bytes).features

    @property
    def reads_in_chunks(self) -> bool:
        """Whether this bundle's layout reads an upload one profile at a time (``data.profiles.reader.streams``), so a
        file can be read in row chunks or partitions; False for plate normalisation / whitening."""
        return streams(self.layout, self.normalizer)

    def frames(self, src: Source, *, name: str | None = None, chunk_rows: int = 5_000,
               part: Any = None) -> Iterator[pd.DataFrame]:
        """An upload's validated features, read as this bundle's training table was: in row chunks when its layout
        ``reads_in_chunks`` and `src` is a path (``data.profiles.reader.iter_profiles``: flat memory, files of any size;
        `part`: one partition of it, a cluster task's ``data.formats.partitions.Partition``), else whole here
        (``read_profiles``) and given as one frame."""
        if not (self.reads_in_chunks and isinstance(src, (str, os.PathLike))):
            return iter([self.read_profiles(src, name=name)])
        return (d.features for d in iter_profiles(src, self.layout, feature_columns=self.feature_columns,
                                                   normalizer=self.normalizer, name=name, chunk_rows=chunk_rows,
                                                   metadata=self._stored_metadata(), part=part))

    def partitions(self, src: Source, *, rows: int, chunk_rows: int) -> list[Any]:
        """How a cluster cuts `src` (``data.formats.partitions.plan_partitions``): one whole-file task when this
        bundle's reader cannot start mid-file (a layout normalising whole plates; a CSV's byte ranges, which carry no
        row numbers, for any but a fixed-column table's reader)."""
        from ..data.formats.partitions import Partition, plan_partitions

        parts = plan_partitions(src, rows=rows, chunk_rows=chunk_rows)
        if not self.reads_in_chunks or (not self.layout.fixed_columns and any(p.kind == "bytes" for p in parts)):
            return [Partition(0, 1, "whole")]
        return parts

    @property
    def counts_file_rows(self) -> bool:
        """Whether this bundle's reader numbers a partition's rows from the start of the file (a layout's does; a
        fixed-column table's chunk readers count from the partition's start)."""
        return not self.layout.fixed_columns

    def _stored_metadata(self) -> list[pd.DataFrame]:
        """The layout's joins from the tables stored at training; an upload that carries the columns keeps its own."""
        return [pd.DataFrame(t["data"], columns=t["columns"]) for t in self.info.get("layout_metadata", ())]

    def read_records(self, rows: pd.DataFrame, source: str) -> pd.DataFrame:
        """Profiles sent as records (the API's JSON rows, one per profile) read as an uploaded file would be (a
        fixed-column table's are validated as they are)."""
        if self.layout.fixed_columns:
            from ..data.profiles.validate import validate_features

            if schema.SIG_ID in rows.columns:  # as read_table does for files: ids are text
                rows[schema.SIG_ID] = rows[schema.SIG_ID].map(_id_text)
            rows.columns = [str(c).strip() for c in rows.columns]
            return validate_features(rows, source, self.feature_columns)
        rows.columns = [str(c).strip() for c in rows.columns]  # through the layout, exactly as an uploaded file
        return self.read_profiles(io.BytesIO(rows.to_csv(index=False).encode("utf-8")), name=f"{source}.csv")

    def read_dataset(self, src: Source, *, name: str | None = None, max_bytes: int | None = None) -> Dataset:
        """An upload read through this bundle's layout (``data.profiles.reader.load_profiles``), as a ``Dataset`` (its
        control mask, compound and layout with it), normalised with the bundle's fitted normalisation."""
        return load_profiles(src, self.layout, name=name, max_bytes=max_bytes, labels=False,
                             feature_columns=self.feature_columns, normalizer=self.normalizer,
                             metadata=self._stored_metadata(), allow_gene_only=self.gene_only is not None)

    @property
    def answers(self) -> str:
        """Which model this is, for a person: the full model or the gene-only one."""
        if not self.layout.is_lish_moa:
            return f"model of the {self.layout.name} layout"
        if any(c.startswith("c-") for c in self.feature_columns):
            return "full model (gene expression + cell viability)"
        return "gene-only model (gene expression alone; no cell-viability block)"

    @property
    def simulated_marker(self) -> dict[str, Any] | None:
        """The simulator's marker (``training_data.simulated``): what simulated the training profiles; None when
        they were measured."""
        return simulated_marker(self.info)

    @property
    def simulated(self) -> bool:
        """Whether the model was trained on SIMULATED profiles (every figure it reports is then simulated)."""
        return bool((self.info.get("training_data") or {}).get("simulated"))

    @property
    def model_name(self) -> str:
        return self.model.name

    def predict_proba(self, features: pd.DataFrame, n_threads: int | None = None, chunk: int = 4096) -> np.ndarray:
        """Probabilities (rows × targets) for validated features: row chunks (memory stays flat) predicted
        by `n_threads` threads (default: torch's thread count), written into one preallocated array."""
        out = np.empty((len(features), len(self.target_names)), dtype=np.float32)

        def run(start: int, stop: int) -> None:
            out[start:stop] = self.model.predict_proba(features.iloc[start:stop])

        # the model's lazy caches are built by its first prediction: later ones spread every block over the threads
        map_row_chunks(run, len(features), n_threads, chunk, first_alone=not self._warm)
        self._warm = True
        return out

    def training_prevalence(self) -> np.ndarray | None:
        """Each target's smoothed frequency among the treated training profiles (the prior a model must beat),
        from the reference index's labels, else the model's own (prior, blend); None when neither has it."""
        ref = self.reference
        if ref is not None and getattr(ref, "n_scored", 0) == len(self.target_names):
            from ..evaluation.metrics import smoothed_prevalence

            names = list(ref.label_names[: ref.n_scored])
            labels = ref.label_matrix(np.flatnonzero(np.asarray(ref.is_control) == 0))
            return smoothed_prevalence(labels)[[names.index(t) for t in self.target_names]]
        prevalence = getattr(self.model, "prevalence_", None)
        return None if prevalence is None else np.asarray(prevalence, dtype=np.float64)

    def pass_through_columns(self, features: pd.DataFrame) -> list[str]:
        """The upload's columns the model does not read (neither features nor the meta columns), e.g. a compound:
        passed through to the outputs."""
        used = set(self.feature_columns) | set(schema.META_COLUMNS)
        return [c for c in features.columns if c not in used]

    def predict_frame(self, features: pd.DataFrame, keep_columns: bool = False) -> pd.DataFrame:
        """Predictions in the ``sample_submission.csv`` layout: sig_id, then one column per target; with
        `keep_columns`, then the input's pass-through columns (neither features nor cp_*), e.g. a compound."""
        proba = self.predict_proba(features)
        frame = pd.DataFrame(proba, columns=self.target_names, index=features.index)
        if keep_columns:
            frame = frame.join(features[self.pass_through_columns(features)])
        frame.index.name = schema.SIG_ID
        return frame.reset_index()


def simulated_marker(info: dict[str, Any]) -> dict[str, Any] | None:
    """The simulator's marker in a bundle's info (a bare ``true`` from older bundles as ``{"note": "simulated"}``)."""
    marker = (info.get("training_data") or {}).get("simulated")
    return marker if isinstance(marker, dict) else ({"note": "simulated"} if marker else None)


def save_bundle(bundle: Bundle, path: str | os.PathLike) -> Path:
    """Write the bundle directory atomically (a temporary directory renamed into place)."""
    path = Path(path)
    settings, arrays = bundle.model.get_state()
    reference = None
    if bundle.reference is not None:
        from ..reference.neighbours import PREFIX as REF_PREFIX

        if any(k.startswith(REF_PREFIX) for k in arrays):
            raise ValueError(f"model arrays may not start with {REF_PREFIX!r} (kept for the reference index)")
        reference, ref_arrays = bundle.reference.get_state(REF_PREFIX)
        arrays = {**arrays, **ref_arrays}
    normalizer = None
    if bundle.normalizer is not None:
        normalizer, norm_arrays = bundle.normalizer.get_state(NORM_PREFIX)
        arrays = {**arrays, **norm_arrays}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model": {"name": bundle.model.name, "params": _json_params(bundle.model), "state": settings},
        "target_names": bundle.target_names,
        "feature_columns": bundle.feature_columns,
        "weights": sorted(arrays),
        **bundle.info,
        **({"reference": reference} if reference is not None else {}),
        **({"trust": bundle.trust.to_dict()} if bundle.trust is not None else {}),
        **({"normalizer": normalizer} if normalizer is not None else {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, DIR_MODE)  # mkdtemp makes a private (0700) directory; a bundle is shared like any output
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / WEIGHTS_FILE))
        (tmp / META_FILE).write_text(json.dumps(jsonable(meta, strict=True), indent=1), encoding="utf-8")
        for written in tmp.iterdir():  # safetensors writes 0600; a bundle is as readable as any other output
            os.chmod(written, FILE_MODE)
        if bundle.gene_only is not None:
            save_bundle(bundle.gene_only, tmp / GENE_ONLY_DIR)
        for name, part in bundle.label_sets.items():
            save_bundle(part, tmp / LABEL_SETS_DIR / name)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bundle.path = path
    if bundle.gene_only is not None:
        bundle.gene_only.path = path / GENE_ONLY_DIR
    for name, part in bundle.label_sets.items():
        part.path = path / LABEL_SETS_DIR / name
    return path


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read and check a bundle directory (or a built-in model by name: ``data.builtin``)."""
    from ..data.builtin import resolve_bundle

    path = resolve_bundle(path)
    meta_path, weights_path = path / META_FILE, path / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise DataError(f"{path} is not a model bundle (expected {META_FILE} and {WEIGHTS_FILE}). "
                        "Train one with 'moa train'.", source=str(path))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{META_FILE} is not valid JSON ({exc}). The bundle is corrupt; retrain it.",
                        source=str(path)) from None
    if not isinstance(meta, dict):
        raise DataError(f"{META_FILE} does not describe a model bundle (a JSON object is expected). "
                        "Retrain the model.", source=str(path))
    if meta.get("format") != FORMAT or meta.get("format_version") not in (1, FORMAT_VERSION):
        raise DataError(f"unsupported bundle format {meta.get('format')!r} v{meta.get('format_version')!r}; "
                        f"this moa-predict reads {FORMAT} v1 and v{FORMAT_VERSION}. Retrain the model.",
                        source=str(path))
    try:
        arrays = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise DataError(f"{WEIGHTS_FILE} is unreadable ({exc}). The bundle is corrupt; retrain it.",
                        source=str(path)) from None
    if sorted(arrays) != sorted(meta.get("weights", [])):
        raise DataError(f"{WEIGHTS_FILE} does not hold the arrays {META_FILE} lists. The bundle is corrupt or "
                        "mixed from two trainings; retrain it.", source=str(path))
    try:
        spec = meta["model"]
        target_names, feature_columns = list(meta["target_names"]), list(meta["feature_columns"])
        params = dict(spec.get("params", {}))
        name = spec["name"]
        if meta["format_version"] == 1:
            params, spec = _migrate_v1(name, params, spec)
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{META_FILE} lacks or garbles an entry ({type(exc).__name__}: {exc}). The bundle is "
                        "corrupt; retrain it.", source=str(path)) from None
    # bundles written before the device became an argument of fit/predict carry it as a parameter: dropped
    params.pop("device", None)
    try:
        model = make_model(name, **params)
    except (KeyError, TypeError) as exc:
        raise DataError(f"bundle model {name!r} cannot be built by this version ({exc}).",
                        source=str(path)) from None
    reference = None
    if isinstance(meta.get("reference"), dict):
        from ..reference.neighbours import PREFIX as REF_PREFIX, ReferenceIndex

        reference = _stored_part(meta["reference"], arrays, REF_PREFIX, ReferenceIndex.from_state,
                                 "the reference index", path)
    normalizer = None
    if isinstance(meta.get("normalizer"), dict):
        normalizer = _stored_part(meta["normalizer"], arrays, NORM_PREFIX, ProfileNormalizer.from_state,
                                  "the profile normalisation", path)
    try:
        model.set_state(spec["state"], arrays)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        # RuntimeError: torch's load_state_dict on missing keys or mismatched shapes
        raise DataError(f"the stored state does not fit model {name!r} ({type(exc).__name__}: {exc}). The bundle "
                        "is corrupt or from another version; retrain it.", source=str(path)) from None
    if model.n_targets_ != len(target_names):
        raise DataError(f"model has {model.n_targets_} outputs but the bundle lists {len(target_names)} "
                        "targets. The bundle is corrupt; retrain it.", source=str(path))
    trust = None
    if isinstance(meta.get("trust"), dict):
        from ..trust.model import TrustModel

        try:
            trust = TrustModel.from_dict(meta["trust"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"the MoA-set calibration is damaged ({type(exc).__name__}: {exc}). The bundle is "
                            "corrupt; retrain it.", source=str(path)) from None
    info = {k: v for k, v in meta.items()
            if k not in {"format", "format_version", "model", "target_names", "feature_columns", "weights",
                         "reference", "trust", "normalizer"}}
    gene_only = load_bundle(path / GENE_ONLY_DIR) if (path / GENE_ONLY_DIR).is_dir() else None
    sets_dir = path / LABEL_SETS_DIR
    label_sets = {p.name: load_bundle(p) for p in sorted(sets_dir.iterdir()) if p.is_dir()} if sets_dir.is_dir() else {}
    return Bundle(model, target_names, feature_columns, info, path, reference, trust, normalizer, gene_only,
                  label_sets)


def _id_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _stored_part(settings: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str,
                 from_state: Callable[[dict[str, Any], dict[str, np.ndarray], str], Any], what: str, path: Path) -> Any:
    """A part stored beside the model (settings in bundle.json, arrays under `prefix`): its arrays are taken out of
    `arrays` and the part rebuilt; damage is one clear error."""
    own = {k: arrays.pop(k) for k in [k for k in arrays if k.startswith(prefix)]}
    try:
        return from_state(settings, own, prefix)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{what} is damaged ({type(exc).__name__}: {exc}). The bundle is corrupt; retrain it.",
                        source=str(path)) from None


def _migrate_v1(name: str, params: dict[str, Any], spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A v1 blend kept its fitted stack in hyper-parameters (``weights``, ``calibration``, ``prior_targets``,
    ``stack_from_cv``): move it into the blend's state, where v2 keeps it. Other models are unchanged."""
    if name != "blend":
        return params, spec
    weights = params.get("weights")
    if weights is None:
        n = len(params.get("members") or [])
        weights = [1.0 / n] * n if n else None
    calibration = params.pop("calibration", None)
    stack = {"temperature": calibration is not None, "min_gain": params.get("safeguard_min_gain"),
             "weights": weights, "fitted_temperature": None, "calibration": calibration,
             "prior_targets": list(params.pop("prior_targets", None) or [])}
    params.pop("stack_from_cv", None)
    return params, {**spec, "state": {**spec["state"], "stack": stack}}


def _json_params(model: MoAModel) -> dict[str, Any]:
    params = model.get_params(deep=False)
    return jsonable(params, strict=True)  # fails at save time, not load time, on odd values
