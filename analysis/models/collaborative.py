"""The collaborative view: item vectors learned from interactions only (iALS, BPR-MF).

Both trainers stop early on validation NDCG@20 (:mod:`.validation`), keep the best
evaluation's factors, and return an :class:`EmbeddingRecommender` whose ``scorable``
mask excludes the split's cold items: an item with no training interaction has no
learned vector (iALS leaves it at zero, BPR at its random initialisation), so it must
rank nowhere rather than let an arbitrary vector pose as a prediction (DIAGNOSTICS.md).

iALS uses the ``implicit`` library (CPU solver, conjugate gradient). Its ``fit`` only
initialises factors when they are ``None`` (implicit/cpu/als.py, 0.7.x), so calling it
again with ``iterations = eval_every`` continues from the current factors; we rely on
that for early stopping. Confidence is Hu et al.'s ``c = 1 + alpha * x``: ``implicit``
uses the matrix values *as* the confidence (``A += (c - 1) y y^T``, ``b += c y``), so we
pass ``1 + alpha`` for every training pair and leave the library's own ``alpha`` at 1.

BPR-MF is a small torch model (GPU when available): user / item factors plus an item
bias, uniform negatives re-drawn when they hit a training positive, Adam, L2 on the
factors of each mini-batch.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..split import Split
from .base import EmbeddingRecommender
from .validation import EarlyStopping, resolve_device, torch_threads, train_with_early_stopping, valid_users, validate


def _warm_scorable(split: Split) -> np.ndarray:
    return ~np.asarray(split.cold_items, dtype=bool)


def _check_positive(**kw) -> None:
    for k, v in kw.items():
        if not v > 0:
            raise ConfigError(f"{k} must be > 0, got {v}")


def train_ials(
    split: Split,
    factors: int = 64,
    regularization: float = 10.0,
    alpha: float = 5.0,
    iterations: int = 30,
    patience: int = 3,
    eval_every: int = 1,
    seed: int = 0,
    num_threads: int = 2,
    progress: bool = False,
    name: str = "ials",
    k: int = 20,
    stop_users: np.ndarray | None = None,
) -> EmbeddingRecommender:
    """Implicit ALS (Hu, Koren & Volinsky 2008) with early stopping on validation NDCG@k.

    ``iterations`` is the maximum number of ALS sweeps; validation runs every
    ``eval_every`` sweeps (on ``stop_users``, default :func:`.validation.valid_users`) and
    training stops after ``patience`` evaluations without improvement. ``params`` records the
    hyper-parameters, the best sweep, the sweeps run and the curve.
    """
    _check_positive(factors=factors, iterations=iterations, eval_every=eval_every)
    if regularization < 0 or alpha < 0:
        raise ConfigError(f"regularization and alpha must be >= 0, got {regularization}, {alpha}")
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    conf = sp.csr_matrix(split.train, dtype=np.float32, copy=True)
    conf.data[:] = 1.0 + alpha * conf.data
    with threadpool_limits(1, user_api="blas"):  # implicit warns (and oversubscribes) otherwise
        als = AlternatingLeastSquares(
            factors=int(factors),
            regularization=float(regularization),
            alpha=1.0,
            iterations=int(eval_every),
            num_threads=int(num_threads),
            random_state=int(seed),
        )
    scorable = _warm_scorable(split)
    stop_users = valid_users(split) if stop_users is None else stop_users
    es = EarlyStopping(patience, k=k)
    best = None
    done = 0
    bar = tqdm(total=iterations, desc=f"iALS f={factors}", disable=not progress, leave=False)
    while done < iterations:
        als.iterations = int(min(eval_every, iterations - done))
        with threadpool_limits(1, user_api="blas"):
            als.fit(conf, show_progress=False)
        done += als.iterations
        bar.update(als.iterations)
        rec = EmbeddingRecommender(name, als.user_factors, als.item_factors, scorable)
        stop = es.step(done, validate(rec, split, k, stop_users))
        bar.set_postfix(ndcg=f"{es.best:.4f}")
        if es.improved:
            best = (als.user_factors.copy(), als.item_factors.copy())
        if stop:
            break
    bar.close()
    U, V = best if best is not None else (als.user_factors, als.item_factors)
    params = {
        "model": "ials",
        "factors": int(factors),
        "regularization": float(regularization),
        "alpha": float(alpha),
        "max_iterations": int(iterations),
        "eval_every": int(eval_every),
        "patience": int(patience),
        "seed": int(seed),
        "iterations_run": int(done),
        "valid_users": int(len(stop_users)),
        **es.summary(),
    }
    return EmbeddingRecommender(name, np.ascontiguousarray(U, np.float32), np.ascontiguousarray(V, np.float32), scorable, params)


#: below this many user x item cells, positives are looked up in a dense boolean matrix
_DENSE_LOOKUP_CELLS = 50_000_000


class _NegativeSampler:
    """Uniform negatives; draws that hit a training positive are re-drawn (up to ``tries`` times)."""

    def __init__(self, train: sp.csr_matrix, tries: int = 5):
        self.n_items = train.shape[1]
        self.tries = tries
        self.dense = None
        if train.shape[0] * train.shape[1] <= _DENSE_LOOKUP_CELLS:
            self.dense = train.toarray().astype(bool).ravel()
        else:
            rows = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
            self.keys = np.sort(rows * self.n_items + train.indices)

    def _is_pos(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        if self.dense is not None:
            return self.dense[keys]
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.keys[pos] == keys

    def __call__(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        users = users.astype(np.int64)
        neg = rng.integers(0, self.n_items, len(users))
        for _ in range(self.tries):
            hit = np.flatnonzero(self._is_pos(users, neg))
            if not len(hit):
                break
            neg[hit] = rng.integers(0, self.n_items, len(hit))
        return neg


def train_bpr(
    split: Split,
    dim: int = 64,
    lr: float = 1e-2,
    reg: float = 1e-2,
    epochs: int = 60,
    patience: int = 3,
    seed: int = 0,
    device: str = "auto",
    batch_size: int | None = None,
    eval_every: int = 2,
    num_threads: int = 1,
    progress: bool = False,
    name: str = "bpr",
    k: int = 20,
    stop_users: np.ndarray | None = None,
) -> EmbeddingRecommender:
    """BPR-MF (Rendle et al. 2009) in torch with early stopping on validation NDCG@k.

    One epoch = one pass over the training pairs, each with one fresh uniform negative.
    ``batch_size=None`` sizes batches for ~20 steps per epoch (256..8192), so an epoch
    budget means the same number of gradient steps in a dense and in a sparse regime.
    Score = ``<p_u, q_i> + b_i``; the returned vectors carry the bias as an extra column
    (user side 1) so the result is a plain inner-product model.
    """
    _check_positive(dim=dim, lr=lr, epochs=epochs, eval_every=eval_every)
    if batch_size is None:
        batch_size = int(np.clip(-(-split.train.nnz // 20), 256, 8192))
    _check_positive(batch_size=batch_size)
    if reg < 0:
        raise ConfigError(f"reg must be >= 0, got {reg}")
    import torch

    dev = torch.device(resolve_device(device))
    train = sp.csr_matrix(split.train)
    n_u, n_i = train.shape
    u_all = np.repeat(np.arange(n_u, dtype=np.int64), np.diff(train.indptr))
    i_all = train.indices.astype(np.int64)
    if len(u_all) == 0:
        raise ConfigError("BPR: the training matrix has no interactions")
    sample = _NegativeSampler(train)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    P = torch.nn.Parameter((torch.randn(n_u, dim, generator=gen) * 0.1).to(dev))
    Q = torch.nn.Parameter((torch.randn(n_i, dim, generator=gen) * 0.1).to(dev))
    b = torch.nn.Parameter(torch.zeros(n_i, device=dev))
    opt = torch.optim.Adam([P, Q, b], lr=lr)
    scorable = _warm_scorable(split)

    def snapshot() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            U = torch.cat([P, torch.ones(n_u, 1, device=dev)], 1).cpu().numpy()
            V = torch.cat([Q, b[:, None]], 1).cpu().numpy()
        return np.ascontiguousarray(U, np.float32), np.ascontiguousarray(V, np.float32)

    def run_epoch() -> None:
        order = rng.permutation(len(u_all))
        neg_all = sample(rng, u_all[order])
        for s in range(0, len(order), batch_size):
            o = order[s : s + batch_size]
            u, i = torch.from_numpy(u_all[o]).to(dev), torch.from_numpy(i_all[o]).to(dev)
            j = torch.from_numpy(neg_all[s : s + batch_size]).to(dev)
            pu, qi, qj = P[u], Q[i], Q[j]
            x = (pu * (qi - qj)).sum(1) + b[i] - b[j]
            loss = -torch.nn.functional.logsigmoid(x).mean() + reg * (
                pu.pow(2).sum(1) + qi.pow(2).sum(1) + qj.pow(2).sum(1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    with torch_threads(num_threads if dev.type == "cpu" else None):
        U, V, es = train_with_early_stopping(run_epoch, snapshot, lambda U, V: EmbeddingRecommender(name, U, V, scorable),
                                             split, epochs, eval_every, patience, k, f"BPR d={dim}", progress,
                                             stop_users)
    params = {"model": "bpr", "dim": int(dim), "lr": float(lr), "reg": float(reg), "max_epochs": int(epochs),
              "eval_every": int(eval_every), "patience": int(patience), "batch_size": int(batch_size),
              "seed": int(seed), "device": str(dev), "epochs_run": int(es.history[-1]["epoch"]) if es.history else 0,
              **es.summary()}
    return EmbeddingRecommender(name, U, V, scorable, params)
