"""The in-memory dataset every loader produces, and its validation / preprocessing.

A :class:`Dataset` holds raw string ids. ``interactions`` has columns
``user_id, item_id, rating, timestamp`` (rating / timestamp NaN when absent) and
``items`` has ``item_id, title, year, genres, description``: ``year`` is a nullable
integer, ``genres`` a ``|``-joined string ("" when unknown). Everything downstream
works on dense integer indices produced by :func:`index`.

:func:`make_interactions` stores the two id columns as pandas ``Categorical`` of strings: one
string per distinct id and an integer code per row, so that 50M interactions cost a few hundred MB
rather than 50M Python strings. They read as strings (``tolist``, ``==``, ``.str``, parquet) and
hash as strings (:meth:`Dataset.checksum` is the same as with plain string columns); :func:`validate`,
:func:`preprocess` and :func:`index` work on the codes and accept plain string columns too.
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
        h.update(np.ascontiguousarray(pd.util.hash_pandas_object(inter, index=False).to_numpy()))  # (no bytes copy)
        items = self.items[ITEM_COLUMNS].astype({"year": "float64"})
        h.update(np.ascontiguousarray(pd.util.hash_pandas_object(items, index=False).to_numpy()))
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


def id_column(ids, copy: bool = True) -> pd.Categorical:
    """Ids as a ``Categorical`` of strings: each id's ``str`` (missing ids stay missing), one category
    per distinct id, in order of first appearance; a ``Categorical`` (or categorical ``Series``) whose
    categories stay distinct as strings keeps its codes (copied unless ``copy=False``) and categories."""
    if isinstance(ids, pd.Series) and isinstance(ids.dtype, pd.CategoricalDtype):
        ids = ids.array
    if isinstance(ids, pd.Categorical):
        cats = pd.Index(ids.categories).astype(str)
        if cats.is_unique:
            return pd.Categorical.from_codes(ids.codes.copy() if copy else ids.codes, categories=cats)
    codes, uniques = pd.factorize(pd.Series(ids).astype(str))
    return pd.Categorical.from_codes(codes, categories=uniques)


def make_interactions(user_ids, item_ids, ratings=None, timestamps=None, copy: bool = True) -> pd.DataFrame:
    """Build a canonical interaction table: categorical string ids (:func:`id_column`), float rating / timestamp.

    ``copy=False`` hands the arrays over: float64 ratings / timestamps and categorical ids become the
    table's columns as they are (no copy of 50M-row columns); the caller must not modify them afterwards.
    """
    n = len(user_ids)

    def floats(values) -> np.ndarray:
        if values is None:
            return np.full(n, np.nan)
        if isinstance(values, np.ndarray) and values.dtype == np.float64 and values.ndim == 1:
            return values.copy() if copy else values
        return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)  # (the Series is a copy)

    return pd.DataFrame(
        {
            "user_id": id_column(user_ids, copy),
            "item_id": id_column(item_ids, copy),
            "rating": floats(ratings),
            "timestamp": floats(timestamps),
        },
        copy=False,
    )


def id_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, categories)`` of an id column: an integer code per row (-1 = missing) and the distinct
    ids (object array); a categorical column's own codes, else a factorisation (first appearance)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(), column.cat.categories.to_numpy(dtype=object)
    codes, uniques = pd.factorize(column)
    return codes, np.asarray(uniques, dtype=object)


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
    codes, cats = id_codes(ds.interactions["item_id"])
    known = np.append(pd.Index(cats, dtype=object).isin(ds.items["item_id"].to_numpy(dtype=object)), False)  # [-1]: missing
    if not known[codes].all():
        rows = np.flatnonzero(~known[codes])
        bad = [cats[c] if c >= 0 else np.nan for c in pd.unique(codes[rows])[:5]]
        raise DataError(
            f"{ds.name}: {len(rows)} interaction(s) refer to item id(s) missing from the item table, e.g. {bad}"
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
    uc, ucats = id_codes(inter["user_id"])
    ic, icats = id_codes(inter["item_id"])
    # rows (of those rated >= threshold) in stable timestamp order (NaN last); of each duplicate pair the last
    ts = inter["timestamp"].to_numpy(float)
    if rating_threshold is None:
        rows = _stable_order(ts)
    else:
        rated = np.flatnonzero(inter["rating"].to_numpy(float) >= rating_threshold)
        rows = rated[_stable_order(ts[rated])]
    pair = uc[rows].astype(np.int64)  # (uc + 1) * (n_icats + 1) + ic + 1: missing ids (-1) pair as equals
    pair += 1
    pair *= len(icats) + 1
    pair += ic[rows]
    pair += 1
    srt = np.sort(pair)  # (unstable: fast) a duplicate pair is two equal neighbours
    if (srt[1:] == srt[:-1]).any():
        o = np.argsort(pair, kind="stable")
        ps = pair[o]
        rows = rows[np.sort(o[np.r_[ps[1:] != ps[:-1], True]])]
    del srt, pair
    items = ds.items
    if kcore and kcore > 1:
        while True:
            u, i = uc[rows] + 1, ic[rows] + 1
            u_n, i_n = np.bincount(u, minlength=len(ucats) + 1), np.bincount(i, minlength=len(icats) + 1)
            u_n[0] = i_n[0] = 0  # a missing id counts as no user / item (value_counts skips it)
            keep = (u_n[u] >= kcore) & (i_n[i] >= kcore)
            if keep.all():
                break
            rows = rows[keep]
        used = icats[np.bincount(ic[rows] + 1, minlength=len(icats) + 1)[1:] > 0]
        items = items[pd.Index(items["item_id"], dtype=object).isin(used)]
    if len(rows) != len(inter) or not (rows[1:] > rows[:-1]).all():  # (not already in order: a reordered copy)
        inter = inter.iloc[rows]
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


def _stable_order(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` (NaN last) from an unstable sort: only tied runs are reordered."""
    order = np.argsort(values)
    v = values[order]
    tied = (v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1]))
    del v
    if tied.any():
        at = np.flatnonzero(np.r_[tied, False] | np.r_[False, tied])  # positions inside a run of equal values
        run = np.cumsum(np.r_[True, ~tied])[at]
        order[at] = order[at][np.lexsort((order[at], run))]
    return order


def index(ds: Dataset) -> Indexed:
    """Map string ids to dense indices; users sorted by id (numeric ids numerically)."""
    inter = ds.interactions
    uc, ucats = id_codes(inter["user_id"])
    if len(uc) and uc.min() < 0:
        raise DataError(f"{ds.name}: {int((uc < 0).sum())} interaction(s) have no user id")
    seen = pd.unique(uc)  # the users present, in order of first appearance
    seen = seen[_id_order(ucats[seen])]
    u_map = np.full(len(ucats), -1, np.int32)
    u_map[seen] = np.arange(len(seen), dtype=np.int32)
    i_ids = ds.items["item_id"].to_numpy(dtype=object)
    ic, icats = id_codes(inter["item_id"])
    i_map = np.append(pd.Index(i_ids, dtype=object).get_indexer(icats), -1).astype(np.int32)  # [-1]: missing id
    items = i_map[ic]
    if len(items) and items.min() < 0:
        bad = pd.unique(ic[items < 0])[:5]
        raise DataError(f"{ds.name}: item id(s) missing from the item table: {[icats[c] if c >= 0 else None for c in bad]}")
    return Indexed(
        user_ids=np.asarray(ucats[seen], dtype=object),
        item_ids=i_ids,
        users=u_map[uc],
        items=items,
        timestamps=inter["timestamp"].to_numpy(float),
    )
