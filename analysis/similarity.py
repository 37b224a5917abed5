"""Global similarity of the two item spaces: linear CKA, debiased CKA, Procrustes distance.

Definitions follow DIAGNOSTICS.md ("Global similarity of the two spaces").  X is (n, d1),
Y is (n, d2); row i of both is the same item.  Every statistic is computed on
**column-centred** views and in the **feature space** (d × d products), so memory stays
O(n·d) and the n × n Gram matrices are never formed (n can be ~50k).

* linear CKA (Kornblith et al. 2019), X, Y centred::

      CKA = ||Yᵀ X||_F² / (||Xᵀ X||_F · ||Yᵀ Y||_F)

  :func:`linear_cka_gram` is the textbook Gram form <HKH, HLH> / (||HKH|| ||HLH||)
  (K = XXᵀ, L = YYᵀ, H = I − 11ᵀ/n), O(n²) memory, kept as the reference for tests.
* debiased CKA (Nguyen, Raghu & Kornblith 2021): CKA with HSIC replaced by the unbiased
  estimator of Song et al. (2012)::

      HSIC_u(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3))

  with K̃, L̃ the Gram matrices with zeroed diagonals.  HSIC_u is invariant to translating
  the features (the kernel changes by f(x)+f(x')+c, which the U-statistic cancels), so we
  centre first; with a_i = ||x_i||², b_i = ||y_i||², S_a = Σa_i = ||X||_F², S_b = ||Y||_F²,
  and centred data (K̃1 = −a, L̃1 = −b) every term is O(n·d)::

      n(n−3)·HSIC_u(X, Y) = ||XᵀY||_F² − n/(n−2) · a·b + S_a·S_b / ((n−1)(n−2))

      dCKA = HSIC_u(X, Y) / sqrt(HSIC_u(X, X) · HSIC_u(Y, Y))

  Unlike biased CKA it is ≈ 0 for independent views even when d is large relative to n
  (independent 768-d vs 64-d views over 1,682 items: CKA ≈ 0.11, dCKA ≈ 0).  It can be
  slightly negative; it is NaN when HSIC_u(X, X) or HSIC_u(Y, Y) ≤ 0 (degenerate views).
  :func:`debiased_cka_gram` evaluates the Song et al. formula literally on the
  *uncentred* Gram matrices (reference for tests).
* Procrustes distance (Ding, Denain & Steinhardt 2021, "Grounding representation
  similarity with statistical testing"), on centred views scaled to unit Frobenius norm::

      d_Proc = min_Q ||X Q − Y||_F² = ||X||_F² + ||Y||_F² − 2·||XᵀY||_* = 2 − 2·||XᵀY||_*

  over orthogonal Q, the smaller dimension zero-padded (padding does not change the
  nuclear norm, so it is implicit).  Range [0, 2]: 0 = identical up to rotation and
  scale, larger = less similar.  Per-item aligned cosines live in
  :func:`analysis.neighbors.procrustes_cosine`.
* top-PC removal: the first principal component of each view (in recommender embeddings
  usually the popularity direction) can make CKA large on its own, so every statistic is
  also reported with it projected out of both views (:func:`remove_top_pc`).
* permutation null: shuffle the item pairing (rows of Y) ``n_perm`` times;
  p = (1 + #{null ≥ raw}) / (1 + n_perm) for a similarity, and with ≤ for a distance.

:func:`global_similarity` computes all six (statistic × variant) rows with one d1 × d2
product and one small SVD per permutation and variant, sharing everything else.
"""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .errors import ConfigError, VectorError
from .views import check_paired_views

STATISTICS = ("cka", "debiased_cka", "procrustes_distance")
VARIANTS = ("raw", "top_pc_removed")
#: True where a larger value means "more similar" (the direction of the permutation test)
GREATER_IS_SIMILAR = {"cka": True, "debiased_cka": True, "procrustes_distance": False}

F = TypeVar("F", bound=Callable)


def single_blas_thread(fn: F) -> F:
    """Run ``fn`` with one BLAS thread.

    These diagnostics are many small products, SVDs and eigendecompositions; on a busy
    2-core machine multi-threaded OpenBLAS made them 4-100x slower (spin-waiting threads,
    measured: global similarity 9 s -> 2.4 s, structure tables 22 s -> 2 s at 1,682 items),
    while an idle machine loses at most 2x on the few large products.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _pair(X: np.ndarray, Y: np.ndarray, min_n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """float64 copies of two finite 2-D views with the same number of rows."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise VectorError(f"views must be 2-D with the same number of items, got {X.shape} and {Y.shape}")
    if X.shape[0] < min_n:
        raise VectorError(f"need at least {min_n} items, got {X.shape[0]}")
    for M, name in ((X, "X"), (Y, "Y")):
        bad = ~np.isfinite(M).all(axis=1)
        if bad.any():
            raise VectorError(f"view {name} row {int(np.argmax(bad))} has NaN/inf values ({int(bad.sum())} such "
                              "rows); mark such items invalid with `valid`")
    return X, Y


