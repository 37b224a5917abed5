"""Shared + private structure: held-out CCA, AJIVE, variance fractions and item energies.

Recovery is checked on the synthetic generator: X = its semantic vectors (a linear image of
[shared, sem_private] + noise) and Y = [shared, col_private, popularity] @ random map + noise
built from the planted factors (faster than training a collaborative model).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn.cross_decomposition import CCA
from statsmodels.multivariate.cancorr import CanCorr

from analysis.errors import ConfigError, VectorError
from analysis.structure import (
    _random_top_block_norms,
    ajive,
    fit_cca,
    heldout_cca,
    item_energy,
    signal_rank,
    structure_tables,
    variance_fractions,
)
from analysis.synthetic import generate


def planted_views(d_shared: int, seed: int, n_items: int = 1000, noise: float = 0.5):
    ds = generate(n_users=60, n_items=n_items, d_shared=d_shared, seed=seed, mean_per_user=10)
    pl = ds.planted
    X = ds.vectors["semantic"][1].astype(np.float64)
    rng = np.random.default_rng(seed + 100)
    lat = np.hstack([pl["shared"], pl["col_private"], pl["popularity"][:, None]])
    Y = lat @ rng.standard_normal((lat.shape[1], 64)) + noise * rng.standard_normal((n_items, 64))
    return X, Y, pl


def low_rank(n, d, r, seed, noise=0.01):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, r)) @ rng.standard_normal((r, d)) + noise * rng.standard_normal((n, d))


# ----------------------------------------------------------------------------- CCA
def test_in_sample_cca_matches_statsmodels_and_sklearn():
    rng = np.random.default_rng(0)
    n = 500
    Z = rng.standard_normal((n, 3))
    X = np.hstack([Z * [3.0, 2.0, 1.0], rng.standard_normal((n, 3))]) @ rng.standard_normal((6, 6)) + 5.0
    Y = np.hstack([Z * [1.0, 1.5, 0.8], rng.standard_normal((n, 2))]) @ rng.standard_normal((5, 5))
    Y += 0.7 * rng.standard_normal((n, 5))
    fit = fit_cca(X, Y)  # no PCA, no ridge: exact CCA
    ref = CanCorr(Y, X).cancorr
    np.testing.assert_allclose(fit.train_corr, ref, atol=1e-8)
    assert fit.train_corr[0] > 0.8 and fit.train_corr[-1] < 0.3  # a non-trivial spectrum
    sk = CCA(n_components=3, max_iter=5000, tol=1e-12).fit(X, Y)
    u, v = sk.transform(X, Y)
    sk_corr = [abs(np.corrcoef(u[:, j], v[:, j])[0, 1]) for j in range(3)]
    np.testing.assert_allclose(fit.train_corr[:3], sk_corr, atol=1e-4)
    # canonical variates are uncorrelated with each other within each view
    a, b = fit.transform(X, Y)
    off = np.corrcoef(a.T) - np.eye(a.shape[1])
    assert np.abs(off).max() < 1e-8


def test_heldout_cca_train_corr_is_fit_cca_on_training_items():
    X, Y, _ = planted_views(3, 0, n_items=600)
    tr = np.random.default_rng(1).random(600) < 0.6
    res = heldout_cca(X, Y, tr, pca_dims=10, n_perm=5)
    ref = fit_cca(X[tr], Y[tr], pca_dims=10)
    np.testing.assert_allclose(res["train_corr"], ref.train_corr, atol=1e-10)
    a, b = ref.transform(X[~tr], Y[~tr])
    held = [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])]
    np.testing.assert_allclose(res["heldout_corr"], held, atol=1e-10)
    assert res["null"].shape == (5, 10) and res["n_train"] == tr.sum() and res["n_test"] == (~tr).sum()


def test_independent_views_in_sample_cca_is_high_but_heldout_finds_nothing():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((600, 150)), rng.standard_normal((600, 150))
    tr = np.arange(600) < 400
    assert fit_cca(X[tr], Y[tr]).train_corr[0] > 0.7  # the in-sample pitfall
    res = heldout_cca(X, Y, tr, pca_dims=32, n_perm=50, seed=0)
    assert res["shared_dim"] == 0
    assert abs(res["heldout_corr"][0]) < 0.2


def test_ridge_shrinks_the_fit():
    X, Y, _ = planted_views(3, 1, n_items=400)
    tr = np.arange(400) < 250
    plain = heldout_cca(X, Y, tr, pca_dims=None, n_perm=5)
    ridged = heldout_cca(X, Y, tr, pca_dims=None, ridge=1.0, n_perm=5)
    assert plain["pca_dims"] == (48, 64)  # every non-null component (the cap (250 - 1) // 2 = 124 not hit)
    assert ridged["train_corr"][-1] < plain["train_corr"][-1]
    assert ridged["heldout_corr"][:3].min() > 0.9  # the shared signal survives the ridge


# ----------------------------------------------------------------------------- AJIVE helpers
def test_signal_rank_recovers_planted_rank():
    assert signal_rank(low_rank(800, 50, 7, seed=3, noise=0.3)) == 7
    assert signal_rank(low_rank(300, 120, 12, seed=4, noise=0.3)) == 12


def test_random_top_block_sampler_matches_direct_simulation():
    rng = np.random.default_rng(5)
    N, k, r, B = 40, 3, 4, 3000
    fast = _random_top_block_norms(rng, N, k, r, B)
    direct = np.array([np.linalg.norm(np.linalg.qr(rng.standard_normal((N, r)))[0][:k], 2) for _ in range(B)])
    assert ks_2samp(fast, direct).pvalue > 0.01
    # weighted version (the Wedin resampling): ||diag(w) Q|| with Q a random orthonormal k × r
    w = np.linspace(3.0, 0.5, 12)
    fast_w = _random_top_block_norms(rng, 12, 12, 5, B, w)
    direct_w = np.array([np.linalg.norm(w[:, None] * np.linalg.qr(rng.standard_normal((12, 5)))[0], 2)
                         for _ in range(B)])
    assert ks_2samp(fast_w, direct_w).pvalue > 0.01
    assert fast.max() <= 1.0 + 1e-12 and fast_w.max() <= w.max() + 1e-9


# ----------------------------------------------------------------------------- recovery
@pytest.mark.parametrize("d_shared", [3, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_planted_shared_dimension(d_shared, seed):
    X, Y, pl = planted_views(d_shared, seed)
    train = np.random.default_rng(seed).random(len(X)) < 2 / 3
    cca = heldout_cca(X, Y, train, pca_dims=32, n_perm=60, seed=seed)
    aj = ajive(X, Y, n_rand=300, seed=seed)
    assert abs(cca["shared_dim"] - d_shared) <= 1
    assert abs(aj["joint_rank"] - d_shared) <= 1
    assert aj["signal_ranks"] == (d_shared + pl["sem_private"].shape[1], d_shared + pl["col_private"].shape[1] + 1)
    assert cca["significant"][: d_shared - 1].all()
    # the joint basis spans the planted shared factors: all principal angles small
    S = pl["shared"] - pl["shared"].mean(0)
    Qs = np.linalg.qr(S)[0]
    cos = np.linalg.svd(Qs.T @ aj["joint_basis"], compute_uv=False)
    assert cos[: min(d_shared, aj["joint_rank"])].min() > 0.95


def test_identical_views_everything_shared():
    X = low_rank(500, 40, 10, seed=6, noise=0.01)
    tables, summary = structure_tables(X, X.copy(), seed=0, pca_dims=16, n_perm=30, n_rand=200)
    assert summary["shared_dim_cca"] == 16 == len(tables["cca"])
    assert summary["signal_rank_sem"] == summary["signal_rank_col"] == 10
    assert summary["joint_rank_ajive"] == 10
    np.testing.assert_allclose(tables["ajive"]["sigma2"], 2.0, atol=1e-9)
    v = tables["variance"].set_index("view")
    assert (v["shared"] > 0.999).all()
    assert tables["item_energy"]["sem_shared"].min() > 0.9


def test_independent_views_nothing_shared():
    rng = np.random.default_rng(7)
    X = low_rank(800, 48, 10, seed=8, noise=0.3)
    Y = low_rank(800, 64, 12, seed=9, noise=0.3)[rng.permutation(800)]
    tables, summary = structure_tables(X, Y, seed=1, n_perm=60, n_rand=300)
    assert summary["shared_dim_cca"] == 0
    assert summary["joint_rank_ajive"] == 0
    assert not tables["ajive"]["joint"].any()
    assert (tables["variance"]["shared"] == 0).all()
    assert (tables["item_energy"]["col_shared"] == 0).all()


# ----------------------------------------------------------------------------- energies
def test_variance_and_item_energy_hand_computed():
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])  # already centred
    C = np.array([[1.0], [-1.0], [0.0], [0.0]]) / np.sqrt(2)
    v = variance_fractions(X, X, C)
    assert v["shared"].tolist() == pytest.approx([0.2, 0.2])  # 2 of 10 units of energy
    assert v["private"].tolist() == pytest.approx([0.8, 0.8])
    e = item_energy(X, X, C)
    assert e["sem_shared"].tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0])
    assert e["col_private"].tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match="orthonormal"):
        variance_fractions(X, X, 2 * C)


def test_fractions_sum_to_one_and_match_planted_shares():
    X, Y, pl = planted_views(8, 0)
    aj = ajive(X, Y, n_rand=100)
    v = variance_fractions(X, Y, aj["joint_basis"])
    np.testing.assert_allclose(v["shared"] + v["private"], 1.0, atol=1e-12)
    # semantic view: 8 shared of 14 unit-variance factors, the rest private (+ small noise)
    sem = v.set_index("view").loc["semantic", "shared"]
    assert sem == pytest.approx(8 / (14 + 48 * 0.01), abs=0.05)
    e = item_energy(X, Y, aj["joint_basis"])
    np.testing.assert_allclose(e["sem_shared"] + e["sem_private"], 1.0, atol=1e-12)
    # per item, the semantic shared share tracks the planted one
    planted_share = (pl["shared"] ** 2).sum(1) / ((pl["shared"] ** 2).sum(1) + (pl["sem_private"] ** 2).sum(1))
    assert np.corrcoef(e["sem_shared"], planted_share)[0, 1] > 0.9


def test_ajive_decomposition_parts():
    X, Y, _ = planted_views(3, 2, n_items=500)
    aj = ajive(X, Y, n_rand=100, seed=0)
    C = aj["joint_basis"]
    np.testing.assert_allclose(C.T @ C, np.eye(aj["joint_rank"]), atol=1e-10)
    np.testing.assert_allclose(C.sum(0), 0.0, atol=1e-8)  # lies in the centred item space
    v = aj["views"]["semantic"]
    assert v["joint_loadings"].shape == (aj["joint_rank"], X.shape[1])
    assert v["individual_rank"] == 6  # the 6 semantic-private factors
    assert aj["views"]["collaborative"]["individual_rank"] == 7  # 6 private + popularity
    np.testing.assert_allclose(C.T @ v["individual_scores"], 0.0, atol=1e-8)  # individual ⟂ joint
    assert aj["random_bound"] < aj["wedin_bound"] < 2.0
    with pytest.raises(ConfigError):
        ajive(X, Y, ranks=(0, 5))


def test_structure_tables_with_cold_items():
    X, Y, _ = planted_views(3, 0, n_items=500)
    valid = np.ones(500, dtype=bool)
    valid[::10] = False
    Yn = Y.copy()
    Yn[~valid] = np.nan
    tables, summary = structure_tables(X, Yn, valid, seed=0, n_perm=20, n_rand=100)
    assert summary["n_items"] == 450 and summary["n_train"] + summary["n_test"] == 450
    e = tables["item_energy"]
    assert list(e.columns) == ["item_idx", "sem_shared", "sem_private", "col_shared", "col_private"]
    assert len(e) == 500 and e.loc[~valid, "sem_shared"].isna().all() and e.loc[valid].notna().all().all()
    assert list(tables["cca"].columns) == ["component", "train_corr", "heldout_corr", "null_q95", "significant"]
    assert list(tables["ajive"].columns) == ["component", "sigma2", "wedin_bound", "random_bound", "joint"]
    assert isinstance(tables["variance"], pd.DataFrame)
    with pytest.raises(VectorError, match="row 0"):
        structure_tables(X, Yn, None)
