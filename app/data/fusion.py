"""Data of the Fusion page (DIAGNOSTICS.md, "Fusion").

* The fusion-gain curve M(α) is the run's ``fusion`` table (α = weight of the semantic view).
* Reference lines come from the ``metrics`` table (single views, RRF, the fusion at the validation α;
  on test also the oracles and the control floor). The engine stores the oracles for Recall / NDCG
  at the run's K only; for another cut-off or the hit rate they are
  :func:`analysis.run_queries.oracle_value` of the saved lists.
* Headroom realised = :func:`analysis.fusion.headroom` of the fusion against the run's best single
  view (chosen on validation, ``summary.best_single``) and the per-user selection oracle: one
  definition, equal to the run summary's ``fusion_headroom_ndcg`` at NDCG@K.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pandas as pd

from analysis import run_queries as rq
from analysis.errors import RunError
from analysis.fusion import headroom

from .common import RunKey, cached, compared_systems, label, metric_label, summary, system_roles

METHOD_LABELS = {"score": "plain score fusion", "cold_aware": "cold-aware score fusion", "rrf": "RRF"}
REF_COLUMNS = ["part", "key", "system", "label", "value", "lo", "hi", "source"]


def fusion_info(key: RunKey) -> dict[str, Any]:
    """alpha_valid, method (score / cold_aware), the validation metric, and the methods the table holds."""
    f = key.manifest.get("fusion") or {}
    tab = key.run.table("fusion")
    methods = [m for m in ("cold_aware", "score") if m in set(tab["method"].astype(str))]
    return {"alpha_valid": float(f["alpha_valid"]) if f.get("alpha_valid") is not None else math.nan,
            "method": str(f.get("method") or (methods[0] if methods else "score")), "metric": str(f.get("metric", "")),
            "methods": methods, "has_rrf": bool((tab["method"].astype(str) == "rrf").any())}


@cached()
def fusion_curves(key: RunKey, metric: str, k: int) -> pd.DataFrame:
    """The fusion-gain curves of ``metric@k``: part, method, segment_type, segment, alpha, value, n."""
    tab = key.run.table("fusion")
    rq.require_columns(tab, ["part", "method", "alpha", "metric", "k", "value", "n", "segment_type", "segment"],
                       "fusion", key.run)
    d = tab[(tab["metric"].astype(str) == metric) & (tab["k"].astype(int) == int(k))
            & tab["method"].astype(str).isin(["score", "cold_aware"])].copy()
    for c in ("part", "method", "segment_type", "segment"):
        d[c] = d[c].astype(str)
    return d.sort_values(["part", "method", "segment_type", "segment", "alpha"]).reset_index(drop=True)[
        ["part", "method", "segment_type", "segment", "alpha", "value", "n"]]


def _reference(key: RunKey, part: str, ref: str, system: str, metric: str, k: int,
               fallback: Callable[[], float] | None = None) -> dict[str, Any] | None:
    r = rq.metric_row(key.run, system, metric, k, part=part)
    row = {"part": part, "key": ref, "system": system, "label": label(key, system)}
    if r is not None:
        return {**row, "value": r["mean"], "lo": r["lo"], "hi": r["hi"], "source": "metrics table"}
    v = fallback() if fallback is not None else math.nan
    if not np.isfinite(v):
        return None
    return {**row, "value": v, "lo": math.nan, "hi": math.nan, "source": "recomputed from the saved lists"}


@cached()
def fusion_references(key: RunKey, metric: str, k: int) -> pd.DataFrame:
    """Horizontal reference lines of the fusion-gain chart for ``metric@k``.

    Rows: part, key (semantic / collaborative / rrf / fusion / oracle_select / oracle_union /
    control_oracle_select), system, label (the run's), value, lo, hi, source ("metrics table" or
    "recomputed from the saved lists").
    """
    sem, col = compared_systems(key)
    roles = system_roles(key)
    refs = [(part, ref, s, None) for part in ("valid", "test")
            for ref, s in (("semantic", sem), ("collaborative", col), ("rrf", roles["rrf"]), ("fusion", roles["fusion"]))]
    refs += [("test", "oracle_select", roles["oracle"], lambda: rq.oracle_value(key.run, "select", sem, col, metric, k)),
             ("test", "oracle_union", roles["oracle_union"],
              lambda: rq.oracle_value(key.run, "union", sem, col, metric, k))]
    if "mostpop" in roles:
        refs.append(("test", "control_oracle_select", roles["control_oracle"],
                     lambda: rq.oracle_value(key.run, "select", roles["mostpop"], col, metric, k)))
    rows = [_reference(key, part, ref, s, metric, k, fb) for part, ref, s, fb in refs]
    return pd.DataFrame([r for r in rows if r is not None], columns=REF_COLUMNS)


def union_oracle_gain(key: RunKey) -> dict[str, Any]:
    """The engine's union-pool NDCG gain at K (run summary): raw, and from the other view only
    (against the better view's own hits placed first), with its paired-bootstrap interval."""
    g = summary(key).raw.get("union_oracle_gain")
    if not g:
        raise RunError(f"run {key.path} has no union-oracle gain: recompute it with --force")
    return dict(g)


def oracle_excess(key: RunKey) -> dict[str, Any] | None:
    """The engine's excess of the per-user-selection oracle gain over the control floor (NDCG@K, run
    summary, :func:`analysis.complementarity.oracle_excess`): value, lo, hi, p_value, gain, control_gain;
    None for a run made before it was recorded."""
    ex = summary(key).raw.get("oracle_excess_ndcg")
    return dict(ex) if ex else None


def fusion_headroom(key: RunKey, metric: str, k: int) -> dict[str, Any]:
    """Headroom the fusion at the validation α realises on test for ``metric@k``: fused, best_single
    (the run's best single view, chosen on validation), best_label, best_value, oracle, headroom."""
    t = fusion_references(key, metric, k)
    t = t[t["part"] == "test"]
    value = (lambda col, v: float(t.loc[t[col] == v, "value"].iloc[0]) if (t[col] == v).any() else math.nan)  # noqa: E731
    best = summary(key).best_single
    fused, best_v, oracle = value("key", "fusion"), value("system", best), value("key", "oracle_select")
    return {"fused": fused, "best_single": best, "best_label": label(key, best), "best_value": best_v,
            "oracle": oracle, "headroom": headroom(fused, best_v, oracle)}


@cached()
def fusion_differences(key: RunKey, k: int) -> pd.DataFrame:
    """The paired-bootstrap differences on test at cut-off k, readable.

    Columns: comparison ("A − B", the run's labels), metric (e.g. "NDCG@20"), difference, lo, hi,
    p_value, n_users, significant (the 95 % interval excludes 0), fusion_vs_best (the fusion against
    the run's best single view), system_a, system_b; the fusion-vs-best rows first.
    """
    d = key.run.table("differences")
    rq.require_columns(d, ["system_a", "system_b", "part", "metric", "k", "diff", "lo", "hi", "p_value", "n_users"],
                       "differences", key.run)
    d = d[(d["part"].astype(str) == "test") & (d["k"].astype(int) == int(k))]
    a, b = d["system_a"].astype(str).to_numpy(), d["system_b"].astype(str).to_numpy()
    out = pd.DataFrame({
        "comparison": [f"{label(key, x)} − {label(key, y)}" for x, y in zip(a, b)],
        "metric": [metric_label(str(mm), int(kk)) for mm, kk in zip(d["metric"], d["k"])],
        "difference": d["diff"].to_numpy(float), "lo": d["lo"].to_numpy(float), "hi": d["hi"].to_numpy(float),
        "p_value": d["p_value"].to_numpy(float), "n_users": d["n_users"].to_numpy(),
        "significant": ((d["lo"] > 0) | (d["hi"] < 0)).to_numpy(),
        "fusion_vs_best": (a == system_roles(key)["fusion"]) & (b == summary(key).best_single),
        "system_a": a, "system_b": b})
    order = np.lexsort((out["metric"].to_numpy(), out["comparison"].to_numpy(), ~out["fusion_vs_best"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)
