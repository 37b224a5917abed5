"""Item-level agreement: exact cosine kNN, overlap / Jaccard, popularity deciles, Procrustes cosine."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group
from sklearn.neighbors import NearestNeighbors

from analysis.errors import ConfigError, VectorError
from analysis.neighbors import (
    by_popularity_decile,
    chance_overlap,
    knn_cosine,
    neighbour_table,
    neighbourhood_agreement,
    procrustes_cosine,
)

# five items on the circle at these angles (degrees), with different norms; by hand, k=2:
# 0: 1 (20°), 2 (50°)   1: 0 (20°), 2 (30°)   2: 1 (30°), 0 (50°)
# 3: 2 (60°), 1 (90°)   4: 3 (100°), 0 (150°)
ANGLES = np.deg2rad([0.0, 20.0, 50.0, 110.0, 210.0])
TOY = np.c_[np.cos(ANGLES), np.sin(ANGLES)] * np.array([1.0, 3.0, 0.5, 2.0, 7.0])[:, None]
TOY_IDX = np.array([[1, 2], [0, 2], [1, 0], [2, 1], [3, 0]])
TOY_SIM = np.cos(np.deg2rad([[20, 50], [20, 30], [30, 50], [60, 90], [100, 150]]))
# a second, hand-written graph and its hand-computed agreement with TOY_IDX at k=2 and k=1
OTHER_IDX = np.array([[2, 1], [3, 4], [0, 4], [4, 0], [3, 2]])


def test_toy_knn_hand_computed():
    idx, sims = knn_cosine(TOY, 2)
    assert idx.dtype == np.int32 and sims.dtype == np.float32
    np.testing.assert_array_equal(idx, TOY_IDX)
    np.testing.assert_allclose(sims, TOY_SIM, atol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_knn_matches_sklearn_brute_force(backend):
    X = np.random.default_rng(1).normal(size=(300, 12))
    idx, sims = knn_cosine(X, 7, block=64, backend=backend)  # several blocks
    dist, ref = NearestNeighbors(n_neighbors=8, metric="cosine", algorithm="brute").fit(X).kneighbors(X)
    assert (ref[:, 0] == np.arange(300)).all()
    np.testing.assert_array_equal(idx, ref[:, 1:])
    np.testing.assert_allclose(sims, 1 - dist[:, 1:], atol=1e-5)


def test_duplicate_rows_are_each_others_first_neighbour():
    X = np.random.default_rng(2).normal(size=(20, 5))
    X[7] = X[3]
    idx, sims = knn_cosine(X, 3)
    assert idx[3, 0] == 7 and idx[7, 0] == 3
    assert sims[3, 0] == pytest.approx(1.0, abs=1e-6) and sims[7, 0] == pytest.approx(1.0, abs=1e-6)
    assert not (idx == np.arange(20)[:, None]).any()  # never the item itself


def test_valid_mask_excludes_items_and_blanks_their_rows():
    X = np.random.default_rng(3).normal(size=(50, 6))
    valid = np.ones(50, dtype=bool)
    valid[[4, 10, 11]] = False
    X[10] = 0.0  # a cold item's zero vector: allowed because it is invalid
    X[11] = np.nan
    idx, sims = knn_cosine(X, 5, valid=valid)
    assert (idx[~valid] == -1).all() and np.isnan(sims[~valid]).all()
    assert not np.isin(idx[valid], [4, 10, 11]).any()
    # the valid rows equal the kNN of the valid subset alone
    sub = np.flatnonzero(valid)
    ref, _ = knn_cosine(X[sub], 5)
    np.testing.assert_array_equal(idx[sub], sub[ref])


def test_bad_input_raises_specific_errors():
    X = np.random.default_rng(4).normal(size=(10, 3))
    X[6] = 0.0
    with pytest.raises(VectorError, match="row 6"):
        knn_cosine(X, 2)
    with pytest.raises(ConfigError, match="k=10"):
        knn_cosine(np.ones((10, 3)) + np.eye(10, 3), 10)
    with pytest.raises(ConfigError):
        knn_cosine(X, 2, valid=np.ones(9, dtype=bool))


def test_toy_agreement_hand_computed():
    df = neighbourhood_agreement(TOY_IDX, OTHER_IDX, 2)
    np.testing.assert_allclose(df["overlap"], [1.0, 0.0, 0.5, 0.0, 0.5])
    np.testing.assert_allclose(df["jaccard"], [1.0, 0.0, 1 / 3, 0.0, 1 / 3])
    np.testing.assert_allclose(df["disagreement"], [0.0, 1.0, 0.5, 1.0, 0.5])
    assert df.index.name == "item_idx"
    assert df["chance"].iloc[0] == pytest.approx(0.5) == chance_overlap(5, 2)
    # smaller k than the computed depth: the first column only
    df1 = neighbourhood_agreement(TOY_IDX, OTHER_IDX, 1)
    np.testing.assert_allclose(df1["overlap"], [0, 0, 0, 0, 1])
    np.testing.assert_allclose(df1["jaccard"], [0, 0, 0, 0, 1])
    with pytest.raises(ConfigError):
        neighbourhood_agreement(TOY_IDX, OTHER_IDX, 3)


def test_identical_views_overlap_one():
    X = np.random.default_rng(5).normal(size=(200, 16))
    Q = ortho_group.rvs(16, random_state=0)
    ia, _ = knn_cosine(X, 10)
    ib, _ = knn_cosine(X @ Q, 10)  # a rotation preserves cosine neighbourhoods
    df = neighbourhood_agreement(ia, ib, 10)
    assert (df["overlap"] == 1).all() and (df["jaccard"] == 1).all() and (df["disagreement"] == 0).all()


def test_independent_views_overlap_near_chance():
    rng = np.random.default_rng(6)
    n, k = 1000, 10
    ia, _ = knn_cosine(rng.normal(size=(n, 24)), k)
    ib, _ = knn_cosine(rng.normal(size=(n, 8)), k)
    ov = neighbourhood_agreement(ia, ib, k)["overlap"].to_numpy()
    se = ov.std(ddof=1) / np.sqrt(n)
    assert abs(ov.mean() - k / (n - 1)) < 4 * se
    assert ov.mean() < 0.03  # far below any real agreement


def test_agreement_with_masks():
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
    valid = np.ones(60, dtype=bool)
    valid[[0, 33]] = False
    ia, _ = knn_cosine(X, 4, valid=valid)
    ib, _ = knn_cosine(Y, 4, valid=valid)
    df = neighbourhood_agreement(ia, ib, 4)
    assert df["overlap"].isna().to_numpy().tolist() == (~valid).tolist()
    assert df.attrs["n_valid"] == 58 and df["chance"].iloc[1] == pytest.approx(4 / 57)
    # a graph whose neighbourhoods contain items the other view cannot place is refused
    ia_all, _ = knn_cosine(X, 4)
    hits_invalid = np.isin(ia_all[valid], [0, 33]).any()
    assert hits_invalid
    with pytest.raises(ConfigError, match="same `valid` mask"):
        neighbourhood_agreement(ia_all, ib, 4)


def test_by_popularity_decile_planted():
    n = 100
    pop = np.arange(n)[::-1].astype(float)  # item 0 most popular
    overlap = np.repeat(np.linspace(0.1, 1.0, 10), 10)[::-1]  # overlap grows with popularity
    df = pd.DataFrame({"overlap": overlap, "jaccard": overlap / (2 - overlap),
                       "disagreement": 1 - overlap, "chance": 0.05},
                      index=pd.RangeIndex(n, name="item_idx"))
    out = by_popularity_decile(df, pop)
    assert out["decile"].tolist() == list(range(1, 11)) and (out["n_items"] == 10).all()
    np.testing.assert_allclose(out["mean_overlap"], np.linspace(0.1, 1.0, 10))
    np.testing.assert_allclose(out["mean_disagreement"], 1 - np.linspace(0.1, 1.0, 10))
    assert out["popularity_min"].iloc[-1] == 90 and out["popularity_max"].iloc[-1] == 99
    assert (out["chance"] == 0.05).all()


def test_by_popularity_decile_ties_and_nan():
    n = 100
    pop = np.r_[np.zeros(30), np.arange(1, 71)].astype(float)
    ov = np.r_[np.full(30, 0.2), np.full(70, 0.6)]
    ov[50] = np.nan  # invalid item: left out of the deciles
    df = pd.DataFrame({"overlap": ov, "jaccard": ov, "disagreement": 1 - ov, "chance": 0.1})
    out = by_popularity_decile(df, pop).set_index("decile")
    assert out["n_items"].sum() == 99
    assert out.loc[1, "n_items"] == 30 and out.loc[1, "popularity_max"] == 0  # the zero tie stays together
    assert 2 not in out.index and 3 not in out.index  # merged into decile 1, omitted
    assert out.loc[1, "mean_overlap"] == pytest.approx(0.2)
    assert out.loc[10, "mean_overlap"] == pytest.approx(0.6)


def test_neighbour_table():
    sims = TOY_SIM.astype(np.float32)
    idx = TOY_IDX.copy()
    idx[2] = -1
    sims[2] = np.nan
    t = neighbour_table(idx, sims, "semantic")
    assert len(t) == 8 and 2 not in set(t["item_idx"])
    row = t[(t["item_idx"] == 4) & (t["rank"] == 2)].iloc[0]
    assert row["neighbor_idx"] == 0 and row["sim"] == pytest.approx(np.cos(np.deg2rad(150)), abs=1e-6)
    assert (t["view"] == "semantic").all() and t["rank"].tolist()[:2] == [1, 2]


def test_procrustes_rotation_gives_cosine_one():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(80, 6)) + 3.0  # off-centre, to exercise the centring
    Q = ortho_group.rvs(6, random_state=1)
    np.testing.assert_allclose(procrustes_cosine(X, 2.5 * X @ Q + 1.0), 1.0, atol=1e-10)


def test_procrustes_zero_padding_smaller_dimension():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(80, 3))
    W = ortho_group.rvs(5, random_state=2)[:3]  # orthonormal rows: Y = X W embeds X in 5-D
    np.testing.assert_allclose(procrustes_cosine(X, X @ W), 1.0, atol=1e-10)
    np.testing.assert_allclose(procrustes_cosine(X @ W, X), 1.0, atol=1e-10)


def test_procrustes_independent_views_low_and_masks():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(500, 4))
    cos = procrustes_cosine(X, rng.normal(size=(500, 4)))
    assert np.nanmean(cos) < 0.3
    Y = X @ ortho_group.rvs(4, random_state=3)
    valid = np.ones(500, dtype=bool)
    valid[:20] = False
    Y[:20] = rng.normal(scale=1e3, size=(20, 4))  # garbage in invalid rows must not enter the fit
    Y[20] = np.nan  # a non-finite row is invalid too
    cos = procrustes_cosine(X, Y, valid=valid)
    assert np.isnan(cos[:21]).all()
    np.testing.assert_allclose(cos[21:], 1.0, atol=1e-10)


def test_chance_jaccard_exact_by_enumeration_and_half_of_overlap_for_small_k():
    from itertools import combinations

    from analysis.neighbors import chance_jaccard, chance_overlap

    subsets = [set(c) for c in combinations(range(5), 2)]  # n = 6 items: 5 candidates, k = 2
    brute = np.mean([len(a & b) / (4 - len(a & b)) for a in subsets for b in subsets])
    assert chance_jaccard(6, 2) == pytest.approx(brute, rel=1e-12)
    assert chance_jaccard(1682, 10) == pytest.approx(chance_overlap(1682, 10) / 2, rel=0.1)  # ≈ k / (2(N − 1))
    assert chance_jaccard(1682, 10) != pytest.approx(chance_overlap(1682, 10), rel=0.1)


# ------------------------------------------------------------------ faiss: exact and approximate paths
def _reference_knn(X, k, valid=None):
    """Brute force in numpy: float64 cosines of the float32 unit rows, rounded to float32 and clipped to ≤ 1,
    ordered by (−sim, index), the item itself excluded by index."""
    n = len(X)
    valid = np.ones(n, dtype=bool) if valid is None else valid
    v = np.flatnonzero(valid)
    U = np.asarray(X[valid], dtype=np.float32)
    U = (U / np.linalg.norm(U, axis=1)[:, None]).astype(np.float64)
    S = np.minimum(U @ U.T, 1.0).astype(np.float32)
    np.fill_diagonal(S, -np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(v)), S.shape), -S), axis=1)[:, :k]
    idx = np.full((n, k), -1, dtype=np.int32)
    sims = np.full((n, k), np.nan, dtype=np.float32)
    idx[v], sims[v] = v[order], np.take_along_axis(S, order, axis=1)
    return idx, sims


def _tied_data(seed):
    """Small integer vectors (many equal cosines, parallel rows) with blocks of exact duplicates."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-2, 3, size=(2500, 6)).astype(np.float32)
    X[~X.any(axis=1)] = 1.0
    X[100:260] = X[5]  # a tie group far larger than k + margin: the search must widen
    X[900:905] = X[2000]
    return X


