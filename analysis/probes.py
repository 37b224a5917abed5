"""Alignment probes: can a simple map recover the collaborative geometry from the semantic one?

DIAGNOSTICS.md ("Alignment probes"). Maps ``f: X -> Y`` from semantic item vectors ``X (n, d1)``
to collaborative item vectors ``Y (n, d2)`` are fitted on some items and judged on held-out
items, with increasing capacity. If even a flexible map fails on held-out items, the
collaborative view holds information the text does not (private factors): complementarity,
not alignment, is what fusion should exploit.

Items. Only *warm* items take part: rows of ``Y`` that are finite and non-zero (the caller
marks cold items, which have no collaborative vector, with NaN rows; a zero row is never
allowed to pose as a vector). ``X`` must be finite for every item.

Capacity ladder (each probe maps centred X to centred Y, plus the training mean of Y)
- ``ridge``: ``W = argmin ||Xc W − Yc||² + λ||W||²`` via one SVD of the training X; λ from
  ``lambdas`` × mean eigenvalue of ``XcᵀXc`` (scale-free grid), chosen by validation R².
- ``reduced_rank``: reduced-rank ridge regression (Mukherjee & Zhu 2011): the ridge fit at
  the chosen λ, projected onto the top-r right singular vectors V_r of its fitted training
  values, ``W_r = W V_r V_rᵀ``; r = 1, 2, 4, ... < d2, then ``full`` (which *is* the ridge map).
- ``mlp``: one hidden layer (ReLU) of width w (16, 64, 256), inputs and outputs
  standardised (training mean, one global scale each), AdamW on the MSE (full batch up to
  MLP_FULL_BATCH_MAX fit items, seeded mini-batches of MLP_BATCH above; the step budget is the
  same), early stopping on the validation items' MSE (best epoch restored). torch, GPU when available,
  1 CPU thread otherwise, seeded (the global torch RNG is left untouched).

Regimes (item splits among warm items, all seeded)
- ``in_distribution``: random 70 / 10 / 20 % fit / validation / evaluation items.
- ``shift_popularity``: fit + validate on the most popular 50 % by *training* popularity
  (ties broken at random), evaluate on the other 50 % (the tail).
- ``shift_time``: when a per-item ``order`` (release order, larger = newer) is given: fit +
  validate on the older 50 %, evaluate on the newer 50 %. Skipped when ``order`` is None.
In the shift regimes the fit part is split 7 : 1 into fit / validation items at random.

Metrics, per regime and capacity, on the evaluated (held-out) items E
- ``r2``: 1 − Σ_E ||Y_i − f(X_i)||² / Σ_E ||Y_i − ȳ_fit||², pooled over all output dims,
  relative to the *fit* items' mean (so predicting that mean scores 0, and a map can score < 0
  under shift).
- ``mean_cos``: mean over E of cos(f(X_i), Y_i).
- ``overlap``: mean over i ∈ E of overlap@k, leave one out against the TRUE vectors: N_k(i) =
  the k nearest (cosine) true vectors Y_j of the other warm items, versus the k nearest true
  vectors Y_j (j ≠ i, j warm) to the mapped vector f(X_i). Mapped vectors never meet each other,
  so a map that shrinks every output toward the same mean cannot make evaluated items each
  other's neighbours (under the old "all evaluated items replaced together" definition 97 % of a
  mapped item's neighbours on ml-100k were other mapped items). Chance level k / (n_warm − 1)
  is in the summary.
- ``recall`` / ``ndcg`` @K, ranking **within the evaluated items only**: candidates = E, users =
  those with at least one test interaction on an item of E, targets = those interactions, the
  user's known history ``split.seen_for("test")`` (restricted to E) masked; scores = the
  collaborative user vectors U times the item vectors of E. Mapped, true and random vectors are
  judged in exactly this way and never mixed in one list: shrinkage (ridge, low rank) lowers
  the mapped norms, and next to true vectors of other items the inner product would bury the
  mapped items whatever their direction (on ml-100k: Recall@20 0.006 against a ceiling of
  0.341, where ranking within E gives 0.325 against 0.672). Scaling all of E's vectors by the
  same factor leaves every list unchanged. ``ceiling_recall`` / ``ceiling_ndcg``: E's true
  vectors; ``floor_recall`` / ``floor_ndcg``: seeded standard Gaussian vectors of E (same shape;
  the mean over ``N_FLOOR`` draws), i.e. a random ranking of E. ``n_eval_users``: the users.
- ``readable`` / ``reason``: a regime's Recall is *unreadable* (``readable`` False and a
  ``reason`` string; the Alignment page prints the reason instead of the curve) when fewer
  than MIN_EVAL_USERS = 20 users are evaluated, when the ceiling is below MIN_CEILING = 0.01
  (true vectors cannot put E's items into a top-K: nothing to recover), or when the ceiling
  exceeds the floor by less than max(0.01, 4 · SE), SE the standard error over users of the
  per-user difference ceiling_u − floor_u (true vectors rank E no better than chance). A gap
  rule rather than a ratio (ceiling ≥ 2 × floor): with a short candidate list the floor
  K / |E| is itself large, and a ceiling of 0.6 over a floor of 0.3 is perfectly readable.
- ``r2_shared`` / ``r2_private``: the paper's claim measured directly. Q (d2 × m, orthonormal)
  spans the shared subspace of the collaborative space, estimated on the regime's FIT items
  only (never on E; :func:`shared_basis`): CCA between X and Y on the fit items, m = the
  number of leading held-out canonical correlations above their permutation null (CCA fitted
  on a seeded 2/3 of the fit items, scored on the other 1/3, 200 shuffles), at least 1, and Q
  = the QR basis of the collaborative canonical loadings Y_cᵀ b_j (j ≤ m) of the CCA refitted
  on all fit items. With Π = Q Qᵀ: r2_shared = 1 − Σ_E ||Π(Y_i − f(X_i))||² / Σ_E ||Π(Y_i −
  ȳ_fit)||², r2_private the same with I − Π. Π is orthogonal, so ``r2`` is their average
  weighted by the parts' shares of Σ_E ||Y_i − ȳ_fit||² (``shared_var_eval`` = the shared
  share). A low-capacity map that captures only the shared part scores r2_shared ≫ 0 and
  r2_private ≈ 0. ``shared_dim`` = m (0 with NaN R² parts when the CCA is undefined there).
- ``valid_r2``: R² on the validation items (what λ, rank, width and the best probe are
  chosen by; test values are never used for a choice).

Per item. The best probe (highest in-distribution ``valid_r2``; ties go to the simpler probe)
gives ``residual_heldout`` = ||Y_i − f(X_i)||² / ||Y_i − ȳ_fit||² for the in-distribution
evaluated items, and, to cover every warm item, ``residual`` from k-fold cross-fitting with the
same probe class and capacity (each fold's map fitted on the other folds, hyper-parameters
re-chosen on a 1/8 inner validation share). ``mapped`` holds those cross-fitted vectors (NaN
for non-warm items); ``mapped_all`` additionally maps every non-warm (cold) item with the probe
fitted on all warm items (honest: cold items are never fitted), for cold-start baselines.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm
import scipy.sparse as sp

from .backend import Backend, get_backend
from .errors import ConfigError, VectorError
from .metrics import evaluate
from .models.base import EmbeddingRecommender
from .neighbors import CosineQuerySearch
from .ranking import rank
from .split import Split

PROBES = ("ridge", "reduced_rank", "mlp")
REGIMES = ("in_distribution", "shift_popularity", "shift_time")
#: ridge λ grid, in units of the mean eigenvalue of XcᵀXc (so the grid is scale-free)
DEFAULT_LAMBDAS = tuple(10.0 ** np.arange(-4, 3))
DEFAULT_WIDTHS = (16, 64, 256)
CURVE_COLUMNS = ["regime", "probe", "capacity", "capacity_num", "r2", "mean_cos", "overlap", "recall", "ndcg",
                 "ceiling_recall", "ceiling_ndcg", "valid_r2", "lam", "n_train", "n_valid", "n_eval",
                 "floor_recall", "floor_ndcg", "n_eval_users", "readable", "reason", "r2_shared", "r2_private",
                 "shared_dim"]
#: random-vector draws averaged into the floor
N_FLOOR = 10
#: the MLP probes train full batch up to this many fit items, on mini-batches of MLP_BATCH above it
#: (at 70,000 fit items full batch took 459 one-step epochs, 98 s for one width: measured at tier L)
MLP_FULL_BATCH_MAX = 16_384
MLP_BATCH = 4_096
#: readability of a regime's Recall@K (module docstring): users needed, smallest ceiling / gap, gap in SEs
MIN_EVAL_USERS = 20
MIN_CEILING = 0.01
READABLE_SE = 4.0
#: held-out CCA that picks the shared subspace on the fit items
SHARED_PCA_DIMS = 32
SHARED_N_PERM = 200
RECALL_PROTOCOL = ("candidates = the evaluated items only; users with a test interaction on one of them; "
                   "train + valid history masked; ceiling = true vectors, floor = random Gaussian vectors")
READABLE_RULE = (f"readable when at least {MIN_EVAL_USERS} users are evaluated, the ceiling Recall is at least "
                 f"{MIN_CEILING} and the ceiling exceeds the random floor by at least max({MIN_CEILING}, "
                 f"{READABLE_SE:g} standard errors of the per-user difference)")
SHARED_SUBSPACE = ("span of the collaborative canonical loadings of the CCA fitted on the fit items; dimension = "
                   "leading held-out canonical correlations above their permutation null (2/3 : 1/3 of the fit "
                   f"items, {SHARED_N_PERM} shuffles), at least 1")


# ------------------------------------------------------------------------ inputs
def _check_inputs(X, Y, U, split: Split, order) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    U = np.asarray(U, dtype=np.float32)
    if X.ndim != 2 or Y.ndim != 2:
        raise VectorError(f"probe inputs must be 2-D item matrices, got X {X.shape} and Y {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise VectorError(f"semantic vectors have {X.shape[0]} rows but collaborative vectors {Y.shape[0]}")
    if X.shape[0] != split.n_items:
        raise VectorError(f"item vectors have {X.shape[0]} rows but the split has {split.n_items} items")
    bad = ~np.isfinite(X).all(1)
    if bad.any():
        raise VectorError(f"semantic item row {int(np.argmax(bad))} has NaN/inf values ({int(bad.sum())} such rows)")
    if U.ndim != 2 or U.shape != (split.n_users, Y.shape[1]):
        raise VectorError(f"collaborative user vectors must have shape ({split.n_users}, {Y.shape[1]}), got {U.shape}")
    badu = ~np.isfinite(U).all(1)
    if badu.any():
        raise VectorError(f"collaborative user row {int(np.argmax(badu))} has NaN/inf values")
    if order is not None:
        order = np.asarray(order, dtype=np.float64)
        if order.shape != (X.shape[0],):
            raise ConfigError(f"item order must have one entry per item ({X.shape[0]}), got shape {order.shape}")
        if not np.isfinite(order).all():
            raise ConfigError(f"item order has NaN/inf at item {int(np.argmax(~np.isfinite(order)))}")
    return X, Y, U, order


def warm_mask(Y: np.ndarray) -> np.ndarray:
    """Items with a usable collaborative vector: finite and non-zero rows of ``Y``."""
    Y = np.asarray(Y)
    fin = np.isfinite(Y).all(1)
    norm = np.linalg.norm(np.where(fin[:, None], Y, 0.0), axis=1)
    return fin & (norm > 0)


# ------------------------------------------------------------------------ probes
@dataclass
class LinearMap:
    """f(x) = (x − x_mean) W + y_mean."""

    W: np.ndarray
    x_mean: np.ndarray
    y_mean: np.ndarray
    lam: float = float("nan")

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, np.float64) - self.x_mean) @ self.W + self.y_mean


def _r2(Y: np.ndarray, P: np.ndarray, y_mean: np.ndarray) -> float:
    den = float(((Y - y_mean) ** 2).sum())
    return 1.0 - float(((Y - P) ** 2).sum()) / den if den > 0 else float("nan")


class _RidgePath:
    """Ridge fits for a grid of λ from one symmetric eigendecomposition of the centred training X.

    n >= d: XcᵀXc = Q diag(e) Qᵀ, W(λ) = Q diag(1 / (e + λ)) Qᵀ XcᵀYc;
    n <  d: XcXcᵀ = P diag(e) Pᵀ, W(λ) = Xcᵀ P diag(1 / (e + λ)) Pᵀ Yc (the same ridge solution).
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray):
        self.x_mean, self.y_mean = X.mean(0), Y.mean(0)
        Xc = X - self.x_mean
        Yc = Y - self.y_mean
        self.primal = Xc.shape[0] >= Xc.shape[1]
        if self.primal:
            self.e, self.Q = np.linalg.eigh(Xc.T @ Xc)
            self.Z = self.Q.T @ (Xc.T @ Yc)
        else:
            self.e, self.Pm = np.linalg.eigh(Xc @ Xc.T)
            self.Z = self.Pm.T @ Yc
            self.Xc = Xc
        self.e = np.maximum(self.e, 0.0)
        self.scale = float((Xc**2).sum()) / X.shape[1]  # mean eigenvalue of XcᵀXc (over d1 directions)

    def fit(self, lam_rel: float) -> LinearMap:
        lam = lam_rel * max(self.scale, 1e-300)
        inv = 1.0 / (self.e + lam)
        W = self.Q @ (inv[:, None] * self.Z) if self.primal else self.Xc.T @ (self.Pm @ (inv[:, None] * self.Z))
        return LinearMap(W, self.x_mean, self.y_mean, lam)


