"""Several models on one server (``moa serve --bundle A --bundle B``) and the server's work path under load:
the ``model`` field chooses the model, every answer and page names the one that answered, stored results remember
it (schema v2, migrated from v1), waiting uploads hold no thread, /api/health never waits on the work, and
results are written in the background but served at once."""

from __future__ import annotations

import json
import sqlite3
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

from moa_predict.models.prior import PriorModel  # noqa: E402
from moa_predict.bundle import load_bundle, save_bundle  # noqa: E402
from moa_predict.training.train import train_bundle  # noqa: E402
from moa_predict.web import create_app  # noqa: E402
from moa_predict.web.core.db import DB_NAME, MIGRATIONS, SCHEMA_VERSION  # noqa: E402
from moa_predict.web.core.jsonbody import json_bytes  # noqa: E402
from moa_predict.web.services.registry import bundle_name  # noqa: E402
from moa_predict.web.core.settings import WebSettings  # noqa: E402
from moa_predict.web.core.store import Prediction, ResultStore  # noqa: E402


@pytest.fixture(scope="module")
def bundle_dirs(sim_dataset, tmp_path_factory) -> list[Path]:
    """Two bundles saved under different names (the prior on the full set and on half of it)."""
    out = tmp_path_factory.mktemp("two_models")
    first, _ = train_bundle(PriorModel(), sim_dataset, cv=False, progress=False)
    half = sim_dataset.subset(np.arange(len(sim_dataset.features) // 2))
    second, _ = train_bundle(PriorModel(), half, cv=False, progress=False)
    return [save_bundle(first, out / "lish-full"), save_bundle(second, out / "lish-half")]


@pytest.fixture(scope="module")
def upload(sim_dir) -> bytes:
    return pd.read_csv(sim_dir / "test_features.csv", dtype={"sig_id": str}).head(20).to_csv(index=False).encode()


def post(client, content: bytes, url: str = "/api/predict", data: dict | None = None, **kw):
    return client.post(url, files={"file": ("profiles.csv", content, "text/csv")}, data=data, **kw)


def app_on(bundles, data_dir, **settings):
    return create_app(bundles, settings=WebSettings(data_dir=str(data_dir), **settings))


# ------------------------------------------------------------------------------------------------
# several models
# ------------------------------------------------------------------------------------------------


def test_the_model_field_chooses_and_every_answer_names_the_model(bundle_dirs, upload, tmp_path):
    client = TestClient(app_on(bundle_dirs, tmp_path), raise_server_exceptions=False)
    listed = client.get("/api/models").json()
    assert listed["default"] == "lish-full"
    assert [(m["name"], m["default"]) for m in listed["models"]] == [("lish-full", True), ("lish-half", False)]
    assert client.get("/api/health").json()["models"] == ["lish-full", "lish-half"]

    default = post(client, upload).json()
    chosen = post(client, upload, data={"model": "lish-half"}).json()
    assert default["model_id"] == "lish-full" and chosen["model_id"] == "lish-half"
    assert default["predictions"][0]["probabilities"] != chosen["predictions"][0]["probabilities"]  # other model
    rows = pd.read_csv(pd.io.common.BytesIO(upload)).to_dict("records")
    assert client.post("/api/predict", json={"rows": rows, "model": "lish-half"}).json()["model_id"] == "lish-half"
    assert client.post("/api/predict?model=lish-half", json={"rows": rows}).json()["model_id"] == "lish-half"
    unknown = post(client, upload, data={"model": "nope"})
    assert unknown.status_code == 422 and "lish-full, lish-half" in unknown.json()["error"]
    assert client.get("/api/model?model=lish-half").json()["model_id"] == "lish-half"

    rid = chosen["result_id"]  # the stored result is drawn by the model that answered it
    assert client.get(f"/results/{rid}/predictions.json").json()["predictions"] == chosen["predictions"]
    assert 'id="answered-by"><code>lish-half</code>' in client.get(f"/results/{rid}").text
    explained = client.get(f"/api/results/{rid}/explain", params={"sig_ids": chosen["predictions"][0]["sig_id"]})
    assert explained.json()["model_id"] == "lish-half"
    home = client.get("/").text
    assert 'name="model"' in home and '<option value="lish-half">' in home and 'value="lish-full" selected' in home
    page = client.post("/predict", files={"file": ("p.csv", upload, "text/csv")}, data={"model": "lish-half"})
    assert page.status_code == 200 and 'id="answered-by"><code>lish-half</code>' in page.text, (page.url, page.text[:500])
    client.app.state.service.store.close()

    # after a restart the result still names its model; a server without it says so (410), not a wrong answer
    again = TestClient(app_on(bundle_dirs, tmp_path), raise_server_exceptions=False)
    assert again.get(f"/results/{rid}/predictions.json").json()["model_id"] == "lish-half"
    again.app.state.service.store.close()
    alone = TestClient(app_on(bundle_dirs[:1], tmp_path), raise_server_exceptions=False)
    gone = alone.get(f"/results/{rid}/predictions.csv")
    assert gone.status_code == 410 and "lish-half" in gone.text
    assert alone.get(f"/results/{default['result_id']}/predictions.csv").status_code == 200


def test_one_model_answers_as_before(bundle_dirs, upload, tmp_path):
    """A single bundle: no chooser on the page, the answer's `model` is the model's name as it always was."""
    client = TestClient(app_on(bundle_dirs[0], tmp_path), raise_server_exceptions=False)
    answer = post(client, upload).json()
    assert answer["model"] == "prior" and answer["model_id"] == "lish-full"
    assert 'name="model"' not in client.get("/").text
    assert bundle_name(load_bundle(bundle_dirs[1])) == "lish-half"


def test_serve_takes_the_bundle_option_repeated(bundle_dirs, tmp_path, monkeypatch, capsys):
    import uvicorn

    from moa_predict.cli import main

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(app))
    main(["serve", "--bundle", str(bundle_dirs[0]), "--bundle", str(bundle_dirs[1]), "--port", "9124",
          "--data-dir", str(tmp_path)])
    (app,) = started
    assert app.state.models.names == ["lish-full", "lish-half"]
    assert "models 'lish-full', 'lish-half'; default 'lish-full'" in capsys.readouterr().err


def test_a_version_1_database_is_migrated_and_its_results_belong_to_the_default(tmp_path):
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO results VALUES ('old_result_id_0001', 'x.csv', ?, 0.1, 1, 1, '[]', 0, NULL)",
                 (time.time(),))
    conn.commit()
    conn.close()
    store = ResultStore(tmp_path)
    assert store.db.one("PRAGMA user_version")[0] == SCHEMA_VERSION == 2
    columns = {r["name"] for r in store.db.all("PRAGMA table_info(results)")}
    assert "model" in columns and store.db.one("SELECT model FROM results")["model"] is None


