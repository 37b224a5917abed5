"""Per-run frames the dashboard derives from a saved run: pure pandas / numpy, no Streamlit.

Every function here takes an opened :class:`analysis.runstore.Run` (plus hashable
arguments such as ``K``, ``k`` or a tuple of user indices) and returns a new frame or
array; pages never compute these inside widget callbacks. :meth:`app.common.Ctx.derived`
memoises them per process (``st.cache_resource``), so the results are shared and must be
treated as **read-only** (copy before mutating).

Definitions follow /work/shared/DIAGNOSTICS.md:

* overlap@k(i) = |N_k^sem(i) ∩ N_k^col(i)| / k from the stored ``neighbors`` table (the
  first ``k`` ranks of each view), Jaccard@k = m / (2k − m), disagreement = 1 − overlap,
  chance = k / (N − 1) with N the items valid in both views;
* a test pair (u, i) is a *hit* of a system when i is in the system's top-K for u; hits of
  the two compared views split into shared / semantic-only / collaborative-only, and test
  pairs neither view found are *missed by both*;
* oracle bounds at K: per-user selection mean_u max(M_a(u), M_b(u)); union pool
  Recall = min(K, |H_a ∪ H_b|) / |R(u)|, NDCG with those hits ranked first.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from analysis.errors import RunError
from analysis.runstore import Run

HIT_KINDS = ("shared", "semantic-only", "collaborative-only", "missed by both")
HIT_TYPE_ORDER = ("shared", "semantic-only", "collaborative-only", "missed by both", "not in test")
ROLE_ORDER = ("semantic_trained", "semantic_zeroshot", "collaborative", "ease", "mostpop")
ROLE_LABELS = {
    "semantic_trained": "Semantic (trained)",
    "semantic_zeroshot": "Semantic (zero-shot)",
    "collaborative": "Collaborative",
    "ease": "EASE",
    "mostpop": "Most-popular",
    "fusion": "Best fusion",
    "oracle": "Oracle (per-user selection)",
}
ROLE_SHORT = {
    "semantic_trained": "Sem. trained",
    "semantic_zeroshot": "Sem. zero-shot",
    "collaborative": "Collaborative",
    "ease": "EASE",
    "mostpop": "Most-popular",
    "fusion": "Best fusion",
    "oracle": "Oracle (per user)",
}
NEIGHBOR_COL_ALIASES = ("neighbor_idx", "neighbour_idx")


# ----------------------------------------------------------------------------- helpers
def require_columns(df: pd.DataFrame, cols: Iterable[str], table: str, run: Run) -> None:
    """Raise :class:`RunError` naming the run, table and missing columns."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise RunError(f"run {run.path}: table {table!r} lacks column(s) {missing}; "
                       "recompute it with `semcollab run ... --force`")


def n_items(run: Run) -> int:
    return int(len(run.items))


def _pair_keys(users: np.ndarray, items: np.ndarray, n_items_: int) -> np.ndarray:
    return np.asarray(users, dtype=np.int64) * n_items_ + np.asarray(items, dtype=np.int64)