def center(X: np.ndarray) -> np.ndarray:
    """Column-centred float64 copy of ``X``."""
    X = np.asarray(X, dtype=np.float64)
    return X - X.mean(axis=0)


def _top_pc(Xc: np.ndarray) -> np.ndarray:
    """Unit top right-singular vector of a centred matrix (zero vector if the matrix is 0)."""
    from scipy.linalg import eigh

    n, d = Xc.shape
    if d <= n:
        G = Xc.T @ Xc
        w, v = eigh(G, subset_by_index=[d - 1, d - 1])
        vec = v[:, 0]
    else:  # wide: go through the n × n Gram matrix
        G = Xc @ Xc.T
        w, u = eigh(G, subset_by_index=[n - 1, n - 1])
        vec = Xc.T @ u[:, 0]
    nrm = np.linalg.norm(vec)
    return vec / nrm if w[0] > 0 and nrm > 0 else np.zeros(d)


def remove_top_pc(X: np.ndarray) -> np.ndarray:
    """Centred ``X`` with its first principal component (the popularity direction) projected out."""
    Xc = center(X)
    if Xc.ndim != 2:
        raise VectorError(f"item vectors must be a 2-D array, got shape {Xc.shape}")
    v = _top_pc(Xc)
    return Xc - np.outer(Xc @ v, v)


class _PairStats:
    """Everything about a pair of centred views that a permutation of Y's rows leaves unchanged."""

    def __init__(self, X: np.ndarray, Y: np.ndarray):
        self.X = center(X)
        self.Y = center(Y)
        n = self.X.shape[0]
        self.n = n
        self.a = np.einsum("ij,ij->i", self.X, self.X)
        self.b = np.einsum("ij,ij->i", self.Y, self.Y)
        self.sa, self.sb = self.a.sum(), self.b.sum()
        xx = np.linalg.norm(self.X.T @ self.X) if self.X.shape[1] <= n else np.linalg.norm(self.X @ self.X.T)
        yy = np.linalg.norm(self.Y.T @ self.Y) if self.Y.shape[1] <= n else np.linalg.norm(self.Y @ self.Y.T)
        self.xx, self.yy = xx, yy
        self.hx = self._hsic_u(xx**2, self.a @ self.a, self.sa, self.sa) if n > 3 else np.nan
        self.hy = self._hsic_u(yy**2, self.b @ self.b, self.sb, self.sb) if n > 3 else np.nan

    def _hsic_u(self, f2: float, ab: float, sa: float, sb: float) -> float:
        """n(n−3)·HSIC_u from ||XᵀY||², a·b, S_a, S_b (centred data; see module docstring)."""
        n = self.n
        return f2 - n / (n - 2.0) * ab + sa * sb / ((n - 1.0) * (n - 2.0))

    def stats(self, perm: np.ndarray | None = None) -> tuple[float, float, float]:
        """(cka, debiased_cka, procrustes_distance) with Y's rows reordered by ``perm``."""
        Yp = self.Y if perm is None else self.Y[perm]
        b = self.b if perm is None else self.b[perm]
        M = self.X.T @ Yp
        f2 = float(np.einsum("ij,ij->", M, M))
        den = self.xx * self.yy
        cka = f2 / den if den > 0 else np.nan
        dden = self.hx * self.hy
        dcka = self._hsic_u(f2, float(self.a @ b), self.sa, self.sb) / np.sqrt(dden) if dden > 0 else np.nan
        fro = np.sqrt(self.sa * self.sb)
        if fro > 0:
            nuc = float(np.linalg.svd(M, compute_uv=False).sum()) / fro
            proc = max(0.0, 2.0 - 2.0 * nuc)
        else:
            proc = np.nan
        return cka, dcka, proc


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA, feature-space form ||YᵀX||_F² / (||XᵀX||_F ||YᵀY||_F) on centred views."""
    X, Y = _pair(X, Y)
    return _PairStats(X, Y).stats()[0]


def debiased_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Debiased linear CKA (unbiased HSIC, feature-space form; needs n ≥ 4 items)."""
    X, Y = _pair(X, Y, min_n=4)
    return _PairStats(X, Y).stats()[1]


def procrustes_distance(X: np.ndarray, Y: np.ndarray) -> float:
    """2 − 2·||XᵀY||_* on centred, unit-Frobenius views (Ding et al. 2021); 0 = identical up to rotation."""
    X, Y = _pair(X, Y)
    return _PairStats(X, Y).stats()[2]


def linear_cka_gram(X: np.ndarray, Y: np.ndarray) -> float:
    """Reference Gram form of linear CKA, <HKH, HLH> / (||HKH||_F ||HLH||_F); O(n²) memory."""
    X, Y = _pair(X, Y)
    n = X.shape[0]
    H = np.eye(n) - 1.0 / n
    Kc = H @ (X @ X.T) @ H
    Lc = H @ (Y @ Y.T) @ H
    return float((Kc * Lc).sum() / (np.linalg.norm(Kc) * np.linalg.norm(Lc)))


