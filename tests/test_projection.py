"""2-D maps: UMAP on precomputed kNN graphs, Procrustes alignment, PCA fallback for tiny n.

umap-learn compiles with numba on first use, so the UMAP fits are few, small and shared
through a module-scoped fixture.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from analysis.neighbors import knn_cosine
from analysis.projection import MIN_UMAP_ITEMS, align_layout, umap_layouts

N_PER, D = 50, 20


def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian clusters around orthogonal directions (well separated in angle)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), N_PER)
    centres = 8.0 * np.eye(D)[:3]
    return centres[labels] + rng.normal(size=(3 * N_PER, D)), labels


def _purity(coords: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    _, nb = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords)
    return float((labels[nb[:, 1:]] == labels[:, None]).mean())


@pytest.fixture(scope="module")
def maps():
    X, labels = _clusters()
    idx, sims = knn_cosine(X, 15)
    knn = (idx, 1.0 - sims)
    first = umap_layouts(X, X, knn_a=knn, knn_b=knn, n_neighbors=15, seed=0)
    again = umap_layouts(X, X, knn_a=knn, knn_b=knn, n_neighbors=15, seed=0)
    # a "collaborative" view with cold items: rotated vectors, 10 items invalid
    valid = np.ones(len(X), dtype=bool)
    valid[::15] = False
    Y = X @ ortho_group.rvs(D, random_state=0)
    Y[~valid] = 0.0
    ib, sb = knn_cosine(Y, 15, valid=valid)
    cold = umap_layouts(X, Y, knn_a=knn, knn_b=(ib, 1.0 - sb), n_neighbors=15, seed=0, valid_b=valid)
    return dict(X=X, labels=labels, first=first, again=again, cold=cold, valid=valid)


def test_shapes_and_finite(maps):
    ca, cb = maps["first"]
    assert ca.shape == cb.shape == (3 * N_PER, 2)
    assert np.isfinite(ca).all() and np.isfinite(cb).all()


def test_deterministic_with_same_seed(maps):
    for a, b in zip(maps["first"], maps["again"]):
        np.testing.assert_array_equal(a, b)


def test_identical_views_give_identical_maps_after_alignment(maps):
    ca, cb = maps["first"]
    spread = np.linalg.norm(ca - ca.mean(0), axis=1).mean()
    assert np.linalg.norm(ca - cb, axis=1).max() < 1e-6 * spread


def test_planted_clusters_stay_separated(maps):
    ca, _ = maps["first"]
    assert _purity(ca, maps["labels"]) > 0.9
    _, cb = maps["cold"]
    ok = maps["valid"]
    assert _purity(cb[ok], maps["labels"][ok]) > 0.9


def test_cold_items_get_nan_in_their_view_only(maps):
    ca, cb = maps["cold"]
    ok = maps["valid"]
    assert np.isnan(cb[~ok]).all() and np.isfinite(cb[ok]).all() and np.isfinite(ca).all()
    # b is aligned to a: each cluster's centroid in b lands nearest the same cluster's centroid in a
    lab = maps["labels"]
    spread = np.linalg.norm(ca - ca.mean(0), axis=1).mean()
    A = np.array([ca[(lab == c) & ok].mean(0) for c in range(3)])
    B = np.array([cb[(lab == c) & ok].mean(0) for c in range(3)])
    dist = np.linalg.norm(A[:, None] - B[None], axis=2)
    np.testing.assert_array_equal(dist.argmin(axis=0), np.arange(3))
    assert np.diag(dist).mean() < 0.5 * spread


def test_align_layout_recovers_similarity_transform():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(40, 2))
    R = np.array([[0.0, 1.0], [1.0, 0.0]]) @ ortho_group.rvs(2, random_state=4)  # reflection + rotation
    B = 3.7 * A @ R + np.array([5.0, -2.0])
    B[[3, 8]] = np.nan
    out = align_layout(A, B)
    assert np.isnan(out[[3, 8]]).all()
    ok = np.ones(40, dtype=bool)
    ok[[3, 8]] = False
    np.testing.assert_allclose(out[ok], A[ok], atol=1e-10)
    assert np.abs(B[ok] - A[ok]).max() > 1  # it really had to move


def test_tiny_catalogue_falls_back_to_pca():
    rng = np.random.default_rng(2)
    n = MIN_UMAP_ITEMS - 18
    X = rng.normal(size=(n, 6)) + 4 * np.eye(6)[np.arange(n) % 2]
    ca, cb = umap_layouts(X, X[:, ::-1], n_neighbors=5)
    assert ca.shape == (n, 2) and np.isfinite(ca).all() and np.isfinite(cb).all()
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    ref = PCA(2).fit_transform(U)
    np.testing.assert_allclose(np.abs(ca), np.abs(ref), atol=1e-8)  # PCA up to component signs
    np.testing.assert_allclose(cb, ca, atol=1e-8)  # permuting features leaves the same map
