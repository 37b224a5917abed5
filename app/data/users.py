"""Data of the Users page: users with unique hits, one user's history and held-out items, the saved
top-K lists, and the fused list recomputed on the fly from the run's saved vectors
(:func:`analysis.run_queries.recommenders_from_run` + :func:`analysis.run_queries.fused_list`: the
engine's own scoring and :func:`analysis.fusion.fuse_topk`, seen = train + valid + removed)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import run_queries as rq

from .common import RunKey, cached

ITEM_META = ["item_id", "title", "genres", "popularity", "pop_bucket", "cold"]


@cached(resource=True, max_entries=4)
def recommenders(key: RunKey) -> rq.RunRecommenders:
    """The compared views rebuilt from the saved vectors, once per run (shared, read-only)."""
    return rq.recommenders_from_run(key.run)


@cached(max_entries=1024)
def fused_list(key: RunKey, user_idx: int, alpha: float, K: int, cold_aware: bool) -> np.ndarray:
    """item_idx of one user's top-K score fusion at ``alpha``, computed from the saved vectors."""
    return rq.fused_list(recommenders(key), int(user_idx), float(alpha), int(K), bool(cold_aware))


#: the α grid of a user's hits-vs-α sparkline
SPARK_ALPHAS = tuple(np.round(np.linspace(0, 1, 11), 2))


@cached(max_entries=256)
def hits_by_alpha(key: RunKey, user_idx: int, K: int, cold_aware: bool) -> pd.DataFrame:
    """alpha, hits: the user's test hits in the top-K fused list at each α of :data:`SPARK_ALPHAS`."""
    test = user_history(key, user_idx)["test"]["item_idx"].to_numpy()
    hits = [int(np.isin(fused_list(key, user_idx, float(a), K, cold_aware), test).sum()) for a in SPARK_ALPHAS]
    return pd.DataFrame({"alpha": SPARK_ALPHAS, "hits": hits})


@cached(max_entries=8)
def unique_hit_users(key: RunKey) -> np.ndarray:
    """user_idx of the users with a semantic-only or collaborative-only test hit at the run's K (sorted)."""
    u = key.run.users
    rq.require_columns(u, ["user_idx", "only_sem", "only_col"], "users", key.run)
    return np.sort(u.loc[(u["only_sem"] > 0) | (u["only_col"] > 0), "user_idx"].to_numpy(np.int64))


@cached(max_entries=256)
def user_history(key: RunKey, user_idx: int) -> dict[str, pd.DataFrame]:
    """{"train", "valid", "test"}: the user's items (item_idx, item_id, title, genres, popularity,
    pop_bucket, cold) per part."""
    it = key.run.table("interactions")
    d = it[it["user_idx"] == int(user_idx)]
    meta = key.run.items.set_index("item_idx")[ITEM_META]
    return {part: meta.reindex(np.unique(d.loc[d["part"].astype(str) == part, "item_idx"].to_numpy(np.int64)))
            .reset_index() for part in ("train", "valid", "test")}


@cached(max_entries=1024)
def saved_list(key: RunKey, user_idx: int, system: str, K: int) -> np.ndarray:
    """item_idx of the saved test top-K of ``system`` for one user, in rank order."""
    return rq.saved_list(key.run, user_idx, system, K)


@cached(max_entries=1024)
def list_frame(key: RunKey, user_idx: int, top: tuple[int, ...]) -> pd.DataFrame:
    """A top-K list (item_idx in rank order) as a table: rank, item_idx, title, item_id, hit (a test
    item of the user), popularity, cold."""
    meta = key.run.items.set_index("item_idx")
    items = np.asarray(top, np.int64)
    test = set(user_history(key, user_idx)["test"]["item_idx"].tolist())
    return pd.DataFrame({"rank": np.arange(1, len(items) + 1), "item_idx": items,
                         "title": meta["title"].reindex(items).astype(str).to_numpy(),
                         "item_id": meta["item_id"].reindex(items).astype(str).to_numpy(),
                         "hit": [i in test for i in items.tolist()],
                         "popularity": meta["popularity"].reindex(items).to_numpy(),
                         "cold": meta["cold"].reindex(items).astype(bool).to_numpy()})
