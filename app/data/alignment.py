"""Data of the Alignment page (DIAGNOSTICS.md, "Alignment probes"): the ``probes`` table with its
capacity axis, the best map of each regime as the engine chose it (run summary, by validation R²),
the items the best map explains worst, and the complementarity-aware fusion against its baselines
(``fusion_models`` / ``fusion_model_differences``) read from the paired intervals."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analysis import run_queries as rq

from .common import RunKey, Sel, cached, label, metric_label, summary, system_roles

PROBE_REGIMES = {"in_distribution": "in-distribution (random held-out items)",
                 "shift_popularity": "shift: fit on popular, test on tail items",
                 "shift_time": "shift: fit on older, test on newer items"}
PROBE_SHORT = {"in_distribution": "in-distribution", "shift_popularity": "popularity shift", "shift_time": "time shift"}
PROBE_LABELS = {"ridge": "ridge (full rank)", "reduced_rank": "reduced-rank linear", "mlp": "one-hidden-layer MLP"}
PROBE_COLUMNS = ["regime", "probe", "capacity", "r2", "r2_shared", "r2_private", "mean_cos", "overlap", "recall",
                 "ceiling_recall", "floor_recall", "readable", "reason", "n_train", "n_eval"]
#: roles of the systems the complementarity-aware fusion is judged against, in the order they are read
BASELINE_ROLES = ("best_single", "fusion", "alignment")
WORST_COLUMNS = ["item_idx", "item_id", "title", "probe_residual", "probe_best", "popularity", "pop_bucket",
                 "col_private", "sem_private", "disagreement"]


def probe_x(probe: str, capacity: str) -> str:
    """Category of a probe capacity on the capacity axis: 'rank r', 'full rank' (ridge and
    reduced-rank at full rank are the same map) or 'MLP w'."""
    cap = str(capacity)
    if probe in ("ridge", "reduced_rank"):
        return "full rank" if cap == "full" else f"rank {cap}"
    return f"MLP {cap}" if probe == "mlp" else f"{probe} {cap}"


def probe_name(best: str) -> str:
    """Readable name of a stored ``probe:capacity`` label, e.g. 'reduced-rank linear, rank 16'."""
    probe, _, cap = str(best).partition(":")
    if not probe:
        return "the best probe"
    return f"{PROBE_LABELS.get(probe, probe)}, {probe_x(probe, cap)}" if cap else PROBE_LABELS.get(probe, probe)


def _cap_num(cap: str) -> float:
    try:
        return float(cap)
    except ValueError:
        return math.inf


def _x_order(d: pd.DataFrame) -> list[str]:
    """Reduced-rank ranks ascending, full rank, then the MLP widths ascending."""
    prb = {p: i for i, p in enumerate(PROBE_LABELS)}
    linear = d["probe"].isin(["ridge", "reduced_rank"])
    order = sorted(set(d.loc[linear, "x"]), key=lambda x: math.inf if x == "full rank" else _cap_num(x.split(" ", 1)[1]))
    rest = d[~linear].sort_values(["probe"], key=lambda s: s.map(lambda p: prb.get(p, 9)), kind="stable")
    return order + list(dict.fromkeys(rest["x"]))


@cached(max_entries=8)
def probe_curves(key: RunKey) -> pd.DataFrame:
    """The ``probes`` table with the capacity category ``x``, ``regime_label`` and ``probe_label``,
    ordered regime, probe (ridge, reduced-rank, MLP), capacity ascending ("full" last);
    ``.attrs["x_order"]``: the order of the capacity axis."""
    d = key.run.table("probes")
    rq.require_columns(d, PROBE_COLUMNS, "probes", key.run)
    d = d.copy()
    for c in ("regime", "probe", "capacity"):
        d[c] = d[c].astype(str)
    d["x"] = [probe_x(p, c) for p, c in zip(d["probe"], d["capacity"])]
    d["regime_label"] = d["regime"].map(lambda r: PROBE_REGIMES.get(r, r))
    d["probe_label"] = d["probe"].map(lambda p: PROBE_LABELS.get(p, p))
    reg = {r: i for i, r in enumerate(PROBE_REGIMES)}
    prb = {p: i for i, p in enumerate(PROBE_LABELS)}
    d = d.assign(_r=d["regime"].map(lambda r: reg.get(r, 9)), _p=d["probe"].map(lambda p: prb.get(p, 9)),
                 _c=d["capacity"].map(_cap_num))
    d = d.sort_values(["_r", "regime", "_p", "_c"]).drop(columns=["_r", "_p", "_c"]).reset_index(drop=True)
    d.attrs["x_order"] = _x_order(d)
    return d


def probe_summary(key: RunKey) -> dict[str, Any]:
    """The run summary's ``probes`` entry (regimes, chance overlap, skipped regimes, ...)."""
    return summary(key).raw.get("probes") or {}


