"""The server under load, across restarts and under fuzzing, as users run it: a separate `moa serve` process on
127.0.0.1 with its own data directory.

    python bench/server.py                                     # moa simulate + train the prior in a temp dir
    python bench/server.py --data /tmp/websim --bundle /tmp/webbundle --uploads 50 --fuzz-examples 300

1. load: `--uploads` (50) concurrent POST /api/predict of the 3,982-row test_features.csv (SIMULATED profiles:
   `moa simulate --out DIR --rows 600 --test-rows 3982`); every answer compared with `moa predict` on the same
   file (after the load: the client's own parsing is not timed); p50/p95 latency (until the answer's last
   byte); peak RSS of the server process (sampled from /proc every 0.1 s); the server's CPU seconds per upload
   (from /proc: less sensitive to other jobs on the machine than the wall clock); the machine's load average
   sampled every second; GET /api/health polled throughout by a separate process (so the client's threads do
   not delay its own polls): each answer's latency, and any failure.
2. restarts: the server stopped (SIGTERM) and started again: every result link of step 1 still served, the same
   CSV bytes; a background job stopped mid-run is 'failed' with the restart message after the next start.
3. kill -9 during writes: uploads in flight, the server killed with SIGKILL, started again: SQLite's integrity
   check passes, every result in the database is served whole, no stray file.
4. fuzzing: tests/test_fuzz.py with `--fuzz-examples` per API operation (Schemathesis, seeded, derandomized).
0. where one upload's time goes, in this process: CPU seconds of reading + validating the file, predicting,
   storing (Parquet + .npy + the SQLite row; done by the server's background writer, off the answer's path) and
   rendering the JSON answer (median of 3), so a slow load can be traced to its stage.

Writes docs/server_benchmark.json and prints the README table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
MOA = [sys.executable, "-m", "moa_predict.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(data: str | None, bundle: str | None, workdir: Path, model: str = "prior") -> tuple[Path, Path]:
    """A simulated data set (600 train / 3,982 test rows, seed 0) and a bundle (`model`, no CV), unless given."""
    data_dir = Path(data) if data else workdir / "sim"
    if not (data_dir / "test_features.csv").is_file():
        print(f"simulating into {data_dir} ...", flush=True)
        subprocess.run([*MOA, "simulate", "--out", str(data_dir), "--rows", "600", "--test-rows", "3982"],
                       check=True, env=ENV, stdout=subprocess.DEVNULL)
    if bundle:
        return data_dir, Path(bundle)
    from moa_predict.data.profiles.dataset import load_dataset
    from moa_predict.models import make_model
    from moa_predict.bundle import save_bundle
    from moa_predict.training.train import train_bundle

    print(f"training the {model} bundle ...", flush=True)
    trained, _ = train_bundle(make_model(model), load_dataset(data_dir), cv=False, progress=False)
    return data_dir, save_bundle(trained, workdir / "bundle")


class Server:
    """`moa serve` in a subprocess, with its RSS sampled while it runs."""

    def __init__(self, bundle: Path, data_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([*MOA, "serve", "--bundle", str(bundle), "--port", str(self.port),
                                      "--data-dir", str(data_dir), *extra], env=ENV, stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True)
        self.peak_rss = 0
        self._sampling = True
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"moa serve exited: {self.log.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("moa serve did not start in 180 s")
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        while self._sampling and self.proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
            except OSError:
                return
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self._sampling = False
        self.proc.send_signal(sig)
        self.proc.wait(60)


def expected_probabilities(bundle: Path, features: Path, workdir: Path) -> pd.DataFrame:
    out = workdir / "expected.parquet"
    subprocess.run([*MOA, "predict", "--bundle", str(bundle), "--features", str(features), "--out", str(out),
                    "--quiet"], check=True, env=ENV, stdout=subprocess.DEVNULL)
    return pd.read_parquet(out).set_index("sig_id")


def upload(url: str, content: bytes, timeout: float = 600) -> tuple[float, httpx.Response]:
    """Seconds from sending the file to the answer's last byte (httpx reads the whole body), and the answer."""
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/api/predict", files={"file": ("test_features.csv", content, "text/csv")},
                   timeout=timeout)
    return time.perf_counter() - t0, r


