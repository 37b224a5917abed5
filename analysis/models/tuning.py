"""Validation tuning of every trainable view, per regime, with comparable grids.

DIAGNOSTICS.md ("Fair comparison"): each view is tuned on validation *in every regime*
(a model tuned on dense data and reused on sparse data manufactures complementarity),
and the grids and budgets of the views are comparable and recorded. :func:`tune`
trains every grid point with the same early-stopping rule (validation NDCG@K), picks
the best, and caches the outcome (best parameters + the full table, JSON, never pickle)
under ``cache_dir("tuning")``, keyed by the split's matrices, the kind, the grid, the
fixed settings, the seed (and the item vectors for the semantic view). Since every
regime gives a different split, tuning per regime happens by construction. On a cache
hit only the best configuration is retrained (deterministic for a given seed).

Default grids (``DEFAULT_GRIDS``) were sized so each kind tunes in well under a minute
on a 943 x 1,682 problem on 2 CPU cores; the fixed settings (``DEFAULT_FIXED``) hold the
per-config budget (maximum epochs / sweeps, evaluation interval, patience).
"""
from __future__ import annotations

import itertools
import json
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..cache import atomic_save_json, cache_dir, digest
from ..errors import CacheWarning, ConfigError
from ..split import Split
from .base import Recommender
from .validation import DEFAULT_K, criterion, validate

KINDS = ("ials", "bpr", "ease", "semantic_trained")
_VERSION = "tune-v2"  # v2: standard cold-start protocol, removed pairs masked, configurable K

DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "ials": {"factors": [64, 128], "regularization": [1.0, 10.0, 100.0], "alpha": [1.0, 5.0, 20.0]},
    "bpr": {"dim": [64, 128], "reg": [3e-3, 1e-2, 3e-2]},
    "ease": {"lam": [10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0]},
    "semantic_trained": {"dim": [64, 128], "weight_decay": [0.0, 0.01, 0.1]},
}
DEFAULT_FIXED: dict[str, dict[str, Any]] = {
    "ials": {"iterations": 30, "eval_every": 1, "patience": 3},
    "bpr": {"lr": 1e-2, "epochs": 60, "eval_every": 2, "patience": 3},
    "ease": {},
    "semantic_trained": {"lr": 1e-2, "epochs": 60, "eval_every": 2, "patience": 3},
}
_ALLOWED = {
    "ials": {"factors", "regularization", "alpha", "iterations", "eval_every", "patience", "num_threads"},
    "bpr": {"dim", "lr", "reg", "epochs", "eval_every", "patience", "batch_size", "num_threads"},
    "ease": {"lam"},
    "semantic_trained": {
        "dim", "lr", "weight_decay", "epochs", "eval_every", "patience", "holdout", "user_map", "batch_size",
        "full_softmax_max_items", "n_negatives", "num_threads",
    },
}


@dataclass
class TuneResult:
    """The tuned model, its parameters, and every grid point's validation scores."""

    kind: str
    model: Recommender
    best_params: dict[str, Any]
    #: one row per grid point: the grid parameters, ndcg@K, recall@K, best_epoch, seconds
    table: pd.DataFrame
    grid: dict[str, list]
    fixed: dict[str, Any]
    #: n_configs, criterion, per-config limits, and the seconds the tuning took
    budget: dict[str, Any] = field(default_factory=dict)
    cache_hit: bool = False
    key: str = ""
    #: grid parameters (with >= 3 numeric values) whose best value is the grid's min or max
    #: (a minimum of 0 is a natural bound, not an edge): the optimum may lie outside the grid
    at_edge: list[str] = field(default_factory=list)


def _at_edge(grid: dict[str, list], best: dict[str, Any]) -> list[str]:
    out = []
    for name, values in grid.items():
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        edges = {max(nums)} | ({min(nums)} if min(nums) != 0 else set()) if nums else set()
        if len(nums) >= 3 and len(nums) == len(values) and best[name] in edges:
            out.append(name)
    return out


def _grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, vals)) for vals in itertools.product(*(grid[n] for n in names))]


def _check(kind: str, grid: dict[str, list], fixed: dict[str, Any]) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r} to tune: use one of {list(KINDS)}")
    for name, values in grid.items():
        if name not in _ALLOWED[kind]:
            raise ConfigError(f"{kind}: unknown grid parameter {name!r}; allowed: {sorted(_ALLOWED[kind])}")
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ConfigError(f"{kind}: grid parameter {name!r} needs a non-empty list of values, got {values!r}")
    for name in fixed:
        if name not in _ALLOWED[kind]:
            raise ConfigError(f"{kind}: unknown fixed parameter {name!r}; allowed: {sorted(_ALLOWED[kind])}")


def _split_key(split: Split) -> list:
    parts: list = []
    for m in (split.train, split.valid, split.removed):
        parts += [np.asarray(m.shape), m.indptr.astype(np.int64), m.indices.astype(np.int64)]
    return parts + [np.asarray(split.cold_items, dtype=bool), np.asarray(split.held_out_items, dtype=bool)]


def train_one(
    kind: str,
    split: Split,
    params: dict[str, Any],
    seed: int = 0,
    vectors: np.ndarray | None = None,
    device: str = "auto",
    gram: np.ndarray | None = None,
    k: int = DEFAULT_K,
) -> Recommender:
    """Train one configuration of ``kind`` (what :func:`tune` runs for each grid point);
    trainable kinds stop early on validation NDCG@``k``."""
    if kind == "ials":
        from .collaborative import train_ials

        return train_ials(split, seed=seed, k=k, **params)
    if kind == "bpr":
        from .collaborative import train_bpr

        return train_bpr(split, seed=seed, device=device, k=k, **params)
    if kind == "ease":
        from .reference import EASE

        return EASE(split.train, G=gram, **params)
    if kind == "semantic_trained":
        from .semantic import train_semantic

        if vectors is None:
            raise ConfigError("tuning 'semantic_trained' needs the item vectors (vectors=...)")
        return train_semantic(vectors, split, seed=seed, device=device, k=k, **params)
    raise ConfigError(f"unknown model kind {kind!r} to tune: use one of {list(KINDS)}")


