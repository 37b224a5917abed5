"""Data of the Regimes page: a sweep's comparison table (``sweep.parquet``, written by
:func:`analysis.regimes.sweep`), the sweep a run belongs to, and the sweeps under the runs folder."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from analysis.regimes import read_sweep


def sweep_folder_of(run_path: str | Path) -> str | None:
    """The sweep folder a run belongs to (its parent holds ``sweep.parquet``), or None."""
    parent = Path(run_path).resolve().parent
    return str(parent) if (parent / "sweep.parquet").is_file() else None


def sweep_folders(root: str | Path) -> list[str]:
    """Folders under ``root`` (itself, children, grandchildren) that hold a ``sweep.parquet``."""
    r = Path(root)
    if not r.exists():
        return []
    cands = [r, *r.glob("*"), *r.glob("*/*")]
    return sorted(str(p) for p in cands if p.is_dir() and (p / "sweep.parquet").is_file())


def sweep_stamp(folder: str) -> int:
    return (Path(folder) / "sweep.parquet").stat().st_mtime_ns


@st.cache_data(show_spinner=False, max_entries=16)
def sweep_table(folder: str, stamp: int = 0) -> pd.DataFrame:
    """The sweep's comparison table (:func:`analysis.regimes.read_sweep`: regimes ordered, ``is_cold`` and
    ``x_label``; the warm_* / cold_* Recall@K columns are the engine's segment rankings). ``stamp``
    (:func:`sweep_stamp`) only keys the cache."""
    return read_sweep(folder)


@st.cache_data(show_spinner=False, max_entries=64)
def _sweep_dataset(folder: str, stamp: int = 0) -> str | None:
    """The dataset name of a sweep (from its first regime run's manifest), or None when unreadable.
    ``stamp`` (:func:`sweep_stamp`) only keys the cache."""
    try:
        path = pd.read_parquet(Path(folder) / "sweep.parquet", columns=["path"])["path"].iloc[0]
        return json.loads((Path(path) / "manifest.json").read_text())["dataset"]["name"]
    except (OSError, KeyError, IndexError, ValueError):
        return None


def sweep_for_run(run_path: str | Path, dataset: str, root: str | Path) -> str | None:
    """The sweep telling a run's regime story: the one it belongs to, else the newest sweep under the runs
    folder ``root`` over the same dataset (``make app``'s main run and its default sweep), else None."""
    own = sweep_folder_of(run_path)
    if own:
        return own
    same = [f for f in sweep_folders(root) if _sweep_dataset(f, sweep_stamp(f)) == dataset]
    return max(same, key=sweep_stamp) if same else None
