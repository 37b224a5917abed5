"""Data of the Structure page and the structure lines of the Overview (DIAGNOSTICS.md, "Global
similarity of the two spaces" and "Shared + private structure"): the engine's ``similarity``,
``cca``, ``ajive`` and ``variance`` tables and the run summary's shared dimension and joint rank,
with one plain sentence per similarity score read against its permutation null."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis import run_queries as rq

from .alignment import PROBE_SHORT, probe_best
from .common import RunKey, cached, summary

SIM_LABELS = {"cka": "linear CKA", "debiased_cka": "debiased CKA", "procrustes_distance": "Procrustes distance"}
SIM_VARIANTS = {"raw": "as is", "top_pc_removed": "top principal component removed"}
SIM_COLUMNS = ["statistic", "variant", "raw", "null_mean", "null_lo", "null_hi", "p_value", "n_items", "n_perm"]


def f3(x: float) -> str:
    """Three decimals without a negative zero."""
    t = f"{float(x):.3f}"
    return "0.000" if t == "-0.000" else t


def p_text(p: float, n_perm: int | None) -> str:
    """'p = 0.005' plus, at the floor 1 / (1 + n_perm), that no shuffled pairing reached the value."""
    if not np.isfinite(p):
        return "p n/a"
    txt = f"p = {p:.2g}"
    if n_perm and p <= 1.0 / (1 + n_perm) + 1e-12:
        txt += f", the smallest {n_perm} shuffles can give"
    return txt


def _similarity_row(r: Any) -> dict[str, Any]:
    stat, var = str(r.statistic), str(r.variant)
    up = stat != "procrustes_distance"
    raw, lo, hi, p = float(r.raw), float(r.null_lo), float(r.null_hi), float(r.p_value)
    beyond = bool((raw > hi if up else raw < lo) and p <= 0.05)
    name = SIM_LABELS.get(stat, stat) + ("" if var == "raw" else f" ({SIM_VARIANTS.get(var, var)})")
    verdict = (("above" if up else "below") + " chance: the spaces share structure" if beyond
               else "within chance: no evidence of shared structure")
    return {"statistic": stat, "variant": var, "measure": SIM_LABELS.get(stat, stat),
            "variant_label": SIM_VARIANTS.get(var, var), "raw": raw, "null_mean": float(r.null_mean), "null_lo": lo,
            "null_hi": hi, "p_value": p, "n_items": int(r.n_items), "n_perm": int(r.n_perm), "higher_is_similar": up,
            "beyond_null": beyond, "verdict": verdict,
            "reading": (f"{name} = {f3(raw)} against {f3(r.null_mean)} with the item pairing shuffled (95 % of "
                        f"shuffles {f3(lo)} to {f3(hi)}; {p_text(p, int(r.n_perm))}): {verdict}.")}


def similarity_reading(table: pd.DataFrame) -> pd.DataFrame:
    """A ``similarity`` table, readable: measure and variant labels, beyond_null (the value outside
    the null's 95 % interval on the similar side and p ≤ 0.05), verdict and one sentence
    (``reading``) per row; debiased CKA first, then CKA, then the Procrustes distance."""
    out = pd.DataFrame([_similarity_row(r) for r in table.itertuples(index=False)])
    if out.empty:
        return out
    order = {s: i for i, s in enumerate(("debiased_cka", "cka", "procrustes_distance"))}
    out["_o"] = [order.get(s, 9) * 2 + (v != "raw") for s, v in zip(out["statistic"], out["variant"])]
    return out.sort_values("_o").drop(columns="_o").reset_index(drop=True)


@cached(max_entries=8)
def similarity_frame(key: RunKey) -> pd.DataFrame:
    """:func:`similarity_reading` of the run's ``similarity`` table."""
    t = key.run.table("similarity")
    rq.require_columns(t, SIM_COLUMNS, "similarity", key.run)
    return similarity_reading(t)


def _structure_summary(key: RunKey) -> dict[str, Any]:
    return summary(key).raw.get("structure") or {}


@cached(max_entries=8)
def cca_summary(key: RunKey) -> dict[str, Any]:
    """Held-out CCA: the ``cca`` table; shared_dim (the run summary's ``shared_dim_cca``: leading
    components beating the null's 95th percentile), n_significant (all such components), n_train /
    n_test / n_perm (items the CCA was fitted / scored on, shuffles)."""
    t = key.run.table("cca")
    rq.require_columns(t, ["component", "train_corr", "heldout_corr", "null_q95", "significant"], "cca", key.run)
    t = t.sort_values("component").reset_index(drop=True)
    s = _structure_summary(key)
    return {"table": t, "shared_dim": int(s["shared_dim_cca"]), "n_significant": int(t["significant"].astype(bool).sum()),
            "n_train": s.get("n_train"), "n_test": s.get("n_test"), "n_perm": s.get("n_perm")}


@cached(max_entries=8)
def ajive_summary(key: RunKey) -> dict[str, Any]:
    """AJIVE: the ``ajive`` table, joint_rank (the run summary's ``joint_rank_ajive``), the Wedin and
    random-direction bounds, and the signal ranks kept per view."""
    t = key.run.table("ajive")
    rq.require_columns(t, ["component", "sigma2", "wedin_bound", "random_bound", "joint"], "ajive", key.run)
    t = t.sort_values("component").reset_index(drop=True)
    s = _structure_summary(key)
    first = (lambda c: float(t[c].iloc[0]) if len(t) else float(s.get(c, math.nan)))  # noqa: E731
    return {"table": t, "joint_rank": int(s["joint_rank_ajive"]), "wedin_bound": first("wedin_bound"),
            "random_bound": first("random_bound"), "signal_rank_sem": s.get("signal_rank_sem"),
            "signal_rank_col": s.get("signal_rank_col")}


@cached(max_entries=8)
def variance_frame(key: RunKey) -> pd.DataFrame:
    """The ``variance`` table (view, shared, private, joint_rank), semantic first."""
    t = key.run.table("variance")
    rq.require_columns(t, ["view", "shared", "private", "joint_rank"], "variance", key.run)
    t = t.assign(view=t["view"].astype(str))
    rank = {"semantic": 0, "collaborative": 1}
    return t.sort_values("view", key=lambda s: s.map(lambda v: rank.get(v, 2))).reset_index(drop=True)


def structure_lines(key: RunKey) -> list[str]:
    """Overview sentences: the shared dimension, the debiased CKA against its null, and what the best
    semantic → collaborative map recovers in and out of distribution."""
    cca, aj = cca_summary(key), ajive_summary(key)
    out = [f"Shared dimension ≈ {cca['shared_dim']} (held-out CCA) / {aj['joint_rank']} (AJIVE): canonical "
           "components that beat their permutation null on held-out items, and the AJIVE joint rank."]
    sim = similarity_frame(key)
    d = sim[(sim["statistic"] == "debiased_cka") & (sim["variant"] == "raw")]
    if len(d):
        r = d.iloc[0]
        out.append(f"Debiased CKA {f3(r['raw'])} (null {f3(r['null_mean'])}, p = {r['p_value']:.2g}).")
    best = probe_best(key)
    if "in_distribution" in best:
        shifts = [f"{best[r]['r2']:.2f} under {PROBE_SHORT[r]}" for r in ("shift_popularity", "shift_time") if r in best]
        out.append(f"The best map from semantic to collaborative recovers R² = {best['in_distribution']['r2']:.2f} "
                   "in-distribution" + (", " + ", ".join(shifts) if shifts else "") + " (held-out items).")
    return out
