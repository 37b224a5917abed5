"""Data of the Overview page: headline estimates, tuning budgets, who finds the hits, oracle gains
against the control floor, list and neighbourhood agreement, and the plain-language reading.

Unfiltered headline numbers are the run's ``metrics`` rows; with a user filter they are the same
per-user values (``users`` table) averaged over the chosen users with :func:`analysis.bootstrap.bootstrap_ci`.
Oracles and gains are :func:`analysis.complementarity.compare_lists` / ``summarise`` of the saved
top-K lists (:func:`analysis.run_queries.compare_systems`); the best single view is the run's
stored one (chosen on validation) and the headroom :func:`analysis.fusion.headroom`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis import run_queries as rq
from analysis.bootstrap import bootstrap_ci
from analysis.complementarity import hit_counts, summarise
from analysis.fusion import headroom
from analysis.verdict import regime_story, tiles, verdict

from .regimes import sweep_table
from .common import (RunKey, Sel, cached, compare_systems, compared_pairs, compared_systems, filter_pairs,
                     hit_pairs, label, overlap_at_k, summary, system_roles)

#: single systems of the headline, by role, in the order shown
SINGLE_ROLES = ("semantic_trained", "semantic_zeroshot", "collaborative", "ease", "mostpop")
METRICS = ("recall", "ndcg")
BOOTSTRAP = {"n_boot": 1000, "seed": 0}
PAIR_MAIN = "semantic + collaborative"
PAIR_CONTROL = "most-popular + collaborative (control floor)"


def _selected(values: pd.Series | np.ndarray, index: np.ndarray, users: Sel) -> np.ndarray:
    s = pd.Series(np.asarray(values, float), index=index)
    return (s if users is None else s.reindex(np.asarray(users))).to_numpy(float)


def _estimate(values: np.ndarray) -> dict[str, Any]:
    ci = bootstrap_ci(values, **BOOTSTRAP)
    return {"mean": ci["mean"], "lo": ci["lo"], "hi": ci["hi"], "n_users": ci["n"]}


def best_fusion(key: RunKey, K: int) -> str | None:
    """The run's fusion system (score fusion or RRF) with the higher test NDCG@K: the headline's "best fusion"."""
    roles = system_roles(key)
    rows = {s: rq.metric_row(key.run, s, "ndcg", K) for s in (roles.get("fusion"), roles.get("rrf")) if s}
    rows = {s: r for s, r in rows.items() if r is not None}
    return max(rows, key=lambda s: rows[s]["mean"]) if rows else None


def _system_rows(key: RunKey, K: int, users: Sel) -> list[dict[str, Any]]:
    roles = system_roles(key)
    targets = [(role, roles[role]) for role in SINGLE_ROLES if role in roles]
    fusion = best_fusion(key, K)
    if fusion:
        targets.append(("fusion", fusion))
    rows = []
    for role, system in targets:
        for metric in METRICS:
            r = rq.metric_row(key.run, system, metric, K) if users is None else None
            if r is not None:
                rows.append({"role": role, "system": system, "metric": metric, **r, "source": "metrics table"})
            elif f"{system}_{metric}@{K}" in key.run.users.columns:
                v = rq.user_metric(key.run, system, metric, K)
                rows.append({"role": role, "system": system, "metric": metric,
                             **_estimate(_selected(v, v.index.to_numpy(), users)),
                             "source": "bootstrap over selected users"})
    return rows


def _oracle_rows(key: RunKey, K: int, users: Sel) -> list[dict[str, Any]]:
    oracle = system_roles(key)["oracle"]
    rows = []
    for metric in METRICS:
        stored = rq.metric_row(key.run, oracle, metric, K) if users is None else None
        if stored is not None:
            rows.append({"role": "oracle", "system": oracle, "metric": metric, **stored,
                         "source": "metrics table (per-user selection oracle of the compared views)"})
            continue
        c = compare_systems(key, *compared_systems(key), K)
        rows.append({"role": "oracle", "system": oracle, "metric": metric,
                     **_estimate(_selected(c[f"oracle_select_{metric}"], c.index.to_numpy(), users)),
                     "source": "per-user selection oracle, bootstrap over selected users"})
    return rows


@cached()
def headline(key: RunKey, K: int, users: Sel = None) -> pd.DataFrame:
    """Headline cards: one row per system × metric at K (role, system, metric, mean, lo, hi, n_users,
    source, label, short): the single systems by role, the best fusion and the per-user selection
    oracle of the compared views; over the filtered users when ``users`` is set."""
    df = pd.DataFrame(_system_rows(key, K, users) + _oracle_rows(key, K, users))
    if df.empty:
        return df
    df["label"] = [label(key, s) for s in df["system"]]
    df["short"] = [label(key, s, short=True) for s in df["system"]]
    fus = df["role"] == "fusion"
    df.loc[fus, "label"] = "Best fusion: " + df.loc[fus, "label"]
    df.loc[fus, "short"] = "Best fusion"
    return df


def tuning_budgets(key: RunKey) -> dict[str, str]:
    """Per system, the tuning budget the engine recorded (configurations and seconds on validation)."""
    out = {}
    for entry in (key.manifest.get("tuning") or {}).values():
        b = entry.get("budget") or {}
        if entry.get("system") and b:
            out[str(entry["system"])] = (f"tuned: {int(b.get('n_configs', 0))} configs, {float(b.get('seconds', 0)):.0f} s"
                                         f"{' (cached)' if entry.get('cache_hit') else ''}")
    return out


@cached()
def hit_shares(key: RunKey, K: int, a: str, b: str, users: Sel = None, items: Sel = None) -> dict[str, float]:
    """:func:`analysis.complementarity.hit_counts` of systems a and b at K over the filtered test pairs."""
    pairs = compared_pairs(key, K) if (a, b) == compared_systems(key) else hit_pairs(key, K, a, b)
    return hit_counts(filter_pairs(pairs, users, items)["kind"].astype(str).to_numpy())


def control_system(key: RunKey) -> str | None:
    """The most-popular control, when the run has one."""
    return system_roles(key).get("mostpop")


def _gain_rows(pair: str, s: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for metric in METRICS:
        best = max(s[f"{metric}_a"], s[f"{metric}_b"])
        for oracle, name in (("select", "per-user selection"), ("union", "union pool")):
            v = s[f"oracle_{oracle}_{metric}"]
            base = best
            if oracle == "union" and metric == "ndcg":  # read against the better view's own hits first
                base, name = s["hits_first_ndcg_best"], "union pool vs own hits first"
            rows.append({"pair": pair, "oracle": name, "metric": metric, "best_single": base, "oracle_value": v,
                         "gain": s[f"oracle_{oracle}_{metric}_gain"]})
    return rows


@cached()
def oracle_gains(key: RunKey, K: int, users: Sel = None) -> pd.DataFrame:
    """Oracle gain over the better view of the pair (:func:`analysis.complementarity.summarise`), for the
    compared pair and the control pair (most-popular + collaborative), over the filtered users. Rows:
    pair, oracle, metric, best_single, oracle_value, gain; the union pool's NDCG gain is read against
    the better view's own hits placed first."""
    sem, col = compared_systems(key)
    pairs = [(PAIR_MAIN, sem, col)]
    if control_system(key):
        pairs.append((PAIR_CONTROL, control_system(key), col))
    rows = []
    for name, a, b in pairs:
        c = compare_systems(key, a, b, K)
        if users is not None:
            c = c.reindex(np.asarray(users))
        rows += _gain_rows(name, summarise(c))
    return pd.DataFrame(rows)


