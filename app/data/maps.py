"""Data of the Maps page: the per-item frame (:func:`app.data.common.item_frame`), the items drawn
when a catalogue is too large to draw whole, and the title / id search."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .common import RunKey, cached, item_frame  # noqa: F401  (item_frame: the page's frame)


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


@cached(max_entries=16)
def map_sample(key: RunKey, max_points: int = 30_000) -> np.ndarray:
    """:func:`sample_for_map` of the run's items."""
    return sample_for_map(key.run.items, max_points)


def search(df: pd.DataFrame, query: str, limit: int = 50) -> pd.DataFrame:
    """Items whose title contains ``query`` (case-insensitive, literal) or whose id equals it."""
    q = query.strip()
    if not q:
        return df.iloc[0:0]
    hit = df["title"].astype(str).str.contains(q, case=False, regex=False) | (df["item_id"].astype(str) == q)
    return df[hit].sort_values(["popularity", "item_idx"], ascending=[False, True]).head(limit)