@pytest.mark.parametrize("k", [1, 7, 30])
def test_exact_knn_equals_bruteforce_reference_with_ties_and_duplicates(k):
    from analysis.neighbors import knn_cosine_with_report

    X = _tied_data(11)
    valid = np.ones(len(X), dtype=bool)
    valid[[3, 150, 2000]] = False  # one inside the duplicate block, one duplicated item
    idx, sims, report = knn_cosine_with_report(X, k, valid=valid)
    ref_idx, ref_sims = _reference_knn(X, k, valid)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(sims, ref_sims)
    assert report["method"] == "exact" and report["engine"] == "faiss.IndexFlatIP"
    if k == 30:
        assert report["widened_rows"] > 0
        # a row of the duplicate block: its first neighbours are the lowest other indices of the block
        group = [i for i in [5, *range(100, 260)] if valid[i]]
        assert idx[120].tolist() == [i for i in group if i != 120][:30]
        assert (sims[120] == 1.0).all()


def test_exact_knn_equals_bruteforce_reference_continuous_and_float32():
    for n, d in ((1682, 384), (1682, 64)):  # ml-100k-like sizes
        X = np.random.default_rng(d).normal(size=(n, d)).astype(np.float32)
        idx, sims = knn_cosine(X, 30)
        ref_idx, ref_sims = _reference_knn(X, 30)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(sims, ref_sims)
        assert idx.dtype == np.int32 and sims.dtype == np.float32 and (sims <= 1).all()


