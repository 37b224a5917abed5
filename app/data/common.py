"""The shared part of the dashboard's data layer: the opened run and its cache key, the run's system
vocabulary, and the per-item frame the Maps, Items and Structure pages share.

Every data function of ``app/data`` takes a :class:`RunKey` (run folder + manifest stamp, so a
recomputed run gets fresh caches) and hashable arguments, and is cached with :func:`cached`:
``st.cache_data`` (the page gets its own copy: mutate it freely) or, for internal intermediates,
``st.cache_resource`` (shared: never mutate). Numbers come from the run's tables or from
:mod:`analysis` functions (:mod:`analysis.run_queries` for run-level reads); nothing here defines
a metric, an oracle, a bootstrap or a projection. Roles and labels of systems come from the
run's manifest (:mod:`analysis.systems`), never from their names.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import pandas as pd
import streamlit as st

from analysis import run_queries as rq
from analysis import systems
from analysis.errors import RunError
from analysis.runstore import RECOMPUTE, Run, open_run
from analysis.summary import RunSummary
from app.text import safe_label

#: a segment filter: user_idx / item_idx values, or None for all
Sel = tuple[int, ...] | None
F = TypeVar("F", bound=Callable[..., Any])
ITEM_COLUMNS = ["item_idx", "item_id", "title", "genres", "popularity", "pop_decile", "pop_bucket", "cold",
                "sem_x", "sem_y", "col_x", "col_y"]


def manifest_stamp(path: str | Path) -> int:
    """The manifest's mtime (ns): part of every cache key, so a recomputed run is read again."""
    try:
        return (Path(path) / "manifest.json").stat().st_mtime_ns
    except OSError:
        return 0


def as_run_error(path: str, exc: Exception) -> RunError:
    return RunError(f"run {path} could not be read ({type(exc).__name__}: {exc}); {RECOMPUTE}, or make a new one "
                    "with `semcollab run --dataset synthetic --out runs/synthetic`")


@st.cache_resource(show_spinner="Reading the run…", max_entries=8)
def load_run(path: str, stamp: int) -> Run:
    """Open a run once per process and check that the dashboard can read it: its tables, its system
    vocabulary (schema 3: an older run gets RunError "recompute it with --force") and summary."""
    run = open_run(path)
    try:
        for t in ("items", "users", "metrics"):
            run.table(t)
        systems.roles(run.manifest)
        systems.compared(run.manifest)
        RunSummary(run.manifest)
    except RunError:
        raise
    except Exception as exc:  # a corrupt parquet file or a wrong column type
        raise as_run_error(path, exc) from exc
    return run


@dataclass(frozen=True)
class RunKey:
    """What identifies a run's cached data: its folder and its manifest's stamp."""

    path: str
    stamp: int

    @classmethod
    def of(cls, path: str | Path) -> "RunKey":
        return cls(str(path), manifest_stamp(path))

    @property
    def run(self) -> Run:
        return load_run(self.path, self.stamp)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.run.manifest


def cached(resource: bool = False, max_entries: int = 256) -> Callable[[F], F]:
    """Cache a data function ``fn(key: RunKey, ...)`` per process (``st.cache_data``, or
    ``st.cache_resource`` with ``resource=True``); an OSError / KeyError of a damaged run becomes a
    RunError naming the run."""
    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def guarded(key: RunKey, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(key, *args, **kwargs)
            except RunError:
                raise
            except (OSError, KeyError) as exc:
                raise as_run_error(key.path, exc) from exc
        cache = st.cache_resource if resource else st.cache_data
        return cache(show_spinner=False, max_entries=max_entries)(guarded)  # type: ignore[return-value]
    return deco


# ----------------------------------------------------------------------------- systems
def system_roles(key: RunKey) -> dict[str, str]:
    """role -> system name, as the run's manifest records them."""
    return systems.roles(key.manifest)


def compared_systems(key: RunKey) -> tuple[str, str]:
    """(semantic system, collaborative system) the run compares."""
    return systems.compared(key.manifest)


def label(key: RunKey, name: str, short: bool = False) -> str:
    """The run's label of system ``name``."""
    return systems.label(key.manifest, name, short=short)


METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "hit": "Hit rate"}