def _json_safe(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass
class _Job:
    """One tuning job: what is trained, on what, and where its outcome is cached."""

    kind: str
    split: Split
    grid: dict[str, list]
    fixed: dict[str, Any]
    seed: int
    vectors: np.ndarray | None
    device: str
    k: int
    key: str = ""

    def train(self, params: dict[str, Any], gram: np.ndarray | None = None) -> Recommender:
        return train_one(self.kind, self.split, {**self.fixed, **params}, self.seed, self.vectors, self.device, gram,
                         k=self.k)


def _from_cache(job: _Job, path) -> TuneResult | None:
    """The cached outcome (the best configuration retrained), or None -- with a warning naming the
    file when the entry exists but cannot be read (it is then tuned again and overwritten)."""
    try:
        rec = json.loads(path.read_text())
        table = pd.DataFrame(rec["table"], columns=rec["table_columns"])  # JSON keys are sorted
        best_params = {name: rec["best_params"][name] for name in job.grid}
        budget = rec["budget"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(f"tuning cache entry {path} is unreadable ({type(e).__name__}: {e}); tuning again",
                      CacheWarning, stacklevel=3)
        return None
    return TuneResult(job.kind, job.train(best_params), best_params, table, job.grid, job.fixed, budget, True, job.key,
                      _at_edge(job.grid, best_params))


def _grid_search(job: _Job, progress: bool) -> tuple[pd.DataFrame, Recommender, dict[str, Any], float]:
    """Train every grid point; (table, best model, best point, seconds). Best = highest validation NDCG@k."""
    crit, k = criterion(job.k), job.k
    points = _grid_points(job.grid)
    gram = None
    if job.kind == "ease":
        from .reference import gram as _gram

        gram = _gram(job.split.train)
    rows, best_model, best_score, best_point = [], None, -np.inf, points[0]
    t_all = time.perf_counter()
    for p in tqdm(points, desc=f"tune {job.kind}", disable=not progress, leave=False):
        t0 = time.perf_counter()
        model = job.train(p, gram)
        info = getattr(model, "params", {}) or {}
        scores = info.get("valid") or validate(model, job.split, k)
        rows.append({**p, f"ndcg@{k}": float(scores[f"ndcg@{k}"]), f"recall@{k}": float(scores[f"recall@{k}"]),
                     "best_epoch": info.get("best_epoch"), "seconds": round(time.perf_counter() - t0, 3)})
        if scores[crit] > best_score:
            best_model, best_score, best_point = model, scores[crit], p
    if best_model is None:  # every grid point scored NaN (no validation users)
        best_model = job.train(best_point, gram)
    return pd.DataFrame(rows), best_model, best_point, time.perf_counter() - t_all


def tune(
    kind: str,
    split: Split,
    grid: dict[str, list] | None = None,
    seed: int = 0,
    cache: bool = True,
    progress: bool = True,
    vectors: np.ndarray | None = None,
    fixed: dict[str, Any] | None = None,
    device: str = "auto",
    k: int = DEFAULT_K,
) -> TuneResult:
    """Tune ``kind`` in {ials, bpr, ease, semantic_trained} on ``split``'s validation part.

    ``grid`` replaces the default grid (parameters it leaves out take their ``fixed`` /
    trainer defaults); ``fixed`` overrides ``DEFAULT_FIXED[kind]``. ``vectors`` (the frozen
    item text vectors) are required for ``semantic_trained``. ``k``: the criterion is
    validation NDCG@k (the run's configured K). A cache entry that cannot be read is reported
    (:class:`analysis.errors.CacheWarning`) and rebuilt.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r} to tune: use one of {list(KINDS)}")
    grid = {n: list(v) if isinstance(v, (list, tuple)) else v for n, v in (grid or DEFAULT_GRIDS[kind]).items()}
    fixed = {**DEFAULT_FIXED[kind], **(fixed or {})}
    _check(kind, grid, fixed)
    if kind == "semantic_trained":
        if vectors is None:
            raise ConfigError("tuning 'semantic_trained' needs the item vectors (vectors=...)")
        vectors = np.asarray(vectors, dtype=np.float32)
    grid = {n: [_json_safe(x) for x in v] for n, v in grid.items()}
    job = _Job(kind, split, grid, fixed, int(seed), vectors, device, int(k))
    job.key = digest(_VERSION, kind, *_split_key(split), grid, fixed, int(seed), int(k),
                     *([vectors] if vectors is not None else []))
    path = cache_dir("tuning") / f"{kind}-{job.key[:32]}.json"
    if cache and path.exists():
        hit = _from_cache(job, path)
        if hit is not None:
            return hit
    table, best_model, best_point, seconds = _grid_search(job, progress)
    budget = {"n_configs": len(table), "criterion": f"validation {criterion(k)}", "per_config": dict(fixed),
              "seconds": round(seconds, 2)}
    if cache:
        atomic_save_json(path, {"version": _VERSION, "kind": kind, "key": job.key, "grid": grid, "fixed": fixed,
                                "seed": int(seed), "best_params": best_point, "table": table.to_dict(orient="records"),
                                "table_columns": list(table.columns), "budget": budget})
    return TuneResult(kind, best_model, dict(best_point), table, grid, fixed, budget, False, job.key,
                      _at_edge(grid, best_point))
