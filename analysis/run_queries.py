"""Run-level reads: questions asked of a saved run's tables, answered with the engine's definitions.

A run stores its diagnostics at the run's own K (top-K cut-off) and k (neighbourhood size). The
dashboard (or a notebook) also asks them at another cut-off, for a subset of users or items, or
per user; these functions answer from the stored tables by calling the functions that computed
the stored values (:mod:`analysis.complementarity`, :mod:`analysis.neighbors`,
:mod:`analysis.projection`, :mod:`analysis.fusion`), so no number is defined twice. System names
are those of :mod:`analysis.systems` (roles and labels: the run's manifest).

- metrics: :func:`metric_row` (a ``metrics`` row), :func:`user_metric` (a ``users`` column);
- top-K lists: :func:`topk_array`, :func:`saved_list`; complementarity of two saved lists at any
  k <= K: :func:`compare_systems` (:func:`analysis.complementarity.compare_lists`), oracles:
  :func:`oracle_value`;
- test pairs and their hit kinds: :func:`test_pairs`, :func:`hit_pairs`, :func:`item_hit_counts`;
- neighbourhoods: :func:`neighbour_graphs`, :func:`overlap_at_k` (re-cut at any k <= the stored
  depth), :func:`item_neighbour_lists`;
- maps: :func:`map_coords` (the run's UMAP layout, else :func:`analysis.projection.pca_layout`);
- recommenders rebuilt from the saved vectors: :func:`recommenders_from_run`, :func:`fused_list`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .complementarity import HIT_KINDS, compare_lists, hit_kind, item_hit_type, select_oracle
from .errors import RunError
from .neighbors import recut_agreement
from .projection import pca_layout
from .runstore import RECOMPUTE, Run
from .systems import compared, roles


def require_columns(df: pd.DataFrame, cols: Iterable[str], table: str, run: Run) -> None:
    """RunError naming the run, the table and its missing columns."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise RunError(f"run {run.path}: table {table!r} lacks column(s) {missing}; {RECOMPUTE}")


def n_user_rows(run: Run) -> int:
    """Rows of a per-user array: user_idx 0 .. max."""
    return int(run.users["user_idx"].max()) + 1 if len(run.users) else 0


def evaluation_note(manifest: dict) -> str:
    """How many users the run's metrics describe: every user, or a seeded sample (see
    :func:`analysis.split.evaluation_users`)."""
    ev = manifest.get("evaluation") or {}
    n = int(ev.get("n_users", (manifest.get("dataset") or {}).get("n_users", 0)))
    m = int(ev.get("n_evaluated", n))
    if m >= n:
        return f"all {n:,} users evaluated"
    return f"{m:,} of {n:,} users evaluated (seeded sample; intervals describe it, training used every user)"


# ----------------------------------------------------------------------------- metrics
def metric_row(run: Run, system: str, metric: str, k: int, part: str = "test",
               segment: str = "all") -> dict[str, float] | None:
    """The ``metrics`` row (mean, lo, hi, n_users) of ``system`` / ``metric@k``, or None."""
    m = run.table("metrics")
    sel = m[(m["system"].astype(str) == system) & (m["metric"].astype(str) == metric) & (m["k"] == int(k))
            & (m["part"].astype(str) == part) & (m["segment"].astype(str) == segment)]
    if sel.empty:
        return None
    r = sel.iloc[0]
    return {"mean": float(r["mean"]), "lo": float(r["lo"]), "hi": float(r["hi"]), "n_users": int(r["n_users"])}


def user_metric(run: Run, system: str, metric: str, k: int) -> pd.Series:
    """Per-user test ``metric@k`` of ``system`` (index user_idx; NaN = no test item)."""
    col = f"{system}_{metric}@{int(k)}"
    require_columns(run.users, [col], "users", run)
    return pd.Series(run.users[col].to_numpy(float), index=run.users["user_idx"].to_numpy(), name=col)


# ----------------------------------------------------------------------------- top-K lists
def topk_array(run: Run, system: str, k: int) -> np.ndarray:
    """``(users, k)`` saved test top-k item indices of ``system`` (rows = user_idx, -1 padding)."""
    tk = run.table("topk")
    sub = tk[(tk["system"].astype(str) == system) & (tk["rank"] <= int(k))]
    out = np.full((n_user_rows(run), int(k)), -1, dtype=np.int64)
    out[sub["user_idx"].to_numpy(np.int64), sub["rank"].to_numpy(np.int64) - 1] = sub["item_idx"].to_numpy(np.int64)
    return out


def saved_list(run: Run, user_idx: int, system: str, k: int) -> np.ndarray:
    """item_idx of the saved test top-k of ``system`` for one user, in rank order."""
    tk = run.table("topk")
    d = tk[(tk["user_idx"] == int(user_idx)) & (tk["system"].astype(str) == system) & (tk["rank"] <= int(k))]
    return d.sort_values("rank")["item_idx"].to_numpy(np.int64)