def test_exact_knn_without_faiss_gives_the_same_graph(monkeypatch):
    import sys

    from analysis.neighbors import knn_cosine_with_report

    X = _tied_data(12)
    with_faiss = knn_cosine(X, 12)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    idx, sims, report = knn_cosine_with_report(X, 12, block=300)
    assert report["engine"] == "numpy matmul"
    np.testing.assert_array_equal(idx, with_faiss[0])
    np.testing.assert_array_equal(sims, with_faiss[1])


def _reference_queries(X, Q, exclude, k):
    """Brute force in float64 on the float32 unit vectors: ties to the lower row, row exclude[j] left out."""
    U = np.asarray(X, np.float32)
    U = (U / np.linalg.norm(U, axis=1)[:, None]).astype(np.float64)
    Qu = np.asarray(Q, np.float32)
    Qu = (Qu / np.maximum(np.linalg.norm(Qu, axis=1)[:, None], 1e-30)).astype(np.float64)
    S = np.minimum(Qu @ U.T, 1.0).astype(np.float32)
    S[np.arange(len(Q)), exclude] = -np.inf
    return np.lexsort((np.broadcast_to(np.arange(len(X)), S.shape), -S), axis=1)[:, :k]


@pytest.mark.parametrize("faiss_installed", [True, False])
@pytest.mark.parametrize("k", [1, 10, 30])
def test_knn_of_query_vectors_equals_bruteforce_with_ties_and_leave_one_out(k, faiss_installed, monkeypatch):
    """Query vectors that are not rows (mapped vectors searched among true ones): the same exact
    graph as brute force, ties included, with faiss or without; each query's own row is left out
    even when it is its twin."""
    import sys

    from analysis.neighbors import CosineQuerySearch

    if not faiss_installed:
        monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError: numpy blocks

    X = _tied_data(14)
    rng = np.random.default_rng(14)
    exclude = rng.choice(len(X), 600, replace=False)
    exclude[:40] = np.arange(100, 140)  # queries from the big duplicate block
    Q = X[exclude] + rng.integers(-1, 2, size=(600, X.shape[1])) * (np.arange(600) % 3 == 0)[:, None]
    Q[5] = 0.0  # a zero query: cosine 0 with every row, so the k lowest rows but its own
    got = CosineQuerySearch(X)(Q, exclude, k)
    ref = _reference_queries(X, Q, exclude, k)
    np.testing.assert_array_equal(got, ref)
    assert not (got == exclude[:, None]).any()
    assert got[1].tolist() == [i for i in [5, *range(100, 260)] if i != 101][:k]  # an unperturbed twin
    assert got[5].tolist() == [i for i in range(len(X)) if i != exclude[5]][:k]


