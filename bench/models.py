"""Speed and memory of the default model: fit time, batch prediction throughput, peak memory.

    python bench/models.py --data /tmp/realsim [--bundle runs/default] [--rows 100000]
    python bench/models.py --ship-weights docs/models/models_table.json

The second form copies the member weights fit on all folds' out-of-fold predictions by ``moa benchmark
models`` into src/moa_predict/models/default_weights.json: the weights a blend uses when no stack is fit
(``moa train --no-cv``). ``moa train`` with cross-validation fits weights, temperature and safeguard
on the data it trains on.

Without --bundle the default model (``models.DEFAULT_MODEL``) is fitted on every training row
first (what ``moa train --no-cv`` does: default weights, no temperature or safeguard), timed. Prediction: the data's test profiles (or training
profiles) repeated to --rows rows, predicted in one call of ``Bundle.predict_proba`` (batches of
50,000 rows), timed after one warm-up call. Peak memory is the peak resident set size of this
process and of its worker processes (``resource.getrusage``). Writes docs/models/default_perf.json.
Features are SIMULATED unless --data points at real files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def ship_weights(report_path: str) -> None:
    """Write the default blend's member weights (its stack fit on all folds in a benchmark report) as
    models/default_weights.json, the data the package reads them from."""
    from moa_predict.data.formats.io import write_text
    from moa_predict.models import default

    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    weights = [float(w) for w in report["blend"]["stack_all_folds"]["weights"]]
    total = sum(weights)
    target = Path(default.__file__).with_name(default.WEIGHTS_FILE)
    shipped = {"weights": [round(w / total, 4) for w in weights],
               "source": f"{report_path}: blend.stack_all_folds.weights ({report.get('command', '')})",
               "data_fingerprint": report.get("data", {}).get("fingerprint"),
               "note": json.loads(target.read_text(encoding="utf-8"))["note"]}
    write_text(json.dumps(shipped, indent=1) + "\n", target)
    print(f"wrote the {len(weights)} member weights of {report_path} into {target}")


def main(argv: list[str] | None = None) -> dict:
    from moa_predict import __version__
    from moa_predict.bundle import Bundle, load_bundle, save_bundle
    from moa_predict.data.profiles.dataset import load_dataset
    from moa_predict.data.formats.io import write_text
    from moa_predict.models import DEFAULT_MODEL, make_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="directory in the LISH-MoA layout (needed unless --ship-weights)")
    ap.add_argument("--ship-weights", metavar="REPORT",
                    help="copy the member weights of a models_table.json into models/default_weights.json")
    ap.add_argument("--bundle", help="a bundle to time (default: fit the default model first)")
    ap.add_argument("--save-bundle", help="where to save the bundle fitted here")
    ap.add_argument("--rows", type=int, default=100_000, help="rows to predict in one batch call")
    ap.add_argument("--repeats", type=int, default=3, help="timed prediction calls (the best is reported)")
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2],
                    help="torch threads to time prediction with (default: 1 and 2)")
    ap.add_argument("--out", default="docs/models/default_perf.json")
    args = ap.parse_args(argv)
    if args.ship_weights:
        ship_weights(args.ship_weights)
        return {}
    if not args.data:
        ap.error("--data is required")

    report: dict = {"command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
                    "package_version": __version__, "torch_threads_at_fit": torch.get_num_threads(),
                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
                    "features": "SIMULATED unless the data directory holds real files"}
    data = load_dataset(args.data)
    report["data"] = {"source": data.source, "fingerprint": data.fingerprint(), "rows": len(data.features)}
    if args.bundle:
        bundle = load_bundle(args.bundle)
        report["model"] = {"name": bundle.model_name, "loaded_from": args.bundle}
    else:
        model = make_model(DEFAULT_MODEL)
        Y_aux = None if data.nonscored is None else data.nonscored.to_numpy(np.float32)
        c0, t0 = _cpu(), time.perf_counter()
        model.fit(data.features, data.targets.to_numpy(np.float32), Y_aux)
        fit_s = time.perf_counter() - t0
        report["model"] = {"name": DEFAULT_MODEL, "params": model.get_params()}
        # worker processes of a forkserver are not this process's children: add their own CPU accounts
        workers = sum(getattr(model, "member_fit_cpu_seconds_", [])) if getattr(model, "used_workers_", False) else 0
        report["fit_all_rows"] = {"wall_seconds": round(fit_s, 1),
                                  "cpu_seconds_incl_workers": round(_cpu() - c0 + workers, 1),
                                  "rows": len(data.features),
                                  "member_seconds": [round(s, 1) for s in getattr(model, "member_fit_seconds_", [])]}
        bundle = Bundle(model, data.target_names, data.feature_columns)
        if args.save_bundle:
            save_bundle(bundle, args.save_bundle)
    try:
        source = load_dataset(args.data, split="test").features
    except Exception:  # no test file: use the training profiles
        source = data.features
    reps = int(np.ceil(args.rows / len(source)))
    batch = pd.concat([source] * reps).iloc[: args.rows]
    report["predict"] = {"rows": len(batch), "by_torch_threads": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        bundle.predict_proba(batch.iloc[:2000])  # warm-up (allocator, lazily built tables)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            proba = bundle.predict_proba(batch)
            times.append(time.perf_counter() - t0)
        assert proba.shape == (len(batch), len(bundle.target_names))
        report["predict"]["by_torch_threads"][str(threads)] = {
            "seconds": [round(t, 3) for t in times],
            "profiles_per_second_best": round(len(batch) / min(times)),
            "profiles_per_second_median": round(len(batch) / float(np.median(times)))}
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report["peak_memory_mib"] = {"this_process": round(self_rss), "largest_worker_process": round(child_rss)}
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({k: v for k, v in report.items() if k != "model"}, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps(report, indent=1, default=str), out)
    return report


if __name__ == "__main__":
    main()
