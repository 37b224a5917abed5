"""Validation scoring and early stopping shared by every trainable recommender.

Every trained model (iALS, BPR, the trained semantic recommender) stops on the same
criterion, validation NDCG@K (K = the run's configured K, 20 by default) under the project protocol (full ranking, training items
masked; DIAGNOSTICS.md), computed with the engine's own :func:`analysis.ranking.rank`
and :func:`analysis.metrics.evaluate` so the tuning numbers are the numbers the
dashboard reports. Keeping this in one place is what makes the budgets comparable.

When many users have validation interactions, the criterion is computed on a seeded
sample of at most :data:`DEFAULT_VALID_SAMPLE` of them (:func:`valid_users`): a mean NDCG
over 10,000 users has a standard error of a few thousandths, far below the gaps between
grid points, while a full ranking of 1M users after every epoch would cost more than the
training. Below the cap every validation user is ranked, exactly as before.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
from tqdm.auto import tqdm

from ..metrics import evaluate
from ..ranking import rank
from ..errors import ConfigError
from ..split import Split, sample_users
from .base import Recommender

#: the default list length; a run passes its configured K (DIAGNOSTICS.md "Fair comparison")
DEFAULT_K = 20


def criterion(k: int = DEFAULT_K) -> str:
    """The tuning / early-stopping criterion at list length ``k``."""
    return f"ndcg@{int(k)}"


CRITERION = criterion()


#: tuning and early stopping rank at most this many validation users (a seeded sample above it)
DEFAULT_VALID_SAMPLE = 10_000


def valid_users(split: Split, max_users: int | None = DEFAULT_VALID_SAMPLE, seed: int = 0) -> np.ndarray:
    """Users with at least one validation interaction (the others are skipped anyway): all of them
    when there are at most ``max_users`` (0 / None: always all), else a seeded sample of that size."""
    return sample_users(np.flatnonzero(np.diff(split.valid.indptr) > 0), max_users, seed)


def validate(model: Recommender, split: Split, k: int = DEFAULT_K, users: np.ndarray | None = None) -> dict[str, float]:
    """Mean validation ``ndcg@k`` and ``recall@k`` of ``model`` (training items masked) over ``users``
    (default: :func:`valid_users`, every validation user up to :data:`DEFAULT_VALID_SAMPLE`)."""
    users = valid_users(split) if users is None else users
    if len(users) == 0:
        return {f"ndcg@{k}": float("nan"), f"recall@{k}": float("nan")}
    top = rank(model, users, split.seen_for("valid"), k)
    m = evaluate(top, split.target("valid"), users, ks=(k,))
    return {f"ndcg@{k}": float(np.nanmean(m[f"ndcg@{k}"])), f"recall@{k}": float(np.nanmean(m[f"recall@{k}"]))}


@dataclass
class EarlyStopping:
    """Track the best validation score; ``step`` returns True when training should stop.

    ``patience`` counts evaluations without improvement (strictly greater than the best).
    The caller keeps whatever it needs to restore the best epoch when ``improved`` is True.
    """

    patience: int
    #: list length of the criterion ``ndcg@k``
    k: int = DEFAULT_K
    best: float = -np.inf
    best_epoch: int = -1
    best_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    improved: bool = False
    _bad: int = 0

    def step(self, epoch: int, metrics: dict[str, float]) -> bool:
        score = metrics[criterion(self.k)]
        self.history.append({"epoch": epoch, **metrics})
        self.improved = bool(np.isfinite(score) and score > self.best)
        if self.improved:
            self.best, self.best_epoch, self.best_metrics, self._bad = score, epoch, dict(metrics), 0
        else:
            self._bad += 1
        return self._bad > self.patience

    def summary(self) -> dict[str, Any]:
        """What a trained model records in ``params``: best epoch, its metrics, the curve."""
        return {
            "best_epoch": self.best_epoch,
            "valid": dict(self.best_metrics),
            "history": list(self.history),
        }


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    d = (device or "auto").lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but torch sees no CUDA device")
    if not (d == "cpu" or d.startswith("cuda")):
        raise ConfigError(f"unknown device {device!r}: use auto, cpu or cuda")
    return d


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch CPU threads (restored after); ``None``/0 leaves it alone.

    The models here run many small ops; with other processes on a 2-core machine, torch's
    spinning worker threads made BPR ~6x slower at 2 threads than at 1 (measured).
    """
    import torch

    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_with_early_stopping(
    run_epoch: Callable[[], None],
    snapshot: Callable[[], tuple[np.ndarray, np.ndarray]],
    model: Callable[[np.ndarray, np.ndarray], Recommender],
    split: Split,
    epochs: int,
    eval_every: int,
    patience: int,
    k: int = DEFAULT_K,
    desc: str = "train",
    progress: bool = False,
    stop_users: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, EarlyStopping]:
    """The epoch loop every gradient-trained view shares: ``run_epoch()`` once per epoch; every
    ``eval_every`` epochs (and after the last) the ``snapshot()`` vectors are scored on validation
    NDCG@k of ``stop_users`` (default :func:`valid_users`) as ``model(U, V)``; training stops after
    ``patience`` evaluations without improvement.
    Returns the best snapshot's (U, V) (the last one when none improved) and the stopping record."""
    es = EarlyStopping(patience, k=k)
    stop_users = valid_users(split) if stop_users is None else stop_users
    best = None
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        run_epoch()
        if epoch % eval_every and epoch != epochs:
            continue
        U, V = snapshot()
        stop = es.step(epoch, validate(model(U, V), split, k, stop_users))
        bar.set_postfix(ndcg=f"{es.best:.4f}")
        if es.improved:
            best = (U, V)
        if stop:
            break
    bar.close()
    U, V = best if best is not None else snapshot()
    return U, V, es
