"""``moa demo``, the README's main job: simulate → train the default model → predict → (serve).

The model is fit once on all training rows without cross-validation by default, so the web page is up in a
few minutes on 2 cores; ``cv=True`` (``moa demo --cv``) runs the 5-fold drug-grouped CV first, which also fits
the blend's stack (weights, temperature, per-target safeguard) and takes about 9 minutes more on 2 cores.
Each step reuses its output when it is already there for the same settings, so running
the demo twice is quick, and an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..data.profiles import schema
from ..data.builtin import L1000_REFERENCE
from .common import console, member_labels, out, print_cv


@dataclass
class DemoResult:
    data_dir: Path
    bundle_dir: Path
    predictions: Path
    cv: dict | None
    test_score: float | None
    bundle: Any = None


def run_demo(workdir: str | Path, *, rows: int = 23814, test_rows: int = 3982, seed: int = 0,
             model: str | None = None, cv: bool = False, log: Callable[[str], None] = print) -> DemoResult:
    """Run the whole job in `workdir` and return where everything went (with `cv`, cross-validate first)."""
    from ..bundle import META_FILE, load_bundle, save_bundle
    from ..data.profiles.dataset import control_mask, load_targets
    from ..data.profiles.layout import Layout
    from ..data.profiles.reader import load_profiles
    from ..data.formats.io import write_table, write_text
    from ..simulate import simulate, write_simulated
    from ..evaluation.metrics import mean_columnwise_log_loss
    from ..models import DEFAULT_MODEL, make_model
    from ..training.train import train_bundle

    workdir = Path(workdir)
    name = model or DEFAULT_MODEL
    settings = {"rows": rows, "test_rows": test_rows, "seed": seed, "model": name}
    data_dir, bundle_dir = workdir / "data", workdir / f"bundle-{name}"
    stamp = workdir / "demo_settings.json"
    same = stamp.is_file() and json.loads(stamp.read_text()) == settings

    if not (same and (data_dir / "train_features.csv").is_file()):
        log(f"1/4 simulating {rows:,} training and {test_rows:,} test profiles (SIMULATED features) → {data_dir}")
        write_simulated(simulate(n_train=rows, n_test=test_rows, seed=seed), data_dir)
        for stale in bundle_dir, workdir / "predictions.csv":
            if stale.exists():
                import shutil

                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        write_text(json.dumps(settings), stamp)
    else:
        log(f"1/4 reusing simulated data in {data_dir}")

    bundle = load_bundle(bundle_dir) if (bundle_dir / META_FILE).is_file() else None
    if bundle is not None and (bundle.info.get("cv") or not cv):
        log(f"2/4 reusing trained bundle {bundle_dir}")
    else:
        log(f"2/4 training '{name}' " + ("with 5-fold drug-grouped cross-validation, then on all rows" if cv else
                                        "on all rows (no cross-validation: 'moa demo --cv' adds it)"))
        data = load_profiles(data_dir, Layout.lish_moa())
        estimator = make_model(name)
        if "seed" in estimator.get_params(deep=False):
            estimator.set_params(seed=seed)
        bundle, _ = train_bundle(estimator, data, n_splits=5, seed=seed, cv=cv,
                                 command="moa demo" + (" --cv" if cv else ""))
        save_bundle(bundle, bundle_dir)

    log("3/4 predicting the test profiles")
    features = load_profiles(data_dir / f"{schema.TEST_FEATURES}.csv", Layout.lish_moa(), labels=False,
                             feature_columns=bundle.feature_columns).features
    frame = bundle.predict_frame(features)
    predictions = write_table(frame, workdir / "predictions.csv")
    test_score = None
    truth_path = data_dir / "test_targets_scored.csv"
    if truth_path.is_file():
        truth = load_targets(truth_path).loc[features.index, bundle.target_names]
        treated = ~control_mask(features)
        test_score = mean_columnwise_log_loss(truth.to_numpy()[treated],
                                              frame[bundle.target_names].to_numpy()[treated])
    log(f"4/4 predictions written to {predictions}")
    real_examples(workdir, log)
    return DemoResult(data_dir, bundle_dir, predictions, bundle.info.get("cv"), test_score, bundle)


def real_examples(workdir: Path, log: Callable[[str], None] = print) -> Path:
    """The built-in real L1000 reference on its shipped level-5 examples (real signatures of three drugs it never
    saw), pooled per drug: what the demo's second model answers, written beside the simulated predictions."""
    import numpy as np

    from ..data.builtin import L1000_EXAMPLES
    from ..data.formats.io import write_table
    from ..inference.levels import predict_level
    from ..bundle import load_bundle

    reference = load_bundle(L1000_REFERENCE)
    frame, _ = predict_level(reference, L1000_EXAMPLES, "compound")
    path = write_table(frame, Path(workdir) / "l1000_examples_by_compound.csv")
    names = list(reference.target_names)
    for _, row in frame.iterrows():
        proba = row[names].to_numpy(np.float64)
        top = np.argsort(-proba, kind="stable")[:3]
        calls = ", ".join(f"{names[i]} {proba[i]:.2f}" for i in top)
        log(f"   real L1000 example {row.iloc[1]} ({int(row['n_profiles'])} signatures): {calls}")
    log(f"   the built-in {L1000_REFERENCE!r} (REAL data) on its level-5 examples, pooled per drug → {path}")
    return path



def cmd_demo(args: argparse.Namespace) -> None:
    if not args.no_serve:
        from ..web.server import check_port

        check_port(args.host, args.port)  # before minutes of training, not after
    result = run_demo(args.workdir, rows=args.rows, test_rows=args.test_rows, seed=args.seed, model=args.model,
                      cv=args.cv, log=lambda m: console.print(m, highlight=False))
    if result.cv:
        print_cv(result.cv, f"default model on SIMULATED data: {result.cv['folds']}-fold CV",
                 members=member_labels(result.bundle.model))
    else:
        console.print(f"not cross-validated (the demo serves as soon as the model is fit). For the 5-fold "
                      f"drug-grouped CV: moa demo --cv --workdir {args.workdir}", highlight=False)
    if result.test_score is not None:
        out.print(f"log loss on the simulated test profiles (treated rows): {result.test_score:.5f}")
    if not args.no_serve:
        from ..web.server import serve

        serve([L1000_REFERENCE, result.bundle_dir], host=args.host, port=args.port)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulate a data set, train the default model, predict it and serve the web app",
                       description="What 'make demo' runs: simulate a data set (SIMULATED features in the LISH-MoA "
                                   "layout), fit the default model on it, predict the test profiles into "
                                   "WORKDIR/predictions.csv and serve the web app. Without --cv the model is not "
                                   "cross-validated (about 3.4 minutes to the web page on 2 cores); --cv adds the "
                                   "5-fold drug-grouped CV and fits the blend's stack on it (about 9 minutes more "
                                   "on 2 cores). A second run reuses the data and the model.")
    p.add_argument("--workdir", default="runs/demo", help="where data, bundle and predictions go")
    p.add_argument("--rows", type=int, default=23814, help="simulated training rows")
    p.add_argument("--test-rows", type=int, default=3982, help="simulated test rows")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation, folds and networks (default 0)")
    p.add_argument("--model", help="model to train (default: the default model)")
    p.add_argument("--cv", action="store_true",
                   help="cross-validate first (5 drug-grouped folds; fits the blend's stack; much slower)")
    p.add_argument("--no-serve", action="store_true", help="stop after writing predictions")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port of the web app (default 8000)")
    p.set_defaults(func=cmd_demo)
