"""`moa benchmark models` end to end on the small simulated set (quick mode: a third of the epochs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moa_predict.benchmarks.models import run_model_benchmark
from moa_predict.benchmarks.models_report import to_markdown, write_outputs

# one `moa benchmark models` run (every model cross-validated) feeds both tests: minutes, so only in the full
# suite; the fast set keeps the paper benchmark's end-to-end test (test_paper_nn.py) and the models' own tests
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reports(sim_dataset, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    first = run_model_benchmark(sim_dataset, quick=True, n_splits=3, cache_dir=cache, include_paper=False,
                                progress=False)
    again = run_model_benchmark(sim_dataset, quick=True, n_splits=3, cache_dir=cache, include_paper=False,
                                progress=False)
    return first, again


def test_table_rows_and_nested_blend(reports):
    first, _ = reports
    kinds = [r["kind"] for r in first["rows"]]
    assert kinds[0] == "baseline" and kinds[-1] == "default" and "reference" in kinds
    assert kinds.count("member") == len(first["blend"]["stack_all_folds"]["weights"])
    for r in first["rows"]:
        assert np.isfinite(r["score"]) and len(r["fold_scores"]) == 3 and r["predict_rows_per_second"] > 0
        assert not r["timings_from_cache"]
    assert set(first["blend"]["variants"]) == {"weights only", "weights + temperature",
                                               "weights + temperature + safeguard"}
    w = first["blend"]["stack_all_folds"]["weights"]
    assert min(w) >= 0 and abs(sum(w) - 1) < 1e-9
    assert first["rows"][-1]["score"] == pytest.approx(
        first["blend"]["variants"]["weights + temperature + safeguard"]["score"])
    assert set(first["ratios"]) == {"default / recipe-mlp"}


def test_cache_reproduces_scores_and_marks_rows(reports, tmp_path):
    first, again = reports
    assert [r["score"] for r in again["rows"]] == pytest.approx([r["score"] for r in first["rows"]])
    assert all(r["timings_from_cache"] for r in again["rows"])
    paths = write_outputs(again, tmp_path)
    assert json.loads(paths[0].read_text())["rows"][0]["model"] == "prior"
    assert "stored by an earlier run" in to_markdown(again)
