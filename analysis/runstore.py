"""The saved *run*: a directory of parquet tables, ``.npy`` vectors and a manifest.

A run is written to a temporary sibling directory and renamed into place, so it
appears whole or not at all. The dashboard and notebooks open it with
:func:`open_run`. Schema (version ``SCHEMA_VERSION``); ``item_idx`` / ``user_idx``
are the dense indices used everywhere, ``K`` is the largest cut-off of the run:

``items``          item_idx, item_id, title, year, genres, description, text,
                   popularity (train count), pop_decile (1..10, 10 = most popular),
                   pop_bucket (head/torso/tail/cold), cold (no training interactions),
                   sem_x, sem_y, col_x, col_y (2-D maps; NaN where a view has no vector),
                   overlap, jaccard, disagreement (at the run's neighbourhood k; NaN if cold),
                   procrustes_cos, hits_shared, hits_sem_only, hits_col_only, hits_missed_by_both
                   (test-set hit counts at K for the compared semantic view vs collaborative),
                   n_test (times the item is a test item), sem_shared, sem_private, col_shared,
                   col_private (per-item share of energy in the AJIVE joint subspace / the rest)
``users``          user_idx, user_id, n_train, n_valid, n_test, activity_bucket,
                   <system>_recall@k / <system>_ndcg@k / <system>_hit@k for every system and k
                   (test split), list_jaccard, rbo, hits_sem, hits_col, shared, only_sem, only_col,
                   oracle_select_recall, oracle_select_ndcg, oracle_union_recall, oracle_union_ndcg
                   (compared views at K), control_* (same for most-popular vs collaborative)
``topk``           user_idx, system, rank (1..K), item_idx, hit (test)
``interactions``   user_idx, item_idx, part (train / valid / test)
``metrics``        system, part, metric, k, mean, lo, hi, n_users   (95 % bootstrap over users);
                   systems: semantic, semantic_zs, collab, ease, pop, fusion, rrf (every k, valid
                   and test) and oracle_select, oracle_union, control_oracle_select,
                   control_oracle_union (test, at K only)
``differences``    system_a, system_b, part, metric, k, diff, lo, hi, p_value, n_users (paired)
``fusion``         part, method (score / cold_aware / rrf), alpha, metric, k, value,
                   segment_type (all / item_pop / user_activity), segment
``neighbors``      item_idx, view (semantic / collaborative), rank, neighbor_idx, sim
                   (depth ``manifest["neighbor_depth"]`` >= 2k; semantic lists include cold items,
                   the stored overlap uses the items both views can place)
``agreement_deciles`` decile, n_items, mean_overlap, mean_jaccard, mean_disagreement, chance
``tuning``         model, params (JSON), valid_ndcg@20, valid_recall@20, best_epoch, chosen
``similarity``     statistic (cka / debiased_cka / procrustes_distance), variant (raw / top_pc_removed),
                   raw, null_mean, null_std, null_lo, null_hi, p_value, n_items, n_perm
``cca``            component, train_corr, heldout_corr, null_q95, significant (held-out canonical
                   correlations, PCA-regularised, fit on 2/3 of the items, permutation null)
``ajive``          component, sigma2, wedin_bound, random_bound, joint
``variance``       view, shared, private, joint_rank (fractions of each view's variance)
``probes``         regime (in_distribution / shift_popularity / shift_time), probe (ridge /
                   reduced_rank / mlp), capacity (str), r2, mean_cos, overlap, recall, ndcg,
                   ceiling_recall, ceiling_ndcg, n_train, n_eval (+ capacity_num, valid_r2, lam, n_valid);
                   items.probe_residual / items.probe_best: the best probe's cross-fitted residual
``fusion_models``  system, metric, k, mean, lo, hi, n_users: best single view, score fusion at the
                   validation alpha, alignment baseline, gated complementarity-aware fusion (test)
``fusion_model_differences`` system_a, system_b, metric, k, diff, lo, hi, p_value (paired bootstrap)
vectors/           semantic_items.npy (frozen encoder vectors), semantic_rec_items.npy,
                   semantic_rec_users.npy (trained semantic recommender), collab_items.npy,
                   collab_users.npy (cold rows are NaN), all float32.
``manifest.json``  schema_version, config, config_hash, regime, dataset {name, source,
                   checksum, n_users, n_items, n_interactions}, systems {name: description},
                   compared {semantic, collaborative}, K, ks, k_neighbors, neighbor_depth, chance_overlap,
                   fusion {alpha_valid, metric, headroom, ...}, summary (headline numbers),
                   timings {stage: seconds}, versions {package: version}, created.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import RunError

SCHEMA_VERSION = 2
TABLES = ["items", "users", "topk", "interactions", "metrics", "differences", "fusion", "neighbors",
          "agreement_deciles", "tuning", "similarity", "cca", "ajive", "variance", "probes", "fusion_models",
          "fusion_model_differences"]
VECTORS = ["semantic_items", "semantic_rec_items", "semantic_rec_users", "collab_items", "collab_users"]
HOW_TO_MAKE = "make one with `semcollab run --dataset synthetic --out runs/synthetic` (or --dataset ml-100k)"


def write_run(out: Path, tables: dict[str, pd.DataFrame], vectors: dict[str, np.ndarray], manifest: dict[str, Any]) -> Path:
    """Write a complete run to ``out`` atomically (temp dir + rename); replaces an old run."""
    out = Path(out)
    missing = [t for t in TABLES if t not in tables] + [v for v in VECTORS if v not in vectors]
    if missing:
        raise RunError(f"refusing to write an incomplete run to {out}: missing {missing}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for name, df in tables.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "vectors").mkdir()
        for name, arr in vectors.items():
            np.save(tmp / "vectors" / f"{name}.npy", np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
        manifest = {**manifest, "schema_version": SCHEMA_VERSION}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a complete run at ``path``, or None when there is none."""
    f = Path(path) / "manifest.json"
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError:
        return None


