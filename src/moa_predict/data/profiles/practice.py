"""The field's practice for CellProfiler profile tables, as ``moa layout infer`` proposes it for a new screen.

Every rule here was fixed on data other than BBBC021 (the simulated Cell Painting screen of ``moa simulate
--layout-kind cellpainting``, the LINCS Cell Painting plate in ``shared/real/cellpainting``) and on the literature;
``docs/layout.md`` ("Defaults for a new screen") says how. BBBC021 measures them afterwards (``moa benchmark real``).

* **Blocklist**: pycytominer's own lists, not hand-made patterns: its default blocklist (Way 2019: features known to
  be noisy in Cell Painting) and its dictionary of CellProfiler columns that are object bookkeeping, not
  measurements (object numbers, parent / child links, neighbour object ids, image numbers).
* **Scaling**: each plate centred on its control median; scaled by its own control MAD when every plate has enough
  control wells, else by the MAD pooled over all plates' controls (``POOL_BELOW``).
* **Whitening** on the control wells (TVN; Ando et al. 2017) when the screen has enough of them (``WHITEN_MIN``).
* **Batches** from a batch column or the plate names (``batch_from_plate_names``); per-batch alignment (CORAL) is
  not proposed (``ALIGN_ALPHA``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

POOL_BELOW = 32
"""Median control wells per plate under which the scale is pooled over plates. The scaled MAD of n normal values
has a relative standard error of about 1.17 / sqrt(n) (48 % at 6 wells, 29 % at 16, 21 % at 32). On the SIMULATED
screens of ``bench/layout_defaults.py`` (8 plates, 4 to 32 controls per plate) the pooled scale was better at 4-16
controls per plate (mean NSC 0.49 vs 0.37 at 4, 0.59 vs 0.57 at 16) and tied at 32."""
WHITEN_MIN = 100
"""Control wells needed before whitening on them (TVN estimates the controls' covariance). On the simulated screens
TVN lost to no whitening with 32 or 48 control wells, tied at 64 and won at 128 and 256 (0.65 vs 0.59 and 0.56);
the LINCS plate's 24 DMSO wells are far below."""
WHITEN_REG = 0.1
"""TVN regularisation (x the mean variance added to each direction's variance before dividing): the layout's
default, keeps the weakest directions from being blown up."""
ALIGN_ALPHA = 1.0
"""The CORAL shrinkage suggested when a user turns batch alignment on (each batch's control covariance plus alpha x
its mean variance on the diagonal). Off by default: on the simulated screens, CORAL after TVN lowered the mean NSC
(0.62 vs 0.65 at 128 control wells, 0.61 vs 0.65 at 256), and no other data here could show a gain."""


COMPARTMENTS = ("Cells_", "Nuclei_", "Cytoplasm_")


def is_cellprofiler(features: Sequence[str]) -> bool:
    """Most feature names start with a CellProfiler compartment (``Cells_``, ``Nuclei_``, ``Cytoplasm_``): the
    rules here are for such tables; others (gene expression) keep per-plate robust z-scores."""
    return bool(features) and sum(str(c).startswith(COMPARTMENTS) for c in features) >= 0.5 * len(features)


def pycytominer_blocklist(columns: Sequence[str]) -> list[str]:
    """The columns pycytominer's lists exclude from features: its default blocklist (exact names), and its known
    per-object metadata (``Number_Object_Number``, ``Parent_Nuclei``, ``Children_Cells_Count``, neighbour object
    ids, ...) under any compartment prefix; the neighbour-distance number at the end of a name is a CellProfiler
    setting, so any distance matches."""
    from pycytominer.cyto_utils import load_known_metadata_dictionary
    from pycytominer.cyto_utils.blocklist import Blocklist

    exact = set(Blocklist(blocklist_name="default").to_list())
    stems = {f for feats in load_known_metadata_dictionary().values() for f in feats}
    alternatives = "|".join(re.sub(r"_\d+$", r"_\\d+", re.escape(s)) for s in sorted(stems))
    pattern = re.compile(rf"^[A-Za-z0-9]+_(?:{alternatives})$")
    return [c for c in columns if c in exact or pattern.match(c)]


def scaling_rule(controls_per_plate: np.ndarray) -> tuple[str, str]:
    """(normalize method, reason) for raw values from the control wells each plate has."""
    median = float(np.median(controls_per_plate))
    if median < POOL_BELOW:
        return "robust_z_pooled", (f"normalize = 'robust_z_pooled': plates have a median of {median:g} control wells "
                                   f"(< {POOL_BELOW}), too few for a per-plate scale; each plate is centred on its "
                                   "control median and scaled by the MAD pooled over every plate's controls")
    return "robust_z", (f"normalize = 'robust_z': plates have a median of {median:g} control wells (>= {POOL_BELOW}); "
                        "each plate is scaled to its own controls (median / MAD)")


def whitening_rule(n_controls: int, n_features: int) -> tuple[int, str]:
    """(TVN components or 0, reason): every direction the control wells span (min(features, controls - 1)); on the
    simulated screens keeping them all beat keeping a third at every control count."""
    if n_controls < WHITEN_MIN:
        return 0, (f"whiten off: {n_controls} control wells (< {WHITEN_MIN}) are too few to estimate the control "
                   "covariance")
    k = int(min(n_features, n_controls - 1))
    return k, (f"whiten = {k}: TVN on the {n_controls} control wells (>= {WHITEN_MIN}), every direction they span, "
               f"regularised by {WHITEN_REG} x the mean variance")


def alignment_rule(controls_per_batch: dict[str, int], whiten: int) -> tuple[None, str]:
    """(None, reason): batch alignment (CORAL) is never proposed (see ``ALIGN_ALPHA``); the reason says when it
    could be tried."""
    if len(controls_per_batch) < 2 or not whiten:
        return None, "align_batches off (needs whitening and two or more batches)"
    return None, (f"align_batches off: {len(controls_per_batch)} batches found, but per-batch alignment (CORAL) did "
                  f"not help on the simulated screens; to try it, set align_batches = {ALIGN_ALPHA:g}")


def batch_from_plate_names(plates: Sequence[str]) -> str | None:
    """A regex taking the batch out of plate names (``Week4_27481`` -> ``Week4``) when the part before the first
    ``_`` or ``-`` groups the plates into 2 or more batches, each of several plates; else None."""
    names = sorted({str(p) for p in plates})
    if len(names) < 4:
        return None
    for sep in ("_", "-"):
        heads = [n.split(sep, 1)[0] for n in names if sep in n]
        if len(heads) != len(names):
            continue
        counts = {h: heads.count(h) for h in set(heads)}
        if 2 <= len(counts) <= len(names) // 2 and min(counts.values()) >= 2:
            return rf"^([^{sep}]+){sep}"
    return None
