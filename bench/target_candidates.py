"""Target candidates that are not one estimator: targets through the MoA, and a mix chosen by inner CV.

Used by ``bench/l1000_reference.py --targets`` on the same outer folds, drugs and target set as the estimator
candidates, scored by the same figures. Everything a held-out drug contributes is left out of its fold's model:

- **targets through the MoA** (``moa_mediated``): P(t | x) = Σ_m P(m | x) · P(t | m). P(m | x) is the ``label-ridge``
  model fit on the MoA labels of every MoA-annotated drug of the table but the held-out fold's (the MoA table has
  156 more drugs than the target table; none is a held-out drug), its probabilities normalised over the MoAs.
  P(t | m) = (drugs of m with target t + a · prior(t)) / (drugs of m + a), a = 0.1, from the links of either the
  training fold's drugs (``links="fold"``) or the whole Drug Repurposing Hub less the held-out fold's drugs
  (``links="hub"``: 4,284 drugs with a MoA and a target, most of them not in the L1000 table).
- **mix** (``nested_mix``): w · label-ridge + (1 - w) · targets through the MoA, w chosen per outer fold by an inner
  compound-grouped CV of the outer training drugs (micro PR-AUC), never on the held-out fold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moa_predict.evaluation.field_metrics import micro_pr_auc
from moa_predict.evaluation.folds import DrugGroupedFolds
from moa_predict.models import make_model

LINK_SMOOTHING = 0.1
MIX_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The label-ridge weights the inner CV chooses from."""


