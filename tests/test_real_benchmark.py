"""The BBBC021 benchmark's bookkeeping without the real files: the split-half nested estimate picks a setting on one
half of the compounds and scores it on the other, and the report shows both figures, rows kept from earlier runs
with their command, and a method scored under NSC only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from moa_predict.benchmarks.real import FIGURES, METHODS, TUNED_KNN, Treatments, split_half
from moa_predict.benchmarks.real_report import to_markdown
from moa_predict.data.profiles.dataset import Dataset


def _treatments(n_compounds: int = 8) -> Treatments:
    names = [f"c{i} @ {d}" for i in range(n_compounds) for d in (1, 3)]
    compound = np.array([n.split(" @ ")[0] for n in names])
    moa = np.array([f"m{int(c[1:]) % 2}" for c in compound])
    batches = [frozenset({f"W{int(c[1:]) % 4}"}) for c in compound]
    return Treatments(Dataset(pd.DataFrame(index=pd.Index(names, name="sig_id"))), moa, compound, batches)


def _result(t: Treatments, correct: np.ndarray) -> tuple[dict, dict]:
    per = {n: bool(v) for n, v in zip(t.data.features.index, correct)}
    return {"per_treatment": per}, {"per_treatment": per}


def test_split_half_picks_on_one_half_and_scores_the_other() -> None:
    t = _treatments()
    n = len(t.moa)
    always = _result(t, np.ones(n, bool))
    never = _result(t, np.zeros(n, bool))
    assert split_half(t, [never, always], repeats=50)["nsc_mean"] == 1.0
    # a setting right on exactly the even compounds: chosen on a half only when that half favours it, and then
    # scored on the other half, so the estimate falls below its best-half score
    even = np.array([int(c[1:]) % 2 == 0 for c in t.compound])
    half = split_half(t, [_result(t, even), _result(t, ~even)], repeats=200)
    assert 0.0 < half["nsc_mean"] < 0.5 and half["repeats"] == 200


def test_report_shows_both_figures_and_kept_rows() -> None:
    row = {"description": "d", "nsc_accuracy": 0.9, "nscb_accuracy": 0.8, "nsc_treatments": 103,
           "nscb_treatments": 92, "nscb_accuracy_all_103": 0.7, "seconds": 1.0}
    methods = {name: dict(row) for name in METHODS}
    methods["default model, inferred layout (new user, no edits)"].update(
        nscb_accuracy=None, nscb_treatments=None, nscb_accuracy_all_103=None, command="moa benchmark real --nsc-only")
    report = {"command": "moa benchmark real", "data": {"wells": 632, "dmso_wells": 330, "batches": 10,
                                                        "treatments": 103, "compounds": 38, "moas": 12},
              "protocol": "p", "methods": methods, "published": {}, "figures": {k: list(v) for k, v in FIGURES.items()},
              "inferred_layout": {"reasons": ["because"], "settings": {"normalize": "robust_z_pooled", "whiten": 329}},
              "sensitivity": {"of": 32, "nsc_min_median_max": [0.8, 0.9, 0.95], "nscb_min_median_max": [0.7, 0.8, 0.9],
                              "meeting_both_goals": 19, "split_half": {"repeats": 2000, "nsc_mean": 0.9,
                                                                       "nsc_sd": 0.02, "nscb_mean": 0.82,
                                                                       "nscb_sd": 0.03}}}
    text = to_markdown(report)
    assert "## (a) What a new user gets" in text and "## (b) The tuned layout" in text
    assert text.index("## (a)") < text.index("knn, inferred layout") < text.index("## (b)") < text.index(TUNED_KNN)
    assert "not run" in text and "`moa benchmark real --nsc-only`" in text
    assert "Split-half nested estimate" in text and "0.900 ± 0.020" in text
    assert "no setting is chosen on held-out compounds" not in text
