"""Data of the Regimes page: a sweep's comparison table (``sweep.parquet``, written by
:func:`analysis.regimes.sweep`), the sweep a run belongs to, and the sweeps under the runs folder."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from analysis.errors import RunError

NEEDED = ["regime", "keep_fraction", "cold_item_share", "K", "semantic_recall", "collab_recall", "fusion_recall",
          "oracle_gain_ndcg", "control_oracle_gain_ndcg", "fusion_gain_ndcg", "semantic_unique_share",
          "collab_unique_share", "cold_test_share", "cold_semantic_recall", "cold_collab_recall", "cold_fusion_recall"]


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


def _regime_order(df: pd.DataFrame) -> pd.DataFrame:
    cold = df["cold_item_share"].astype(float) > 0
    df = df.assign(_cold=cold, _keep=-df["keep_fraction"].astype(float), _share=df["cold_item_share"].astype(float))
    return df.sort_values(["_cold", "_keep", "_share"]).drop(columns=["_cold", "_keep", "_share"])


def sweep_stamp(folder: str) -> int:
    return (Path(folder) / "sweep.parquet").stat().st_mtime_ns


@st.cache_data(show_spinner=False, max_entries=16)
def sweep_table(folder: str, stamp: int = 0) -> pd.DataFrame:
    """The sweep's comparison table, regimes ordered (sparsity by descending kept fraction, then cold
    start), with ``is_cold`` and ``x_label``. The warm_* / cold_* Recall@K columns are the engine's
    segment rankings. ``stamp`` (:func:`sweep_stamp`) only keys the cache."""
    f = Path(folder) / "sweep.parquet"
    if not f.is_file():
        raise RunError(f"{folder} holds no sweep.parquet; make one with "
                       "`semcollab sweep --dataset ml-100k --out runs/ml-100k-sweep` (or `make sweep`)")
    df = pd.read_parquet(f)
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise RunError(f"{f} lacks column(s) {missing}; recompute the sweep with `semcollab sweep ... --force`")
    df = _regime_order(df).reset_index(drop=True)
    df["is_cold"] = df["cold_item_share"].astype(float) > 0
    df["x_label"] = [f"{c:.0%} cold items" if cold else f"{k:.0%} kept"
                     for k, c, cold in zip(df["keep_fraction"].astype(float), df["cold_item_share"].astype(float),
                                           df["is_cold"])]
    return df