HEALTH_POLLER = """
import sys, time, httpx
url = sys.argv[1]
with httpx.Client() as client:
    while True:
        t0 = time.perf_counter()
        try:
            r = client.get(url, timeout=30)
            ok = r.status_code == 200 and r.json()["status"] == "ok"
        except httpx.HTTPError:
            ok = False
        print(f"{time.perf_counter() - t0:.4f} {int(ok)}", flush=True)
        time.sleep(0.5)
"""
"""/api/health polled every 0.5 s from its own process: each line the answer's seconds and 1 (ok) or 0."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def correct(answer: dict, expected: pd.DataFrame) -> bool:
    """Same profiles in the same order, every probability within the API's 6-decimal rounding."""
    got = np.array([p["probabilities"] for p in answer["predictions"]], dtype=np.float64)
    ids = [p["sig_id"] for p in answer["predictions"]]
    want = expected.loc[ids, answer["targets"]].to_numpy(np.float64)
    return ids == list(expected.index) and got.shape == want.shape and float(np.abs(got - want).max()) <= 5.1e-7


def profile_upload(bundle: Path, features: Path, repeats: int = 3) -> dict:
    """CPU seconds of each stage of one upload (median of `repeats`), measured in this process on the
    server's own code path (``ModelService``)."""
    from moa_predict.bundle import load_bundle
    from moa_predict.web.core.jsonbody import json_bytes
    from moa_predict.web.services.model_service import ModelService
    from moa_predict.web.core.settings import WebSettings

    stages: dict[str, list[float]] = {"read_validate": [], "predict": [], "store": [], "render_json": []}
    with tempfile.TemporaryDirectory(prefix="moa-bench-profile-") as tmp:
        service = ModelService(load_bundle(bundle), WebSettings(data_dir=tmp, store_in_background=False))
        for _ in range(repeats):
            c = time.process_time()
            with open(features, "rb") as handle:
                frame, name = service.read_file(handle, features.name)
            stages["read_validate"].append(time.process_time() - c)
            c = time.process_time()
            put, service.store.put = service.store.put, lambda p: p.id  # predict without storing
            pred = service._predict(frame, name, time.perf_counter())
            service.store.put = put
            stages["predict"].append(time.process_time() - c)
            c = time.process_time()
            service.store.put(pred)
            stages["store"].append(time.process_time() - c)
            c = time.process_time()
            json_bytes(service.result_json(pred, top=10))
            stages["render_json"].append(time.process_time() - c)
        service.store.close()
    out = {k: round(statistics.median(v), 3) for k, v in stages.items()}
    out["total"] = round(sum(out.values()), 3)
    return {"cpu_seconds_per_upload": out, "repeats": repeats}


def load_test(server: Server, content: bytes, expected: pd.DataFrame, n: int) -> dict:
    poller = subprocess.Popen([sys.executable, "-c", HEALTH_POLLER, f"{server.url}/api/health"],
                              stdout=subprocess.PIPE, text=True)
    loads: list[float] = []
    stop = threading.Event()

    def sample_load() -> None:
        while not stop.wait(1.0):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample_load, daemon=True)
    sampler.start()
    time.sleep(1.0)  # the poller's first answers come from an idle server
    server_cpu, client_cpu = cpu_seconds(server.proc.pid), time.process_time()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(lambda _: upload(server.url, content), range(n)))
    wall = time.perf_counter() - t0
    server_cpu, client_cpu = cpu_seconds(server.proc.pid) - server_cpu, time.process_time() - client_cpu
    stop.set()
    poller.terminate()
    polls = [line.split() for line in poller.communicate()[0].splitlines() if len(line.split()) == 2]
    health = [float(s) for s, _ in polls]
    health_failures = [s for s, ok in polls if ok != "1"]
    latencies = sorted(s for s, _ in results)
    ok = [r.status_code == 200 and correct(r.json(), expected) for _, r in results]
    ids = [r.json()["result_id"] for _, r in results if r.status_code == 200]
    return {
        "uploads": n, "concurrent": n, "correct": int(sum(ok)), "statuses": sorted({r.status_code for _, r in results}),
        "wall_seconds": round(wall, 2),
        "latency_seconds": {"p50": round(float(np.percentile(latencies, 50)), 2),
                            "p95": round(float(np.percentile(latencies, 95)), 2),
                            "max": round(latencies[-1], 2)},
        "health": {"polls": len(health), "failures": len(health_failures),
                   "p50_seconds": round(statistics.median(health), 3) if health else None,
                   "max_seconds": round(max(health), 3) if health else None},
        "peak_server_rss_mb": round(server.peak_rss / 2**20, 1),
        "server_cpu_seconds": round(server_cpu, 1),
        "server_cpu_seconds_per_upload": round(server_cpu / n, 3),
        "client_cpu_seconds": round(client_cpu, 1),
        "load_average_1min_during": {"min": round(min(loads), 2), "mean": round(statistics.mean(loads), 2),
                                     "max": round(max(loads), 2)} if loads else None,
        "result_ids": ids,
    }


