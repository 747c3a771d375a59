"""Web app latency, end to end over HTTP: upload the 3,982-row test_features.csv of a simulated set and
time (a) upload -> results page HTML (POST /predict, 303, GET /results/...) and (b) upload -> API JSON
(POST /api/predict, body received and parsed). The server is a separate `moa serve` process, as users run it.

    python bench/serve.py                                  # simulate + train the prior bundle in a temp dir
    python bench/serve.py --data /tmp/websim --bundle /tmp/webbundle --repeats 7

Prints a table and writes docs/serve_benchmark.json. Target: <= 3 s for each, on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(data: str | None, bundle: str | None, workdir: Path) -> tuple[Path, Path]:
    """The data directory (simulated: 2,000 train / 3,982 test rows, seed 0) and a bundle (prior)."""
    if data is None:
        from moa_predict.simulate import simulate, write_simulated

        print("simulating 2,000 train / 3,982 test rows (seed 0) ...", flush=True)
        data_dir = workdir / "sim"
        write_simulated(simulate(n_train=2000, n_test=3982, seed=0), data_dir)
    else:
        data_dir = Path(data)
    if bundle is None:
        from moa_predict.bundle import save_bundle
        from moa_predict.data.profiles.dataset import load_dataset
        from moa_predict.models import make_model
        from moa_predict.training.train import train_bundle

        print("training the prior bundle ...", flush=True)
        trained, _ = train_bundle(make_model("prior"), load_dataset(data_dir), progress=False)
        bundle_dir = save_bundle(trained, workdir / "bundle")
    else:
        bundle_dir = Path(bundle)
    return data_dir, bundle_dir


def start_server(bundle: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "moa_predict.cli", "serve", "--bundle", str(bundle), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


def time_page(client: httpx.Client, content: bytes, name: str) -> dict:
    t0 = time.perf_counter()
    r = client.post("/predict", files={"file": (name, content, "text/csv")}, follow_redirects=True)
    total = time.perf_counter() - t0
    r.raise_for_status()
    assert "<table class=\"top-moas\">" in r.text, "results page without tables"
    post = r.history[0].elapsed.total_seconds() if r.history else float("nan")
    return {"total": total, "upload_and_predict": post, "results_page": r.elapsed.total_seconds(),
            "html_bytes": len(r.content)}


def time_api(client: httpx.Client, content: bytes, name: str) -> dict:
    t0 = time.perf_counter()
    r = client.post("/api/predict", files={"file": (name, content, "text/csv")})
    body = r.json()
    total = time.perf_counter() - t0
    r.raise_for_status()
    return {"total": total, "server_read_validate_predict": body["summary"]["seconds"],
            "rows": body["summary"]["rows_read"], "json_bytes": len(r.content)}


def summarise(runs: list[dict], key: str = "total") -> dict:
    values = [r[key] for r in runs]
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": [round(v, 3) for v in values]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="simulated data directory with test_features.csv (default: simulate one)")
    parser.add_argument("--bundle", help="bundle to serve (default: train the prior on --data)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "docs" / "serve_benchmark.json"))
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, bundle_dir = prepare(args.data, args.bundle, Path(tmp))
        upload = data_dir / "test_features.csv"
        content = upload.read_bytes()
        port = free_port()
        proc = start_server(bundle_dir, port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                model = client.get("/api/model").json()
                cold = {"page": time_page(client, content, upload.name)["total"],
                        "api": time_api(client, content, upload.name)["total"]}
                page_runs, api_runs = [], []
                for _ in range(args.repeats):
                    page_runs.append(time_page(client, content, upload.name))
                    api_runs.append(time_api(client, content, upload.name))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    page, api = summarise(page_runs), summarise(api_runs)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    report = {
        "benchmark": "web app, upload of test_features.csv end to end over HTTP (separate `moa serve` process)",
        "command": "python bench/serve.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                  else sys.argv[1:])),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": cpus, "python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "load_average_1min": {"before": load_before,
                                          "after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}},
        "model": model["model"],
        "model_cv_score": (model.get("cv") or {}).get("score"),
        "upload": {"file": upload.name, "rows": api_runs[0]["rows"], "bytes": len(content)},
        "repeats": args.repeats,
        "target_seconds": TARGET_SECONDS,
        "seconds": {
            "upload_to_results_html": page,
            "upload_to_api_json": api,
            "cold_first_request": {k: round(v, 3) for k, v in cold.items()},
            "page_parts_median": {"upload_and_predict": summarise(page_runs, "upload_and_predict")["median"],
                                  "results_page": summarise(page_runs, "results_page")["median"]},
            "server_read_validate_predict_median": summarise(api_runs, "server_read_validate_predict")["median"],
        },
        "sizes": {"results_html_bytes": page_runs[0]["html_bytes"], "api_json_bytes": api_runs[0]["json_bytes"]},
        "pass": page["median"] <= TARGET_SECONDS and api["median"] <= TARGET_SECONDS,
    }

    rows = [("upload -> results page HTML", page), ("upload -> API JSON", api)]
    print(f"\n{report['upload']['rows']:,} rows ({len(content) / 1e6:.1f} MB), model '{report['model']}', "
          f"{cpus} CPU core(s), {args.repeats} repeats (after one cold run each)")
    print(f"{'measure':<30} {'median s':>9} {'min s':>7} {'max s':>7}  target")
    for label, s in rows:
        ok = "ok" if s["median"] <= TARGET_SECONDS else "SLOW"
        print(f"{label:<30} {s['median']:>9.3f} {s['min']:>7.3f} {s['max']:>7.3f}  <= {TARGET_SECONDS:g} s {ok}")
    parts = report["seconds"]["page_parts_median"]
    print(f"{'  page: upload+predict (POST)':<30} {parts['upload_and_predict']:>9.3f}")
    print(f"{'  page: results page (GET)':<30} {parts['results_page']:>9.3f}")
    print(f"{'server read+validate+predict':<30} {report['seconds']['server_read_validate_predict_median']:>9.3f}")
    print(f"cold first request: page {cold['page']:.3f} s, api {cold['api']:.3f} s")
    load = report["machine"]["load_average_1min"]
    if load["before"] is not None:
        print(f"load average (1 min) before/after: {load['before']:.1f} / {load['after']:.1f} on {cpus} core(s)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp_out, out)
    print(f"wrote {out}")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
