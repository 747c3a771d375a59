"""View models of the results page: filtering, paging, per-profile top-N, chart and heatmap data.

Pure functions of a stored :class:`Prediction`, so they are cheap to test and only the current
page's profiles are ever turned into tables and charts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

import numpy as np
import pandas as pd

from ..core.settings import PagingSettings
from ..core.store import Prediction

SHOW_CHOICES = ("all", "treated", "controls", "ood")
SHOW_LABELS = {"all": "all profiles", "treated": "treated only", "controls": "controls only",
               "ood": "flagged out of distribution"}


@dataclass(frozen=True)
class ResultsQuery:
    """The results page's state, all of it in the URL (so every view can be bookmarked or shared); made by
    :meth:`parse`, which knows the defaults (``paging``)."""

    n: int
    page: int
    per: int
    q: str
    show: str
    paging: PagingSettings = field(default_factory=PagingSettings, repr=False, compare=False)

    @classmethod
    def parse(cls, paging: PagingSettings, n: object = None, page: object = None, per: object = None,
              q: object = None, show: object = None, n_targets: int = 206) -> "ResultsQuery":
        """Lenient: anything unreadable falls back to the default, numbers are clamped into range."""
        return cls(
            n=_int(n, paging.default_n, 1, n_targets),
            page=_int(page, 1, 1, 10**9),
            per=_int(per, paging.default_per_page, 1, max(paging.per_page_choices)),
            q=str(q or "").strip()[:paging.max_query],
            show=show if show in SHOW_CHOICES else "all",
            paging=paging,
        )

    def url(self, base: str, **changes: object) -> str:
        """The page's address with `changes`, leaving out what is at its default."""
        defaults = {"n": self.paging.default_n, "page": 1, "per": self.paging.default_per_page, "q": "", "show": "all"}
        state = {**{k: getattr(self, k) for k in defaults}, **changes}
        params = {k: v for k, v in state.items() if v != defaults[k] and v not in ("", None)}
        return base + ("?" + urlencode(params) if params else "")


