"""``moa benchmark models``: one table of every model on the same drug-grouped folds.

Rows: the prior, the paper's four models at their best published settings, each of our models
(the members of the default blend and the public-recipe reference ``recipe-mlp``), and the blend.
Columns: out-of-fold log loss on treated rows, fit time (all folds), prediction throughput
(profiles per second on the validation folds), and how many well-populated targets (>= 10
positives) each model predicts worse than the prior.

The blend row is scored honestly: its weights (and per-target safeguard) are fit on four folds'
out-of-fold predictions and applied to the fifth, rotating (``models.stack.nested_stack_score``).
The default model (``models.DEFAULT_MODEL``) carries weights fit on all five folds' OOF of the
same members; its row gives that nested score, the sum of its members' fit times and their
combined throughput.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data.profiles.dataset import Dataset
from ..training.crossval import assign_folds, describe_rows, fold_fits
from ..evaluation.metrics import columnwise_log_loss as columnwise_loss
from ..models.registry import make_model
from ..models.stack import Stack, nested_stack_score
from ..training.stacking import blend_oof

PAPER_ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("BRkNN-a (paper: k=5, labels)", "brknn-a", {"k": 5, "output": "labels"}),
    ("BRkNN-b (paper: k=2000, labels)", "brknn-b", {"k": 2000, "output": "labels"}),
    ("ML-kNN (paper: k=20, labels)", "ml-knn", {"k": 20, "output": "labels"}),
    ("paper net (paper: 75 epochs)", "paper-nn", {"epochs": 75}),
]
"""The paper's best settings (its Tables 9/11): the kNN models scored on their 0/1 label sets, as published."""

REFERENCE_ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("recipe-mlp (public recipe, 1 seed)", "recipe-mlp", {}),
]

MIN_POSITIVES = 10