def _hsic_u_gram(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC, literally from two Gram matrices."""
    n = K.shape[0]
    K = K.copy()
    L = L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    t1 = (K * L).sum()
    t2 = (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
    t3 = 2.0 / (n - 2) * (one @ K @ L @ one)
    return float((t1 + t2 - t3) / (n * (n - 3)))


def debiased_cka_gram(X: np.ndarray, Y: np.ndarray) -> float:
    """Reference Gram form of debiased CKA on the *uncentred* linear kernels; O(n²) memory."""
    X, Y = _pair(X, Y, min_n=4)
    K, L = X @ X.T, Y @ Y.T
    return _hsic_u_gram(K, L) / np.sqrt(_hsic_u_gram(K, K) * _hsic_u_gram(L, L))


def _permutations(n: int, n_perm: int, seed: int) -> list[np.ndarray]:
    """The seeded item-pairing shuffles shared by every permutation test here."""
    if not isinstance(n_perm, (int, np.integer)) or n_perm < 1:
        raise ConfigError(f"n_perm must be a positive integer, got {n_perm!r}")
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(int(n_perm))]


def _summarise(raw: float, null: np.ndarray, greater: bool) -> dict:
    null = np.asarray(null, dtype=np.float64)
    ok = null[np.isfinite(null)]
    if not np.isfinite(raw) or ok.size == 0:
        p = np.nan
    else:
        extreme = ok >= raw if greater else ok <= raw
        p = (1.0 + extreme.sum()) / (1.0 + ok.size)
    return {
        "raw": float(raw),
        "null_mean": float(ok.mean()) if ok.size else np.nan,
        "null_std": float(ok.std(ddof=1)) if ok.size > 1 else np.nan,
        "null_q025": float(np.quantile(ok, 0.025)) if ok.size else np.nan,
        "null_q975": float(np.quantile(ok, 0.975)) if ok.size else np.nan,
        "p_value": float(p),
        "n_perm": int(null.size),
        "null": null,
    }


@single_blas_thread
def permutation_null(
    stat_fn: Callable[[np.ndarray, np.ndarray], float],
    X: np.ndarray,
    Y: np.ndarray,
    n_perm: int = 200,
    seed: int = 0,
    greater: bool = True,
) -> dict:
    """Permutation null of ``stat_fn(X, Y)`` under shuffled item pairing (rows of Y).

    Returns raw, null_mean, null_std (ddof 1), null_q025, null_q975, p_value, n_perm and the
    ``null`` array.  p = (1 + #{null ≥ raw}) / (1 + n_perm); with ``greater=False`` (a
    distance) "more extreme" means smaller: #{null ≤ raw}.  Non-finite null draws are dropped.
    """
    X, Y = _pair(X, Y)
    raw = float(stat_fn(X, Y))
    null = np.array([stat_fn(X, Y[p]) for p in _permutations(X.shape[0], n_perm, seed)], dtype=np.float64)
    return _summarise(raw, null, greater)


@single_blas_thread
def global_similarity(
    X: np.ndarray,
    Y: np.ndarray,
    valid: np.ndarray | None = None,
    n_perm: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """All global similarity scores with their permutation nulls, over the items valid in both views.

    One row per (statistic ∈ cka, debiased_cka, procrustes_distance) × (variant ∈ raw,
    top_pc_removed); columns statistic, variant, raw, null_mean, null_std, null_lo (2.5 %),
    null_hi (97.5 %), p_value, n_items, n_perm.  The same seeded permutations are used for
    every row, and each row equals :func:`permutation_null` of the matching function.
    Items with ``valid == False`` are dropped (their vectors may be NaN); a valid row with
    NaN/inf raises :class:`VectorError`.
    """
    Xv, Yv, rows = check_paired_views(X, Y, valid, names=("semantic (X)", "collaborative (Y)"))
    Xv, Yv = _pair(Xv, Yv, min_n=4)
    perms = _permutations(len(rows), n_perm, seed)
    out = []
    for variant in VARIANTS:
        pair = _PairStats(Xv, Yv) if variant == "raw" else _PairStats(remove_top_pc(Xv), remove_top_pc(Yv))
        raw = pair.stats()
        null = np.array([pair.stats(p) for p in perms])  # (n_perm, 3)
        for j, stat in enumerate(STATISTICS):
            s = _summarise(raw[j], null[:, j], GREATER_IS_SIMILAR[stat])
            out.append({
                "statistic": stat, "variant": variant, "raw": s["raw"], "null_mean": s["null_mean"],
                "null_std": s["null_std"], "null_lo": s["null_q025"], "null_hi": s["null_q975"],
                "p_value": s["p_value"], "n_items": len(rows), "n_perm": len(perms),
            })
    return pd.DataFrame(out)
