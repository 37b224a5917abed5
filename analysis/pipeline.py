"""From a :class:`RunConfig` to a saved run: load -> the stages of :mod:`analysis.stages` -> write.

:func:`run` loads the dataset, checks the cache, then runs :data:`analysis.stages.STAGES` in order
(each timed, with its peak resident memory, into the manifest; each with a progress line) and writes the run atomically with
:mod:`analysis.runstore`. This module also gives the dataset a config names (:func:`load_dataset`).
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


from . import runstore
from .backend import get_backend, ranking_device
from .config import RunConfig
from .executor import get_executor
from .data import Dataset, preprocess, validate

Log = Callable[[str], None]


def _rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class _Timer:
    """Times each stage and samples its peak resident memory (a daemon thread reads RSS every
    ``interval`` seconds; the stage's peak is the largest sample, including its first and last)."""

    def __init__(self, log: Log, interval: float = 0.1):
        self.timings: dict[str, float] = {}
        self.memory: dict[str, float] = {}  # stage -> peak RSS in GiB
        self.log = log
        self._peak, self._stop = 0, threading.Event()
        threading.Thread(target=self._sample, args=(interval,), daemon=True).start()

    def _sample(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._peak = max(self._peak, _rss_bytes())

    def close(self) -> None:
        self._stop.set()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.log(f"[{name}] ...")
        t = time.perf_counter()
        self._peak = _rss_bytes()
        yield
        self.timings[name] = round(time.perf_counter() - t, 3)
        self.memory[name] = round(max(self._peak, _rss_bytes()) / 2**30, 3)
        self.log(f"[{name}] done in {self.timings[name]:.1f}s (peak memory {self.memory[name]:.2f} GiB)")


def load_dataset(cfg: RunConfig, log: Log = print, progress: bool = False) -> Dataset:
    """The dataset a config names, preprocessed (threshold, k-core) and validated (``progress``: a bar
    over a large synthetic catalogue's sampling)."""
    if cfg.dataset == "synthetic":
        from .synthetic import generate

        ds = generate(seed=cfg.seed, progress=progress, **cfg.synthetic)
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


def run(cfg: RunConfig, out: str | Path | None = None, force: bool = False, log: Log = print,
        progress: bool = True, executor=None) -> runstore.Run:
    """Compute (or reuse) the run for ``cfg`` and return it opened.

    ``out`` is checked before anything is computed (:func:`analysis.runstore.prepare_out`). A
    complete, verified run at ``out`` with the same config hash, dataset checksum and schema is a
    cache hit; ``force`` recomputes. Then every stage of :data:`analysis.stages.STAGES` runs in
    order, timed; nothing is written unless every stage succeeded. The heavy stages' jobs run on
    ``executor`` (an :mod:`analysis.executor` object, kept open) or on one made from ``cfg.executor``
    (closed at the end).
    """
    from .stages import STAGES, State

    out = runstore.prepare_out(Path(out or Path("runs") / cfg.dataset), log=log)  # before any computing
    timer = _Timer(log)
    state = None
    try:
        with timer.stage("load"):
            ds = load_dataset(cfg, log, progress)
            checksum = ds.checksum()
        hit = None if force else runstore.cached_run(out, cfg.key(), checksum, runstore.SCHEMA_VERSION, log=log)
        if hit is not None:  # same config, dataset and schema, every file verified
            return hit
        state = State(cfg=cfg, ds=ds, be=get_backend(cfg.backend), device=ranking_device(cfg.device), log=log,
                      progress=progress, ex=executor or get_executor(cfg.executor, cfg.ray_address))
        state.results["checksum"] = checksum
        for name, stage in STAGES:
            with timer.stage(name):
                stage(state)
        manifest = state.results["manifest"]
        with timer.stage("write"):
            manifest["timings"], manifest["peak_memory_gib"] = timer.timings, timer.memory
            runstore.write_run(out, state.tables, state.results["vectors"], manifest)
    finally:
        timer.close()
        if executor is None and state is not None:
            state.ex.close()  # an executor this run made (a local Ray cluster it started is shut down)
    log(f"run written to {out}")
    return runstore.open_run(out)
