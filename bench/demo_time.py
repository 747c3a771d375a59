"""How long `make demo` takes from a fresh clone to something a user can see, on this machine.

Two runs of the `moa` command, each in a fresh, empty work directory (nothing reused):
(a) `moa demo --no-serve`: simulate, fit the default model, predict the test file; the time of each step is read
    from the demo's own "1/4 … 4/4" lines as they are printed;
(b) `moa demo --port P`: the same, then the web app; the time until GET / answers 200 (the first served page).
The venv set-up of `make demo` (pip) is not counted: it depends on the network and the package cache. Wall time
grows with the machine's load (other jobs): the 1-minute load average before and after is recorded with it.

    python bench/demo_time.py                       # both runs, default demo settings
    python bench/demo_time.py --only serve --rows 23814

Prints a table and writes docs/demo_time.json (not a test). Target: the first page within 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 300.0
STEPS = ("1/4", "2/4", "3/4", "4/4")


def _moa() -> list[str]:
    exe = Path(sys.executable).with_name("moa")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "moa_predict.cli"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _watch(proc: subprocess.Popen, t0: float, marks: dict[str, float], log: list[str]) -> threading.Thread:
    """Record when each demo step starts (its "k/4" line on stderr)."""
    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            log.append(line.rstrip())
            for step in STEPS:
                if line.startswith(step) and step not in marks:
                    marks[step] = round(time.perf_counter() - t0, 1)
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def run_demo(extra: list[str], serve: bool, timeout: float) -> dict:
    """One fresh demo run; the total seconds to the end (no-serve) or to the first 200 page (serve)."""
    workdir = Path(tempfile.mkdtemp(prefix="demo_time_"))
    port = _free_port()
    cmd = [*_moa(), "demo", "--workdir", str(workdir / "demo"), *extra]
    cmd += ["--port", str(port)] if serve else ["--no-serve"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    marks: dict[str, float] = {}
    log: list[str] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    reader = _watch(proc, t0, marks, log)
    total = None
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                if not serve and proc.returncode == 0:
                    total = time.perf_counter() - t0
                break
            if serve and "4/4" in marks:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200:
                        total = time.perf_counter() - t0
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        reader.join(5)
        shutil.rmtree(workdir, ignore_errors=True)
    if total is None:
        raise SystemExit(f"demo run failed or timed out ({' '.join(cmd)}):\n" + "\n".join(log[-20:]))
    return {"command": " ".join(shlex.quote(c) for c in cmd[len(_moa()):]), "seconds": round(total, 1),
            "step_starts_seconds": marks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("no-serve", "serve"), help="time one of the two runs")
    parser.add_argument("--rows", type=int, help="simulated training rows (default: the demo's)")
    parser.add_argument("--cv", action="store_true", help="time `moa demo --cv` (with cross-validation)")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds per run")
    parser.add_argument("--out", default=str(ROOT / "docs" / "demo_time.json"), help="JSON file to write")
    args = parser.parse_args()
    extra = (["--rows", str(args.rows)] if args.rows else []) + (["--cv"] if args.cv else [])
    load0 = os.getloadavg()[0]
    runs = {}
    for name, serve in (("no-serve", False), ("serve", True)):
        if args.only in (None, name):
            print(f"timing moa demo ({name}) in a fresh work directory ...", flush=True)
            runs[name] = run_demo(extra, serve, args.timeout)
            print(f"  {runs[name]['seconds']:.1f} s, steps start at "
                  f"{runs[name]['step_starts_seconds']}; load now {os.getloadavg()[0]:.1f}", flush=True)
    report = {
        "benchmark": "moa demo from an empty work directory (features SIMULATED); pip set-up not counted",
        "command": "python bench/demo_time.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1min": {"before": round(load0, 2), "after": round(os.getloadavg()[0], 2)}},
        "target_seconds": TARGET_SECONDS,
        "runs": runs,
    }
    print(f"\n{'run':<10} {'total':>9} {'simulate':>9} {'fit':>9} {'predict':>9}   (seconds)")
    for name, r in runs.items():
        m, total = r["step_starts_seconds"], r["seconds"]
        spans = [m.get("2/4", 0) - m.get("1/4", 0), m.get("3/4", 0) - m.get("2/4", 0),
                 m.get("4/4", 0) - m.get("3/4", 0)]
        label = "first page" if name == "serve" else "no-serve"
        print(f"{label:<10} {total:>9.1f} " + " ".join(f"{s:>9.1f}" for s in spans)
              + ("   ≤ 5 min: " + ("yes" if total <= TARGET_SECONDS else "NO")))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