def _spec_key(name: str, params: dict[str, Any], fingerprint: str, n_splits: int, seed: int, rows: int) -> str:
    text = json.dumps([name, params, fingerprint, n_splits, seed, rows, __version__], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_cv(name: str, params: dict[str, Any], data: Dataset, fold: np.ndarray, n_splits: int,
           progress: bool = True, label: str = "", device: str = "cpu") -> dict[str, Any]:
    """Out-of-fold predictions of one model (treated rows), with wall and CPU fit time and throughput."""
    Y = data.targets.to_numpy(np.float32)
    oof = np.zeros(Y.shape, dtype=np.float32)
    fit_s = fit_cpu = pred_s = 0.0
    n_pred = 0
    for _, est, val, fit_k, cpu_k in fold_fits(make_model(name, **params), data, fold, n_splits, progress=progress,
                                               label=label or name, device=device):
        t1 = time.perf_counter()
        oof[val] = est.predict_proba(data.features.iloc[val], device=device)
        pred_s += time.perf_counter() - t1
        fit_s += fit_k
        fit_cpu += cpu_k
        n_pred += len(val)
    return {"oof": oof[~data.is_control], "fit_seconds": fit_s, "fit_cpu_seconds": fit_cpu, "predict_seconds": pred_s,
            "n_predicted": n_pred}


def _epochs(name: str) -> int | None:
    """A network's default number of epochs (None for models that do not train in epochs)."""
    return make_model(name).get_params().get("train__epochs")


def run_blend_cv(blend, data: Dataset, fold: np.ndarray, n_splits: int, progress: bool = True,
                 device: str = "cpu") -> dict[str, Any]:
    """Cross-validate the blend itself (members fitted in parallel, as ``moa train`` does) and keep each
    member's out-of-fold predictions and timings, so members and blend come from one set of fits."""
    res = blend_oof(blend, data, fold, n_splits, progress=progress, device=device)
    treated = ~data.is_control
    members = [{"oof": res["members"][i][treated], "fit_seconds": float(res["member_fit_seconds"][i]),
                "fit_cpu_seconds": float(res["member_fit_cpu_seconds"][i]),
                "predict_seconds": float(res["member_predict_seconds"][i]), "n_predicted": res["n_predicted"]}
               for i in range(len(res["members"]))]
    return {"oof": res["oof"][treated], "members": members,
            **{k: res[k] for k in ("fit_seconds", "fit_cpu_seconds", "predict_seconds", "n_predicted")}}


def _row(label: str, name: str, params: dict[str, Any], res: dict[str, Any], Y: np.ndarray, prior_loss: np.ndarray,
         fold: np.ndarray, kind: str, names: list[str] | None = None) -> dict[str, Any]:
    per = columnwise_loss(Y, res["oof"])
    populated = Y.sum(axis=0) >= MIN_POSITIVES
    worse = populated & (per > prior_loss + 1e-12)
    fold_scores = [float(columnwise_loss(Y[fold == k], res["oof"][fold == k]).mean()) for k in np.unique(fold)]
    return {
        "label": label, "model": name, "params": params, "kind": kind,
        "score": float(per.mean()), "fold_scores": fold_scores,
        "fit_seconds": round(res["fit_seconds"], 1),
        "fit_cpu_seconds": (None if res["fit_cpu_seconds"] != res["fit_cpu_seconds"]
                            else round(res["fit_cpu_seconds"], 1)),
        "predict_rows_per_second": round(res["n_predicted"] / max(res["predict_seconds"], 1e-9), 0),
        "targets_worse_than_prior": int(worse.sum()),
        "timings_from_cache": bool(res.get("from_cache", False)),
        "worst_vs_prior": float((per - prior_loss)[populated].max()),
        **({"worse_targets": {names[t]: round(float(per[t] / prior_loss[t] - 1.0), 4) for t in np.flatnonzero(worse)}}
           if names is not None else {}),
    }


def run_model_benchmark(data: Dataset, *, quick: bool = False, n_splits: int = 5, seed: int = 0,
                        device: str = "cpu", command: str = "", cache_dir: str | os.PathLike | None = None,
                        include_paper: bool = True, progress: bool = True) -> dict[str, Any]:
    """Cross-validate every model on the same folds and blend ours; returns the report (JSON-able)."""
    from ..models import DEFAULT_MODEL

    started = time.time()
    load_start = os.getloadavg()
    if quick:
        rng = np.random.default_rng(seed)
        data = data.subset(np.sort(rng.choice(len(data.features), min(6000, len(data.features)), replace=False)))
        n_splits = min(n_splits, 3)
    fold, grouped = assign_folds(data, n_splits, seed)
    control = data.is_control
    Y = data.targets.to_numpy(np.float64)[~control]
    fold_t = fold[~control]
    fingerprint = data.fingerprint()
    default = make_model(DEFAULT_MODEL)
    members = default.member_specs() if DEFAULT_MODEL == "blend" else []
    cache = Path(cache_dir) if cache_dir else None

    def cv(name: str, params: dict[str, Any], label: str) -> dict[str, Any]:
        p = dict(params)
        if quick and _epochs(name) is not None:
            p["epochs"] = max(3, int(p.get("epochs", _epochs(name))) // 3)
        key = _spec_key(name, p, fingerprint, n_splits, seed, len(fold))
        if cache is not None and (cache / f"{key}.npz").is_file():
            z = np.load(cache / f"{key}.npz")
            return {"oof": z["oof"].astype(np.float32), **json.loads(str(z["meta"])), "from_cache": True}
        res = run_cv(name, p, data, fold, n_splits, progress, label, device=device)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            meta = {k: v for k, v in res.items() if k != "oof"}
            np.savez(cache / f"{key}.npz", oof=res["oof"], meta=json.dumps(meta))
        return res

    rows: list[dict[str, Any]] = []
    prior = cv("prior", {}, "prior")
    prior_loss = columnwise_loss(Y, prior["oof"])
    rows.append(_row("prior (training prevalence)", "prior", {}, prior, Y, prior_loss, fold_t, "baseline"))
    specs = (PAPER_ROWS if include_paper else []) + REFERENCE_ROWS
    for label, name, params in specs:
        rows.append(_row(label, name, params, cv(name, params, label), Y, prior_loss, fold_t,
                         "paper" if (name, params) in [(n, p) for _, n, p in PAPER_ROWS] else "reference"))
    member_res: list[dict[str, Any]] = []
    blend_res = None
    if members:
        specs_m = []
        for name, params in members:
            p = dict(params)
            if quick and _epochs(name) is not None:
                p["epochs"] = max(3, int(p.get("epochs", _epochs(name))) // 3)
            specs_m.append([name, p])
        est = default.set_params(members=specs_m)
        if est.weights is not None and min(est.weights) <= 0:
            # every member gets its row: a member shipped with weight 0 is fitted with a negligible weight
            est.set_params(weights=[max(float(w), 1e-9) for w in est.weights])
        # the members' fits depend on the members and the seed only (the stack is refit nested below), so
        # new default weights keep the cached member predictions valid
        key = _spec_key(DEFAULT_MODEL, {"members": est.members, "n_jobs": est.n_jobs, "seed": est.seed},
                        fingerprint, n_splits, seed, len(fold))
        if cache is not None and (cache / f"{key}.npz").is_file():
            z = np.load(cache / f"{key}.npz")
            meta = json.loads(str(z["meta"]))
            blend_res = {"oof": z["oof"], **meta["blend"], "from_cache": True,
                         "members": [{"oof": z[f"m{i}"], **m, "from_cache": True}
                                     for i, m in enumerate(meta["members"])]}
        else:
            blend_res = run_blend_cv(est, data, fold, n_splits, progress, device=device)
            if cache is not None:
                cache.mkdir(parents=True, exist_ok=True)
                meta = {"blend": {k: v for k, v in blend_res.items() if k not in ("oof", "members")},
                        "members": [{k: v for k, v in m.items() if k != "oof"} for m in blend_res["members"]]}
                np.savez(cache / f"{key}.npz", oof=blend_res["oof"], meta=json.dumps(meta),
                         **{f"m{i}": m["oof"] for i, m in enumerate(blend_res["members"])})
        member_res = blend_res["members"]
        for (name, params), res in zip(members, member_res):
            shown = {k: v for k, v in params.items() if k in ("hidden", "width", "n_blocks", "channels", "g_pca",
                                                              "c_pca", "keep_raw", "aux", "epochs", "n_seeds",
                                                              "seed", "weight_decay")}
            label = f"ours: {name} (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"
            rows.append(_row(label, name, params, res, Y, prior_loss, fold_t, "member"))
    blend = None
    if member_res:
        from ..models.default import DEFAULT_MIN_GAIN

        P = np.stack([r["oof"] for r in member_res]).astype(np.float64)
        prior_oof = prior["oof"].astype(np.float64)
        drugs = None if data.drugs is None else np.asarray(data.drugs.to_numpy())[~control]
        variants = {
            "weights only": nested_stack_score(Stack(temperature=False, min_gain=None), P, Y, fold_t, prior_oof),
            "weights + temperature": nested_stack_score(Stack(temperature=True, min_gain=None), P, Y, fold_t,
                                                        prior_oof),
            "weights + temperature + safeguard": nested_stack_score(default.new_stack(), P, Y, fold_t, prior_oof,
                                                                    drugs),
        }
        nb = variants["weights + temperature + safeguard"]
        final = nb["stack"].rounded().to_dict()
        total = {"oof": nb["oof"], **{k: blend_res[k] for k in ("fit_seconds", "fit_cpu_seconds",
                                                                   "predict_seconds", "n_predicted")},
                 "from_cache": blend_res.get("from_cache", False)}
        row = _row(f"ours: {DEFAULT_MODEL} (default model; nested: weights, temperature, safeguard)", DEFAULT_MODEL,
                   default.get_params(), total, Y, prior_loss, fold_t, "default",
                   list(data.target_names))
        rows.append(row)
        populated = Y.sum(axis=0) >= MIN_POSITIVES
        blend = {
            "variants": {name: {"score": v["score"],
                                "targets_worse_than_prior": int((populated & (columnwise_loss(Y, v["oof"])
                                                                              > prior_loss + 1e-12)).sum())}
                         for name, v in variants.items()},
            "min_gain": DEFAULT_MIN_GAIN,
            "fold_stacks": nb["folds"],
            "stack_all_folds": {"weights": final["weights"], "temperature": nb["stack"].temperature_,
                                "calibration": final["calibration"], "prior_targets": final["prior_targets"]},
            "default_weights": default.get_params()["weights"],
            "equal_weight_score": float(columnwise_loss(Y, P.mean(axis=0)).mean()),
            # what a blend trained without cross-validation uses: the default weights, no temperature or
            # safeguard (not nested: the weights were fit earlier on OOF predictions like these)
            "default_weights_on_these_oof_not_nested": float(columnwise_loss(
                Y, default.default_stack().apply(P, prior_oof)).mean()),
        }
        if progress:
            for name, v in blend["variants"].items():
                print(f"blend, nested, {name}: {v['score']:.5f} ({v['targets_worse_than_prior']} targets worse "
                      "than the prior)")
    by_model = {r["model"]: r for r in rows}
    paper_net = by_model.get("paper-nn", {}).get("score")
    recipe = by_model.get("recipe-mlp", {}).get("score")
    default_score = rows[-1]["score"] if blend else None
    targets = {}
    if default_score is not None:
        if paper_net:
            targets["default / paper net"] = round(default_score / paper_net, 4)
        if recipe:
            targets["default / recipe-mlp"] = round(default_score / recipe, 4)
    return {
        "benchmark": "models",
        "command": command,
        "package_version": __version__,
        "features": "SIMULATED (moa simulate); labels, drugs and sig_ids may be real",
        "data": {"source": data.source, "fingerprint": fingerprint, "rows": len(data.features),
                 "rows_scored": describe_rows(data), "quick_subsample": quick},
        "cv": {"folds": n_splits, "grouped_by_drug": grouped, "seed": seed,
               "metric": "mean column-wise log loss, out-of-fold, treated rows"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": device,
                    "torch_threads": __import__("torch").get_num_threads(),
                    "load_average_at_start": [round(x, 2) for x in load_start],
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "rows": rows,
        "blend": blend,
        "ratios": targets,
        "wall_seconds": round(time.time() - started, 1),
    }