def _int(value: object, default: int, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return default
    return max(low, min(high, number))


def _norm(text: str) -> str:
    return " ".join(str(text).lower().replace("_", " ").replace("-", " ").split())


def matching_targets(targets: list[str], q: str) -> list[int]:
    """Indices of the MoAs whose name contains the query (case, '_' / '-' / spaces ignored)."""
    nq = _norm(q)
    return [j for j, name in enumerate(targets) if nq and nq in _norm(name)] if nq else []


def select_rows(pred: Prediction, targets: list[str], query: ResultsQuery, ood: np.ndarray | None = None,
                compounds: pd.Series | None = None) -> tuple[np.ndarray, list[int]]:
    """Row positions shown, in display order, and the MoAs the query matched.

    The query keeps profiles whose sig_id (or compound, given the upload's compound column as `compounds`)
    contains it, or whose top-N list holds a MoA whose name contains it; when it names MoAs, profiles are
    ordered by their highest probability for those MoAs, else treated profiles come first (in file order) and
    controls after them. ``show=ood`` keeps the profiles flagged in `ood`.
    """
    keep = np.ones(pred.n_rows, dtype=bool)
    ctl = pred.is_control
    if query.show == "treated":
        keep &= ~ctl
    elif query.show == "controls":
        keep &= ctl
    elif query.show == "ood" and ood is not None:
        keep &= ood
    moas: list[int] = []
    score = None
    if query.q:
        ids = pd.Series(pred.sig_ids, dtype="string").str.lower()
        hit = ids.str.contains(query.q.lower(), regex=False).fillna(False).to_numpy(dtype=bool)
        if compounds is not None:
            names = pd.Series(compounds.to_numpy(), dtype="string").str.lower()
            hit |= names.str.contains(query.q.lower(), regex=False).fillna(False).to_numpy(dtype=bool)
        moas = matching_targets(targets, query.q)
        if moas:
            in_top = np.isin(pred.order[:, :query.n], moas).any(axis=1) & ~ctl
            hit |= in_top
            score = pred.proba[:, moas].max(axis=1)
        keep &= hit
    rows = np.flatnonzero(keep)
    if score is not None and len(rows):
        rows = rows[np.argsort(-score[rows], kind="stable")]
    else:  # treated profiles first (in file order), the controls after them: they carry no MoA
        rows = rows[np.argsort(ctl[rows], kind="stable")]
    return rows, moas


def profile_view(pred: Prediction, targets: list[str], i: int, n: int, predictable: np.ndarray,
                 labelled: int) -> dict:
    """One profile's card: identity, top-N table rows, chart data (None for controls; its `labelled` top MoAs
    marked, the MoAs not predictable from the training data greyed), extra columns."""
    control = bool(pred.is_control[i])
    top = []
    if not control:
        for rank, j in enumerate(pred.order[i, :n].tolist(), start=1):
            p = float(pred.proba[i, j])
            top.append({"rank": rank, "id": j + 1, "name": targets[j], "p": p, "pct": percent_text(p),
                        "predictable": bool(predictable[j])})
    extra = {}
    if pred.extra is not None:
        for col in pred.extra.columns:
            value = pred.extra.iat[i, pred.extra.columns.get_loc(col)]
            extra[str(col)] = "" if is_missing(value) else str(value)
    chart = None
    if not control:
        chart = {"y": np.round(pred.proba[i].astype(np.float64), 5).tolist(),
                 "labelled": [int(j) + 1 for j in pred.order[i, :labelled].tolist()],
                 "greyed": [int(j) + 1 for j in np.flatnonzero(~predictable)]}
    return {
        "pos": int(i),
        "row": int(i) + 1,
        "sig_id": str(pred.sig_ids[i]),
        "cp_type": str(pred.cp_type[i]),
        "cp_time": None if pred.cp_time is None else int(pred.cp_time[i]),
        "cp_dose": None if pred.cp_dose is None else str(pred.cp_dose[i]),
        "control": control,
        "top": top,
        "chart": chart,
        "extra": extra,
    }


def is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def percent_text(p: float) -> str:
    if p >= 0.9995:
        return ">99.9%"
    if p >= 0.1:
        return f"{100 * p:.1f}%"
    if p >= 0.001:
        return f"{100 * p:.2f}%"
    return "<0.1%" if p > 0 else "0%"


def heatmap_data(pred: Prediction, targets: list[str], rows: np.ndarray, paging: PagingSettings,
                 predictable: np.ndarray) -> dict | None:
    """The overview: the `paging.heatmap_moas` MoAs with the highest mean probability (over the shown treated
    profiles, at most `paging.heatmap_max_profiles` of them, in display order) against those profiles."""
    treated = rows[~pred.is_control[rows]]
    if len(treated) == 0:
        return None
    shown = treated[:paging.heatmap_max_profiles]
    block = pred.proba[shown]
    k = min(paging.heatmap_moas, len(targets))
    moas = np.argsort(-block.mean(axis=0), kind="stable")[:k]
    return {
        "x": [str(s) for s in pred.sig_ids[shown]],
        "y": [targets[j] for j in moas],
        "greyed": [targets[j] for j in moas if not predictable[j]],
        "z": np.round(block[:, moas].T.astype(np.float64), 4).tolist(),
        "profiles_shown": int(len(shown)),
        "profiles_treated": int(len(treated)),
        "truncated": bool(len(treated) > len(shown)),
    }


def top1_table(pred: Prediction, targets: list[str], rows: np.ndarray, predictable: np.ndarray,
               threshold: float, limit: int = 10) -> dict:
    """Which MoAs come first most often among the shown treated profiles, counting only confident calls (top
    probability at or above `threshold`); ``no_confident``: the treated profiles whose best MoA is below it."""
    treated = rows[~pred.is_control[rows]]
    out = {"rows": [], "threshold": threshold, "threshold_pct": percent_text(threshold), "treated": int(len(treated)),
           "no_confident": 0}
    if len(treated) == 0:
        return out
    first = pred.order[treated, 0].astype(np.int64)
    confident = pred.proba[treated, first] >= threshold
    out["no_confident"] = int((~confident).sum())
    counts = np.bincount(first[confident], minlength=len(targets))
    best = np.argsort(-counts, kind="stable")[:limit]
    out["rows"] = [{"id": int(j) + 1, "name": targets[j], "profiles": int(counts[j]),
                    "share": f"{100 * counts[j] / len(treated):.0f}%", "predictable": bool(predictable[j]),
                    "mean_p": percent_text(float(pred.proba[treated, j].mean()))} for j in best if counts[j] > 0]
    return out


def results_view(pred: Prediction, targets: list[str], query: ResultsQuery, predictable: np.ndarray,
                 base: str, ood: np.ndarray | None = None, compounds: pd.Series | None = None,
                 confident: float = 0.5) -> dict:
    """Everything the results template needs for one page (`predictable`: per target, False for the MoAs not
    predictable from the training data; `ood`: the OOD flags, when known; `compounds`: the upload's compound
    column, when it has one; `confident`: the probability from which a top call counts in the summary)."""
    rows, moas = select_rows(pred, targets, query, ood, compounds)
    total = len(rows)
    pages = max(1, math.ceil(total / query.per))
    page = min(query.page, pages)
    query = replace(query, page=page)
    start = (page - 1) * query.per
    page_rows = rows[start:start + query.per]
    nav = []
    for p in _page_numbers(page, pages):
        nav.append({"page": p, "url": query.url(base, page=p) if p else None, "current": p == page})
    return {
        "query": query,
        "total": total,
        "pages": pages,
        "page": page,
        "first": start + 1 if total else 0,
        "last": start + len(page_rows),
        "profiles": [profile_view(pred, targets, int(i), query.n, predictable, query.paging.labelled)
                     for i in page_rows],
        "matched_moas": [targets[j] for j in moas],
        "heatmap": heatmap_data(pred, targets, rows, query.paging, predictable),
        "top1": top1_table(pred, targets, rows, predictable, confident),
        "nav": nav,
        "prev_url": query.url(base, page=page - 1) if page > 1 else None,
        "next_url": query.url(base, page=page + 1) if page < pages else None,
        "n_choices": sorted(set(query.paging.n_choices) | {query.n}),
        "per_choices": sorted(set(query.paging.per_page_choices) | {query.per}),
        "show_choices": [c for c in SHOW_CHOICES if c != "ood" or ood is not None],
        "show_labels": SHOW_LABELS,
    }


def _page_numbers(page: int, pages: int, around: int = 2) -> list[int | None]:
    """1 … 4 5 [6] 7 8 … 40  (None marks a gap)."""
    keep = {1, pages, *range(page - around, page + around + 1)}
    out: list[int | None] = []
    for p in range(1, pages + 1):
        if p in keep:
            out.append(p)
        elif out and out[-1] is not None:
            out.append(None)
    return out


# ------------------------------------------------------------------------------------------------
# The compound page
# ------------------------------------------------------------------------------------------------

def compounds_view(calls: pd.DataFrame | None, paging: PagingSettings, *, q: object = None, page: object = None,
                   per: object = None, n: object = None, base: str,
                   not_predictable: frozenset[str] = frozenset()) -> dict:
    """The compound page: compounds ordered by their best mean probability, filtered by `q` (a compound name or
    a MoA name among its listed MoAs), paged; per compound its first `n` MoAs with their agreement (MoAs in
    `not_predictable` marked so) and how many of its profiles have no confident MoA."""
    query = {"q": str(q or "").strip()[:paging.max_query], "page": _int(page, 1, 1, 10**9),
             "per": _int(per, paging.compounds_per_page, 1, max(paging.compounds_per_page_choices)),
             "n": _int(n, paging.compound_n, 1, max(paging.compound_n_choices))}

    def url(**changes: object) -> str:
        state = {**query, **changes}
        defaults = {"q": "", "page": 1, "per": paging.compounds_per_page, "n": paging.compound_n}
        params = {k: v for k, v in state.items() if v != defaults[k]}
        return base + ("?" + urlencode(params) if params else "")

    if calls is None or calls.empty:
        return {"available": calls is not None, "query": query, "compounds": [], "total": 0, "n_all": 0,
                "pages": 1, "page": 1, "nav": [], "prev_url": None, "next_url": None, "url": url}
    groups = {str(name): g for name, g in calls.groupby("compound", sort=False)}
    best = {name: float(g["mean_probability"].iloc[0]) for name, g in groups.items()}
    names = sorted(groups, key=lambda c: (-best[c], c))
    n_all = len(names)
    if query["q"]:
        nq = _norm(query["q"])
        names = [c for c in names if nq in _norm(c)
                 or any(nq in _norm(m) for m in groups[c]["moa"].iloc[:query["n"]])]
    total = len(names)
    pages = max(1, math.ceil(total / query["per"]))
    page_no = min(query["page"], pages)
    query["page"] = page_no
    start = (page_no - 1) * query["per"]
    shown = []
    for name in names[start:start + query["per"]]:
        g = groups[name]
        first = g.iloc[0]
        n_prof = int(first["n_profiles"])
        moas = []
        for _, r in g.head(query["n"]).iterrows():
            agree = int(round(float(r["top_k_fraction"]) * n_prof))
            moas.append({"rank": int(r["rank"]), "moa": str(r["moa"]), "mean": float(r["mean_probability"]),
                         "min": float(r["min_probability"]), "max": float(r["max_probability"]),
                         "fraction": float(r["top_k_fraction"]), "agree": agree,
                         "predictable": str(r["moa"]) not in not_predictable})
        shown.append({"name": name, "n_profiles": n_prof, "no_confident": int(first.get("no_confident", 0)), "doses": [d for d in str(first["doses"]).split(",") if d],
                      "times": [t for t in str(first["times"]).split(",") if t], "moas": moas})
    nav = [{"page": p, "url": url(page=p) if p else None, "current": p == page_no}
           for p in _page_numbers(page_no, pages)]
    return {"available": True, "query": query, "compounds": shown, "total": total, "n_all": n_all,
            "first": start + 1 if total else 0, "last": start + len(shown), "pages": pages, "page": page_no,
            "nav": nav, "prev_url": url(page=page_no - 1) if page_no > 1 else None,
            "next_url": url(page=page_no + 1) if page_no < pages else None, "url": url,
            "n_choices": sorted({*paging.compound_n_choices, query["n"]}),
            "per_choices": sorted({*paging.compounds_per_page_choices, query["per"]})}
