"""Side-by-side 2-D maps of two views (UMAP), aligned so they can be compared by eye.

The maps are for *looking* only: every agreement number is computed in the original vectors
(:mod:`analysis.neighbors`), never in 2-D.  Each view gets its own seeded UMAP (metric cosine)
that reuses the exact kNN graph already computed by :func:`analysis.neighbors.knn_cosine`
(umap-learn's ``precomputed_knn``; umap expects every row's first neighbour to be the point
itself at distance 0, so it is prepended here).  The second map is then aligned to the first by
orthogonal Procrustes with scale and translation (a rotation/reflection of a UMAP layout carries
no meaning, so removing it loses nothing and makes corresponding regions line up).

Items invalid in a view (e.g. cold items in the collaborative view) get **NaN coordinates** in
that view's map: the view has no position for them, and placing them at, say, their semantic
neighbours' mean would draw a collaborative position that does not exist.  The dashboard can
show them from the other map.

For tiny catalogues (fewer than ``MIN_UMAP_ITEMS`` valid items) UMAP is unreliable (its
spectral initialisation and fuzzy graph need more points than neighbours), so each view falls
back to PCA to 2-D of its unit-normalised rows — still aligned the same way.

umap-learn compiles with numba on first use (tens of seconds); call :func:`warm_umap` once at
set-up so the first real map is fast.  It is imported lazily so importing this module is cheap.
"""
from __future__ import annotations

import warnings

import numpy as np

from .errors import ConfigError, VectorError
from .neighbors import knn_cosine

MIN_UMAP_ITEMS = 30