def metric_label(metric: str, k: int) -> str:
    """E.g. "NDCG@20"."""
    return f"{METRIC_NAMES.get(metric, metric)}@{k}"


def summary(key: RunKey) -> RunSummary:
    return RunSummary(key.manifest)


# ----------------------------------------------------------------------------- shared reads
@cached(resource=True, max_entries=8)
def neighbour_graphs(key: RunKey) -> rq.NeighbourGraphs:
    """The stored kNN graphs (shared, read-only)."""
    return rq.neighbour_graphs(key.run)


def neighbour_depth(key: RunKey) -> int:
    return neighbour_graphs(key).depth


@cached(resource=True, max_entries=16)
def hit_pairs(key: RunKey, K: int, a: str, b: str) -> pd.DataFrame:
    """Every test pair with its hit kind for systems a and b at K (shared, read-only)."""
    return rq.hit_pairs(key.run, K, a, b)


def compared_pairs(key: RunKey, K: int) -> pd.DataFrame:
    """:func:`hit_pairs` of the compared views (shared, read-only)."""
    return hit_pairs(key, K, *compared_systems(key))


def filter_pairs(pairs: pd.DataFrame, users: Sel = None, items: Sel = None) -> pd.DataFrame:
    """The rows of ``pairs`` whose user / item is in the filter."""
    if users is not None:
        pairs = pairs[pairs["user_idx"].isin(np.asarray(users, dtype=np.int64))]
    if items is not None:
        pairs = pairs[pairs["item_idx"].isin(np.asarray(items, dtype=np.int64))]
    return pairs


@cached(resource=True, max_entries=32)
def compare_systems(key: RunKey, a: str, b: str, K: int) -> pd.DataFrame:
    """:func:`analysis.run_queries.compare_systems` (shared, read-only)."""
    return rq.compare_systems(key.run, a, b, K)


@cached(max_entries=64)
def overlap_at_k(key: RunKey, k: int) -> pd.DataFrame:
    """Per-item overlap / jaccard / disagreement at k (:func:`analysis.run_queries.overlap_at_k`)."""
    return rq.overlap_at_k(key.run, k, neighbour_graphs(key))


@cached(max_entries=64)
def item_hit_counts(key: RunKey, K: int, users: Sel = None) -> pd.DataFrame:
    """Per item: hits of the compared views at K over the filtered users, and its hit type."""
    return rq.item_hit_counts(filter_pairs(compared_pairs(key, K), users), len(key.run.items))


@cached(max_entries=8)
def map_coords(key: RunKey) -> pd.DataFrame:
    """Item positions per view: the run's UMAP, or the engine's PCA layout (``.attrs["source"]``)."""
    return rq.map_coords(key.run)


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


@cached(max_entries=8)
def run_genres(key: RunKey) -> pd.DataFrame:
    """:func:`genre_long` of the run's items."""
    return genre_long(key.run.items)


@cached(max_entries=64)
def item_frame(key: RunKey, K: int, k: int, users: Sel = None) -> pd.DataFrame:
    """The items table with the map positions, overlap@k, hits at K over the filtered users, the
    primary genre and ``label`` (the title escaped for Plotly). ``.attrs``: the overlap's (k,
    n_valid, chance, chance_jaccard) and ``map_source``."""
    items = key.run.items
    rq.require_columns(items, ITEM_COLUMNS, "items", key.run)
    drop = ["sem_x", "sem_y", "col_x", "col_y", "overlap", "jaccard", "disagreement", "hits_shared", "hits_sem_only",
            "hits_col_only", "hits_missed_by_both", "n_test"]
    xy, ov = map_coords(key), overlap_at_k(key, k)
    df = items.drop(columns=[c for c in drop if c in items.columns]).join(xy, on="item_idx")
    df = df.join(ov, on="item_idx").join(item_hit_counts(key, K, users), on="item_idx")
    df["primary_genre"] = primary_genre(df["genres"])
    df["label"] = [safe_label(t) for t in df["title"]]
    df.attrs.update(ov.attrs)
    df.attrs["map_source"] = dict(xy.attrs["source"])
    return df