def restart_test(bundle: Path, data_dir: Path, server: Server, ids: list[str], content: bytes) -> dict:
    before = {rid: httpx.get(f"{server.url}/results/{rid}/predictions.csv", timeout=120).content for rid in ids[:5]}
    server.stop()
    again = Server(bundle, data_dir, "--job-threshold-mb", "1")
    served = [httpx.get(f"{again.url}/results/{rid}", timeout=120).status_code == 200 for rid in ids]
    same = [httpx.get(f"{again.url}/results/{rid}/predictions.csv", timeout=120).content == csv
            for rid, csv in before.items()]
    # a background job stopped mid-run
    r = httpx.post(f"{again.url}/api/predict", files={"file": ("big.csv", content, "text/csv")}, timeout=120)
    job_url = again.url + r.json()["links"]["job"]
    status = r.json()["status"]
    while status == "queued":
        status = httpx.get(job_url, timeout=10).json()["status"]
    stopped_while = status
    again.stop()
    third = Server(bundle, data_dir)
    job = httpx.get(job_url.replace(again.url, third.url), timeout=10).json()
    third.stop()
    return {"links": len(ids), "served_after_restart": int(sum(served)), "csv_identical": f"{sum(same)}/{len(same)}",
            "job": {"status_when_stopped": stopped_while, "status_after_restart": job["status"],
                    "message": job["message"]}}


def committed(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


def kill9_test(bundle: Path, data_dir: Path, content: bytes) -> dict:
    server = Server(bundle, data_dir)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(upload, server.url, content, 300) for _ in range(6)]
        db = data_dir / "moa-predict.sqlite3"
        start = time.time()
        while time.time() - start < 300 and not (committed(db) >= 2 and any((data_dir / "results").glob(".*.tmp"))):
            time.sleep(0.01)  # until two results are in and another is being written
        writing = sorted(p.name for p in (data_dir / "results").glob(".*.tmp"))
        server.stop(signal.SIGKILL)
        for f in futures:
            try:
                f.result()
            except httpx.HTTPError:
                pass
    with sqlite3.connect(db) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    again = Server(bundle, data_dir)
    with sqlite3.connect(db) as conn:
        rows = [r[0] for r in conn.execute("SELECT id FROM results WHERE expired IS NULL")]
    served = [httpx.get(f"{again.url}/results/{rid}/predictions.csv", timeout=120).status_code == 200 for rid in rows]
    files = sorted(p.name for p in (data_dir / "results").iterdir())
    again.stop()
    stray = [f for f in files if f.split(".")[0] not in set(rows)]
    return {"killed_while_writing": writing, "integrity_check": integrity, "results_in_db": len(rows),
            "served": int(sum(served)), "stray_files_after_restart": stray}