def align_layout(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """``moving`` mapped onto ``reference`` by the similarity transform (rotation/reflection,
    uniform scale, translation) that minimises the squared distance over rows finite in both.

    Rows of ``moving`` that are NaN stay NaN.  With fewer than 2 common rows it is returned as is.
    """
    from scipy.linalg import orthogonal_procrustes

    A = np.asarray(reference, dtype=np.float64)
    B = np.asarray(moving, dtype=np.float64)
    if A.shape != B.shape or A.ndim != 2:
        raise ConfigError(f"layouts must have the same 2-D shape, got {A.shape} and {B.shape}")
    ok = np.isfinite(A).all(axis=1) & np.isfinite(B).all(axis=1)
    if ok.sum() < 2:
        return B.copy()
    mu_a, mu_b = A[ok].mean(axis=0), B[ok].mean(axis=0)
    Ac, Bc = A[ok] - mu_a, B[ok] - mu_b
    R, sv_sum = orthogonal_procrustes(Bc, Ac)  # sv_sum = trace of the singular values of Bc^T Ac
    nb = (Bc**2).sum()
    s = sv_sum / nb if nb > 0 else 1.0
    return s * (B - mu_b) @ R + mu_a


def _pca2(X: np.ndarray) -> np.ndarray:
    """PCA to 2-D of unit-normalised rows, deterministic signs, zero-padded if rank < 2."""
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    U = U - U.mean(axis=0)
    u, s, _ = np.linalg.svd(U, full_matrices=False)
    c = u[:, :2] * s[:2]
    signs = np.sign(c[np.argmax(np.abs(c), axis=0), np.arange(c.shape[1])])
    c = c * np.where(signs == 0, 1.0, signs)
    out = np.zeros((X.shape[0], 2))
    out[:, : c.shape[1]] = c
    return out


def _layout(
    X: np.ndarray,
    knn: tuple[np.ndarray, np.ndarray] | None,
    valid: np.ndarray | None,
    n_neighbors: int,
    seed: int,
    what: str,
) -> np.ndarray:
    """2-D layout of one view; NaN rows for invalid items."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise VectorError(f"{what}: item vectors must be a 2-D array, got shape {X.shape}")
    n = X.shape[0]
    if knn is not None:
        idx, dist = (np.asarray(a) for a in knn)
        if idx.shape != dist.shape or idx.shape[0] != n:
            raise ConfigError(f"{what}: kNN graph of shape {idx.shape}/{dist.shape} does not match {n} items")
        inferred = idx[:, 0] >= 0
        valid = inferred if valid is None else np.asarray(valid, dtype=bool)
        if (valid & ~inferred).any():
            raise ConfigError(f"{what}: item {int(np.flatnonzero(valid & ~inferred)[0])} is valid but has no neighbours")
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != (n,):
        raise ConfigError(f"{what}: valid mask has shape {valid.shape}, expected ({n},)")
    rows = np.flatnonzero(valid)
    nv = len(rows)
    out = np.full((n, 2), np.nan)
    if nv == 0:
        return out
    Xv = X[rows]
    if not np.isfinite(Xv).all() or (np.linalg.norm(Xv, axis=1) == 0).any():
        raise VectorError(f"{what}: valid items must have finite, non-zero vectors")
    if nv < MIN_UMAP_ITEMS:
        out[rows] = _pca2(Xv.astype(np.float64))
        return out
    nn = min(n_neighbors, nv - 1)
    if knn is None:
        idx, sims = knn_cosine(X, nn - 1, valid=valid)
        dist = 1.0 - sims
    if idx.shape[1] < nn - 1:
        nn = idx.shape[1] + 1
    # re-index the graph to the valid subset and prepend each point itself at distance 0
    pos = np.full(n, -1, dtype=np.int64)
    pos[rows] = np.arange(nv)
    sub_idx = pos[idx[rows, : nn - 1]]
    if (sub_idx < 0).any():
        raise ConfigError(f"{what}: neighbourhoods contain items marked invalid; compute kNN with the same mask")
    knn_i = np.hstack([np.arange(nv)[:, None], sub_idx]).astype(np.int32)
    knn_d = np.hstack([np.zeros((nv, 1)), np.clip(dist[rows, : nn - 1], 0.0, 2.0)]).astype(np.float32)
    import umap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        reducer = umap.UMAP(
            n_neighbors=nn,
            n_components=2,
            metric="cosine",
            random_state=seed,
            precomputed_knn=(knn_i, knn_d),
        )
        out[rows] = reducer.fit_transform(Xv)
    return out


def umap_layouts(
    X_a: np.ndarray,
    X_b: np.ndarray,
    knn_a: tuple[np.ndarray, np.ndarray] | None = None,
    knn_b: tuple[np.ndarray, np.ndarray] | None = None,
    n_neighbors: int = 15,
    seed: int = 0,
    valid_b: np.ndarray | None = None,
    valid_a: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D maps ``(coords_a (n, 2), coords_b (n, 2))`` of two views, b aligned to a.

    ``knn_a`` / ``knn_b`` are ``(idx, dist)`` from :func:`analysis.neighbors.knn_cosine` with
    ``dist = 1 − sims`` (self excluded; at least ``n_neighbors − 1`` columns are used, fewer
    columns lower the effective ``n_neighbors``); when omitted they are computed here.  Rows of
    -1 in a graph mark items invalid in that view, as does ``valid_a`` / ``valid_b``; invalid
    items get NaN coordinates.  Fewer than ``MIN_UMAP_ITEMS`` valid items: PCA instead of UMAP.
    """
    X_a = np.asarray(X_a)
    X_b = np.asarray(X_b)
    if X_a.shape[0] != X_b.shape[0]:
        raise VectorError(f"views have different numbers of items: {X_a.shape[0]} and {X_b.shape[0]}")
    if n_neighbors < 2:
        raise ConfigError(f"n_neighbors must be at least 2, got {n_neighbors}")
    coords_a = _layout(X_a, knn_a, valid_a, n_neighbors, seed, "view a")
    coords_b = _layout(X_b, knn_b, valid_b, n_neighbors, seed, "view b")
    return coords_a, align_layout(coords_a, coords_b)


def warm_umap() -> None:
    """Trigger umap-learn's numba compilation once on a tiny problem (a few seconds, then cached)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2 * MIN_UMAP_ITEMS, 8)).astype(np.float32)
    umap_layouts(X, X, n_neighbors=5, seed=0)


def pca_layout(X: np.ndarray) -> np.ndarray:
    """2-D positions of the rows of ``X`` by :func:`_pca2` (the layout used where UMAP cannot run),
    over the rows that are finite and non-zero; NaN rows elsewhere (e.g. cold items of a view)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.full((X.shape[0], 2), np.nan)
    ok = np.isfinite(X).all(axis=1)
    ok[ok] = np.linalg.norm(X[ok], axis=1) > 0
    if ok.sum() >= 3 and X.shape[1] >= 1:
        out[ok] = _pca2(X[ok])
    return out
