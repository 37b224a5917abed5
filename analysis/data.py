"""The in-memory dataset every loader produces, and its validation / preprocessing.

A :class:`Dataset` holds raw string ids. ``interactions`` has columns
``user_id, item_id, rating, timestamp`` (rating / timestamp NaN when absent) and
``items`` has ``item_id, title, year, genres, description``: ``year`` is a nullable
integer, ``genres`` a ``|``-joined string ("" when unknown). Everything downstream
works on dense integer indices produced by :func:`index`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError

INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
ITEM_COLUMNS = ["item_id", "title", "year", "genres", "description"]


@dataclass
class Dataset:
    """Raw interactions + item metadata (+ optional precomputed vectors per view)."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    source: str = ""
    #: optional precomputed item vectors per view name ("semantic" / "collaborative"),
    #: each ``(ids, matrix)`` with ids as strings matching ``items.item_id``.
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: ground truth planted by the synthetic generator (None for real data)
    planted: dict[str, Any] | None = None

    def checksum(self) -> str:
        """SHA-256 over the canonical interactions and item table (stable across loaders)."""
        h = hashlib.sha256()
        inter = self.interactions[INTERACTION_COLUMNS]
        h.update(pd.util.hash_pandas_object(inter, index=False).values.tobytes())
        items = self.items[ITEM_COLUMNS].astype({"year": "float64"})
        h.update(pd.util.hash_pandas_object(items, index=False).values.tobytes())
        return h.hexdigest()


def make_items(item_ids, titles=None, years=None, genres=None, descriptions=None) -> pd.DataFrame:
    """Build a canonical item table; missing fields become empty / NA."""
    ids = pd.Series(item_ids, dtype=str).reset_index(drop=True)
    n = len(ids)

    def col(values, default):
        if values is None:
            return pd.Series([default] * n)
        return pd.Series(list(values)).reset_index(drop=True)

    out = pd.DataFrame(
        {
            "item_id": ids,
            "title": col(titles, "").fillna("").astype(str),
            "year": pd.to_numeric(col(years, None), errors="coerce").astype("Int64"),
            "genres": col(genres, "").fillna("").astype(str),
            "description": col(descriptions, "").fillna("").astype(str),
        }
    )
    return out


def make_interactions(user_ids, item_ids, ratings=None, timestamps=None) -> pd.DataFrame:
    """Build a canonical interaction table with string ids and float rating / timestamp."""
    n = len(user_ids)
    return pd.DataFrame(
        {
            "user_id": pd.Series(user_ids).astype(str).to_numpy(),
            "item_id": pd.Series(item_ids).astype(str).to_numpy(),
            "rating": (np.full(n, np.nan) if ratings is None else pd.to_numeric(pd.Series(ratings), errors="coerce").to_numpy(float)),
            "timestamp": (np.full(n, np.nan) if timestamps is None else pd.to_numeric(pd.Series(timestamps), errors="coerce").to_numpy(float)),
        }
    )


def validate(ds: Dataset) -> None:
    """Check the canonical tables; raise :class:`DataError` naming the offending ids."""
    for name, frame, cols in (("interactions", ds.interactions, INTERACTION_COLUMNS), ("items", ds.items, ITEM_COLUMNS)):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataError(f"{ds.name}: {name} table is missing column(s) {missing}")
    if len(ds.interactions) == 0:
        raise DataError(f"{ds.name}: no interactions")
    dup = ds.items["item_id"][ds.items["item_id"].duplicated()]
    if len(dup):
        raise DataError(f"{ds.name}: duplicate item id(s) in the item table: {sorted(set(dup))[:5]}")
    known = set(ds.items["item_id"])
    unknown = ~ds.interactions["item_id"].isin(known)
    if unknown.any():
        bad = ds.interactions.loc[unknown, "item_id"].unique()[:5].tolist()
        raise DataError(
            f"{ds.name}: {int(unknown.sum())} interaction(s) refer to item id(s) missing from the item table, e.g. {bad}"
        )


def preprocess(ds: Dataset, rating_threshold: float | None = None, kcore: int = 0) -> Dataset:
    """Implicit feedback: keep ratings >= threshold, drop duplicate pairs, optional k-core.

    Duplicate (user, item) pairs keep their latest timestamp. Items left with no
    interaction stay in the catalogue (they become cold items) unless k-core removes them.
    """
    inter = ds.interactions
    if rating_threshold is not None:
        if inter["rating"].isna().all():
            raise DataError(f"{ds.name}: a rating threshold was given but the data has no ratings")
        inter = inter[inter["rating"] >= rating_threshold]
    inter = inter.sort_values("timestamp", kind="stable").drop_duplicates(["user_id", "item_id"], keep="last")
    items = ds.items
    if kcore and kcore > 1:
        while True:
            uc = inter["user_id"].map(inter["user_id"].value_counts())
            ic = inter["item_id"].map(inter["item_id"].value_counts())
            keep = (uc >= kcore) & (ic >= kcore)
            if keep.all():
                break
            inter = inter[keep]
        items = items[items["item_id"].isin(set(inter["item_id"]))]
    if len(inter) == 0:
        raise DataError(
            f"{ds.name}: no interactions left after filtering (rating threshold={rating_threshold}, k-core={kcore})"
        )
    return Dataset(
        name=ds.name,
        interactions=inter.reset_index(drop=True),
        items=items.reset_index(drop=True),
        source=ds.source,
        vectors=ds.vectors,
        planted=ds.planted,
    )


@dataclass
class Indexed:
    """Dense integer view of a dataset: users 0..U-1, items 0..I-1 (item order = item table)."""

    user_ids: np.ndarray  # str, (U,)
    item_ids: np.ndarray  # str, (I,)
    users: np.ndarray  # int32 per interaction
    items: np.ndarray  # int32 per interaction
    timestamps: np.ndarray  # float per interaction

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _id_order(ids: np.ndarray) -> np.ndarray:
    """Sorting order of string ids: numerically when all are integers (of any size), else as strings."""
    as_int64 = lambda a: a.astype(np.int64)  # noqa: E731
    as_int = lambda a: np.array([int(i) for i in a], dtype=object)  # noqa: E731  beyond int64, e.g. 10**22
    for key in (as_int64, as_int):
        try:
            return np.argsort(key(ids), kind="stable")
        except (ValueError, OverflowError):
            pass
    return np.argsort(ids, kind="stable")


def index(ds: Dataset) -> Indexed:
    """Map string ids to dense indices; users sorted by id (numeric ids numerically)."""
    uids = ds.interactions["user_id"].unique()
    uids = uids[_id_order(uids)]
    u_map = pd.Series(np.arange(len(uids), dtype=np.int32), index=uids)
    i_ids = ds.items["item_id"].to_numpy(dtype=object)
    i_map = pd.Series(np.arange(len(i_ids), dtype=np.int32), index=i_ids)
    users = u_map.loc[ds.interactions["user_id"].to_numpy()].to_numpy(np.int32)
    items = i_map.loc[ds.interactions["item_id"].to_numpy()].to_numpy(np.int32)
    return Indexed(
        user_ids=np.asarray(uids, dtype=object),
        item_ids=i_ids,
        users=users,
        items=items,
        timestamps=ds.interactions["timestamp"].to_numpy(float),
    )