def probe_best(key: RunKey) -> dict[str, dict[str, Any]]:
    """Per regime, the best map as the engine chose it (highest validation R², ``best_by_valid``):
    {regime: {probe, capacity, x, r2, mean_cos, overlap, recall, ceiling_recall, n_eval, selected_by}}."""
    regimes = probe_summary(key).get("regimes") or {}
    out = {}
    for regime in sorted(regimes, key=lambda r: list(PROBE_REGIMES).index(r) if r in PROBE_REGIMES else 9):
        s = regimes[regime]
        if not isinstance(s, dict) or not s.get("best_by_valid"):
            continue
        probe, _, cap = str(s["best_by_valid"]).partition(":")
        out[regime] = {"probe": probe, "capacity": cap, "x": probe_x(probe, cap), "r2": float(s["r2"]),
                       "mean_cos": float(s["mean_cos"]), "overlap": float(s["overlap"]), "recall": float(s["recall"]),
                       "ceiling_recall": float(s["ceiling_recall"]), "n_eval": int(s["n_eval"]),
                       "selected_by": "validation R²"}
    return out


def readable_regimes(curves: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The probe rows of regimes whose Recall@K can be read, and {regime: reason} for the others."""
    ok = curves["readable"].fillna(True).astype(bool)
    bad = curves[~ok].drop_duplicates("regime")
    shown = curves[ok].copy()
    shown.attrs["x_order"] = curves.attrs.get("x_order")
    return shown, dict(zip(bad["regime"].astype(str), bad["reason"].fillna("").astype(str)))


@cached(max_entries=64)
def probe_worst_items(key: RunKey, n: int = 20, items: Sel = None) -> pd.DataFrame:
    """The ``n`` items the best probe explains worst (highest ``probe_residual``; cold items have
    none), in the item filter: item_idx, item_id, title, probe_residual, probe_best, popularity,
    pop_bucket, col_private, sem_private, disagreement."""
    it = key.run.items
    rq.require_columns(it, WORST_COLUMNS, "items", key.run)
    d = it[it["probe_residual"].notna()]
    if items is not None:
        d = d[d["item_idx"].isin(items)]
    d = d.sort_values(["probe_residual", "item_idx"], ascending=[False, True]).head(int(n))
    out = d[WORST_COLUMNS].reset_index(drop=True)
    out["item_id"] = out["item_id"].astype(str)
    return out


# ----------------------------------------------------------------------------- complementarity-aware fusion
def _verdict(diff: float, lo: float, hi: float) -> tuple[str, str]:
    if diff == 0 and lo == 0 and hi == 0:
        return "identical", "ranks exactly like"
    if lo > 0:
        return "better", "beats"
    if hi < 0:
        return "worse", "is worse than"
    return "no clear difference", "is not distinguishable from"


def fusion_model_verdicts(diffs: pd.DataFrame, metric: str, k: int, labels: dict[str, str],
                          model: str = "complementarity_fusion",
                          baselines: tuple[str, ...] = BASELINE_ROLES) -> list[dict[str, Any]]:
    """Read the paired differences of ``model`` against each of ``baselines`` at ``metric@k``.

    One dict per baseline present: baseline, label, diff, lo, hi, p_value and verdict: "better" (95 %
    interval above 0), "worse" (below 0), "identical" (difference and interval exactly 0: the same
    rankings) or "no clear difference" (interval covers 0), with a plain sentence ``text``.
    """
    d = diffs[(diffs["system_a"].astype(str) == model) & (diffs["metric"].astype(str) == metric)
              & (diffs["k"].astype(int) == int(k))]
    out = []
    for base in baselines:
        r = d[d["system_b"].astype(str) == base]
        if r.empty:
            continue
        r = r.iloc[0]
        diff, lo, hi, p = float(r["diff"]), float(r["lo"]), float(r["hi"]), float(r["p_value"])
        verdict, word = _verdict(diff, lo, hi)
        lab = labels.get(base, base)
        tail = "" if verdict == "identical" else f" (difference {diff:+.4f}, 95 % interval {lo:+.4f} to {hi:+.4f}, p = {p:.2g})"
        out.append({"baseline": base, "label": lab, "diff": diff, "lo": lo, "hi": hi, "p_value": p, "verdict": verdict,
                    "text": f"On {metric_label(metric, k)} the {labels.get(model, model)[0].lower()}"
                            f"{labels.get(model, model)[1:]} {word} the {lab[0].lower() + lab[1:]}{tail}."})
    return out


def fusion_model_summary(verdicts: dict[str, list[dict[str, Any]]], labels: dict[str, str],
                         baselines: tuple[str, ...] = BASELINE_ROLES) -> str:
    """One sentence over the metrics of :func:`fusion_model_verdicts`: per baseline, "better" /
    "worse" / "identical rankings" when every metric agrees, else "no clear difference"."""
    per: dict[str, set[str]] = {}
    for rows in verdicts.values():
        for v in rows:
            per.setdefault(v["baseline"], set()).add(v["verdict"])
    words = {"better": "better on every metric", "worse": "worse on every metric",
             "identical": "identical rankings (no gain)"}
    parts = []
    for base in (b for b in baselines if b in per):
        vs = per[base]
        word = words[next(iter(vs))] if len(vs) == 1 and next(iter(vs)) in words else "no clear difference"
        lab = labels.get(base, base)
        parts.append(f"against the {lab[0].lower() + lab[1:]}: {word}")
    s = "; ".join(parts)
    return s[0].upper() + s[1:] + "." if s else ""


def _readable_differences(diffs: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    a, b = diffs["system_a"].astype(str).to_numpy(), diffs["system_b"].astype(str).to_numpy()
    return pd.DataFrame({
        "comparison": [f"{labels.get(x, x)} − {labels.get(y, y)}" for x, y in zip(a, b)],
        "metric": [metric_label(str(m), int(k)) for m, k in zip(diffs["metric"], diffs["k"])],
        "difference": diffs["diff"].to_numpy(float), "lo": diffs["lo"].to_numpy(float),
        "hi": diffs["hi"].to_numpy(float), "p_value": diffs["p_value"].to_numpy(float),
        "significant": ((diffs["lo"] > 0) | (diffs["hi"] < 0)).to_numpy(bool), "system_a": a, "system_b": b})


@cached(max_entries=8)
def fusion_model_results(key: RunKey) -> dict[str, Any]:
    """The complementarity-aware fusion against its baselines: table (system, label, metric, k, mean,
    lo, hi; views first), differences (readable), best_single (the view the run's best single view
    is), K, verdicts {metric: :func:`fusion_model_verdicts`} at K, labels, summary (one sentence)."""
    fm = summary(key).raw.get("fusion_models") or {}
    roles = system_roles(key)
    model, baselines = roles["complementarity_fusion"], tuple(roles[r] for r in BASELINE_ROLES)
    t = key.run.table("fusion_models")
    rq.require_columns(t, ["system", "metric", "k", "mean", "lo", "hi"], "fusion_models", key.run)
    t = t.assign(system=t["system"].astype(str))
    labels = {s: label(key, s) for s in set(t["system"])}
    order = {s: i for i, s in enumerate([*(fm.get("views") or []), *baselines, model])}
    t["label"] = t["system"].map(labels)
    t = t.sort_values(["metric", "k", "system"], key=lambda s: s.map(lambda v: order.get(v, 99))
                      if s.name == "system" else s).reset_index(drop=True)
    diffs = key.run.table("fusion_model_differences")
    rq.require_columns(diffs, ["system_a", "system_b", "metric", "k", "diff", "lo", "hi", "p_value"],
                       "fusion_model_differences", key.run)
    K = summary(key).K
    verdicts = {m: fusion_model_verdicts(diffs, m, K, labels, model, baselines) for m in ("ndcg", "recall")}
    return {"table": t, "differences": _readable_differences(diffs, labels), "best_single": fm.get("best_single"),
            "K": K, "verdicts": verdicts, "labels": labels, "summary": fusion_model_summary(verdicts, labels, baselines)}
