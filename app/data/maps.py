"""Data of the Maps page: the per-item frame (:func:`app.data.common.item_frame`), the items drawn
when a catalogue is too large to draw whole (:func:`analysis.projection.plot_sample`), how the run's
maps were fitted (the manifest's ``maps`` report of :func:`analysis.projection.map_layouts`), and the
title / id search."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.projection import PlotSample, plot_sample

from .common import RunKey, cached, item_frame  # noqa: F401  (item_frame: the page's frame)

#: points drawn per map before the maps switch to a stratified sample
MAX_POINTS = 20_000


def frame_sample(frame: pd.DataFrame, max_points: int = MAX_POINTS, seed: int = 0, keep=()) -> PlotSample:
    """:func:`analysis.projection.plot_sample` of the frame's items (strata: ``pop_bucket``, "cold"
    where ``cold``, drawn within ``pop_decile``), keeping the items whose ``item_idx`` is in ``keep``;
    its ``items`` are the drawn items' ``item_idx`` (in frame order)."""
    idx = frame["item_idx"].to_numpy()
    keep_pos = np.flatnonzero(np.isin(idx, np.asarray(list(keep), dtype=idx.dtype)))
    buckets = np.where(frame["cold"].astype(bool), "cold", frame["pop_bucket"].astype(str))
    ps = plot_sample(buckets, max_points, seed, keep=keep_pos,
                     strata=frame["pop_decile"].to_numpy())
    return replace(ps, items=idx[ps.items])


def sample_for_map(frame: pd.DataFrame, max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """item_idx values to draw (:func:`frame_sample`)."""
    return frame_sample(frame, max_points, seed).items


@cached(max_entries=16)
def map_plot_sample(key: RunKey, max_points: int = MAX_POINTS, keep: tuple[int, ...] = ()) -> PlotSample:
    """:func:`frame_sample` of the run's items, keeping the items ``keep`` (item_idx)."""
    return frame_sample(key.run.items, max_points, keep=keep)


@cached(max_entries=16)
def map_sample(key: RunKey, max_points: int = MAX_POINTS) -> np.ndarray:
    """:func:`sample_for_map` of the run's items."""
    return sample_for_map(key.run.items, max_points)


def fit_report(key: RunKey) -> dict[str, Any] | None:
    """The run's record of how its maps were fitted (``manifest["maps"]``), None for older runs."""
    rep = key.manifest.get("maps")
    return rep if isinstance(rep, dict) else None


def search(df: pd.DataFrame, query: str, limit: int = 50) -> pd.DataFrame:
    """Items whose title contains ``query`` (case-insensitive, literal) or whose id equals it."""
    q = query.strip()
    if not q:
        return df.iloc[0:0]
    hit = df["title"].astype(str).str.contains(q, case=False, regex=False) | (df["item_id"].astype(str) == q)
    return df[hit].sort_values(["popularity", "item_idx"], ascending=[False, True]).head(limit)