@dataclass
class Run:
    """A saved run, opened read-only. Tables and vectors load lazily and are memoised."""

    path: Path
    manifest: dict[str, Any]
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def table(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            f = self.path / f"{name}.parquet"
            if not f.exists():
                raise RunError(f"run {self.path} has no table {name!r} ({f.name} is missing); {HOW_TO_MAKE}")
            self._tables[name] = pd.read_parquet(f)
        return self._tables[name]

    def vectors(self, name: str) -> np.ndarray:
        f = self.path / "vectors" / f"{name}.npy"
        if not f.exists():
            raise RunError(f"run {self.path} has no vectors {name!r}; {HOW_TO_MAKE}")
        return np.load(f, allow_pickle=False, mmap_mode="r")

    @cached_property
    def items(self) -> pd.DataFrame:
        return self.table("items")

    @cached_property
    def users(self) -> pd.DataFrame:
        return self.table("users")

    @property
    def name(self) -> str:
        return self.path.name


def open_run(path: str | os.PathLike) -> Run:
    """Open a saved run; raise :class:`RunError` with how to make one when it is missing/broken."""
    p = Path(path)
    if not p.exists():
        raise RunError(f"no run at {p}; {HOW_TO_MAKE}")
    m = read_manifest(p)
    if m is None:
        raise RunError(f"{p} is not a complete run (manifest.json missing or unreadable); {HOW_TO_MAKE}")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise RunError(
            f"run {p} has schema version {m.get('schema_version')}, this semcollab reads {SCHEMA_VERSION}; "
            f"recompute it with `semcollab run ... --force`"
        )
    missing = [t for t in TABLES if not (p / f"{t}.parquet").exists()]
    if missing:
        raise RunError(f"run {p} is incomplete: missing {missing}; recompute it with --force")
    return Run(path=p, manifest=m)


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Complete runs under ``root`` (the folder itself, its children and grandchildren)."""
    root = Path(root)
    if not root.exists():
        return []
    cands = [root, *root.glob("*"), *root.glob("*/*")]
    return sorted(p for p in cands if p.is_dir() and not p.name.startswith(".") and read_manifest(p) is not None)
