"""One reference-counted thread limit (runtime.threads.limit_threads): overlapping predictions and explanations
from several Python threads leave torch's and BLAS's thread counts as they found them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from moa_predict.data.profiles import schema
from moa_predict.explain.report import explain_profiles
from moa_predict.models import make_model
from moa_predict.runtime.threads import limit_threads, set_threads
from moa_predict.bundle import Bundle

START = 2  # a count other than the limit, so a lost restore shows


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def counts() -> tuple[int, list[int]]:
    return torch.get_num_threads(), blas_threads()


@pytest.fixture(autouse=True)
def start_at_two():
    before = counts()
    set_threads(START)
    yield
    set_threads(before[0])
    threadpool_limits(before[1][0] if before[1] else None, user_api="blas")


def test_nested_limits_and_restore():
    with limit_threads(2):
        assert counts() == (2, [2] * len(blas_threads()))
        with limit_threads(1):
            assert counts() == (1, [1] * len(blas_threads()))
        assert torch.get_num_threads() == 2  # the outer block's limit again
    assert counts() == (START, [START] * len(blas_threads()))


def test_an_exception_inside_restores():
    with pytest.raises(RuntimeError, match="boom"):
        with limit_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert counts() == (START, [START] * len(blas_threads()))


def test_first_to_leave_does_not_restore_for_the_other():
    """A enters, B enters, A leaves (B still limited), B leaves (restored): separate save/restore left the
    process at one thread for good in this order."""
    a_in, b_in, a_out, b_may_leave = (threading.Event() for _ in range(4))
    seen: dict[str, tuple[int, list[int]]] = {}

    def a() -> None:
        with limit_threads(1):
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b() -> None:
        a_in.wait(5)
        with limit_threads(1):
            b_in.set()
            a_out.wait(5)
            seen["b after a left"] = counts()
            b_may_leave.wait(5)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    a_out.wait(5)
    b_may_leave.set()
    for t in threads:
        t.join(5)
    # torch only: this OpenBLAS ignores limits set from a thread other than the main one once the main thread
    # has set one (the fixture did), so the BLAS count read here is the main thread's
    assert seen["b after a left"][0] == 1
    assert counts() == (START, [START] * len(blas_threads()))


def test_set_threads_inside_a_block_is_what_comes_back():
    with limit_threads(1):
        set_threads(3)
        assert torch.get_num_threads() == 1
    assert counts() == (3, [3] * len(blas_threads()))


@pytest.fixture(scope="module")
def bundle(sim_dataset) -> Bundle:
    torch.manual_seed(0)
    model = make_model("mlp", hidden=(32,), epochs=2, g_pca=8, c_pca=4, batch_size=64, seed=0)
    model.fit(sim_dataset.features, sim_dataset.targets.to_numpy(np.float32),
              sim_dataset.nonscored.to_numpy(np.float32))
    return Bundle(model, list(sim_dataset.target_names))


def test_overlapping_predictions_and_explanations_restore_counts(bundle, sim_dir):
    from moa_predict.data.profiles.dataset import load_features

    test = load_features(sim_dir / "test_features.csv")
    few = test[test[schema.CP_TYPE] == schema.TREATED].iloc[:2]
    serial_pred = bundle.predict_proba(test, n_threads=2, chunk=16)
    serial_expl = explain_profiles(bundle, few, top_moas=1, top_k=3, n_steps=8)
    before = counts()

    def job(i: int):
        if i % 2:
            return "explain", explain_profiles(bundle, few, top_moas=1, top_k=3, n_steps=8)
        return "predict", bundle.predict_proba(test, n_threads=2, chunk=16)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(job, range(8)))

    assert counts() == before == (START, [START] * len(blas_threads()))
    for kind, result in results:
        if kind == "predict":
            assert np.array_equal(result, serial_pred)  # bit for bit: each chunk on one thread either way
        else:
            got = [e["probability"] for p in result["profiles"] for e in p["explanations"]]
            want = [e["probability"] for p in serial_expl["profiles"] for e in p["explanations"]]
            assert got == want  # bit for bit: explanations run with one torch thread in any thread


def test_torch_limit_holds_in_every_thread_that_enters():
    """Torch's thread count belongs to the calling thread: a block entered while another thread's block is
    inside still limits its own thread (before, the second entrant kept 2 threads and its answers differed)."""
    a_in, b_seen = threading.Event(), threading.Event()
    seen = {}

    def a() -> None:
        with limit_threads(1):
            a_in.set()
            b_seen.wait(5)

    def b() -> None:
        a_in.wait(5)
        torch.set_num_threads(3)  # this thread's own count (a new thread starts from the last one set anywhere)
        with limit_threads(1):
            seen["b"] = torch.get_num_threads()
        seen["b after"] = torch.get_num_threads()
        b_seen.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert seen["b"] == 1 and seen["b after"] == 3
    assert torch.get_num_threads() == START


@pytest.mark.parametrize("chunk", [16, 4096])
def test_predictions_do_not_depend_on_the_thread_count(bundle, sim_dir, chunk):
    """The same rows give the same bits with 1, 2 or 4 threads (row blocks depend on the row count only)."""
    from moa_predict.data.profiles.dataset import load_features

    test = load_features(sim_dir / "test_features.csv")
    one = bundle.predict_proba(test, n_threads=1, chunk=chunk)
    for n in (2, 4):
        assert np.array_equal(bundle.predict_proba(test, n_threads=n, chunk=chunk), one)
    set_threads(1)
    assert np.array_equal(bundle.predict_proba(test, chunk=chunk), one)


def test_row_blocks_depend_on_rows_only():
    from moa_predict.runtime.threads import row_blocks

    assert row_blocks(0) == []
    assert row_blocks(100) == [(0, 100)]
    assert row_blocks(2000) == [(0, 500), (500, 1000), (1000, 1500), (1500, 2000)]
    assert row_blocks(10000) == [(0, 2500), (2500, 5000), (5000, 7500), (7500, 10000)]
    assert row_blocks(20000, chunk=8000) == [(0, 5000), (5000, 10000), (10000, 15000), (15000, 20000)]
    assert row_blocks(50000)[:2] == [(0, 4096), (4096, 8192)] and row_blocks(50000)[-1] == (49152, 50000)