def fit_ridge(X_fit, Y_fit, X_val, Y_val, lambdas: Iterable[float] = DEFAULT_LAMBDAS) -> tuple[LinearMap, float]:
    """Ridge map with λ (relative to the mean eigenvalue of XcᵀXc) chosen by validation R².

    Ties (within 1e-12) go to the larger λ. Returns (map, relative λ).
    """
    path = _RidgePath(X_fit, Y_fit)
    best = None
    for lr in sorted(lambdas, reverse=True):
        m = path.fit(float(lr))
        v = _r2(Y_val, m.predict(X_val), m.y_mean)
        if best is None or v > best[0] + 1e-12:
            best = (v, m, float(lr))
    return best[1], best[2]


def reduced_rank(m: LinearMap, X_fit: np.ndarray, rank: int) -> LinearMap:
    """Reduced-rank ridge: project ``m`` onto the top-``rank`` right singular vectors of its fitted values."""
    F = (np.asarray(X_fit, np.float64) - m.x_mean) @ m.W
    Vt = np.linalg.svd(F, full_matrices=False)[2]
    Vr = Vt[: int(rank)].T
    return LinearMap(m.W @ Vr @ Vr.T, m.x_mean, m.y_mean, m.lam)


@dataclass
class MLPMap:
    """One-hidden-layer ReLU map on standardised inputs / outputs (see module docstring)."""

    net: Any
    x_mean: np.ndarray
    x_scale: float
    y_mean: np.ndarray
    y_scale: float
    device: str
    best_epoch: int = 0

    def predict(self, X: np.ndarray) -> np.ndarray:
        import torch

        Xs = ((np.asarray(X, np.float64) - self.x_mean) / self.x_scale).astype(np.float32)
        with torch.no_grad():
            out = self.net(torch.from_numpy(Xs).to(self.device)).cpu().numpy().astype(np.float64)
        return out * self.y_scale + self.y_mean