# ------------------------------------------------------------------------------------------------
# the work path: the gate, /api/health, background writes, JSON
# ------------------------------------------------------------------------------------------------


def test_waiting_uploads_hold_no_thread_and_health_never_waits(bundle_dirs, upload, tmp_path, monkeypatch):
    """With one slot and the first upload stuck in it, four more wait in the event loop: none of them enters
    the threadpool (the old path parked each in a thread, until the pool ran dry and health waited too), and
    /api/health answers at once, even with the database locked by a writer."""
    app = app_on(bundle_dirs[0], tmp_path, max_parallel=1)
    service = app.state.service
    release, entered = threading.Event(), []
    original = service.predict_file

    def slow(*args, **kwargs):
        entered.append(time.time())
        release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "predict_file", slow)
    with TestClient(app, raise_server_exceptions=False) as client, ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(post, client, upload) for _ in range(5)]
        deadline = time.time() + 10
        while not entered and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert len(entered) == 1  # the others wait without a thread
        with service.store.db._lock:  # a writer holding the database: health does not ask it
            t0 = time.perf_counter()
            health = client.get("/api/health")
            assert health.status_code == 200 and time.perf_counter() - t0 < 1.0
        release.set()
        answers = [f.result(timeout=60) for f in futures]
    assert [a.status_code for a in answers] == [200] * 5 and len(entered) == 5


def test_health_answers_with_every_thread_lock_and_slot_of_the_work_taken(bundle_dirs, upload, tmp_path):
    """/api/health needs nothing the work holds: with every thread of the threadpool taken, the store's lock held
    by a writer, the database's lock and every prediction slot held, it still answers at once (a dependency run
    in the threadpool, or a count read under the store's lock, would wait here until the work let go)."""
    import anyio

    app = app_on(bundle_dirs[0], tmp_path)
    service = app.state.service
    with TestClient(app) as client:
        assert post(client, upload).status_code == 200
        limiter = client.portal.call(anyio.to_thread.current_default_thread_limiter)
        holders = [object() for _ in range(int(limiter.total_tokens))]
        for holder in holders:  # the threadpool runs dry: every thread busy with uploads
            client.portal.call(limiter.acquire_on_behalf_of, holder)
        slots = [service._slots.acquire(timeout=5) for _ in range(service.settings.max_parallel)]
        answer: list = []
        try:
            with service.store._lock, service.store.db._lock:
                asking = threading.Thread(target=lambda: answer.append(client.get("/api/health")), daemon=True)
                t0 = time.perf_counter()
                asking.start()
                asking.join(5)
                waited = time.perf_counter() - t0
        finally:
            for holder in holders:
                client.portal.call(limiter.release_on_behalf_of, holder)
            for taken in slots:
                if taken:
                    service._slots.release()
        assert answer and answer[0].status_code == 200, "health waited on the work"
        assert answer[0].json()["results_kept"] == 1 and waited < 1.0


def test_results_are_written_in_the_background_and_served_meanwhile(tmp_path, monkeypatch):
    store = ResultStore(tmp_path, background=True)
    gate, original = threading.Event(), store._write
    monkeypatch.setattr(store, "_write", lambda p: (gate.wait(30), original(p)))
    pred = Prediction(source="x.csv", sig_ids=np.array(["a", "b"], dtype=object),
                      cp_type=np.array(["trt_cp", "trt_cp"], dtype=object), cp_time=np.array([24, 48]),
                      cp_dose=np.array(["D1", "D2"], dtype=object), proba=np.full((2, 3), 0.5, np.float32),
                      extra=None, seconds=0.1, model="m")
    t0 = time.perf_counter()
    store.put(pred)
    assert time.perf_counter() - t0 < 1.0  # the answer does not wait for the files
    assert store.require(pred.id) is pred and len(store) == 1 and not list((tmp_path / "results").iterdir())
    gate.set()
    store.close()  # writes what is pending
    again = ResultStore(tmp_path)
    kept = again.require(pred.id)
    assert kept.model == "m" and np.array_equal(kept.proba, pred.proba) and len(again) == 1


def test_json_bytes_read_back_as_the_standard_library_writes_them():
    content = {"a": [0.123457, 1e-06, 0.0, 1.0], "b": np.float32(0.25), "c": np.arange(3), "d": None, "e": "é",
               "f": (1, 2)}
    assert json.loads(json_bytes(content)) == {"a": [0.123457, 1e-06, 0.0, 1.0], "b": 0.25, "c": [0, 1, 2],
                                               "d": None, "e": "é", "f": [1, 2]}
