"""MoA families: MoAs whose Drug Repurposing Hub target sets overlap ("dopamine / serotonin receptor antagonist").

When no single MoA can be called with the promised precision, a family often can: the profiles of a dopamine
receptor antagonist and of a serotonin receptor antagonist look alike because the compounds hit overlapping
receptors. The targets of each Hub MoA (the union over its compounds, ``moa_targets.json``, made by
``bench/make_moa_targets.py`` from the Hub's drug table, CC BY 4.0, Corsello et al. 2017) ship with the package;
nothing is read from the network. MoAs are matched by name, case and punctuation ignored (``egfr_inhibitor`` is
the Hub's "EGFR inhibitor"), and grouped by average-linkage clustering of the Jaccard distance of their target
sets, cut at ``CUT`` (on average at least 30 % of the targets shared).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

CUT = 0.7
"""Average-linkage cut on 1 − Jaccard: members share on average ≥ 30 % of their targets."""
SOURCE_FILE = "moa_targets.json"


def normalise(name: str) -> str:
    """A MoA name compared without case or punctuation."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


@lru_cache(maxsize=1)
def hub_targets() -> tuple[dict[str, frozenset[str]], str]:
    """(normalised MoA name -> its Hub targets, the source's attribution)."""
    state = json.loads(resources.files("moa_predict.data").joinpath(SOURCE_FILE).read_text(encoding="utf-8"))
    return {normalise(m): frozenset(t) for m, t in state["moa_targets"].items()}, str(state["source"])


def family_name(moas: list[str], shown: int = 3) -> str:
    """The members joined by " / " (the first `shown`, then how many more)."""
    names = [m.replace("_", " ") for m in moas]
    head = " / ".join(names[:shown])
    return head + (f" (+{len(names) - shown} more)" if len(names) > shown else "")


def moa_families(target_names: list[str], cut: float = CUT) -> list[dict[str, Any]]:
    """Families (two or more of `target_names`) by shared Hub targets: name, member indices and names, the
    targets any two members share (the attribution: ``hub_targets()[1]``). Empty when fewer than two MoAs are in the Hub."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    table, _ = hub_targets()
    known = [(i, table[normalise(n)]) for i, n in enumerate(target_names) if table.get(normalise(n))]
    if len(known) < 2:
        return []
    sets = [s for _, s in known]
    n = len(sets)
    D = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1, n):
            D[a, b] = D[b, a] = 1.0 - len(sets[a] & sets[b]) / len(sets[a] | sets[b])
    labels = fcluster(linkage(squareform(D, checks=False), "average"), cut, "distance")
    out = []
    for lab in np.unique(labels):
        rows = np.flatnonzero(labels == lab)
        if len(rows) < 2:
            continue
        members = sorted(known[r][0] for r in rows)
        names = [target_names[i] for i in members]
        shared = sorted(set().union(*[sets[a] & sets[b] for a in rows for b in rows if a < b]))
        out.append({"name": family_name(names), "members": members, "moas": names,
                    "shared_targets": shared[:20], "n_shared_targets": len(shared)})
    out.sort(key=lambda f: f["name"])
    return out