def test_one_query_index_serves_many_searches():
    """CosineQuerySearch indexes the rows once: each later search (other queries, other k) equals brute force."""
    from analysis.neighbors import CosineQuerySearch

    X = _tied_data(15)
    rng = np.random.default_rng(15)
    search = CosineQuerySearch(X)
    for k in (3, 25):
        exclude = rng.choice(len(X), 200, replace=False)
        Q = X[exclude] + rng.normal(scale=0.3, size=(200, X.shape[1]))
        np.testing.assert_array_equal(search(Q, exclude, k), _reference_queries(X, Q, exclude, k))


def test_knn_of_query_vectors_refuses_bad_input():
    from analysis.neighbors import CosineQuerySearch

    X = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.raises(ConfigError, match="exclude must hold one row"):
        CosineQuerySearch(X)(X[:3], np.array([0, 1, 50]), 5)
    with pytest.raises(ConfigError, match="k must be between 1 and 49"):
        CosineQuerySearch(X)(X[:3], np.arange(3), 50)
    Q = X[:3].copy()
    Q[2, 1] = np.nan
    with pytest.raises(VectorError, match="query row 2 has NaN"):
        CosineQuerySearch(X)(Q, np.arange(3), 5)
    Z = X.copy()
    Z[7] = 0.0
    with pytest.raises(VectorError, match=r"item row 7 has a zero-norm vector .*every searched row needs a finite"):
        CosineQuerySearch(Z)(X[:3], np.arange(3), 5)