def part_matrix(run: Run, parts: tuple[str, ...]) -> sp.csr_matrix:
    """Users × items 0/1 matrix of the ``interactions`` pairs in ``parts`` (train / valid / test / removed)."""
    it = run.table("interactions")
    require_columns(it, ["user_idx", "item_idx", "part"], "interactions", run)
    d = it[it["part"].astype(str).isin(parts)]
    m = sp.csr_matrix((np.ones(len(d), np.float32), (d["user_idx"].to_numpy(), d["item_idx"].to_numpy())),
                      shape=(n_user_rows(run), len(run.items)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def compare_systems(run: Run, a: str, b: str, k: int) -> pd.DataFrame:
    """:func:`analysis.complementarity.compare_lists` of the saved test top-k lists of systems ``a``
    and ``b`` (index user_idx): hits, shared / only-a / only-b, list Jaccard, RBO, each list's own
    hits first, the selection and union-pool oracles. At the run's K and compared views these are
    the ``users`` table's stored columns."""
    K = int(run.manifest.get("K", k))
    if not 1 <= int(k) <= K:
        raise RunError(f"run {run.path}: cut-off k={k} is outside 1..{K} (the depth of the saved top-K lists)")
    users = np.arange(n_user_rows(run))
    df = compare_lists(topk_array(run, a, k), topk_array(run, b, k), part_matrix(run, ("test",)), users, int(k))
    return df.set_index(pd.Index(users, name="user_idx")).drop(columns="user")


def oracle_value(run: Run, oracle: str, a: str, b: str, metric: str, k: int) -> float:
    """Mean over test users of the ``select`` or ``union`` oracle of systems a and b for ``metric@k``
    (the hit rate's union pool is its selection oracle: a hit in either list)."""
    if oracle == "select" or metric == "hit":
        v = select_oracle(user_metric(run, a, metric, k), user_metric(run, b, metric, k))
    else:
        v = compare_systems(run, a, b, k)[f"oracle_union_{metric}"].to_numpy(float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan


# ----------------------------------------------------------------------------- test pairs and hits
def test_pairs(run: Run) -> pd.DataFrame:
    """Distinct (user_idx, item_idx) test pairs, sorted."""
    it = run.table("interactions")
    require_columns(it, ["user_idx", "item_idx", "part"], "interactions", run)
    t = it.loc[it["part"].astype(str) == "test", ["user_idx", "item_idx"]].drop_duplicates()
    return t.sort_values(["user_idx", "item_idx"]).reset_index(drop=True).astype(np.int64)


def _hit_keys(run: Run, system: str, k: int) -> np.ndarray:
    tk = run.table("topk")
    sub = tk[(tk["system"].astype(str) == system) & (tk["rank"] <= int(k)) & tk["hit"].astype(bool)]
    return np.unique(sub["user_idx"].to_numpy(np.int64) * len(run.items) + sub["item_idx"].to_numpy(np.int64))


def hit_pairs(run: Run, k: int, a: str, b: str) -> pd.DataFrame:
    """Every test pair with whether system ``a`` / ``b`` has it in its top-k, and its kind.

    Columns: user_idx, item_idx, a_hit, b_hit, kind (:data:`analysis.complementarity.HIT_KINDS`,
    categorical; "semantic" = a, "collaborative" = b).
    """
    tp = test_pairs(run)
    keys = tp["user_idx"].to_numpy() * len(run.items) + tp["item_idx"].to_numpy()
    out = tp.copy()
    out["a_hit"] = np.isin(keys, _hit_keys(run, a, k))
    out["b_hit"] = np.isin(keys, _hit_keys(run, b, k))
    out["kind"] = pd.Categorical(hit_kind(out["a_hit"], out["b_hit"]), categories=list(HIT_KINDS))
    return out


def item_hit_counts(pairs: pd.DataFrame, n_items: int) -> pd.DataFrame:
    """Per item (index item_idx) of :func:`hit_pairs` rows: hits_shared, hits_sem_only, hits_col_only,
    hits_missed_by_both, n_test and ``hit_type`` (:func:`analysis.complementarity.item_hit_type`).
    Over every test pair at the run's K these are the ``items`` table's stored columns."""
    out = pd.DataFrame(index=pd.RangeIndex(n_items, name="item_idx"))
    item = pairs["item_idx"].to_numpy()
    kind = pairs["kind"].astype(str).to_numpy()
    for name, col in zip(HIT_KINDS, ("hits_shared", "hits_sem_only", "hits_col_only", "hits_missed_by_both")):
        out[col] = np.bincount(item[kind == name], minlength=n_items)
    out["n_test"] = np.bincount(item, minlength=n_items)
    out["hit_type"] = item_hit_type(out["hits_shared"], out["hits_sem_only"], out["hits_col_only"], out["n_test"])
    return out


# ----------------------------------------------------------------------------- neighbourhoods
@dataclass(frozen=True)
class NeighbourGraphs:
    """The ``neighbors`` table as dense arrays ``(items, depth)`` (-1 / NaN padding)."""

    semantic_idx: np.ndarray
    semantic_sim: np.ndarray
    collaborative_idx: np.ndarray
    collaborative_sim: np.ndarray
    depth: int  # the smaller depth of the two views


def _graph(nb: pd.DataFrame, view: str, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    sub = nb[nb["view"].astype(str) == view]
    depth = int(sub["rank"].max()) if len(sub) else 0
    idx = np.full((n, max(depth, 1)), -1, dtype=np.int64)
    sim = np.full((n, max(depth, 1)), np.nan)
    if len(sub):
        r, c = sub["item_idx"].to_numpy(np.int64), sub["rank"].to_numpy(np.int64) - 1
        idx[r, c] = sub["neighbor_idx"].to_numpy(np.int64)
        sim[r, c] = sub["sim"].to_numpy(float)
    return idx, sim, depth


def neighbour_graphs(run: Run) -> NeighbourGraphs:
    """The two views' stored kNN graphs (cosine in the original vectors)."""
    nb = run.table("neighbors")
    require_columns(nb, ["item_idx", "view", "rank", "neighbor_idx", "sim"], "neighbors", run)
    si, ss, ds = _graph(nb, "semantic", len(run.items))
    ci, cs, dc = _graph(nb, "collaborative", len(run.items))
    return NeighbourGraphs(si, ss, ci, cs, int(min(ds, dc)))


def overlap_at_k(run: Run, k: int, graphs: NeighbourGraphs | None = None) -> pd.DataFrame:
    """Per-item overlap, jaccard, disagreement at neighbourhood size ``k`` (index item_idx).

    At the run's own ``k_neighbors``: the ``items`` table's stored values and the manifest's chance
    levels. At another k: :func:`analysis.neighbors.recut_agreement` of the stored graphs (NaN for
    cold items and for the rare items with fewer than k placeable neighbours within the depth).
    ``.attrs``: k, n_valid (items with a value), chance, chance_jaccard.
    """
    g = graphs or neighbour_graphs(run)
    if not 1 <= int(k) <= g.depth:
        raise RunError(f"run {run.path}: neighbourhood size k={k} is outside 1..{g.depth} (depth of the neighbors table)")
    items, m = run.items, run.manifest
    if int(m.get("k_neighbors", -1)) == int(k):
        require_columns(items, ["item_idx", "overlap", "jaccard", "disagreement"], "items", run)
        out = items.set_index("item_idx")[["overlap", "jaccard", "disagreement"]].astype(float)
        out = out.reindex(pd.RangeIndex(len(items), name="item_idx"))
        out.attrs.update(k=int(k), n_valid=int(out["overlap"].notna().sum()), chance=float(m["chance_overlap"]),
                         chance_jaccard=float(m["chance_jaccard"]))
        return out
    ag = recut_agreement(g.semantic_idx, g.collaborative_idx, int(k))
    out = ag[["overlap", "jaccard", "disagreement"]].copy()
    out.attrs.update({a: ag.attrs[a] for a in ("k", "n_valid", "chance", "chance_jaccard")})
    return out


def item_neighbour_lists(graphs: NeighbourGraphs, item_idx: int, k: int) -> pd.DataFrame:
    """The ``k`` neighbours of one item in each view with their kind (the lists overlap@k compares).

    Columns: neighbor_idx, sem_rank, sem_sim, col_rank, col_sim (1-based stored ranks; NaN when not
    in that view's list), kind. For an item both views place, the semantic list is its first k
    neighbours among the items the collaborative view places (so shared = overlap@k · k) and kind is
    shared / semantic-only / collaborative-only; unplaceable (cold) items ranked before the k-th of
    those get kind "cold". For a cold item: its first k semantic neighbours, all semantic-only.
    """
    k = min(int(k), graphs.depth)
    col_idx, sem_row = graphs.collaborative_idx, graphs.semantic_idx[item_idx]
    placed = (col_idx[:, :k] >= 0).all(axis=1)
    if placed[item_idx]:
        ok = np.flatnonzero((sem_row >= 0) & placed[np.maximum(sem_row, 0)])[:k]
        stop = int(ok[-1]) + 1 if len(ok) else 0
        sem_pos = [p for p in range(stop) if sem_row[p] >= 0]
    else:
        sem_pos = [int(p) for p in np.flatnonzero(sem_row >= 0)[:k]]
    rows: dict[int, dict[str, Any]] = {}
    for p in sem_pos:
        j = int(sem_row[p])
        rows[j] = {"sem_rank": p + 1, "sem_sim": float(graphs.semantic_sim[item_idx, p]),
                   "_cold": bool(placed[item_idx] and not placed[j])}
    for p in range(k):
        j = int(col_idx[item_idx, p])
        if j >= 0:
            rows.setdefault(j, {"_cold": False}).update(col_rank=p + 1, col_sim=float(graphs.collaborative_sim[item_idx, p]))
    df = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=["sem_rank", "sem_sim", "col_rank", "col_sim", "_cold"])
    df = df.rename_axis("neighbor_idx").reset_index()
    in_sem, in_col = df["sem_rank"].notna(), df["col_rank"].notna()
    df["kind"] = np.where(df["_cold"].fillna(False).astype(bool), "cold",
                          np.where(in_sem & in_col, "shared", np.where(in_sem, "semantic-only", "collaborative-only")))
    return df.drop(columns="_cold")


# ----------------------------------------------------------------------------- maps
def map_coords(run: Run) -> pd.DataFrame:
    """2-D item positions per view (index item_idx): sem_x, sem_y, col_x, col_y.

    The run's UMAP layout; for a view without any finite position (a run made with UMAP off) the
    engine's PCA layout of that view's item vectors (:func:`analysis.projection.pca_layout`).
    ``.attrs["source"]`` = {"semantic": "UMAP" | "PCA", "collaborative": ...}.
    """
    items = run.items
    out = pd.DataFrame(index=pd.RangeIndex(len(items), name="item_idx"))
    source = {}
    for view, tag, vec in (("semantic", "sem", "semantic_items"), ("collaborative", "col", "collab_items")):
        xy = items[[f"{tag}_x", f"{tag}_y"]].to_numpy(float)
        source[view] = "UMAP" if np.isfinite(xy).any() else "PCA"
        if source[view] == "PCA":
            xy = pca_layout(np.asarray(run.vectors(vec)))
        out[f"{tag}_x"], out[f"{tag}_y"] = xy[:, 0], xy[:, 1]
    out.attrs["source"] = source
    return out


# ----------------------------------------------------------------------------- recommenders
@dataclass(frozen=True)
class RunRecommenders:
    """The compared views rebuilt from a run's saved vectors, and the test-time mask."""

    semantic: Any  # EmbeddingRecommender (or ZeroShotSemantic)
    collaborative: Any
    seen: sp.csr_matrix  # train + valid + removed: what the engine masks at test time
    sem: str  # system names
    col: str


def recommenders_from_run(run: Run) -> RunRecommenders:
    """The two compared views as recommenders over the saved vectors, scoring exactly as the engine did.

    The trained semantic view: semantic_rec_users / semantic_rec_items; when the run compares the
    zero-shot profile (role ``semantic_zeroshot``), users are the normalised mean of their training
    items' unit semantic vectors. The collaborative view: collab_users / collab_items, NaN rows
    (items it cannot place) unscorable.
    """
    from .models.base import EmbeddingRecommender
    from .models.semantic import ZeroShotSemantic

    sem, col = compared(run.manifest)
    train = part_matrix(run, ("train",))
    if roles(run.manifest).get("semantic_zeroshot") == sem:
        sem_model = ZeroShotSemantic(np.asarray(run.vectors("semantic_items"), np.float32), train, name=sem)
    else:
        V = np.asarray(run.vectors("semantic_rec_items"), np.float32)
        sem_model = EmbeddingRecommender(sem, np.asarray(run.vectors("semantic_rec_users"), np.float32), V,
                                         np.isfinite(V).all(axis=1))
    CV = np.asarray(run.vectors("collab_items"), np.float32)
    ok = np.isfinite(CV).all(axis=1)
    col_model = EmbeddingRecommender(col, np.nan_to_num(np.asarray(run.vectors("collab_users"), np.float32)),
                                     np.where(ok[:, None], CV, 0).astype(np.float32), ok)
    if CV.shape[0] != len(run.items) or sem_model.item_vecs.shape[0] != len(run.items):
        raise RunError(f"run {run.path}: saved vectors do not match the {len(run.items)} items; {RECOMPUTE}")
    seen = (train + part_matrix(run, ("valid", "removed"))).tocsr()
    seen.data[:] = 1.0
    return RunRecommenders(sem_model, col_model, seen, sem, col)


def fused_list(models: RunRecommenders, user_idx: int, alpha: float, k: int, cold_aware: bool) -> np.ndarray:
    """item_idx of one user's top-k score fusion at ``alpha`` (:func:`analysis.fusion.fuse_topk`)."""
    from .fusion import fuse_topk

    top = fuse_topk(models.semantic, models.collaborative, np.array([int(user_idx)]), models.seen, int(k),
                    float(alpha), cold_aware=bool(cold_aware))[0]
    return top[top >= 0]