@cached()
def list_overlap(key: RunKey, K: int, users: Sel = None) -> dict[str, float]:
    """Mean over the filtered users of the compared views' top-K list Jaccard and RBO (p = 0.9)."""
    c = compare_systems(key, *compared_systems(key), K)
    if users is not None:
        c = c.reindex(np.asarray(users))
    mean = (lambda s: float(s.mean()) if s.notna().any() else math.nan)  # noqa: E731
    return {"jaccard": mean(c["list_jaccard"]), "rbo": mean(c["rbo"]), "n": int(c["list_jaccard"].notna().sum())}


@cached()
def mean_overlap(key: RunKey, k: int, items: Sel = None) -> dict[str, float]:
    """Mean overlap@k and Jaccard@k over the filtered items with both neighbourhoods, each with its chance level."""
    ov = overlap_at_k(key, k)
    sel = ov if items is None else ov.reindex(np.asarray(items))
    mean = (lambda s: float(s.mean()) if s.notna().any() else math.nan)  # noqa: E731
    return {"mean": mean(sel["overlap"]), "chance": ov.attrs["chance"], "n": int(sel["overlap"].notna().sum()),
            "jaccard": mean(sel["jaccard"]), "chance_jaccard": ov.attrs["chance_jaccard"]}


def share_rows(key: RunKey, K: int, users: Sel, items: Sel) -> pd.DataFrame:
    """Rows of the "who finds the hits" chart: pair, kind, count, share (compared pair, then the control)."""
    sem, col = compared_systems(key)
    s = hit_shares(key, K, sem, col, users, items)
    rows = [{"pair": "semantic vs collaborative", "kind": kind, "count": s[c], "share": s[f"share_{c}"]}
            for kind, c in (("shared", "shared"), ("semantic-only", "only_a"), ("collaborative-only", "only_b"))]
    ctrl = control_system(key)
    if ctrl:
        c_ = hit_shares(key, K, ctrl, col, users, items)
        rows += [{"pair": "most-popular vs collaborative (control)", "kind": kind, "count": c_[c],
                  "share": c_[f"share_{c}"]}
                 for kind, c in (("shared", "shared"), ("most-popular-only", "only_a"),
                                 ("collaborative-only", "only_b"))]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- reading
