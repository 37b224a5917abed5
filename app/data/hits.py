"""Data of the Hits page: the compared views' test pairs by hit kind overall and per popularity /
activity bucket, and what kinds of items each view finds on its own (by popularity decile, by
genre, most frequent). Counts of :func:`analysis.run_queries.hit_pairs`' kinds."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.complementarity import HIT_KINDS

from .common import RunKey, Sel, cached, compared_pairs, filter_pairs, run_genres

SEGMENT_ORDER = ("all", "head", "torso", "tail", "cold", "heavy", "medium", "light")


def _segment_rank(name: str) -> tuple[int, str]:
    return (SEGMENT_ORDER.index(name) if name in SEGMENT_ORDER else len(SEGMENT_ORDER), str(name))


def _by_segment(hp: pd.DataFrame, seg_type: str, seg: pd.Series) -> pd.DataFrame:
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
    return long


@cached()
def hits_by_segment(key: RunKey, K: int, users: Sel = None, items: Sel = None) -> pd.DataFrame:
    """Test pairs of the compared views by kind, overall and per segment.

    Columns: segment_type ("all" / "item popularity" / "user activity"), segment, kind (HIT_KINDS),
    count, share (of the segment's test pairs), hit_share (of the segment's distinct hits; NaN for
    "missed by both").
    """
    hp = filter_pairs(compared_pairs(key, K), users, items)
    it = key.run.items.set_index("item_idx")
    us = key.run.users.set_index("user_idx")
    frames = [_by_segment(hp, seg_type, seg) for seg_type, seg in (
        ("all", pd.Series("all", index=hp.index)),
        ("item popularity", hp["item_idx"].map(it["pop_bucket"].astype(str))),
        ("user activity", hp["user_idx"].map(us["activity_bucket"].astype(str))))]
    out = pd.concat(frames, ignore_index=True)
    return out[["segment_type", "segment", "kind", "count", "share", "hit_share"]]


@cached()
def unique_finds(key: RunKey, K: int, users: Sel = None, items: Sel = None) -> dict[str, pd.DataFrame]:
    """What kinds of items each view finds: hits of each kind broken down by popularity decile and by
    genre, and the items found most often by one view alone.

    Returns {"decile": decile, kind, count, share (of that kind's hits)}, {"genre": genre, kind, count,
    share} (an item with several genres counts once per genre), {"top": item_idx, kind, count} (10 per kind).
    """
    hp = filter_pairs(compared_pairs(key, K), users, items)
    hits = hp[hp["kind"] != HIT_KINDS[3]].copy()
    hits["kind"] = hits["kind"].astype(str)
    hits["decile"] = hits["item_idx"].map(key.run.items.set_index("item_idx")["pop_decile"]).astype(int)
    kinds = list(HIT_KINDS[:3])
    dec = hits.groupby(["decile", "kind"]).size().rename("count")
    dec = dec.reindex(pd.MultiIndex.from_product([range(1, 11), kinds], names=["decile", "kind"]),
                      fill_value=0).reset_index()
    dec["share"] = dec["count"] / dec.groupby("kind")["count"].transform("sum").replace(0, np.nan)
    g = hits.merge(run_genres(key), on="item_idx")
    gen = g.groupby(["genre", "kind"]).size().rename("count").reset_index()
    gen["share"] = gen["count"] / hits.groupby("kind").size().reindex(gen["kind"]).to_numpy()
    top = (hits[hits["kind"] != HIT_KINDS[0]].groupby(["kind", "item_idx"]).size().rename("count").reset_index()
           .sort_values(["kind", "count", "item_idx"], ascending=[True, False, True]).groupby("kind").head(10))
    return {"decile": dec, "genre": gen, "top": top.reset_index(drop=True)}