def _batches(n: int, batch_size: int | None) -> tuple[int, int]:
    """(rows per optimiser step, steps per epoch): every fit item up to :data:`MLP_FULL_BATCH_MAX`, else
    batches of at most :data:`MLP_BATCH` (or ``batch_size``), all of one size give or take one row."""
    if n < 1:
        raise ConfigError("the MLP probe needs at least one fit item")
    if batch_size is not None and int(batch_size) < 1:
        raise ConfigError(f"MLP batch_size must be >= 1, got {batch_size}")
    b = (n if n <= MLP_FULL_BATCH_MAX else MLP_BATCH) if batch_size is None else min(int(batch_size), n)
    steps = -(-n // b)
    return -(-n // steps), steps


def fit_mlp(
    X_fit, Y_fit, X_val, Y_val, width: int, seed: int = 0, device: str = "cpu",
    lr: float = 1e-3, weight_decay: float = 0.1, max_epochs: int = 1000, patience: int = 40,
    batch_size: int | None = None,
) -> MLPMap:
    """One-hidden-layer MLP (ReLU, width ``width``), AdamW, early stopping on validation MSE.

    Full batch up to :data:`MLP_FULL_BATCH_MAX` fit items (one step per epoch); above it seeded
    shuffled mini-batches of at most :data:`MLP_BATCH` rows (``batch_size`` overrides), s = ⌈n / batch⌉
    equal-sized steps per epoch. ``max_epochs`` and ``patience`` count optimiser steps either way: at
    most ⌈max_epochs / s⌉ epochs, stopping after ⌈patience / s⌉ epochs without a better validation MSE
    (checked after every epoch); the best epoch's weights are kept and ``best_epoch`` counts epochs
    of s steps. The batch order comes from its own seeded CPU generator (the same on every device).
    """
    import torch

    from .models.validation import torch_threads

    if int(width) < 1:
        raise ConfigError(f"MLP width must be >= 1, got {width}")
    x_mean, y_mean = X_fit.mean(0), Y_fit.mean(0)
    x_scale = float(np.sqrt(((X_fit - x_mean) ** 2).mean())) or 1.0
    y_scale = float(np.sqrt(((Y_fit - y_mean) ** 2).mean())) or 1.0

    def tens(A, mean, scale):
        return torch.from_numpy(((A - mean) / scale).astype(np.float32)).to(device)

    Xf, Yf, Xv, Yv = tens(X_fit, x_mean, x_scale), tens(Y_fit, y_mean, y_scale), tens(X_val, x_mean, x_scale), tens(Y_val, y_mean, y_scale)
    n = len(Xf)
    b, steps = _batches(n, batch_size)
    epochs, wait = -(-int(max_epochs) // steps), -(-int(patience) // steps)
    with torch_threads(1 if device == "cpu" else None), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        shuffle = torch.Generator().manual_seed(int(seed))
        net = torch.nn.Sequential(
            torch.nn.Linear(X_fit.shape[1], int(width)), torch.nn.ReLU(), torch.nn.Linear(int(width), Y_fit.shape[1])
        ).to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        best, best_state, best_epoch, bad = np.inf, None, 0, 0
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n, generator=shuffle).to(device) if steps > 1 else None
            for j in range(steps):
                rows = slice(None) if order is None else order[j * b : (j + 1) * b]
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.mse_loss(net(Xf[rows]), Yf[rows]).backward()
                opt.step()
            with torch.no_grad():
                v = float(torch.nn.functional.mse_loss(net(Xv), Yv))
            if v < best - 1e-7:
                best, best_epoch, bad = v, epoch, 0
                best_state = [p.detach().clone() for p in net.parameters()]
            else:
                bad += 1
                if bad > wait:
                    break
        if best_state is not None:
            with torch.no_grad():
                for p, b_ in zip(net.parameters(), best_state):
                    p.copy_(b_)
        net.eval()
    return MLPMap(net, x_mean, x_scale, y_mean, y_scale, device, best_epoch)


# ------------------------------------------------------------------- evaluation
def _unit(A: np.ndarray) -> np.ndarray:
    A = np.asarray(A, np.float32)
    return A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)


class RowNeighbours:
    """Cosine top-``k`` neighbours among the items ``cand`` (sorted) of ``Z``, indexed once for many searches.

    Called with items ``rows`` (every one must be in ``cand``; each is left out of its own list by
    index), it returns their neighbours (item indices, best first). The query vectors are ``Z[rows]``
    unless ``queries`` (one row per item of ``rows``) is given: then the neighbours of ``queries[j]``
    are searched among ``Z[cand]`` with item ``rows[j]`` left out (leave one out). Exact, ties to the
    lower index (:class:`analysis.neighbors.CosineQuerySearch`: faiss candidates re-ranked exactly).
    """

    def __init__(self, Z: np.ndarray, cand: np.ndarray, be: Backend, block: int = 1024):
        self.Z, self.cand = Z, np.asarray(cand)
        self.search = CosineQuerySearch(Z[self.cand], be, block)

    def __call__(self, rows: np.ndarray, k: int, queries: np.ndarray | None = None) -> np.ndarray:
        cand = self.cand
        pos = np.searchsorted(cand, rows)
        if len(rows) and ((pos >= len(cand)).any() or not np.array_equal(cand[np.minimum(pos, len(cand) - 1)], rows)):
            raise ConfigError("RowNeighbours: every query item must be a candidate")
        Q = self.Z[rows] if queries is None else np.asarray(queries)
        if Q.shape != (len(rows), self.Z.shape[1]):
            raise ConfigError(f"RowNeighbours: queries must have shape {(len(rows), self.Z.shape[1])}, got {Q.shape}")
        return cand[self.search(Q, pos, k)]


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = a.shape[1]
    cat = np.sort(np.concatenate([a, b], 1), 1)
    return (cat[:, 1:] == cat[:, :-1]).sum(1) / k


def readability(n_users: int, ceiling: float, floor: float, se_gap: float) -> tuple[bool, str]:
    """Whether a regime's Recall@K can be read, and why not (see the module docstring).

    Readable ⇔ n_users ≥ MIN_EVAL_USERS, ceiling ≥ MIN_CEILING and
    ceiling − floor ≥ max(MIN_CEILING, READABLE_SE · se_gap).
    """
    if n_users < MIN_EVAL_USERS:
        return False, (f"only {n_users} users have a test interaction with the evaluated items "
                       f"(at least {MIN_EVAL_USERS} are needed)")
    if not ceiling >= MIN_CEILING:
        return False, (f"even the true collaborative vectors reach only Recall = {ceiling:.4f} on the evaluated "
                       f"items (below {MIN_CEILING}): there is nothing to recover")
    need = max(MIN_CEILING, READABLE_SE * se_gap)
    if not ceiling - floor >= need:
        return False, (f"the true collaborative vectors (Recall = {ceiling:.4f}) rank the evaluated items hardly "
                       f"better than random vectors ({floor:.4f}); the gap is below {need:.4f}")
    return True, ""


class _Evaluator:
    """Metrics of mapped vectors ``P`` (rows = evaluated items ``E``, in order) for one regime.

    Recall / NDCG @K rank the evaluated items only (see the module docstring): the ceiling
    (true vectors of E) and the floor (seeded Gaussian vectors of E, mean over ``n_floor``
    draws) are computed once here, with the same users, masks and targets as the map.
    ``Q``: orthonormal basis (d2 × m) of the shared subspace for ``r2_shared`` / ``r2_private``
    (NaN without one); ``shared``: what :func:`shared_basis` says about it (for the summary).
    """

    def __init__(self, Y, U, split: Split, warm, E, k, K, be, seed: int = 0, n_floor: int = N_FLOOR,
                 Q: np.ndarray | None = None, shared: Mapping[str, Any] | None = None, users: np.ndarray | None = None):
        self.Y, self.E, self.k, self.K, self.be, self.Q = Y, np.asarray(E), k, K, be, Q
        self.shared = dict(shared or {})
        self.Y0 = np.nan_to_num(Y).astype(np.float32)
        self.neighbours = RowNeighbours(self.Y0, np.flatnonzero(warm), be)  # the warm items' true vectors, indexed once
        self.true_nn = self.neighbours(self.E, k)
        tgt = sp.csr_matrix(split.test.tocsr()[:, self.E])
        tgt.eliminate_zeros()
        self.users = np.flatnonzero(np.diff(tgt.indptr) > 0)
        if users is not None:  # the run's evaluation sample
            self.users = np.intersect1d(self.users, users)
        self.target = tgt
        self.seen = split.seen_for("test").select_items(self.E)
        self.U = np.asarray(U, np.float32)
        ceil_u = self._per_user(self.Y0[self.E])
        rng = np.random.default_rng([int(seed), 104729])
        draws = [self._per_user(rng.standard_normal((len(self.E), Y.shape[1]))) for _ in range(int(n_floor))]
        floor_u = tuple(np.mean([d[j] for d in draws], axis=0) for j in (0, 1))
        gap = ceil_u[0] - floor_u[0]
        se = float(gap.std(ddof=1) / np.sqrt(len(gap))) if len(gap) > 1 else float("nan")
        self.base = {"ceiling_recall": _mean(ceil_u[0]), "ceiling_ndcg": _mean(ceil_u[1]),
                     "floor_recall": _mean(floor_u[0]), "floor_ndcg": _mean(floor_u[1]),
                     "n_eval_users": int(len(self.users))}
        self.readable, self.reason = readability(len(self.users), self.base["ceiling_recall"],
                                                 self.base["floor_recall"], se)

    def _per_user(self, VE: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-user Recall@K and NDCG@K when the evaluated items carry the vectors ``VE``."""
        if len(self.users) == 0:
            return np.empty(0), np.empty(0)
        model = EmbeddingRecommender("probe", self.U, np.asarray(VE, np.float32), np.ones(len(self.E), bool))
        top = rank(model, self.users, self.seen, self.K, backend=self.be)
        m = evaluate(top, self.target, self.users, ks=(self.K,), metrics=("recall", "ndcg"))
        return np.asarray(m[f"recall@{self.K}"], float), np.asarray(m[f"ndcg@{self.K}"], float)

    def recall(self, P: np.ndarray) -> tuple[float, float]:
        """(Recall@K, NDCG@K) of the evaluated items ranked by the vectors ``P``."""
        r, n = self._per_user(P)
        return _mean(r), _mean(n)

    def overlap_items(self, P: np.ndarray) -> np.ndarray:
        """Per evaluated item i: overlap@k of N_k(i) (true space) and the neighbours of P_i among
        the true vectors of all other warm items (leave one out)."""
        nn = self.neighbours(self.E, self.k, queries=np.asarray(P, np.float32))
        return _overlap(nn, self.true_nn)

    def __call__(self, P: np.ndarray, y_mean: np.ndarray) -> dict[str, float]:
        YE = self.Y[self.E]
        cos = (_unit(P) * _unit(YE)).sum(1)
        rec, ndcg = self.recall(P)
        r2s, r2p = r2_parts(YE, P, y_mean, self.Q) if self.Q is not None else (float("nan"), float("nan"))
        return {"r2": _r2(YE, P, y_mean), "mean_cos": float(cos.mean()), "overlap": float(self.overlap_items(P).mean()),
                "recall": rec, "ndcg": ndcg, **self.base, "r2_shared": r2s, "r2_private": r2p}


def _mean(v: np.ndarray) -> float:
    return float(np.nanmean(v)) if len(v) and np.isfinite(v).any() else float("nan")


# ------------------------------------------------------------- shared / private
def shared_basis(X_fit: np.ndarray, Y_fit: np.ndarray, seed: int = 0, pca_dims: int = SHARED_PCA_DIMS,
                 n_perm: int = SHARED_N_PERM) -> tuple[np.ndarray, dict]:
    """Orthonormal basis Q (d2 × m) of the shared subspace in the collaborative space, from FIT items only.

    m = number of leading canonical correlations that beat their permutation null on held-out
    items (:func:`analysis.structure.heldout_cca` fitted on a seeded 2/3 of the fit items,
    scored on the other 1/3, ``n_perm`` shuffles), at least 1. The CCA is then refitted on all
    fit items (:func:`analysis.structure.fit_cca`, same PCA size) and Q spans the
    collaborative canonical loadings Y_cᵀ b_j = n Σ_yy w_j, j ≤ m (the directions of Y that
    the shared canonical variates b_j = Y_c w_j explain), orthonormalised by QR.
    """
    from .structure import fit_cca, heldout_cca

    n = len(X_fit)
    tr = np.zeros(n, bool)
    tr[np.random.default_rng([int(seed), 7907]).permutation(n)[: int(round(2 * n / 3))]] = True
    p = min(int(pca_dims), (int(tr.sum()) - 1) // 2)
    res = heldout_cca(X_fit, Y_fit, tr, pca_dims=p, n_perm=int(n_perm), seed=seed)
    m = max(1, int(res["shared_dim"]))
    fit = fit_cca(X_fit, Y_fit, n_components=min(m, len(res["heldout_corr"])), pca_dims=p)
    Yc = np.asarray(Y_fit, np.float64) - fit.y_mean
    Q = np.linalg.qr(Yc.T @ (Yc @ fit.y_weights))[0]
    return Q, {"shared_dim": int(Q.shape[1]), "shared_dim_cca": int(res["shared_dim"]), "cca_pca_dims": p,
               "cca_n_perm": int(n_perm)}


def r2_parts(Y: np.ndarray, P: np.ndarray, y_mean: np.ndarray, Q: np.ndarray) -> tuple[float, float]:
    """(R² on the shared part, R² on the private part) with the orthogonal projector Π = Q Qᵀ.

    r2_shared = 1 − Σ_E ||(Y_i − P_i) Q||² / Σ_E ||(Y_i − ȳ) Q||²; r2_private the same with
    I − Π. Π is orthogonal, so the pooled R² is their average weighted by each part's share
    of Σ_E ||Y_i − ȳ||².
    """
    R, T = np.asarray(Y, np.float64) - P, np.asarray(Y, np.float64) - y_mean
    rs, ts = float(((R @ Q) ** 2).sum()), float(((T @ Q) ** 2).sum())
    tot = float((T**2).sum())
    rp, tp = float((R**2).sum()) - rs, tot - ts
    tiny = 1e-12 * tot  # a part with no variance (Q spans nothing / everything) has no R²
    return (1.0 - rs / ts if ts > tiny else float("nan")), (1.0 - rp / tp if tp > tiny else float("nan"))


# ----------------------------------------------------------------------- regimes
def _split_fit_valid(items: np.ndarray, rng: np.random.Generator, valid_share: float = 1 / 8) -> tuple[np.ndarray, np.ndarray]:
    p = rng.permutation(items)
    n_v = max(1, int(round(valid_share * len(p))))
    return np.sort(p[n_v:]), np.sort(p[:n_v])


def item_regimes(warm: np.ndarray, popularity: np.ndarray, order: np.ndarray | None, seed: int = 0) -> tuple[dict, dict]:
    """``{regime: (fit, valid, eval) item indices}`` and ``{regime: reason}`` for skipped regimes."""
    rng = np.random.default_rng(seed)
    w = np.flatnonzero(warm)
    n = len(w)
    out, skipped = {}, {}
    p = rng.permutation(w)
    n_fit, n_val = int(round(0.7 * n)), int(round(0.1 * n))
    out["in_distribution"] = (np.sort(p[:n_fit]), np.sort(p[n_fit : n_fit + n_val]), np.sort(p[n_fit + n_val :]))

    def by_key(key: np.ndarray, name: str, descending: bool) -> None:
        tie = rng.random(n)
        k = key[w]
        o = np.lexsort((tie, -k if descending else k))  # head first
        head, tail = w[o[: (n + 1) // 2]], w[o[(n + 1) // 2 :]]
        f, v = _split_fit_valid(head, rng)
        out[name] = (f, v, np.sort(tail))

    by_key(np.asarray(popularity, np.float64), "shift_popularity", descending=True)
    if order is None:
        skipped["shift_time"] = "no item release order given"
    else:
        by_key(order, "shift_time", descending=False)  # older first
    return out, skipped


# ------------------------------------------------------------------------- driver
def _regime_ladder(regime: str, idx, X, Y, caps, ev: _Evaluator, lambdas, seed, dev, mlp_kw, bar=None
                   ) -> tuple[list, dict]:
    """Fit every capacity of the ladder on one regime's fit items; one curve row each."""
    fi, vi, ei = idx
    Xf, Yf, Xv, Yv = X[fi], Y[fi], X[vi], Y[vi]
    rows, fitted, lam_best = [], {}, None
    for probe, cap, capn in caps:
        if probe in ("ridge", "reduced_rank"):
            if lam_best is None:
                lam_best = fit_ridge(Xf, Yf, Xv, Yv, lambdas)
            m, lr = lam_best
            if probe == "reduced_rank" and cap != "full":
                m = reduced_rank(m, Xf, int(cap))
        else:
            m, lr = fit_mlp(Xf, Yf, Xv, Yv, int(cap), seed=seed, device=dev, **mlp_kw), float("nan")
        P = m.predict(X[ei])
        rows.append({"regime": regime, "probe": probe, "capacity": cap, "capacity_num": capn, **ev(P, m.y_mean),
                     "valid_r2": _r2(Yv, m.predict(Xv), m.y_mean), "lam": lr,
                     "n_train": len(fi), "n_valid": len(vi), "n_eval": len(ei),
                     "readable": ev.readable, "reason": ev.reason, "shared_dim": ev.shared.get("shared_dim", 0)})
        fitted[(probe, cap)] = (m, P)
        if bar is not None:
            bar.update(1)
    return rows, fitted


def _shared_for(X, Y, fi, ei, seed) -> tuple[np.ndarray | None, dict]:
    """:func:`shared_basis` on the fit items ``fi`` (or None and the reason when the CCA is undefined
    there), plus ``shared_var_eval``: the share of the evaluated items' variance around the fit
    mean, Σ_E ||(Y_i − ȳ_fit) Q||² / Σ_E ||Y_i − ȳ_fit||², that lies in the shared subspace."""
    try:
        Q, info = shared_basis(X[fi], Y[fi], seed=seed)
    except (ConfigError, VectorError, np.linalg.LinAlgError) as e:
        return None, {"shared_dim": 0, "shared_var_eval": float("nan"), "shared_error": str(e)}
    T = Y[ei] - Y[fi].mean(0)
    return Q, {**info, "shared_var_eval": float(((T @ Q) ** 2).sum() / max((T**2).sum(), 1e-300))}


def _regime_summary(c: pd.DataFrame, ev: _Evaluator) -> dict[str, Any]:
    """Summary of one regime: the best-by-validation capacity's test metrics, ceiling, floor, readability."""
    c = c.reset_index(drop=True)
    v = c["valid_r2"].to_numpy(float)
    j = int(np.flatnonzero(v >= np.nanmax(v) - 1e-9)[0])
    return {
        "best_by_valid": f"{c.loc[j, 'probe']}:{c.loc[j, 'capacity']}",
        **{m_: float(c.loc[j, m_]) for m_ in ("r2", "mean_cos", "overlap", "recall", "ndcg", "valid_r2",
                                              "r2_shared", "r2_private")},
        **ev.base, "readable": bool(ev.readable), "reason": ev.reason, **ev.shared,
        "ridge_lambda_rel": float(c.loc[0, "lam"]),
        "n_train": int(c.loc[0, "n_train"]), "n_valid": int(c.loc[0, "n_valid"]), "n_eval": int(c.loc[0, "n_eval"]),
    }


def _fit_probe(probe: str, capacity, Xf, Yf, Xv, Yv, lambdas, seed, device, mlp_kw=None) -> tuple[Any, dict]:
    """Fit one probe at one capacity (``full`` / rank / width); hyper-parameters chosen on (Xv, Yv)."""
    if probe in ("ridge", "reduced_rank"):
        m, lr = fit_ridge(Xf, Yf, Xv, Yv, lambdas)
        if probe == "reduced_rank" and capacity != "full":
            m = reduced_rank(m, Xf, int(capacity))
        return m, {"lam": lr}
    m = fit_mlp(Xf, Yf, Xv, Yv, int(capacity), seed=seed, device=device, **(mlp_kw or {}))
    return m, {"best_epoch": m.best_epoch}


def _capacities(d2: int, ranks, widths) -> list[tuple[str, Any, float]]:
    """(probe, capacity label, capacity number) in ladder order."""
    if ranks is None:
        ranks = [r for r in (2**j for j in range(16)) if r < d2]
    ranks = [int(r) for r in ranks]
    if any(r < 1 for r in ranks):
        raise ConfigError(f"ranks must be >= 1, got {ranks}")
    widths = [int(w) for w in (DEFAULT_WIDTHS if widths is None else widths)]
    caps = [("ridge", "full", float(d2))]
    caps += [("reduced_rank", str(r), float(r)) for r in sorted(set(ranks)) if r < d2]
    caps += [("reduced_rank", "full", float(d2))]
    caps += [("mlp", str(w), float(w)) for w in widths]
    return caps


def _residual(Y: np.ndarray, P: np.ndarray, y_mean: np.ndarray) -> np.ndarray:
    den = ((Y - y_mean) ** 2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((Y - P) ** 2).sum(1) / den


def cross_fit(
    X: np.ndarray, Y: np.ndarray, warm: np.ndarray, probe: str, capacity, n_folds: int = 5, seed: int = 0,
    lambdas=DEFAULT_LAMBDAS, device: str = "cpu", mlp_kw: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """k-fold cross-fitted predictions of one probe class/capacity for every warm item.

    Returns ``(mapped (n, d2) NaN off warm, residual (n,) NaN off warm, fold (n,) -1 off warm,
    mapped_all (n, d2))``: ``mapped_all`` adds, for non-warm items, the prediction of the probe
    fitted on all warm items (1/8 of them held out for the choice of hyper-parameters).
    """
    rng = np.random.default_rng(seed + 7919)
    w = np.flatnonzero(warm)
    if n_folds < 2 or n_folds > len(w):
        raise ConfigError(f"cross-fitting needs 2 <= n_folds <= {len(w)} warm items, got {n_folds}")
    fold = np.full(len(warm), -1, np.int64)
    fold[rng.permutation(w)] = np.arange(len(w)) % n_folds
    mapped = np.full(Y.shape, np.nan)
    res = np.full(len(warm), np.nan)
    for f in range(n_folds):
        test = np.flatnonzero(fold == f)
        fi, vi = _split_fit_valid(np.flatnonzero((fold >= 0) & (fold != f)), rng)
        m, _ = _fit_probe(probe, capacity, X[fi], Y[fi], X[vi], Y[vi], lambdas, seed + f, device, mlp_kw)
        mapped[test] = m.predict(X[test])
        res[test] = _residual(Y[test], mapped[test], Y[fi].mean(0))
    mapped_all = mapped.copy()
    other = np.flatnonzero(~warm)
    if len(other):
        fi, vi = _split_fit_valid(w, rng)
        m, _ = _fit_probe(probe, capacity, X[fi], Y[fi], X[vi], Y[vi], lambdas, seed + n_folds, device, mlp_kw)
        mapped_all[other] = m.predict(X[other])
    return mapped, res, fold, mapped_all


def _best_and_residuals(curves, fitted, ei, X, Y, warm, n_folds, seed, lambdas, dev, mlp_kw):
    """The best probe (highest in-distribution validation R²; ties -> earlier, simpler, in the
    ladder), its held-out residuals on the in-distribution items ``ei`` and its cross-fit."""
    ind = curves[curves.regime == "in_distribution"].reset_index(drop=True)
    vr = ind["valid_r2"].to_numpy(float)
    bi = int(np.flatnonzero(vr >= np.nanmax(vr) - 1e-9)[0])
    best_probe, best_cap = str(ind.loc[bi, "probe"]), str(ind.loc[bi, "capacity"])
    m_best, P_best = fitted[(best_probe, best_cap)]
    n = len(Y)
    heldout = np.full(n, np.nan)
    heldout[ei] = _residual(Y[ei], P_best, m_best.y_mean)
    mapped, res, fold, mapped_all = cross_fit(X, Y, warm, best_probe, best_cap, n_folds, seed, lambdas, dev, mlp_kw)
    residuals = pd.DataFrame({"item_idx": np.arange(n), "residual": res, "residual_heldout": heldout, "fold": fold,
                              "warm": warm, "best_probe": f"{best_probe}:{best_cap}"})
    return best_probe, best_cap, residuals, mapped, mapped_all


def run_probes(
    X: np.ndarray,
    Y: np.ndarray,
    U: np.ndarray,
    split: Split,
    k_neighbors: int = 10,
    K: int = 20,
    order: np.ndarray | None = None,
    seed: int = 0,
    device: str = "auto",
    ranks: Iterable[int] | None = None,
    widths: Iterable[int] | None = None,
    lambdas: Iterable[float] = DEFAULT_LAMBDAS,
    n_folds: int = 5,
    backend: Backend | str | None = None,
    log: Callable[[str], None] | None = None,
    mlp_kw: Mapping[str, Any] | None = None,
    users: np.ndarray | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Alignment probes over regimes x capacities (see module docstring).

    Returns ``dict(curves, residuals, summary, mapped, mapped_all)``:
    ``curves`` one row per (regime, probe, capacity) with columns :data:`CURVE_COLUMNS`
    (``capacity`` is a string: ``"full"``, a rank or a width; ``capacity_num`` its number; the
    regime-level ``ceiling_*``, ``floor_*``, ``n_eval_users``, ``readable``, ``reason`` and
    ``shared_dim`` repeat on each of its rows);
    ``residuals`` one row per item: item_idx, residual (cross-fitted), residual_heldout
    (in-distribution evaluated items only), fold, warm, best_probe; ``mapped`` (n, d2)
    cross-fitted vectors of the best probe, NaN for non-warm items; ``mapped_all`` the same
    with non-warm items mapped by the probe fitted on all warm items. ``summary``: counts,
    chance_overlap = k / (n_warm − 1), best_probe / best_capacity, crossfit_r2 (R² of the
    cross-fitted vectors over all warm items, relative to their overall mean), per regime the
    best-by-validation capacity with its test metrics (r2, r2_shared, r2_private, recall, ...),
    the ceiling, the floor, n_eval_users, readable / reason, shared_dim (+ shared_dim_cca,
    cca_pca_dims, cca_n_perm, shared_var_eval), skipped_regimes {regime: reason},
    unreadable_regimes {regime: reason}, the protocol texts (recall_protocol, readable_rule,
    shared_subspace), the grids, device, timings. ``mlp_kw``: extra arguments of
    :func:`fit_mlp` (lr, weight_decay, max_epochs, patience). ``users``: the users whose test
    pairs are evaluated (default: every user; the pipeline passes its evaluation sample).
    ``progress``: a progress bar (with ETA) over the fits (regimes x capacities, then the cross-fit).
    """
    from threadpoolctl import threadpool_limits

    # one BLAS thread: these are many small products, and with other processes on a small
    # machine OpenBLAS's second thread made an SVD ~10x slower (measured)
    with threadpool_limits(1, user_api="blas"):
        return _run_probes(X, Y, U, split, k_neighbors=k_neighbors, K=K, order=order, seed=seed, device=device,
                           ranks=ranks, widths=widths, lambdas=lambdas, n_folds=n_folds, backend=backend, log=log,
                           mlp_kw=dict(mlp_kw or {}), users=users, progress=progress)


def _run_probes(X, Y, U, split, *, k_neighbors, K, order, seed, device, ranks, widths, lambdas, n_folds, backend, log,
                mlp_kw, users, progress):
    from .models.validation import resolve_device

    t0 = time.perf_counter()
    X, Y, U, order = _check_inputs(X, Y, U, split, order)
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    n, d2 = Y.shape
    warm = warm_mask(Y)
    n_warm = int(warm.sum())
    k = int(k_neighbors)
    if k < 1 or int(K) < 1:
        raise ConfigError(f"k_neighbors and K must be >= 1, got {k_neighbors}, {K}")
    if n_warm < max(40, 4 * (k + 1)):
        raise ConfigError(f"alignment probes need at least {max(40, 4 * (k + 1))} warm items (finite, non-zero "
                          f"collaborative rows), got {n_warm}")
    popularity = np.asarray(split.train.sum(0)).ravel()
    regimes, skipped = item_regimes(warm, popularity, order, seed)
    caps = _capacities(d2, ranks, widths)
    dev = resolve_device(device) if any(p == "mlp" for p, _, _ in caps) else "cpu"  # torch only when needed
    lambdas = tuple(float(x) for x in lambdas)
    if not lambdas or min(lambdas) <= 0:
        raise ConfigError(f"ridge lambdas must be positive, got {lambdas}")

    rows, fitted, evals = [], {}, {}
    bar = tqdm(total=len(regimes) * len(caps) + 1, desc="alignment probes", disable=not progress, leave=False)
    for regime, idx in regimes.items():
        Q, shared = _shared_for(X, Y, idx[0], idx[2], seed)
        evals[regime] = ev = _Evaluator(Y, U, split, warm, idx[2], k, int(K), be, seed=seed, Q=Q, shared=shared,
                                        users=users)
        r, f = _regime_ladder(regime, idx, X, Y, caps, ev, lambdas, seed, dev, mlp_kw, bar)
        rows += r
        if regime == "in_distribution":
            fitted = f
        if log:
            log(f"  probes: {regime} done ({time.perf_counter() - t0:.1f}s)")
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)

    t1 = time.perf_counter()
    best_probe, best_cap, residuals, mapped, mapped_all = _best_and_residuals(
        curves, fitted, regimes["in_distribution"][2], X, Y, warm, n_folds, seed, lambdas, dev, mlp_kw)
    bar.update(1)
    bar.close()

    per_regime = {regime: _regime_summary(curves[curves.regime == regime], evals[regime]) for regime in regimes}
    summary = {
        "n_items": n, "n_warm": n_warm, "n_not_warm": int(n - n_warm), "d_semantic": int(X.shape[1]), "d_collab": d2,
        "k_neighbors": k, "K": int(K), "chance_overlap": k / (n_warm - 1),
        "best_probe": best_probe, "best_capacity": best_cap,
        "best_selected_by": "in-distribution validation R2",
        "crossfit_r2": _r2(Y[warm], mapped[warm], Y[warm].mean(0)),
        "crossfit_folds": int(n_folds),
        "regimes": per_regime, "skipped_regimes": skipped,
        "unreadable_regimes": {r: d["reason"] for r, d in per_regime.items() if not d["readable"]},
        "recall_protocol": RECALL_PROTOCOL, "readable_rule": READABLE_RULE, "shared_subspace": SHARED_SUBSPACE,
        "lambdas_rel": list(lambdas), "ranks": [c for p, c, _ in caps if p == "reduced_rank"],
        "widths": [c for p, c, _ in caps if p == "mlp"], "device": dev, "seed": int(seed),
        "timings": {"ladder_s": t1 - t0, "crossfit_s": time.perf_counter() - t1},
    }
    return {"curves": curves, "residuals": residuals, "summary": summary,
            "mapped": mapped.astype(np.float32), "mapped_all": mapped_all.astype(np.float32)}