def test_approximate_path_reports_recall_measured_on_its_sample():
    from analysis.neighbors import knn_cosine_with_report

    rng = np.random.default_rng(13)
    n, k = 6000, 10
    X = rng.normal(size=(n, 24)).astype(np.float32)  # isotropic: hard for a graph index
    valid = rng.random(n) > 0.05
    X[~valid] = 0.0  # invalid items may be zero vectors
    # threshold lowered and a deliberately weak graph, so that recall is measured below 1
    idx, sims, report = knn_cosine_with_report(X, k, valid=valid, exact_max=5000, seed=7, recall_sample=1000,
                                               recall_target=0.9, hnsw_m=8, ef_construction=16)
    assert report["method"] == "approximate" and report["engine"] == "faiss.IndexHNSWFlat"
    assert report["recall_sample"] == 1000 and report["recall_seed"] == 7 and report["ef_search"] >= 64
    assert report["recall_at_k"] >= 0.9 and report["recall_met"]
    json.dumps(report)  # goes into the run's manifest as it is
    # the graph's form is the exact path's: invalid rows blank, never a neighbour, no self, sims exact, sorted
    v = np.flatnonzero(valid)
    assert (idx[~valid] == -1).all() and np.isnan(sims[~valid]).all()
    assert valid[idx[valid]].all() and not (idx[v] == v[:, None]).any()
    U = X / np.maximum(np.linalg.norm(X, axis=1), 1e-30)[:, None]
    np.testing.assert_allclose(sims[v], np.einsum("id,ijd->ij", U[v], U[idx[v]]), atol=1e-5)
    assert (np.diff(sims[v], axis=1) <= 0).all()
    # independent recomputation on the same sample: seeded positions among the valid items, brute-force top-k
    items = v[np.sort(np.random.default_rng(7).choice(len(v), size=1000, replace=False))]
    S = U[items].astype(np.float64) @ U[v].T.astype(np.float64)
    S[np.arange(len(items)), np.searchsorted(v, items)] = -np.inf
    truth = v[np.argsort(-S, axis=1, kind="stable")[:, :k]]
    recall = np.mean([len(set(idx[i]) & set(t)) / k for i, t in zip(items, truth)])
    assert report["recall_at_k"] == pytest.approx(recall, abs=1e-12)
    assert recall < 1.0  # the check above compares a real measurement
    # the same data at the threshold is exact
    _, _, exact = knn_cosine_with_report(X, k, valid=valid, exact_max=int(valid.sum()))
    assert exact["method"] == "exact" and "recall_at_k" not in exact


