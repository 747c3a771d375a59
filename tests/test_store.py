"""Results that last (web/core/store.py, web/core/db.py), background jobs (web/core/jobs.py), the access token (web/core/auth.py):
links survive a restart, expired results say so, a job cut by a restart is failed, a kill -9 during writes
leaves a consistent store, and overlapping predictions and explanations leave the thread settings alone."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from moa_predict.models import make_model  # noqa: E402
from moa_predict.training.train import train_bundle  # noqa: E402
from moa_predict.web import create_app  # noqa: E402
from moa_predict.web.core.db import DB_NAME, SCHEMA_VERSION, Database  # noqa: E402
from moa_predict.web.core.jobs import RESTARTED  # noqa: E402
from moa_predict.web.core.settings import WebSettings  # noqa: E402
from moa_predict.web.core.store import Prediction, ResultStore  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def bundle(sim_dataset):
    model = make_model("mlp", hidden=(32,), epochs=2, g_pca=8, c_pca=4, batch_size=64, seed=0)
    trained, _ = train_bundle(model, sim_dataset, cv=False, progress=False)
    return trained


@pytest.fixture(scope="module")
def upload(sim_dir) -> bytes:
    frame = pd.read_csv(sim_dir / "test_features.csv", dtype={"sig_id": str}).head(30)
    frame["compound"] = [f"c{i % 4}" for i in range(len(frame))]
    return frame.to_csv(index=False).encode()


def app_on(bundle, data_dir, **settings):
    return create_app(bundle, settings=WebSettings(data_dir=str(data_dir), **settings))


def post(client, content: bytes, url="/api/predict", **kw):
    return client.post(url, files={"file": ("profiles.csv", content, "text/csv")}, **kw)


def prediction(n: int = 5, seed: int = 0, **kw) -> Prediction:
    rng = np.random.default_rng(seed)
    return Prediction(source="x.csv", sig_ids=np.array([f"s{i}" for i in range(n)], dtype=object),
                      cp_type=np.array(["trt_cp"] * n, dtype=object), cp_time=np.full(n, 24),
                      cp_dose=np.array(["D1"] * n, dtype=object), proba=rng.random((n, 4), dtype=np.float32),
                      seconds=0.1, **{"extra": None, **kw})


# ------------------------------------------------------------------------------------------------
# the store
# ------------------------------------------------------------------------------------------------


def test_links_survive_a_restart(bundle, upload, tmp_path):
    first = TestClient(app_on(bundle, tmp_path), raise_server_exceptions=False)
    answer = post(first, upload).json()
    rid = answer["result_id"]
    page = first.get(f"/results/{rid}?per=25")
    csv = first.get(f"/results/{rid}/predictions.csv").content
    compounds = first.get(f"/results/{rid}/compounds.csv").content
    explained = first.get(f"/api/results/{rid}/explain", params={"sig_ids": answer["predictions"][0]["sig_id"]})
    first.app.state.service.store.close()

    again = TestClient(app_on(bundle, tmp_path), raise_server_exceptions=False)  # a new process would see this
    assert again.get(f"/results/{rid}/predictions.csv").content == csv  # every probability, bit for bit
    assert again.get(f"/results/{rid}/compounds.csv").content == compounds
    assert again.get(f"/results/{rid}?per=25").status_code == 200 == page.status_code
    assert again.get(f"/results/{rid}/predictions.json").json()["predictions"] == answer["predictions"]
    assert again.get(f"/api/results/{rid}/explain",
                     params={"sig_ids": answer["predictions"][0]["sig_id"]}).json() == explained.json()
    assert again.get("/api/health").json()["results_kept"] == 1
    # ids are random and the files are named by them, never by the upload's name
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [f"{rid}.npy", f"{rid}.parquet"]


def test_expired_results_say_so(tmp_path):
    now = [1000.0]
    store = ResultStore(tmp_path, max_age_seconds=60, clock=lambda: now[0])
    old, new = prediction(created=1000.0), prediction(seed=1, created=1000.0)
    store.put(old)
    now[0] = 1050.0
    new.created = 1050.0
    store.put(new)
    now[0] = 1070.0  # old is 70 s old: past the 60 s limit
    assert store.get(old.id) is None and store.expired(old.id) and not store.expired(new.id)
    assert not (tmp_path / "results" / f"{old.id}.npy").exists()  # its files are gone, its row says "expired"
    assert store.get(new.id) is new and len(store) == 1
    assert not store.expired("A" * 22)  # unknown: 404, not 410


def test_expired_page_and_api_answer_410(bundle, upload, tmp_path):
    app = app_on(bundle, tmp_path, max_age_days=1)
    client = TestClient(app, raise_server_exceptions=False)
    rid = post(client, upload).json()["result_id"]
    app.state.service.store.clock = lambda: time.time() + 2 * 86400
    r = client.get(f"/results/{rid}")
    assert r.status_code == 410 and "This result has expired" in r.text and "keeps results for 1 days" in r.text
    r = client.get(f"/api/results/{rid}/explain")
    assert r.status_code == 410 and r.json()["error"].startswith("this result has expired")
    assert client.get("/results/" + "B" * 22).status_code == 404


def test_size_cap_expires_the_oldest_never_the_newest(tmp_path):
    store = ResultStore(tmp_path, max_disk_bytes=1)
    a, b = prediction(), prediction(seed=1)
    store.put(a)
    store.put(b)
    assert store.expired(a.id) and store.get(b.id) is b and len(store) == 1


def test_mixed_type_pass_through_columns_are_kept(tmp_path):
    extra = pd.DataFrame({"note": [1, "two", None, 4.5, "x"], "dose_um": [0.1, 0.2, 0.3, 0.4, 0.5]})
    pred = prediction(extra=extra)
    ResultStore(tmp_path).put(pred)
    back = ResultStore(tmp_path).get(pred.id)
    assert back.extra["note"].tolist()[:2] == ["1", "two"]
    assert back.extra["dose_um"].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert np.array_equal(back.proba, pred.proba) and back.proba.dtype == np.float32


def test_schema_is_versioned_and_newer_databases_are_refused(tmp_path):
    Database(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this moa-predict knows"):
        Database(tmp_path)


KILLER = textwrap.dedent("""
    import sys, numpy as np
    from moa_predict.web.core.store import Prediction, ResultStore
    store = ResultStore(sys.argv[1])
    rng = np.random.default_rng(0)
    n = 2000
    while True:
        p = Prediction(source="x.csv", sig_ids=np.array([f"s{i}" for i in range(n)], dtype=object),
                       cp_type=np.array(["trt_cp"] * n, dtype=object), cp_time=np.full(n, 24),
                       cp_dose=np.array(["D1"] * n, dtype=object), proba=rng.random((n, 206), dtype=np.float32),
                       extra=None, seconds=0.0)
        store.put(p)
        print(p.id, flush=True)