def _fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _singles_lines(K: int, rec: pd.DataFrame) -> list[str]:
    singles = [r for r in SINGLE_ROLES if r in rec.index]
    if not singles:
        return []
    best = max(singles, key=lambda r: rec.loc[r, "mean"])
    parts = ", ".join(f"{rec.loc[r, 'label']} {_fmt(rec.loc[r, 'mean'])}" for r in singles)
    out = [f"Recall@{K} of the single systems: {parts}. The strongest is {rec.loc[best, 'label']}."]
    if "semantic_trained" in rec.index and "semantic_zeroshot" in rec.index:
        t, z = rec.loc["semantic_trained", "mean"], rec.loc["semantic_zeroshot", "mean"]
        out.append(f"A recommender trained over the frozen text vectors does {'better' if t > z else 'worse'} than the "
                   f"zero-shot profile ({_fmt(t)} vs {_fmt(z)}).")
    return out


def _shares_lines(shares: dict[str, float]) -> list[str]:
    if not shares.get("distinct_hits"):
        return []
    return [f"Of the {shares['distinct_hits']:,} distinct test hits of the two compared views, "
            f"{shares['share_shared']:.0%} are found by both, {shares['share_only_a']:.0%} only by the semantic view and "
            f"{shares['share_only_b']:.0%} only by the collaborative view."]


def _oracle_lines(K: int, gains: pd.DataFrame) -> list[str]:
    if gains.empty:
        return []
    g = gains[(gains["metric"] == "recall") & (gains["oracle"] == "per-user selection")].set_index("pair")["gain"]
    if PAIR_MAIN not in g.index or PAIR_CONTROL not in g.index:
        return []
    main, ctrl = g[PAIR_MAIN], g[PAIR_CONTROL]
    verdict = ("evidence that the views are complementary" if main - ctrl > 0.005 else
               "so most of the oracle gain is what any two noisy views give, not complementarity")
    return [f"Choosing the better view per user would add {_fmt(main)} Recall@{K} over the better of the two; "
            f"the control pair (most-popular + collaborative) adds {_fmt(ctrl)}: an excess of {_fmt(main - ctrl)}, "
            f"{verdict}."]


def _fusion_lines(K: int, rec: pd.DataFrame, best_single: str) -> list[str]:
    """The best fusion against the run's best single view (chosen on validation), with the headroom it realises."""
    by_system = rec.reset_index().set_index("system")
    if "fusion" not in rec.index or best_single not in by_system.index or "oracle" not in rec.index:
        return []
    f, b, o = rec.loc["fusion", "mean"], by_system.loc[best_single, "mean"], rec.loc["oracle", "mean"]
    word = "above" if f > b else "not above"
    sentence = (f"The best fusion ({rec.loc['fusion', 'label'].removeprefix('Best fusion: ')}) reaches Recall@{K} "
                f"{_fmt(f)}, {word} the best single view chosen on validation ({by_system.loc[best_single, 'label']}, "
                f"{_fmt(b)})")
    h = headroom(f, b, o)
    if np.isfinite(h) and f > b:
        sentence += f", realising {h:.0%} of the headroom to the per-user oracle"
    return [sentence + "."]


def _overlap_lines(k: int, overlap: dict[str, float]) -> list[str]:
    if not np.isfinite(overlap.get("mean", math.nan)):
        return []
    ratio = overlap["mean"] / overlap["chance"] if overlap["chance"] else math.nan
    times = f", {_fmt(ratio, 1)}× chance" if np.isfinite(ratio) else ""
    return [f"On average {overlap['mean']:.0%} of an item's {k} nearest neighbours are the same in both views "
            f"(chance {overlap['chance']:.1%}{times})."]


def reading(key: RunKey, K: int, k: int, head: pd.DataFrame, shares: dict[str, float], gains: pd.DataFrame,
            overlap: dict[str, float]) -> list[str]:
    """A few plain-language sentences generated from this run's numbers (as shown on the page)."""
    rec = head[head["metric"] == "recall"].set_index("role") if not head.empty else pd.DataFrame()
    return (_singles_lines(K, rec) + _shares_lines(shares) + _oracle_lines(K, gains)
            + _fusion_lines(K, rec, summary(key).best_single) + _overlap_lines(k, overlap))


def evaluation_note(manifest: dict) -> str:
    """How many users the run's metrics describe (:func:`analysis.run_queries.evaluation_note`)."""
    return rq.evaluation_note(manifest)


@cached()
def story(key: RunKey, sweep: str | None, stamp: int = 0) -> dict[str, Any]:
    """What the Overview opens with (:mod:`analysis.verdict`): the verdict sentences, the four headline
    tiles and the regime story of ``sweep`` (a folder, or None: no sweep yet). ``stamp`` keys the cache."""
    table = regime_story(sweep_table(sweep, stamp)) if sweep else None
    return {"verdict": verdict(key.manifest, table), "tiles": tiles(key.manifest), "regimes": table}