def test_exact_threshold_from_the_environment(monkeypatch):
    from analysis.neighbors import knn_cosine_with_report

    X = np.random.default_rng(14).normal(size=(400, 8)).astype(np.float32)
    monkeypatch.setenv("SEMCOLLAB_KNN_EXACT_MAX", "300")
    _, _, report = knn_cosine_with_report(X, 5, recall_sample=100)
    assert report["method"] == "approximate" and report["exact_max"] == 300 and report["recall_sample"] == 100
    monkeypatch.setenv("SEMCOLLAB_KNN_EXACT_MAX", "lots")
    with pytest.raises(ConfigError, match="SEMCOLLAB_KNN_EXACT_MAX"):
        knn_cosine(X, 5)


@pytest.mark.slow
def test_approximate_path_by_default_above_fifty_thousand_items():
    from analysis.neighbors import EXACT_MAX_ITEMS, knn_cosine_with_report

    n, k = 60_000, 10
    assert n > EXACT_MAX_ITEMS
    X = np.random.default_rng(15).normal(size=(n, 16)).astype(np.float32)
    idx, sims, report = knn_cosine_with_report(X, k, seed=3)
    assert report["method"] == "approximate" and report["recall_sample"] == 1000 and report["recall_at_k"] >= 0.9
    U = (X / np.linalg.norm(X, axis=1)[:, None]).astype(np.float64)
    items = np.sort(np.random.default_rng(3).choice(n, size=1000, replace=False))
    S = U[items] @ U.T
    S[np.arange(len(items)), items] = -np.inf
    truth = np.argsort(-S, axis=1, kind="stable")[:, :k]
    assert report["recall_at_k"] == pytest.approx(np.mean([len(set(idx[i]) & set(t)) / k
                                                           for i, t in zip(items, truth)]), abs=1e-12)