def fuzz(examples: int) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
                        str(ROOT / "tests" / "test_fuzz.py")], env={**ENV, "MOA_FUZZ_EXAMPLES": str(examples)},
                       capture_output=True, text=True)
    return {"examples_per_operation": examples, "passed": r.returncode == 0,
            "seconds": round(time.perf_counter() - t0, 1), "tail": r.stdout.strip().splitlines()[-1:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="a directory with test_features.csv (default: moa simulate into a temp dir)")
    ap.add_argument("--bundle", help="a bundle directory (default: --model trained on --data, no CV)")
    ap.add_argument("--model", default="prior", help="the model trained when no --bundle is given (default prior)")
    ap.add_argument("--uploads", type=int, default=50)
    ap.add_argument("--fuzz-examples", type=int, default=300, help="per API operation; 0 skips fuzzing")
    ap.add_argument("--out", default=str(ROOT / "docs" / "server_benchmark.json"))
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="moa-bench-server-") as tmp:
        work = Path(tmp)
        data, bundle = prepare(args.data, args.bundle, work, args.model)
        features = data / "test_features.csv"
        content = features.read_bytes()
        expected = expected_probabilities(bundle, features, work)
        print("profile of one upload ...", flush=True)
        profile = profile_upload(bundle, features)
        load1 = time.time()
        load_start = os.getloadavg()
        print(f"load: {args.uploads} concurrent uploads of {features.name} ({len(expected):,} rows) ...", flush=True)
        server = Server(bundle, work / "store")
        load = load_test(server, content, expected, args.uploads)
        load_after = os.getloadavg()
        print("restarts ...", flush=True)
        restarts = restart_test(bundle, work / "store", server, load.pop("result_ids"), content)
        print("kill -9 during writes ...", flush=True)
        kill9 = kill9_test(bundle, work / "kill9", content)
        fuzzing = fuzz(args.fuzz_examples) if args.fuzz_examples else None
        from moa_predict.bundle import load_bundle

        model = load_bundle(bundle).model_name
    report = {
        "benchmark": "moa serve under load, restarts, kill -9 and fuzzing (separate server process, 127.0.0.1)",
        "data": "SIMULATED profiles (moa simulate --rows 600 --test-rows 3982, seed 0)",
        "command": " ".join(["python", "bench/server.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1min_at_start": round(load_start[0], 2),
                    "load_average_1min_after_the_load_test": round(load_after[0], 2),
                    "note": "2 CPU cores shared with other jobs: the load average counts them too"},
        "model": model, "upload": {"file": features.name, "rows": len(expected), "bytes": len(content)},
        "profile": profile, "load": load, "restarts": restarts, "kill9": kill9, "fuzzing": fuzzing,
        "seconds_total": round(time.time() - load1, 1),
    }
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    print(table(report))
    ok = (load["correct"] == load["uploads"] and load["health"]["failures"] == 0
          and restarts["served_after_restart"] == restarts["links"]
          and restarts["job"]["status_after_restart"] == "failed"
          and kill9["integrity_check"] == "ok" and kill9["served"] == kill9["results_in_db"]
          and not kill9["stray_files_after_restart"] and (fuzzing is None or fuzzing["passed"]))
    return 0 if ok else 1


def table(r: dict) -> str:
    load, rs, k, f = r["load"], r["restarts"], r["kill9"], r["fuzzing"]
    cpu = r["profile"]["cpu_seconds_per_upload"]
    rows = [
        ("one upload, CPU seconds by stage", f"read + validate {cpu['read_validate']}, predict {cpu['predict']}, "
                                             f"store {cpu['store']} (background), JSON {cpu['render_json']}"),
        ("concurrent uploads (3,982 rows each, simulated)", f"{load['uploads']}: {load['correct']} correct "
                                                           f"(= moa predict)"),
        ("latency p50 / p95", f"{load['latency_seconds']['p50']} s / {load['latency_seconds']['p95']} s "
                              f"(load average {r['machine']['load_average_1min_at_start']} at the start)"),
        ("server CPU per upload under the load", f"{load['server_cpu_seconds_per_upload']} s "
                                                 f"({load['server_cpu_seconds']} s for all; the client took "
                                                 f"{load['client_cpu_seconds']} s)"),
        ("load average during the load", "{min} – {max} (mean {mean})".format(**load["load_average_1min_during"])
         if load.get("load_average_1min_during") else "not sampled"),
        ("peak server memory (RSS)", f"{load['peak_server_rss_mb']:,} MB"),
        ("/api/health during the load", f"{load['health']['polls']} polls, {load['health']['failures']} failed, "
                                        f"max {load['health']['max_seconds']} s"),
        ("links after a restart", f"{rs['served_after_restart']}/{rs['links']} served"),
        ("job stopped mid-run", f"{rs['job']['status_when_stopped']} → {rs['job']['status_after_restart']}"),
        ("kill -9 during writes", f"integrity {k['integrity_check']}, {k['served']}/{k['results_in_db']} served, "
                                  f"{len(k['stray_files_after_restart'])} stray files"),
    ]
    if f:
        verdict = "no 5xx, no schema violation" if f["passed"] else "FAILED"
        rows.append(("Schemathesis, every API operation", f"{f['examples_per_operation']} examples each: {verdict}"))
    return "\n".join(["| check | result |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


if __name__ == "__main__":
    sys.exit(main())
