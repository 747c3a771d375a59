"""Hostile input: Schemathesis against the app's own OpenAPI schema (every operation, seeded, derandomized: zero
5xx, every answer documented and matching its schema), and Hypothesis on the table readers (random bytes,
damaged tables: a DataError, never another exception). The full run is ``bench/server.py --fuzz-examples``."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from moa_predict.data.profiles import schema as cols  # noqa: E402
from moa_predict.data.profiles.dataset import load_features  # noqa: E402
from moa_predict.data.errors import DataError  # noqa: E402
from moa_predict.data.formats.io import read_table  # noqa: E402

EXAMPLES_PER_OPERATION = int(os.environ.get("MOA_FUZZ_EXAMPLES", "40"))
QUIET = settings(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def app(sim_dataset):
    from moa_predict.models import make_model
    from moa_predict.training.train import train_bundle
    from moa_predict.web import create_app

    bundle, _ = train_bundle(make_model("prior"), sim_dataset, cv=False, progress=False)
    return create_app(bundle)


def fuzz_operations(app, examples: int) -> dict[str, dict[int, int]]:
    """Run every operation of the app's schema `examples` times; the status codes seen per operation. Raises
    (Schemathesis' failure, with the reproducing request) on a 5xx or an undocumented / non-conforming answer."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: dict[str, dict[int, int]] = {}
    for found in api.get_all_operations():
        operation = found.ok()
        codes = seen.setdefault(operation.label, {})

        @given(case=operation.as_strategy())
        @settings(QUIET, max_examples=examples)
        def run(case) -> None:
            response = case.call()
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
            case.validate_response(response, checks=checks)

        run()
    return seen


@pytest.mark.slow  # Schemathesis over every operation; the fast set keeps the random-bytes fuzzing of the readers
def test_every_api_operation_survives_fuzzing(app):
    seen = fuzz_operations(app, EXAMPLES_PER_OPERATION)
    assert {"POST /api/predict", "POST /api/explain", "GET /api/jobs/{job_id}", "GET /api/health"} <= set(seen)
    assert all(code < 500 for codes in seen.values() for code in codes)
    assert sum(seen["POST /api/predict"].values()) >= EXAMPLES_PER_OPERATION // 2


# ------------------------------------------------------------------------------------------------
# the readers
# ------------------------------------------------------------------------------------------------


def only_data_errors(read, payload: bytes, name: str) -> None:
    try:
        read(io.BytesIO(payload), name)
    except DataError as exc:
        assert str(exc)  # a message a user can act on


@given(payload=st.binary(max_size=2048), name=st.sampled_from(["x.csv", "x.parquet", "x.csv.gz", "x.txt"]),
       magic=st.sampled_from([b"", b"PAR1", b"\x1f\x8b", b"sig_id,cp_type\n"]))
@settings(QUIET, max_examples=200)
def test_random_bytes_give_a_data_error_or_a_table(payload, name, magic):
    payload = magic + payload + (b"PAR1" if magic == b"PAR1" else b"")
    only_data_errors(lambda f, n: read_table(f, name=n), payload, name)
    only_data_errors(lambda f, n: load_features(f, name=n), payload, name)


CELLS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20),
                  st.text(max_size=6), st.none(), st.sampled_from(["trt_cp", "ctl_vehicle", "D1", "D2", "24", ""]))


@st.composite
def damaged_tables(draw) -> tuple[bytes, str]:
    """A valid-ish test_features table (a few rows), then damaged: cells replaced, columns dropped or
    duplicated, written as CSV or Parquet."""
    n = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    frame = pd.DataFrame(rng.normal(size=(n, len(cols.FEATURE_COLUMNS))).astype(np.float32),
                         columns=list(cols.FEATURE_COLUMNS))
    frame.insert(0, cols.CP_DOSE, "D1")
    frame.insert(0, cols.CP_TIME, 24)
    frame.insert(0, cols.CP_TYPE, "trt_cp")
    frame.insert(0, cols.SIG_ID, [f"id_{i}" for i in range(n)])
    frame = frame.astype(object)
    for _ in range(draw(st.integers(0, 4))):
        frame.iat[draw(st.integers(0, n - 1)), draw(st.integers(0, 8))] = draw(CELLS)
    if draw(st.booleans()):
        frame = frame.drop(columns=draw(st.sampled_from([cols.SIG_ID, cols.CP_TYPE, cols.CP_TIME, "g-0", "c-99"])))
    if draw(st.booleans()):
        frame = pd.concat([frame, frame.iloc[:, [1]]], axis=1)
    if draw(st.booleans()):
        out = io.BytesIO()
        try:
            frame.to_parquet(out, index=False)
        except Exception:  # mixed types pyarrow cannot write: test the CSV instead
            return frame.to_csv(index=False).encode(), "t.csv"
        return out.getvalue(), "t.parquet"
    text = frame.to_csv(index=False).encode()
    cut = draw(st.integers(0, len(text)))
    return (text[:cut] if draw(st.booleans()) else text), "t.csv"


@pytest.mark.slow  # 80 damaged tables through the reader; the fast set keeps the random-bytes fuzzing
@given(table=damaged_tables())
@settings(QUIET, max_examples=80)
def test_damaged_tables_give_a_data_error_or_valid_profiles(table):
    payload, name = table
    only_data_errors(lambda f, n: load_features(f, name=n), payload, name)