def _disc(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of ``values`` (NaN skipped) with a percentile bootstrap over entries."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    means = v[idx].mean(axis=1)
    a = (1 - level) / 2
    return (float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


# ----------------------------------------------------------------------------- systems
def system_roles(run: Run) -> dict[str, str]:
    """Map each role of ``ROLE_ORDER`` to the run's system name (roles the run lacks are absent).

    ``manifest.compared`` names the compared semantic and collaborative systems; the others are
    recognised by name (``zero`` → zero-shot semantic, ``ease``, ``pop`` → most-popular).
    """
    systems = list(run.manifest.get("systems", {}) or {})
    metric_systems = list(run.table("metrics")["system"].astype(str).unique())
    names = list(dict.fromkeys(systems + metric_systems))
    compared = run.manifest.get("compared", {}) or {}
    roles: dict[str, str] = {}
    if compared.get("collaborative"):
        roles["collaborative"] = str(compared["collaborative"])
    for n in names:
        ln = n.lower()
        if "oracle" in ln or "fusion" in ln or "rrf" in ln:
            continue
        if "sem" in ln and ("zero" in ln or "zs" in ln or "profile" in ln):
            roles.setdefault("semantic_zeroshot", n)
        elif "sem" in ln:
            roles.setdefault("semantic_trained", n)
        elif "ease" in ln:
            roles.setdefault("ease", n)
        elif "pop" in ln:
            roles.setdefault("mostpop", n)
        elif ln in ("ials", "bpr", "als", "collaborative", "collab"):
            roles.setdefault("collaborative", n)
    sem = compared.get("semantic")
    if sem and sem in names:
        roles["semantic_zeroshot" if "zero" in sem.lower() else "semantic_trained"] = sem
    return roles


def compared_systems(run: Run) -> tuple[str, str]:
    """(semantic system, collaborative system) the run compares."""
    roles = system_roles(run)
    compared = run.manifest.get("compared", {}) or {}
    sem = compared.get("semantic")
    if sem not in set(run.table("metrics")["system"].astype(str)):
        sem = roles.get("semantic_zeroshot" if str(sem).lower().startswith("zero") else "semantic_trained")
    col = roles.get("collaborative")
    if not sem or not col:
        raise RunError(f"run {run.path}: cannot tell which systems are compared (manifest 'compared' = {compared}, "
                       f"systems = {sorted(run.manifest.get('systems', {}) or {})})")
    return str(sem), str(col)


def fusion_systems(run: Run) -> list[str]:
    """Fusion systems of the metrics table (names with "fusion" or "rrf")."""
    names = run.table("metrics")["system"].astype(str).unique()
    return [n for n in names if ("fusion" in n.lower() or "rrf" in n.lower()) and "oracle" not in n.lower()]


# ----------------------------------------------------------------------------- neighbours
def neighbor_arrays(run: Run) -> dict[str, Any]:
    """Dense kNN graphs from the ``neighbors`` table.

    Returns {"semantic": (idx[N, depth] int64 with -1 padding, sim[N, depth] float),
    "collaborative": (...), "depth": min depth over the two views}.
    """
    nb = run.table("neighbors")
    col = next((c for c in NEIGHBOR_COL_ALIASES if c in nb.columns), None)
    require_columns(nb, ["item_idx", "view", "rank", "sim"], "neighbors", run)
    if col is None:
        raise RunError(f"run {run.path}: table 'neighbors' has no neighbor_idx column")
    n = n_items(run)
    out: dict[str, Any] = {}
    depths = []
    for view in ("semantic", "collaborative"):
        sub = nb[nb["view"].astype(str) == view]
        depth = int(sub["rank"].max()) if len(sub) else 0
        idx = np.full((n, max(depth, 1)), -1, dtype=np.int64)
        sim = np.full((n, max(depth, 1)), np.nan)
        if len(sub):
            r = sub["item_idx"].to_numpy(np.int64)
            c = sub["rank"].to_numpy(np.int64) - 1
            idx[r, c] = sub[col].to_numpy(np.int64)
            sim[r, c] = sub["sim"].to_numpy(float)
        out[view] = (idx, sim)
        depths.append(depth)
    out["depth"] = int(min(depths))
    return out


def _compact_valid(idx: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Drop neighbours that are not ``valid`` from each row (keeping order), pad with -1 on the right."""
    ok = (idx >= 0) & valid[np.maximum(idx, 0)]
    order = np.argsort(~ok, axis=1, kind="stable")
    out = np.take_along_axis(idx, order, axis=1)
    out[~np.take_along_axis(ok, order, axis=1)] = -1
    return out


def overlap_from_neighbors(run: Run, k: int) -> pd.DataFrame:
    """Per-item overlap@k, jaccard@k, disagreement@k recomputed from the ``neighbors`` table (index item_idx).

    Only items both views can place count: each semantic neighbour list is first restricted to
    items that have a collaborative neighbourhood (cold items cannot overlap), as the engine does.
    NaN for cold items and for the rare items with fewer than k such neighbours within the stored
    depth. ``.attrs``: k, n_valid (items with a value), chance = k / (N − 1) with N the placeable items.
    """
    g = neighbor_arrays(run)
    if not 1 <= k <= g["depth"]:
        raise RunError(f"run {run.path}: neighbourhood size k={k} is outside 1..{g['depth']} (depth of the neighbors table)")
    col_idx = g["collaborative"][0]
    placeable = (col_idx >= 0).any(axis=1)
    a = _compact_valid(g["semantic"][0], placeable)[:, :k]
    b = col_idx[:, :k]
    both = (a >= 0).all(axis=1) & (b >= 0).all(axis=1) & placeable
    n = a.shape[0]
    m = np.full(n, np.nan)
    if both.any():
        cat = np.sort(np.concatenate([a[both], b[both]], axis=1), axis=1)
        m[both] = (cat[:, 1:] == cat[:, :-1]).sum(axis=1)
    overlap = m / k
    n_place = int(placeable.sum())
    df = pd.DataFrame({"overlap": overlap, "jaccard": m / (2 * k - m), "disagreement": 1.0 - overlap},
                      index=pd.RangeIndex(n, name="item_idx"))
    from analysis.neighbors import chance_jaccard, chance_overlap

    df.attrs.update(k=k, n_valid=int(both.sum()), chance=chance_overlap(n_place, k) if n_place >= 2 else math.nan,
                    chance_jaccard=chance_jaccard(n_place, k) if n_place >= 2 else math.nan)
    return df


def overlap_at_k(run: Run, k: int) -> pd.DataFrame:
    """Per-item overlap@k, jaccard@k, disagreement@k (index item_idx) as the dashboard shows them.

    At the run's own ``k_neighbors`` these are the engine's values from the items table (exact);
    for any other k they are recomputed by :func:`overlap_from_neighbors`. Same ``.attrs``.
    """
    rec = overlap_from_neighbors(run, k)
    items = run.items
    if int(run.manifest.get("k_neighbors", -1)) == k and {"overlap", "jaccard", "disagreement"} <= set(items.columns):
        stored = items.set_index("item_idx")[["overlap", "jaccard", "disagreement"]].reindex(rec.index).astype(float)
        stored.attrs.update(rec.attrs)
        stored.attrs["n_valid"] = int(stored["overlap"].notna().sum())
        if "chance_overlap" in run.manifest:
            stored.attrs["chance"] = float(run.manifest["chance_overlap"])
        return stored
    return rec


def item_neighbours(run: Run, item_idx: int, k: int) -> pd.DataFrame:
    """The k neighbours of one item in each view, with their kind, from the ``neighbors`` table.

    Columns: neighbor_idx, sem_rank, sem_sim, col_rank, col_sim, kind, item_id, title, popularity,
    pop_bucket, cold. Ranks are the 1-based ranks stored in the table (NaN when the neighbour is
    not in that view's list). For an item both views place, the semantic list is its first k
    neighbours among the items the collaborative view can place too — the lists overlap@k
    compares, so the shared count is overlap@k · k — and ``kind`` is shared / semantic-only /
    collaborative-only; cold items ranked before the k-th of those get kind ``cold`` (only the
    semantic view can place them). For a cold item: its first k semantic neighbours, all
    semantic-only.
    """
    g = neighbor_arrays(run)
    k = min(k, g["depth"])
    col_idx, col_sim = g["collaborative"]
    sem_idx, sem_sim = g["semantic"]
    placeable = (col_idx >= 0).any(axis=1)
    rows: dict[int, dict[str, Any]] = {}
    sem_row = sem_idx[item_idx]
    if placeable[item_idx]:
        ok = (sem_row >= 0) & placeable[np.maximum(sem_row, 0)]
        last = np.flatnonzero(ok)[:k]
        stop = int(last[-1]) + 1 if len(last) else 0
        sem_pos = [int(p) for p in range(stop) if sem_row[p] >= 0]
    else:
        sem_pos = [int(p) for p in np.flatnonzero(sem_row >= 0)[:k]]
    for p in sem_pos:
        j = int(sem_row[p])
        rows[j] = {"sem_rank": p + 1, "sem_sim": float(sem_sim[item_idx, p]),
                   "_cold": bool(placeable[item_idx] and not placeable[j])}
    for p in range(k):
        j = int(col_idx[item_idx, p])
        if j >= 0:
            rows.setdefault(j, {"_cold": False}).update(col_rank=p + 1, col_sim=float(col_sim[item_idx, p]))
    df = pd.DataFrame.from_dict(rows, orient="index").reindex(
        columns=["sem_rank", "sem_sim", "col_rank", "col_sim", "_cold"])
    df.index.name = "neighbor_idx"
    df = df.reset_index()
    in_sem, in_col = df["sem_rank"].notna(), df["col_rank"].notna()
    df["kind"] = np.where(df["_cold"].fillna(False).astype(bool), "cold",
                          np.where(in_sem & in_col, "shared", np.where(in_sem, "semantic-only", "collaborative-only")))
    meta = run.items.set_index("item_idx")[["item_id", "title", "popularity", "pop_bucket", "cold"]]
    df = df.drop(columns="_cold").join(meta, on="neighbor_idx")
    df["order"] = df[["sem_rank", "col_rank"]].min(axis=1)
    return df.sort_values(["order", "neighbor_idx"]).drop(columns="order").reset_index(drop=True)


# ----------------------------------------------------------------------------- hits
def test_pairs(run: Run) -> pd.DataFrame:
    """Distinct (user_idx, item_idx) test pairs, sorted."""
    it = run.table("interactions")
    require_columns(it, ["user_idx", "item_idx", "part"], "interactions", run)
    t = it.loc[it["part"].astype(str) == "test", ["user_idx", "item_idx"]].drop_duplicates()
    return t.sort_values(["user_idx", "item_idx"]).reset_index(drop=True).astype(np.int64)


def _topk_hit_keys(run: Run, system: str, K: int) -> np.ndarray:
    tk = run.table("topk")
    sub = tk[(tk["system"].astype(str) == system) & (tk["rank"] <= K) & tk["hit"].astype(bool)]
    return np.unique(_pair_keys(sub["user_idx"].to_numpy(), sub["item_idx"].to_numpy(), n_items(run)))


def hit_pairs(run: Run, K: int, sys_a: str, sys_b: str) -> pd.DataFrame:
    """Every test pair with whether ``sys_a`` / ``sys_b`` hit it in their top-K and its kind.

    Columns: user_idx, item_idx, a_hit, b_hit, kind (one of HIT_KINDS; "semantic" means a).
    """
    tp = test_pairs(run)
    keys = _pair_keys(tp["user_idx"].to_numpy(), tp["item_idx"].to_numpy(), n_items(run))
    a = np.isin(keys, _topk_hit_keys(run, sys_a, K))
    b = np.isin(keys, _topk_hit_keys(run, sys_b, K))
    kind = np.select([a & b, a & ~b, ~a & b], list(HIT_KINDS[:3]), HIT_KINDS[3])
    out = tp.copy()
    out["a_hit"], out["b_hit"] = a, b
    out["kind"] = pd.Categorical(kind, categories=list(HIT_KINDS))
    return out


def _user_filter(df: pd.DataFrame, users: tuple[int, ...] | None) -> pd.DataFrame:
    if users is None:
        return df
    return df[df["user_idx"].isin(np.asarray(users, dtype=np.int64))]


def item_hit_counts(run: Run, K: int, users: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Per item (index item_idx): hits_shared, hits_sem_only, hits_col_only, hits_missed_by_both, n_test
    for the compared views at K over ``users`` (None = all), plus ``hit_type`` (see :func:`hit_type`)."""
    sem, col = compared_systems(run)
    hp = _user_filter(hit_pairs(run, K, sem, col), users)
    n = n_items(run)
    out = pd.DataFrame(index=pd.RangeIndex(n, name="item_idx"))
    item = hp["item_idx"].to_numpy()
    for kind, name in zip(HIT_KINDS, ("hits_shared", "hits_sem_only", "hits_col_only", "hits_missed_by_both")):
        out[name] = np.bincount(item[(hp["kind"] == kind).to_numpy()], minlength=n)
    out["n_test"] = np.bincount(item, minlength=n)
    out["hit_type"] = hit_type(out)
    return out


def hit_type(counts: pd.DataFrame) -> pd.Categorical:
    """Item hit type: the most frequent kind of hit among its test hits (ties → shared, then
    semantic-only); "missed by both" when neither view ever hit it; "not in test" without test pairs."""
    c = counts[["hits_shared", "hits_sem_only", "hits_col_only"]].to_numpy()
    best = np.argmax(c, axis=1)  # first max wins: shared > semantic-only > collaborative-only
    label = np.array(HIT_KINDS[:3], dtype=object)[best]
    label = np.where(c.sum(axis=1) == 0, HIT_KINDS[3], label)
    label = np.where(counts["n_test"].to_numpy() == 0, "not in test", label)
    return pd.Categorical(label, categories=list(HIT_TYPE_ORDER))


def user_hit_counts(run: Run, K: int, sys_a: str, sys_b: str) -> pd.DataFrame:
    """Per user (index user_idx 0..max): n_rel, shared, only_a, only_b, missed."""
    hp = hit_pairs(run, K, sys_a, sys_b)
    nu = int(run.users["user_idx"].max()) + 1 if len(run.users) else 0
    u = hp["user_idx"].to_numpy()
    out = pd.DataFrame(index=pd.RangeIndex(nu, name="user_idx"))
    out["n_rel"] = np.bincount(u, minlength=nu)
    for kind, name in zip(HIT_KINDS, ("shared", "only_a", "only_b", "missed")):
        out[name] = np.bincount(u[(hp["kind"] == kind).to_numpy()], minlength=nu)
    return out


def user_metric(run: Run, system: str, metric: str, K: int) -> pd.Series:
    """Per-user test ``metric`` ("recall"/"ndcg") of ``system`` at K (index user_idx; NaN = no test items)."""
    users = run.users
    col = f"{system}_{metric}@{K}"
    require_columns(users, [col], "users", run)
    return pd.Series(users[col].to_numpy(float), index=users["user_idx"].to_numpy(), name=col)


def oracle_per_user(run: Run, K: int, sys_a: str, sys_b: str) -> pd.DataFrame:
    """Per user: select_recall, select_ndcg (max of the two systems), union_recall, union_ndcg
    (hits of both lists pooled, at most K, ranked first), hits_first_a_ndcg / hits_first_b_ndcg
    (each system's own hits ranked first: what the union's NDCG gain is read against, see
    :func:`analysis.complementarity.hits_first_ndcg`). NaN for users without test items."""
    from analysis.complementarity import hits_first_ndcg

    uh = user_hit_counts(run, K, sys_a, sys_b)
    users = run.users["user_idx"].to_numpy()
    uh = uh.reindex(users)
    n_rel = uh["n_rel"].to_numpy(float)
    h = (uh["shared"] + uh["only_a"] + uh["only_b"]).to_numpy()
    has = n_rel > 0
    cum = np.concatenate([[0.0], np.cumsum(_disc(K))])
    hh = np.minimum(h, K).astype(int)
    ideal = cum[np.minimum(n_rel, K).astype(int)]
    out = pd.DataFrame(index=pd.Index(users, name="user_idx"))
    out["union_recall"] = np.where(has, hh / np.where(has, n_rel, 1), np.nan)
    out["union_ndcg"] = np.where(has, cum[hh] / np.where(ideal > 0, ideal, 1), np.nan)
    for side in ("a", "b"):
        own = (uh["shared"] + uh[f"only_{side}"]).to_numpy()
        out[f"hits_first_{side}_ndcg"] = hits_first_ndcg(own, n_rel.astype(np.int64), K)
    for m in ("recall", "ndcg"):
        ma = user_metric(run, sys_a, m, K).reindex(users).to_numpy()
        mb = user_metric(run, sys_b, m, K).reindex(users).to_numpy()
        out[f"select_{m}"] = np.where(has, np.fmax(ma, mb), np.nan)
    return out


# ----------------------------------------------------------------------------- headline
def metric_row(run: Run, system: str, metric: str, K: int, part: str = "test") -> dict[str, float] | None:
    """The metrics-table row (mean, lo, hi, n_users) of ``system`` / ``metric`` at K, or None."""
    m = run.table("metrics")
    sel = m[(m["system"].astype(str) == system) & (m["metric"].astype(str) == metric) & (m["k"] == K)
            & (m["part"].astype(str) == part)]
    sel = sel[sel["segment"].astype(str) == "all"]
    if sel.empty:
        return None
    r = sel.iloc[0]
    return {"mean": float(r["mean"]), "lo": float(r["lo"]), "hi": float(r["hi"]), "n_users": int(r["n_users"])}


def best_fusion_system(run: Run, K: int, metric: str = "ndcg") -> str | None:
    """The fusion system with the highest test ``metric`` at K in the metrics table (None if none)."""
    best, best_v = None, -math.inf
    for s in fusion_systems(run):
        r = metric_row(run, s, metric, K)
        if r is not None and r["mean"] > best_v:
            best, best_v = s, r["mean"]
    return best


def headline(run: Run, K: int, users: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Headline cards: one row per role × metric with system, mean, lo, hi, n_users, source, label.

    Unfiltered single systems and fusions come straight from the ``metrics`` table; with a user
    filter (``users``) their means are recomputed over those users from the ``users`` table with a
    percentile bootstrap (1,000 resamples, seed 0). The oracle is the per-user selection oracle of
    the compared views (DIAGNOSTICS.md: headlines use it; the union pool is mostly re-ordering):
    the metrics table's ``oracle_select`` row when it has one for this K and no user filter is set,
    else computed per user here and bootstrapped.
    """
    roles = system_roles(run)
    rows = []
    targets = [(role, roles[role]) for role in ROLE_ORDER if role in roles]
    best_fusion = best_fusion_system(run, K)
    if best_fusion:
        targets.append(("fusion", best_fusion))
    for role, system in targets:
        for metric in ("recall", "ndcg"):
            if users is None:
                r = metric_row(run, system, metric, K)
                if r is not None:
                    rows.append({"role": role, "system": system, "metric": metric, **r, "source": "metrics table"})
                    continue
            if f"{system}_{metric}@{K}" not in run.users.columns:
                continue
            v = user_metric(run, system, metric, K)
            if users is not None:
                v = v.reindex(np.asarray(users))
            mean, lo, hi = bootstrap_ci(v.to_numpy())
            rows.append({"role": role, "system": system, "metric": metric, "mean": mean, "lo": lo, "hi": hi,
                         "n_users": int(np.isfinite(v.to_numpy()).sum()), "source": "bootstrap over selected users"})
    sem, col = compared_systems(run)
    orc = oracle_per_user(run, K, sem, col)
    if users is not None:
        orc = orc.reindex(np.asarray(users))
    for metric in ("recall", "ndcg"):
        stored = metric_row(run, "oracle_select", metric, K) if users is None else None
        if stored is not None:
            rows.append({"role": "oracle", "system": "oracle_select", "metric": metric, **stored,
                         "source": "metrics table (per-user selection oracle of the compared views)"})
            continue
        v = orc[f"select_{metric}"].to_numpy()
        mean, lo, hi = bootstrap_ci(v)
        rows.append({"role": "oracle", "system": f"oracle select ({sem} | {col})", "metric": metric, "mean": mean,
                     "lo": lo, "hi": hi, "n_users": int(np.isfinite(v).sum()),
                     "source": "per-user selection oracle, bootstrap"})
    df = pd.DataFrame(rows)
    if not df.empty:
        df["label"] = df["role"].map(ROLE_LABELS)
        df["short"] = df["role"].map(ROLE_SHORT)
    return df


def tuning_budgets(run: Run) -> dict[str, str]:
    """Per system, the tuning budget the engine recorded (grid points and seconds on validation),
    so the views' budgets can be compared side by side (DIAGNOSTICS.md "Fair comparison")."""
    out = {}
    for entry in (run.manifest.get("tuning") or {}).values():
        b = entry.get("budget") or {}
        if entry.get("system") and b:
            out[str(entry["system"])] = (f"tuned: {int(b.get('n_configs', 0))} configs, {float(b.get('seconds', 0)):.0f} s"
                                         f"{' (cached)' if entry.get('cache_hit') else ''}")
    return out


def hit_shares(run: Run, K: int, sys_a: str, sys_b: str, users: tuple[int, ...] | None = None,
               items: tuple[int, ...] | None = None) -> dict[str, float]:
    """Counts of shared / only_a / only_b distinct hits and missed test pairs, and the shares of
    the first three in all distinct hits (share_only_a is a's unique-hit share)."""
    hp = _user_filter(hit_pairs(run, K, sys_a, sys_b), users)
    if items is not None:
        hp = hp[hp["item_idx"].isin(np.asarray(items, dtype=np.int64))]
    vc = hp["kind"].value_counts()
    c = {k: int(vc.get(k, 0)) for k in HIT_KINDS}
    total = c["shared"] + c["semantic-only"] + c["collaborative-only"]
    d = max(total, 1)
    nan = math.nan
    return {"shared": c["shared"], "only_a": c["semantic-only"], "only_b": c["collaborative-only"],
            "missed": c["missed by both"], "distinct_hits": total, "test_pairs": int(len(hp)),
            "share_shared": c["shared"] / d if total else nan,
            "share_only_a": c["semantic-only"] / d if total else nan,
            "share_only_b": c["collaborative-only"] / d if total else nan}


def oracle_gains(run: Run, K: int, users: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Oracle gain over the best single view, for the compared pair and the control pair
    (most-popular vs collaborative). Rows: pair, oracle (per-user selection / union pool), metric,
    best_single, oracle_value, gain. The union pool's NDCG gain is read against the better
    view's own hits placed first (``best_single`` is then that hits-first value): the raw gain
    over the ranked list is mostly re-ordering, not the other view (DIAGNOSTICS.md)."""
    sem, col = compared_systems(run)
    roles = system_roles(run)
    pairs = [("semantic + collaborative", sem, col)]
    if "mostpop" in roles:
        pairs.append(("most-popular + collaborative (control floor)", roles["mostpop"], col))
    sel = None if users is None else np.asarray(users)
    rows = []
    for label, a, b in pairs:
        orc = oracle_per_user(run, K, a, b)
        if sel is not None:
            orc = orc.reindex(sel)
        for metric in ("recall", "ndcg"):
            ma = user_metric(run, a, metric, K)
            mb = user_metric(run, b, metric, K)
            if sel is not None:
                ma, mb = ma.reindex(sel), mb.reindex(sel)
            means = {"a": np.nanmean(ma.to_numpy()), "b": np.nanmean(mb.to_numpy())}
            better = max(means, key=means.get)
            for oracle, name in (("select", "per-user selection"), ("union", "union pool")):
                v = float(np.nanmean(orc[f"{oracle}_{metric}"].to_numpy()))
                base = means[better]
                if oracle == "union" and metric == "ndcg":
                    base, name = float(np.nanmean(orc[f"hits_first_{better}_ndcg"].to_numpy())), "union pool vs own hits first"
                rows.append({"pair": label, "oracle": name, "metric": metric, "best_single": base,
                             "oracle_value": v, "gain": v - base})
    return pd.DataFrame(rows)


def topk_array(run: Run, system: str, K: int) -> np.ndarray:
    """``(n_users, K)`` top-K item indices of ``system`` (rows = user_idx 0..max, -1 padding)."""
    tk = run.table("topk")
    sub = tk[(tk["system"].astype(str) == system) & (tk["rank"] <= K)]
    nu = int(run.users["user_idx"].max()) + 1 if len(run.users) else 0
    out = np.full((nu, K), -1, dtype=np.int64)
    out[sub["user_idx"].to_numpy(np.int64), sub["rank"].to_numpy(np.int64) - 1] = sub["item_idx"].to_numpy(np.int64)
    return out


def list_overlap(run: Run, K: int, sys_a: str, sys_b: str, users: tuple[int, ...] | None = None) -> dict[str, float]:
    """Mean over users of the top-K list Jaccard and extrapolated RBO (p = 0.9) of two systems,
    with the engine's own definitions (:mod:`analysis.complementarity`); n = users counted."""
    from analysis.complementarity import list_jaccard, rbo_ext

    a, b = topk_array(run, sys_a, K), topk_array(run, sys_b, K)
    if users is not None:
        sel = np.asarray(users, dtype=np.int64)
        a, b = a[sel], b[sel]
    jac, rbo = list_jaccard(a, b), rbo_ext(a, b)
    return {"jaccard": float(np.nanmean(jac)) if np.isfinite(jac).any() else math.nan,
            "rbo": float(np.nanmean(rbo)) if np.isfinite(rbo).any() else math.nan, "n": int(np.isfinite(jac).sum())}


def mean_overlap(run: Run, k: int, items: tuple[int, ...] | None = None) -> dict[str, float]:
    """Mean overlap@k and Jaccard@k over ``items`` (None = all with both neighbourhoods), each with
    its own chance level (Jaccard's is about half of overlap's), and n."""
    ov = overlap_at_k(run, k)
    sel = ov if items is None else ov.reindex(np.asarray(items))
    o, j = sel["overlap"], sel["jaccard"]
    return {"mean": float(np.nanmean(o.to_numpy())) if o.notna().any() else math.nan,
            "chance": ov.attrs["chance"], "n": int(o.notna().sum()),
            "jaccard": float(np.nanmean(j.to_numpy())) if j.notna().any() else math.nan,
            "chance_jaccard": ov.attrs["chance_jaccard"]}


def _compared_pairs(run: Run, K: int, users: tuple[int, ...] | None, items: tuple[int, ...] | None) -> pd.DataFrame:
    sem, col = compared_systems(run)
    hp = _user_filter(hit_pairs(run, K, sem, col), users)
    if items is not None:
        hp = hp[hp["item_idx"].isin(np.asarray(items, dtype=np.int64))]
    return hp


SEGMENT_ORDER = ("all", "head", "torso", "tail", "cold", "heavy", "medium", "light")


def _segment_rank(name: str) -> tuple[int, str]:
    return (SEGMENT_ORDER.index(name) if name in SEGMENT_ORDER else len(SEGMENT_ORDER), str(name))


def hits_by_segment(run: Run, K: int, users: tuple[int, ...] | None = None,
                    items: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Test pairs of the compared views by kind, overall and per segment.

    Columns: segment_type ("all" / "item popularity" / "user activity"), segment, kind (HIT_KINDS),
    count, share (of the segment's test pairs), hit_share (of the segment's distinct hits; NaN for
    "missed by both").
    """
    hp = _compared_pairs(run, K, users, items)
    it = run.items.set_index("item_idx")
    us = run.users.set_index("user_idx")
    frames = []
    for seg_type, seg in (("all", pd.Series("all", index=hp.index)),
                          ("item popularity", hp["item_idx"].map(it["pop_bucket"].astype(str))),
                          ("user activity", hp["user_idx"].map(us["activity_bucket"].astype(str)))):
        c = pd.crosstab(seg, hp["kind"]).reindex(columns=list(HIT_KINDS), fill_value=0)
        c = c.loc[sorted(c.index, key=_segment_rank)]
        long = c.stack().rename("count").reset_index()
        long.columns = ["segment", "kind", "count"]
        long["segment_type"] = seg_type
        tot = long.groupby("segment")["count"].transform("sum")
        hits_tot = long[long["kind"] != HIT_KINDS[3]].groupby("segment")["count"].sum()
        long["share"] = long["count"] / tot.where(tot > 0)
        ht = long["segment"].map(hits_tot)
        long["hit_share"] = np.where(long["kind"] != HIT_KINDS[3], long["count"] / ht.where(ht > 0), np.nan)
        frames.append(long)
    out = pd.concat(frames, ignore_index=True)
    return out[["segment_type", "segment", "kind", "count", "share", "hit_share"]]


def unique_finds(run: Run, K: int, users: tuple[int, ...] | None = None,
                 items: tuple[int, ...] | None = None) -> dict[str, pd.DataFrame]:
    """What kinds of items each view finds: hits of each kind (shared / semantic-only / collaborative-only)
    broken down by popularity decile and by genre, and the items found most often by one view alone.

    Returns {"decile": decile, kind, count, share (of that kind's hits)}, {"genre": genre, kind, count, share}
    (an item with several genres counts once per genre), {"top": item_idx, kind, count} (10 per kind).
    """
    hp = _compared_pairs(run, K, users, items)
    hits = hp[hp["kind"] != HIT_KINDS[3]].copy()
    hits["kind"] = hits["kind"].astype(str)
    it = run.items.set_index("item_idx")
    hits["decile"] = hits["item_idx"].map(it["pop_decile"]).astype(int)
    kinds = list(HIT_KINDS[:3])
    dec = hits.groupby(["decile", "kind"]).size().rename("count").reset_index()
    dec = (dec.set_index(["decile", "kind"]).reindex(
        pd.MultiIndex.from_product([range(1, 11), kinds], names=["decile", "kind"]), fill_value=0).reset_index())
    dec["share"] = dec["count"] / dec.groupby("kind")["count"].transform("sum").replace(0, np.nan)
    gl = genre_long(run.items)
    g = hits.merge(gl, on="item_idx")
    gen = g.groupby(["genre", "kind"]).size().rename("count").reset_index()
    gen["share"] = gen["count"] / hits.groupby("kind").size().reindex(gen["kind"]).to_numpy()
    top = (hits[hits["kind"] != HIT_KINDS[0]].groupby(["kind", "item_idx"]).size().rename("count").reset_index()
           .sort_values(["kind", "count", "item_idx"], ascending=[True, False, True]).groupby("kind").head(10))
    return {"decile": dec, "genre": gen, "top": top.reset_index(drop=True)}


def item_hit_users(run: Run, item_idx: int, K: int) -> pd.DataFrame:
    """Users for whom ``item_idx`` was a test hit of some system at K.

    Columns: user_idx, user_id, activity_bucket, then one column per system with its rank of the
    item (NaN when that system missed it), and ``kind`` for the compared views (HIT_KINDS).
    """
    tk = run.table("topk")
    sub = tk[(tk["item_idx"] == item_idx) & tk["hit"].astype(bool) & (tk["rank"] <= K)]
    if sub.empty:
        return pd.DataFrame(columns=["user_idx", "user_id", "activity_bucket", "kind"])
    wide = sub.pivot_table(index="user_idx", columns="system", values="rank", aggfunc="min")
    wide.columns = [str(c) for c in wide.columns]
    sem, col = compared_systems(run)
    a = wide[sem].notna() if sem in wide else pd.Series(False, index=wide.index)
    b = wide[col].notna() if col in wide else pd.Series(False, index=wide.index)
    kind = np.select([a & b, a & ~b, ~a & b], list(HIT_KINDS[:3]), "other systems only")
    us = run.users.set_index("user_idx")[["user_id", "activity_bucket"]]
    out = us.reindex(wide.index).join(wide)
    out.insert(2, "kind", kind)
    return out.reset_index()


# ----------------------------------------------------------------------------- maps / items
def primary_genre(genres: pd.Series) -> pd.Series:
    """First genre of a ``|``-joined genre string ("(none)" when empty)."""
    g = genres.fillna("").astype(str).str.split("|").str[0].str.strip()
    return g.where(g != "", "(none)")


def genre_long(items: pd.DataFrame) -> pd.DataFrame:
    """item_idx, genre: one row per (item, genre) pair (items without genres get "(none)")."""
    g = items[["item_idx", "genres"]].copy()
    g["genre"] = g["genres"].fillna("").astype(str).str.split("|")
    g = g.explode("genre")
    g["genre"] = g["genre"].fillna("").astype(str).str.strip().replace({"": "(none)"})
    return g[["item_idx", "genre"]].reset_index(drop=True)


def _pca2(X: np.ndarray) -> np.ndarray:
    """First two principal-component scores of the finite rows of ``X`` (other rows NaN)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.full((X.shape[0], 2), np.nan)
    ok = np.isfinite(X).all(axis=1)
    if ok.sum() < 3 or X.shape[1] < 1:
        return out
    Z = X[ok] - X[ok].mean(axis=0)
    _, _, vt = np.linalg.svd(Z, full_matrices=False)
    comps = vt[:2]
    scores = Z @ comps.T
    # fix the sign of each axis so the layout is deterministic
    scores *= np.where(np.sign(scores[np.argmax(np.abs(scores), axis=0), range(scores.shape[1])]) < 0, -1, 1)
    out[ok, : scores.shape[1]] = scores
    return out


def map_coords(run: Run) -> pd.DataFrame:
    """2-D positions of the items in each view (index item_idx): sem_x, sem_y, col_x, col_y.

    The run's UMAP layout when it has one; for a view without any finite position (a run made
    with ``umap=False``) the first two principal components of that view's stored item vectors.
    ``.attrs["source"]`` = {"semantic": "UMAP" | "PCA", "collaborative": ...}.
    """
    items = run.items
    out = pd.DataFrame(index=pd.RangeIndex(len(items), name="item_idx"))
    source = {}
    for view, tag, vec in (("semantic", "sem", "semantic_items"), ("collaborative", "col", "collab_items")):
        xy = items[[f"{tag}_x", f"{tag}_y"]].to_numpy(float)
        if np.isfinite(xy).any():
            source[view] = "UMAP"
        else:
            xy = _pca2(np.asarray(run.vectors(vec)))
            source[view] = "PCA"
        out[f"{tag}_x"], out[f"{tag}_y"] = xy[:, 0], xy[:, 1]
    out.attrs["source"] = source
    return out


def genre_long_of_run(run: Run) -> pd.DataFrame:
    """:func:`genre_long` of the run's items table."""
    return genre_long(run.items)


def sample_for_map(frame: pd.DataFrame, max_points: int = 30_000, seed: int = 0) -> np.ndarray:
    """item_idx values to draw: all items when there are at most ``max_points``; otherwise every
    tail / cold item plus a seeded sample of the rest, stratified by popularity decile × cold."""
    if len(frame) <= max_points:
        return frame["item_idx"].to_numpy()
    keep_all = (frame["pop_bucket"].astype(str) == "tail") | frame["cold"].astype(bool)
    must = frame.loc[keep_all, "item_idx"].to_numpy()
    rest = frame.loc[~keep_all]
    budget = max(max_points - len(must), 0)
    if budget == 0 or rest.empty:
        return np.sort(must)
    frac = min(1.0, budget / len(rest))
    rng = np.random.default_rng(seed)
    picked = []
    for _, grp in rest.groupby(["pop_decile", "cold"], sort=True):
        m = int(round(frac * len(grp)))
        if m:
            picked.append(rng.choice(grp["item_idx"].to_numpy(), size=m, replace=False))
    return np.sort(np.concatenate([must, *picked]))


def map_sample(run: Run, max_points: int = 30_000) -> np.ndarray:
    """:func:`sample_for_map` of the run's items table."""
    return sample_for_map(run.items, max_points)


# ----------------------------------------------------------------------------- reading
def _fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def reading(K: int, k: int, head: pd.DataFrame, shares: dict[str, float], gains: pd.DataFrame,
            overlap: dict[str, float]) -> list[str]:
    """A few plain-language sentences generated from this run's numbers."""
    out = []
    rec = head[head["metric"] == "recall"].set_index("role") if not head.empty else pd.DataFrame()
    singles = [r for r in ROLE_ORDER if r in rec.index]
    if singles:
        best = max(singles, key=lambda r: rec.loc[r, "mean"])
        parts = ", ".join(f"{ROLE_LABELS[r]} {_fmt(rec.loc[r, 'mean'])}" for r in singles)
        out.append(f"Recall@{K} of the single systems: {parts}. The strongest is {ROLE_LABELS[best]}.")
        if "semantic_trained" in rec.index and "semantic_zeroshot" in rec.index:
            t, z = rec.loc["semantic_trained", "mean"], rec.loc["semantic_zeroshot", "mean"]
            word = "better" if t > z else "worse"
            out.append(f"A recommender trained over the frozen text vectors does {word} than the zero-shot profile "
                       f"({_fmt(t)} vs {_fmt(z)}).")
    if shares.get("distinct_hits"):
        out.append(
            f"Of the {shares['distinct_hits']:,} distinct test hits of the two compared views, "
            f"{shares['share_shared']:.0%} are found by both, {shares['share_only_a']:.0%} only by the semantic view and "
            f"{shares['share_only_b']:.0%} only by the collaborative view.")
    if not gains.empty:
        g = gains[(gains["metric"] == "recall") & (gains["oracle"] == "per-user selection")].set_index("pair")["gain"]
        main = g.get("semantic + collaborative")
        ctrl = next((v for p, v in g.items() if str(p).startswith("most-popular")), None)
        if main is not None and ctrl is not None:
            excess = main - ctrl
            verdict = ("evidence that the views are complementary" if excess > 0.005 else
                       "so most of the oracle gain is what any two noisy views give, not complementarity")
            out.append(f"Choosing the better view per user would add {_fmt(main)} Recall@{K} over the better of the two; "
                       f"the control pair (most-popular + collaborative) adds {_fmt(ctrl)}: an excess of {_fmt(excess)}, "
                       f"{verdict}.")
    fus = head[(head["role"] == "fusion") & (head["metric"] == "recall")] if not head.empty else head
    cand = [r for r in singles if r != "mostpop"]
    if not fus.empty and cand:
        best_single = max(rec.loc[r, "mean"] for r in cand)
        f = float(fus.iloc[0]["mean"])
        word = "above" if f > best_single else "not above"
        sentence = (f"The best fusion ({fus.iloc[0]['system']}) reaches Recall@{K} {_fmt(f)}, {word} the best single "
                    f"system ({_fmt(best_single)})")
        sel = gains[(gains["metric"] == "recall") & (gains["oracle"] == "per-user selection")
                    & (gains["pair"] == "semantic + collaborative")] if not gains.empty else gains
        if not sel.empty and sel.iloc[0]["gain"] > 0 and f > float(sel.iloc[0]["best_single"]):
            b, o = float(sel.iloc[0]["best_single"]), float(sel.iloc[0]["oracle_value"])
            sentence += f", realising {(f - b) / (o - b):.0%} of the headroom to the per-user oracle"
        out.append(sentence + ".")
    if np.isfinite(overlap.get("mean", math.nan)):
        ratio = overlap["mean"] / overlap["chance"] if overlap["chance"] else math.nan
        times = f", {_fmt(ratio, 1)}× chance" if np.isfinite(ratio) else ""
        out.append(f"On average {overlap['mean']:.0%} of an item's {k} nearest neighbours are the same in both views "
                   f"(chance {overlap['chance']:.1%}{times}).")
    return out