def hub_links(hub_file, moas: list[str], targets: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Hub's drugs (lower-case names) and their MoA and target indicator matrices over `moas` / `targets`."""
    hub = pd.read_csv(hub_file, sep="\t", comment="!", dtype=str)
    hub = hub[hub["moa"].notna() & hub["target"].notna()]
    mi, ti = {m: i for i, m in enumerate(moas)}, {t: i for i, t in enumerate(targets)}
    A, B = np.zeros((len(hub), len(moas))), np.zeros((len(hub), len(targets)))
    for r, (ms, ts) in enumerate(zip(hub["moa"], hub["target"])):
        A[r, [mi[m] for m in ms.split("|") if m in mi]] = 1
        B[r, [ti[t] for t in ts.split("|") if t in ti]] = 1
    return hub["pert_iname"].str.lower().to_numpy(), A, B


def link_matrix(A: np.ndarray, B: np.ndarray, a: float = LINK_SMOOTHING) -> np.ndarray:
    """P(t | m) from drugs' MoA (A) and target (B) indicators, smoothed towards the targets' prevalence."""
    return (A.T @ B + a * B.mean(axis=0)) / (A.sum(axis=0)[:, None] + a)


def _names(data) -> np.ndarray:
    return data.drugs.astype(str).str.lower().to_numpy()


def through_moa(data, moa_data, train: np.ndarray, test: np.ndarray, links: str, hub=None,
                out: np.ndarray | None = None) -> np.ndarray:
    """Targets of the `test` rows of `data` through their predicted MoAs, learnt without any `out` drug (default:
    the test drugs) and with links from the `train` rows (``links="fold"``) or the Hub less the `out` drugs."""
    names, moa_names = _names(data), _names(moa_data)
    out = names[test] if out is None else out
    fit_rows = np.flatnonzero(~np.isin(moa_names, out))
    moa_model = make_model("label-ridge").fit(moa_data.features.iloc[fit_rows],
                                             moa_data.targets.to_numpy(np.float32)[fit_rows], inputs=moa_data.inputs)
    pm = moa_model.predict_proba(data.features.iloc[test]).astype(np.float64)
    pm /= np.maximum(pm.sum(axis=1, keepdims=True), 1e-12)
    if links == "hub":
        hub_names, A, B = hub
        keep = ~np.isin(hub_names, out)
        L = link_matrix(A[keep], B[keep])
    else:
        M = moa_data.targets.reindex(data.features.index).fillna(0).to_numpy(np.float64)
        L = link_matrix(M[train], data.targets.to_numpy(np.float64)[train])
    return pm @ L


def moa_mediated(data, moa_data, fold: np.ndarray, links: str, hub=None) -> np.ndarray:
    """Out-of-fold targets through the MoA on the outer folds `fold`."""
    P = np.zeros(data.targets.shape)
    for k in np.unique(fold):
        test, train = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        P[test] = through_moa(data, moa_data, train, test, links, hub)
    return P


def nested_mix(data, moa_data, fold: np.ndarray, links: str, hub=None, inner_splits: int = 5
               ) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold w · label-ridge + (1 - w) · through-the-MoA, w chosen per outer fold by inner CV; and the ws."""
    Y = data.targets.to_numpy(np.float32)
    names = _names(data)
    P, chosen = np.zeros(Y.shape), []
    for k in np.unique(fold):
        test, train = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        inner = DrugGroupedFolds(n_splits=inner_splits, seed=0).assign(Y[train], names[train])
        R, V = np.zeros((len(train), Y.shape[1])), np.zeros((len(train), Y.shape[1]))
        for j in np.unique(inner):
            itest, itrain = train[inner == j], train[inner != j]
            ridge = make_model("label-ridge").fit(data.features.iloc[itrain], Y[itrain], inputs=data.inputs)
            R[inner == j] = ridge.predict_proba(data.features.iloc[itest])
            V[inner == j] = through_moa(data, moa_data, itrain, itest, links, hub,
                                        out=np.concatenate([names[test], names[itest]]))
        w = max(MIX_WEIGHTS, key=lambda w: micro_pr_auc(Y[train], w * R + (1 - w) * V) or 0.0)
        chosen.append(float(w))
        ridge = make_model("label-ridge").fit(data.features.iloc[train], Y[train], inputs=data.inputs)
        P[test] = w * ridge.predict_proba(data.features.iloc[test]) + (1 - w) * through_moa(
            data, moa_data, train, test, links, hub)
    return P, chosen


GRID_LAMBDAS = (0.3, 1.0, 3.0, 10.0)
GRID_BETAS = (0.0, 0.3, 0.6)


def _cached(cache, label: str, compute) -> tuple[np.ndarray, float, dict]:
    """`compute()` -> (oof, extra dict), or the cached copy (`cache(label)`: a .npz path or None), and its seconds."""
    import json
    import time

    path = cache(label)
    if path is not None and path.is_file():
        z = np.load(path)
        return z["oof"], float(z["seconds"]), json.loads(str(z["extra"]))
    t0 = time.perf_counter()
    oof, extra = compute()
    seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, oof=oof, seconds=seconds, extra=json.dumps(extra))
    return oof, seconds, extra


def experiments(data, moa_data, fold: np.ndarray, oofs: dict, hub_file, score, out_of_fold, cache) -> dict:
    """The rows beside the estimator candidates (module docstring): targets through the MoA (fold / Hub links),
    the mixes with label-ridge (weight by inner CV), an equal-weight mean (untuned), and how far tuning on the
    outer folds would move label-ridge and the mix (labelled tuned: optimistic, not a result)."""
    from types import SimpleNamespace

    Y = data.targets.to_numpy(np.float64)
    hub = hub_links(hub_file, list(moa_data.target_names), list(data.target_names))
    rows, extra = {}, {}
    via = {}
    for links, words in (("fold", "training fold's drugs"), ("hub", "Hub's drugs, held-out drugs left out")):
        label = f"targets through the MoA (links: {words})"
        via[links], secs, _ = _cached(cache, f"targets via moa {links}",
                                      lambda: (moa_mediated(data, moa_data, fold, links, hub), {}))
        rows[label] = {**score(SimpleNamespace(oof=via[links], fold=fold)), "seconds": secs}
    for links in ("fold", "hub"):
        label = f"label-ridge + through the MoA ({links} links), weight by inner CV"
        P, secs, info = _cached(cache, f"targets mix {links}", lambda: (
            lambda r: (r[0], {"weights": r[1]}))(nested_mix(data, moa_data, fold, links, hub)))
        rows[label] = {**score(SimpleNamespace(oof=P, fold=fold)), "seconds": secs,
                       "label_ridge_weight_per_fold": info["weights"]}
    ridge = oofs["label-ridge"].oof
    mean = (ridge + oofs["logreg"].oof + via["hub"]) / 3
    rows["mean of label-ridge, logreg, through the MoA (Hub links), equal weights"] = {
        **score(SimpleNamespace(oof=mean, fold=fold)), "seconds": 0.0}
    # tuned on the outer folds (optimistic; shown only to size what selection inside could still gain)
    grid = {}
    for lam in GRID_LAMBDAS:
        for beta in GRID_BETAS:
            result, _ = out_of_fold("label-ridge", {"lambdas": [lam], "betas": [beta]}, data,
                                    cache=cache(f"targets label-ridge l{lam} b{beta}"))
            grid[f"lambda={lam:g} beta={beta:g}"] = score(result)
    best = max(grid, key=lambda k: grid[k]["micro_pr_auc"])
    mixes = {str(w): score(SimpleNamespace(oof=w * ridge + (1 - w) * via["hub"], fold=fold))
             for w in MIX_WEIGHTS}
    best_w = max(mixes, key=lambda k: mixes[k]["micro_pr_auc"])
    extra["tuned_on_outer_folds"] = {
        "label_ridge_grid": grid, "label_ridge_best": best,
        "mix_hub_by_weight": mixes, "mix_hub_best_weight": float(best_w)}
    return {"rows": rows, **extra}
