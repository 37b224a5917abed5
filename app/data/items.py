"""Data of the Items page: items ranked by disagreement, one item's neighbours in each view with
their kind (:func:`analysis.run_queries.item_neighbour_lists`: the lists overlap@k compares), and
the test users for whom the item was a hit of some system."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import run_queries as rq
from analysis.complementarity import hit_kind

from .common import RunKey, Sel, cached, compared_systems, item_frame, neighbour_graphs, run_genres

NEIGHBOUR_META = ["item_id", "title", "popularity", "pop_bucket", "cold"]


def ranked_items(key: RunKey, K: int, k: int, users: Sel, pop_buckets: tuple[str, ...] | None,
                 genres: tuple[str, ...] = ()) -> pd.DataFrame:
    """Items with a disagreement@k in the popularity filter (and with one of ``genres``), most
    disagreeing first (then most popular, then item_idx)."""
    df = item_frame(key, K, k, users)
    mask = df["disagreement"].notna()
    if pop_buckets is not None:
        mask &= df["pop_bucket"].astype(str).isin(pop_buckets)
    if genres:
        gl = run_genres(key)
        mask &= df["item_idx"].isin(set(gl.loc[gl["genre"].isin(genres), "item_idx"]))
    return df[mask].sort_values(["disagreement", "popularity", "item_idx"], ascending=[False, False, True])


@cached(max_entries=512)
def item_neighbours(key: RunKey, item_idx: int, k: int) -> pd.DataFrame:
    """One item's k neighbours in each view: neighbor_idx, sem_rank, sem_sim, col_rank, col_sim, kind
    (shared / semantic-only / collaborative-only / cold) and the neighbour's item_id, title,
    popularity, pop_bucket, cold; nearest first."""
    df = rq.item_neighbour_lists(neighbour_graphs(key), int(item_idx), int(k))
    df = df.join(key.run.items.set_index("item_idx")[NEIGHBOUR_META], on="neighbor_idx")
    df["order"] = df[["sem_rank", "col_rank"]].min(axis=1)
    return df.sort_values(["order", "neighbor_idx"]).drop(columns="order").reset_index(drop=True)


@cached(max_entries=512)
def item_hit_users(key: RunKey, item_idx: int, K: int) -> pd.DataFrame:
    """Users for whom ``item_idx`` was a test hit of some system at K: user_idx, user_id,
    activity_bucket, kind (for the compared views; "other systems only" otherwise), then one column
    per system with the rank at which it recommended the item (NaN when it did not)."""
    tk = key.run.table("topk")
    sub = tk[(tk["item_idx"] == int(item_idx)) & tk["hit"].astype(bool) & (tk["rank"] <= int(K))]
    if sub.empty:
        return pd.DataFrame(columns=["user_idx", "user_id", "activity_bucket", "kind"])
    wide = sub.pivot_table(index="user_idx", columns="system", values="rank", aggfunc="min", observed=True)
    wide.columns = [str(c) for c in wide.columns]
    sem, col = compared_systems(key)
    a = wide[sem].notna() if sem in wide else pd.Series(False, index=wide.index)
    b = wide[col].notna() if col in wide else pd.Series(False, index=wide.index)
    kind = np.where(a | b, hit_kind(a, b), "other systems only")
    us = key.run.users.set_index("user_idx")[["user_id", "activity_bucket"]]
    out = us.reindex(wide.index).join(wide)
    out.insert(2, "kind", kind)
    return out.reset_index()
