"""Global similarity: linear / debiased CKA, Procrustes distance, top-PC removal, permutation nulls."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group
from sklearn.decomposition import PCA

from analysis.errors import ConfigError, VectorError
from analysis.similarity import (
    debiased_cka,
    debiased_cka_gram,
    global_similarity,
    linear_cka,
    linear_cka_gram,
    permutation_null,
    procrustes_distance,
    remove_top_pc,
)


def related(n=300, d1=20, d2=7, seed=0, noise=1.0, offset=3.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d1)) + offset  # uncentred on purpose
    Y = X @ rng.standard_normal((d1, d2)) + noise * rng.standard_normal((n, d2)) - offset
    return X, Y


def test_one_dimensional_hand_computed():
    # x centred (-1, 0, 1), y centred (-4/3, -1/3, 5/3): x·y = 3, ||x||² = 2, ||y||² = 42/9
    x = np.array([[1.0], [2.0], [3.0]])
    y = np.array([[1.0], [2.0], [4.0]])
    r2 = 9.0 / (2.0 * 42.0 / 9.0)  # = 81/84: 1-D linear CKA is the squared Pearson correlation
    assert linear_cka(x, y) == pytest.approx(81 / 84, abs=1e-12)
    assert linear_cka(x, y) == pytest.approx(r2, abs=1e-12)
    assert procrustes_distance(x, y) == pytest.approx(2 - 2 * np.sqrt(81 / 84), abs=1e-12)


@pytest.mark.parametrize("shape", [(300, 20, 7), (40, 60, 90)])  # tall and wide (d > n)
def test_feature_space_matches_gram_form(shape):
    n, d1, d2 = shape
    X, Y = related(n, d1, d2, seed=1)
    assert linear_cka(X, Y) == pytest.approx(linear_cka_gram(X, Y), rel=1e-10)
    # the Gram reference runs on the *uncentred* kernels: unbiased HSIC is translation invariant
    assert debiased_cka(X, Y) == pytest.approx(debiased_cka_gram(X, Y), rel=1e-8, abs=1e-10)
    assert 0.1 < linear_cka(X, Y) < 0.99


def test_identical_views():
    X, _ = related(seed=2)
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert debiased_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert procrustes_distance(X, X) == pytest.approx(0.0, abs=1e-10)


def test_invariances():
    X, Y = related(seed=3)
    Q = ortho_group.rvs(Y.shape[1], random_state=4)
    Z = 7.5 * Y @ Q + 11.0  # rotation, isotropic scaling, translation
    for f in (linear_cka, debiased_cka, procrustes_distance):
        assert f(X, Z) == pytest.approx(f(X, Y), rel=1e-9)
    # identical up to rotation/scale/shift: similarity 1, distance 0
    assert linear_cka(Y, Z) == pytest.approx(1.0, abs=1e-12)
    assert procrustes_distance(Y, Z) == pytest.approx(0.0, abs=1e-9)
    # but not to anisotropic scaling (the invariance check can fail)
    D = Y * np.array([1.0, 10.0, 1.0, 1.0, 0.1, 1.0, 1.0])
    assert abs(linear_cka(X, D) - linear_cka(X, Y)) > 0.01


def test_procrustes_distance_equals_scipy_alignment_residual():
    X, Y = related(200, 12, 5, seed=5)
    d = max(X.shape[1], Y.shape[1])
    A = np.zeros((200, d))
    B = np.zeros((200, d))
    A[:, :12] = X - X.mean(0)
    B[:, :5] = Y - Y.mean(0)
    A /= np.linalg.norm(A)
    B /= np.linalg.norm(B)
    Q, _ = orthogonal_procrustes(A, B)
    assert procrustes_distance(X, Y) == pytest.approx(np.linalg.norm(A @ Q - B) ** 2, rel=1e-10)


def test_independent_high_dimensional_views_biased_vs_debiased():
    # DIAGNOSTICS.md: independent 768-d vs 64-d views over 1,682 items give CKA ≈ 0.11, dCKA ≈ 0
    rng = np.random.default_rng(6)
    X = rng.standard_normal((1682, 768))
    Y = rng.standard_normal((1682, 64))
    cka = linear_cka(X, Y)
    expected = np.sqrt(768 * 64 / ((1682 + 768) * (1682 + 64)))  # ≈ 0.107 for isotropic Gaussians
    assert cka > 0.05
    assert cka == pytest.approx(expected, abs=0.01)
    assert abs(debiased_cka(X, Y)) < 0.02


def test_remove_top_pc_matches_sklearn_pca():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((400, 10)) * np.linspace(5, 1, 10) + 2.0
    R = remove_top_pc(X)
    pca = PCA(n_components=1).fit(X)
    ref = (X - X.mean(0)) - np.outer(pca.transform(X)[:, 0], pca.components_[0])
    np.testing.assert_allclose(R, ref, atol=1e-10)
    np.testing.assert_allclose(R.mean(0), 0.0, atol=1e-12)
    assert np.linalg.matrix_rank(R) == 9


def test_permutation_p_value_related_views_minimal():
    X, Y = related(200, 10, 5, seed=8)
    res = permutation_null(linear_cka, X, Y, n_perm=99, seed=0)
    assert res["p_value"] == pytest.approx(1 / 100)
    assert res["raw"] > res["null_q975"] > res["null_q025"]
    assert len(res["null"]) == res["n_perm"] == 99
    # a distance: smaller is more extreme
    dist = permutation_null(procrustes_distance, X, Y, n_perm=99, seed=0, greater=False)
    assert dist["p_value"] == pytest.approx(1 / 100)
    assert dist["raw"] < dist["null_q025"]


def test_permutation_p_values_roughly_uniform_for_independent_views():
    ps = []
    for s in range(40):
        rng = np.random.default_rng(100 + s)
        X, Y = rng.standard_normal((80, 6)), rng.standard_normal((80, 4))
        ps.append(permutation_null(linear_cka, X, Y, n_perm=49, seed=s)["p_value"])
    ps = np.array(ps)
    assert 0.35 < ps.mean() < 0.65
    assert (ps <= 0.1).mean() < 0.25
    assert ps.max() > 0.8  # large p-values do occur


def test_global_similarity_rows_equal_generic_permutation_null():
    X, Y = related(150, 12, 6, seed=9, noise=3.0)
    df = global_similarity(X, Y, n_perm=30, seed=5)
    assert list(df.columns) == ["statistic", "variant", "raw", "null_mean", "null_std", "null_lo", "null_hi",
                                "p_value", "n_items", "n_perm"]
    assert len(df) == 6 and (df["n_items"] == 150).all() and (df["n_perm"] == 30).all()
    fns = {"cka": linear_cka, "debiased_cka": debiased_cka, "procrustes_distance": procrustes_distance}
    for _, row in df.iterrows():
        f = fns[row["statistic"]]
        fn = f if row["variant"] == "raw" else (lambda a, b, f=f: f(remove_top_pc(a), remove_top_pc(b)))
        ref = permutation_null(fn, X, Y, n_perm=30, seed=5, greater=row["statistic"] != "procrustes_distance")
        for col, key in (("raw", "raw"), ("null_mean", "null_mean"), ("null_std", "null_std"),
                         ("null_lo", "null_q025"), ("null_hi", "null_q975"), ("p_value", "p_value")):
            assert row[col] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), (row["statistic"], row["variant"], col)


def test_global_similarity_drops_invalid_items():
    X, Y = related(160, 8, 4, seed=10)
    valid = np.ones(160, dtype=bool)
    valid[[3, 50, 77]] = False
    Yn = Y.copy()
    Yn[~valid] = np.nan  # cold items: no collaborative vector
    a = global_similarity(X, Yn, valid, n_perm=20, seed=1)
    b = global_similarity(X[valid], Y[valid], None, n_perm=20, seed=1)
    np.testing.assert_allclose(a["raw"], b["raw"], rtol=1e-12)
    np.testing.assert_allclose(a["p_value"], b["p_value"])
    assert (a["n_items"] == 157).all()
    with pytest.raises(VectorError, match="row 3"):
        global_similarity(X, Yn, None, n_perm=5)
    with pytest.raises(ConfigError):
        global_similarity(X, Y, valid.astype(int), n_perm=5)
    with pytest.raises(ConfigError):
        global_similarity(X, Y, n_perm=0)
    with pytest.raises(VectorError):
        linear_cka(X, Y[:-1])


def test_shared_heavy_tailed_factor_inflates_cka_and_top_pc_removal_fixes_it():
    rng = np.random.default_rng(11)
    n = 1682
    f = rng.standard_t(3, size=n)  # one heavy-tailed factor (a popularity-like direction)
    u = rng.standard_normal(384)
    w = rng.standard_normal(64)
    X = rng.standard_normal((n, 384)) + 6.0 * np.outer(f, u / np.linalg.norm(u)) * np.sqrt(384) / 4
    Y = rng.standard_normal((n, 64)) + 6.0 * np.outer(f, w / np.linalg.norm(w)) * np.sqrt(64) / 4
    df = global_similarity(X, Y, n_perm=50, seed=0).set_index(["statistic", "variant"])
    assert df.loc[("cka", "raw"), "raw"] > 0.8
    assert df.loc[("cka", "raw"), "p_value"] == pytest.approx(1 / 51)
    removed = df.loc[("cka", "top_pc_removed")]
    assert removed["raw"] < 0.15  # back to the independent-noise level
    assert removed["raw"] < removed["null_hi"] + 0.01
    assert abs(df.loc[("debiased_cka", "top_pc_removed"), "raw"]) < 0.02
