"""How much two processes get done on this machine compared with one: the parallel speed-up its cores really give.

Throughput goals in this project ("profiles per second on 2 cores") assume two cores' worth of work. A virtual
machine's two vCPUs may share one physical core's vector units, so this measures it: the same work in one process,
then in two processes at once (each pinned to nothing, each single-threaded), for two kinds of work:

- float32 matrix products (NumPy, BLAS single-threaded): what the networks' prediction is made of;
- a pure-Python loop: what parsing, validation and pandas bookkeeping are closer to.

    python bench/cores.py                 # prints a table, writes docs/machine_cores.json
    python bench/cores.py --repeats 5 --out /tmp/cores.json

Speed-up = 2 x (one process's time) / (the slower of the two processes' time); 2.0 is two full cores, 1.0 one.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _matmul(_: int) -> float:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((1000, 1000)).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(60):
        a @ a
    return time.perf_counter() - t0


def _python(_: int) -> float:
    t0 = time.perf_counter()
    total = 0
    for i in range(20_000_000):
        total += i
    return time.perf_counter() - t0


def _single_threaded() -> None:
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"


def measure(work, repeats: int) -> dict:
    ctx = mp.get_context("spawn")
    one, two = [], []
    with ctx.Pool(1, initializer=_single_threaded) as pool:
        pool.map(work, [0])  # warm-up: imports, page faults
        for _ in range(repeats):
            one.append(pool.map(work, [0])[0])
    with ctx.Pool(2, initializer=_single_threaded) as pool:
        pool.map(work, [0, 1])
        for _ in range(repeats):
            two.append(max(pool.map(work, [0, 1])))
    t1, t2 = statistics.median(one), statistics.median(two)
    return {"one_process_seconds": round(t1, 3), "two_processes_seconds": round(t2, 3),
            "speed_up": round(2 * t1 / t2, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "docs" / "machine_cores.json"))
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    rows = {"float32 matrix products (NumPy/BLAS, 1 thread)": measure(_matmul, args.repeats),
            "pure-Python loop": measure(_python, args.repeats)}
    report = {"benchmark": "parallel speed-up of two single-threaded processes over one",
              "command": "python bench/cores.py", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "load_average_1min": {"before": round(load_before, 2),
                                                "after": round(os.getloadavg()[0], 2)}},
              "median_of": args.repeats, "work": rows}
    print(f"{'work':50s} {'1 process s':>12s} {'2 processes s':>14s} {'speed-up':>9s}")
    for name, r in rows.items():
        print(f"{name:50s} {r['one_process_seconds']:12.3f} {r['two_processes_seconds']:14.3f} {r['speed_up']:9.2f}")
    print(f"load average before {load_before:.2f}; 2.0 = two full cores, 1.0 = one")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