""")


def test_store_survives_kill_9_during_writes(tmp_path):
    """A writer killed at a random point: every result it reported is served whole, no half-written result or
    stray file is left, and the database passes SQLite's integrity check."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", KILLER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    done = [proc.stdout.readline().strip() for _ in range(5)]
    time.sleep(0.05)  # somewhere inside the next write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done += [line.strip() for line in proc.stdout.read().splitlines()]
    store = ResultStore(tmp_path)
    assert store.db.one("PRAGMA integrity_check")[0] == "ok"
    assert len(store) >= len(done) >= 5
    for rid in done:
        assert store.get(rid).proba.shape == (2000, 206)
    live = {r["id"] for r in store.db.all("SELECT id FROM results")}
    assert {p.name.split(".")[0] for p in (tmp_path / "results").iterdir()} == live  # no orphan, no temp file


# ------------------------------------------------------------------------------------------------
# background jobs
# ------------------------------------------------------------------------------------------------


def wait_for(client, job_url, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(job_url).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job not finished: {job}")


def test_large_uploads_are_jobs_that_turn_into_results(bundle, upload, tmp_path):
    app = app_on(bundle, tmp_path, job_threshold_bytes=1000)
    client = TestClient(app, raise_server_exceptions=False)
    r = post(client, upload)
    assert r.status_code == 202 and r.headers["location"] == r.json()["links"]["job"]
    job = wait_for(client, r.json()["links"]["job"])
    assert job["status"] == "done" and job["progress"] == 1.0
    direct = TestClient(app_on(bundle, tmp_path / "direct"), raise_server_exceptions=False)
    direct_id = post(direct, upload).json()["result_id"]
    assert (client.get(f"{job['links']['results_page']}/predictions.csv").content
            == direct.get(f"/results/{direct_id}/predictions.csv").content)
    page = client.post("/predict", files={"file": ("p.csv", upload, "text/csv")}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/jobs/")
    job_id = page.headers["location"].split("/")[2].split("?")[0]
    wait_for(client, f"/api/jobs/{job_id}")
    done = client.get(page.headers["location"], follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith("/results/")
    assert client.get(done.headers["location"]).status_code == 200
    bad = post(client, upload.replace(b"trt_cp", b"trt_xx", 1))
    job = wait_for(client, bad.json()["links"]["job"])
    assert job["status"] == "failed" and "cp_type" in job["message"]
    assert "cp_type" in client.get(f"/jobs/{job['job_id']}").text
    assert client.get("/api/jobs/nope").status_code == 404
    assert not list((tmp_path / "uploads").iterdir())  # the upload copies are deleted


def test_a_job_cut_by_a_restart_is_failed(bundle, upload, tmp_path, monkeypatch):
    release = threading.Event()
    app = app_on(bundle, tmp_path, job_threshold_bytes=1000)
    real = app.state.service.predict_file

    def slow(handle, name, progress=None):
        progress("predicting", 0.5)
        release.wait(30)
        raise RuntimeError("the process is gone")

    monkeypatch.setattr(app.state.service, "predict_file", slow)
    client = TestClient(app, raise_server_exceptions=False)
    job_url = post(client, upload).json()["links"]["job"]
    while client.get(job_url).json()["status"] != "running":
        time.sleep(0.02)
    page = client.get(job_url.replace("/api", ""))
    assert 'http-equiv="refresh"' in page.text and "50%" in page.text

    again = TestClient(app_on(bundle, tmp_path, job_threshold_bytes=1000), raise_server_exceptions=False)
    job = again.get(job_url).json()
    assert job["status"] == "failed" and job["message"] == RESTARTED and job["result_id"] is None
    assert "the server restarted" in again.get(job_url.replace("/api", "")).text
    assert not list((tmp_path / "uploads").iterdir())
    release.set()
    monkeypatch.setattr(app.state.service, "predict_file", real)


# ------------------------------------------------------------------------------------------------
# the access token
# ------------------------------------------------------------------------------------------------


def test_token_guards_every_page_and_api_call(bundle, upload, tmp_path):
    client = TestClient(app_on(bundle, tmp_path, token="s3cret-token"), raise_server_exceptions=False)
    assert client.get("/api/health").json()["status"] == "ok"  # monitors need no token
    for url in ("/", "/api/model", "/docs", "/openapi.json", "/results/" + "A" * 22, "/example.csv"):
        assert client.get(url).status_code == 401, url
    r = post(client, upload)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "access token" in r.json()["error"]
    assert post(client, upload, headers={"Authorization": "Bearer wrong"}).status_code == 401
    page = client.get("/results/xyz?page=2")
    assert page.status_code == 401 and 'name="token"' in page.text and 'value="/results/xyz?page=2"' in page.text

    r = post(client, upload, headers={"Authorization": "Bearer s3cret-token"})
    assert r.status_code == 200
    rid = r.json()["result_id"]
    bad = client.post("/login", data={"token": "nope", "next": "/"}, follow_redirects=False)
    assert bad.status_code == 401 and "not right" in bad.text and "moa_session" not in bad.headers.get("set-cookie", "")
    ok = client.post("/login", data={"token": "s3cret-token", "next": f"/results/{rid}"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == f"/results/{rid}"
    assert "s3cret-token" not in ok.headers["set-cookie"] and "HttpOnly" in ok.headers["set-cookie"]
    assert client.get(f"/results/{rid}").status_code == 200  # the cookie now
    elsewhere = client.post("/login", data={"token": "s3cret-token", "next": "//evil.example/"},
                            follow_redirects=False)
    assert elsewhere.headers["location"] == "/"


def test_serve_warns_on_a_network_address_without_a_token(bundle, tmp_path, monkeypatch, capsys, port):
    import uvicorn

    from moa_predict.web.server import serve

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    from moa_predict.bundle import save_bundle

    save_bundle(bundle, tmp_path / "bundle")
    serve(tmp_path / "bundle", host="0.0.0.0", port=port, data_dir=tmp_path / "d1")
    assert "without an access token" in capsys.readouterr().err
    monkeypatch.setenv("MOA_TOKEN", "t")
    serve(tmp_path / "bundle", host="0.0.0.0", port=port, data_dir=tmp_path / "d2")
    err = capsys.readouterr().err
    assert "without an access token" not in err and "access token required" in err
    serve(tmp_path / "bundle", host="127.0.0.1", port=port, data_dir=tmp_path / "d3", token=None)


# ------------------------------------------------------------------------------------------------
# concurrency
# ------------------------------------------------------------------------------------------------


def test_overlapping_predictions_and_explanations_keep_answers_and_thread_settings(bundle, upload, tmp_path):
    import torch
    from threadpoolctl import threadpool_info

    def counts():
        return torch.get_num_threads(), [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    client = TestClient(app_on(bundle, tmp_path), raise_server_exceptions=False)
    serial = post(client, upload).json()
    rid = serial["result_id"]
    treated = [p["sig_id"] for p in serial["predictions"] if not p["control"]][:2]
    explain_serial = client.post("/api/explain", files={"file": ("p.csv", upload, "text/csv")},
                                 data={"sig_ids": treated[0], "top_moas": "1"}).json()
    before = counts()

    def call(i: int):
        if i % 3 == 0:
            return "predict", post(client, upload).json()
        if i % 3 == 1:
            return "explain", client.post("/api/explain", files={"file": ("p.csv", upload, "text/csv")},
                                          data={"sig_ids": treated[0], "top_moas": "1"}).json()
        return "health", client.get("/api/health").json()

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(call, range(12)))
    assert counts() == before
    for kind, answer in results:
        if kind == "predict":
            assert answer["predictions"] == serial["predictions"] and answer["result_id"] != rid
        elif kind == "explain":
            got = [e["probability"] for p in answer["profiles"] for e in p["explanations"]]
            want = [e["probability"] for p in explain_serial["profiles"] for e in p["explanations"]]
            assert got == want  # bit for bit: every explanation runs with one torch thread
        else:
            assert answer["status"] == "ok"
    assert len(client.app.state.service.store) == 5
