"""Ranking metrics (hand-computed toy cases and agreement with ranx) and bootstrap CIs."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from analysis.bootstrap import bootstrap_ci, paired_bootstrap
from analysis.errors import ConfigError
from analysis.metrics import aggregate, evaluate, hits_matrix, n_relevant

L2 = np.log2  # discount 1 / log2(i + 1) at 1-based position i


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(rows), n_items))


def test_hand_computed_toy():
    # user 0: R = {1, 3}; list 3, 0, 1, -1  -> hits at positions 1 and 3
    # user 1: R = {0, 2, 4, 5}; list 5, 6, 7, 8 -> hit at position 1 only
    # user 2: R = {} -> NaN everywhere
    target = _csr([[3, 1], [0, 2, 4, 5], []], 9)
    top = np.array([[3, 0, 1, -1], [5, 6, 7, 8], [0, 1, 2, 3]])
    res = evaluate(top, target, np.array([0, 1, 2]), ks=(2, 4))
    # recall@2: u0 1/2, u1 1/4; recall@4: u0 2/2, u1 1/4
    np.testing.assert_allclose(res["recall@2"][:2], [0.5, 0.25])
    np.testing.assert_allclose(res["recall@4"][:2], [1.0, 0.25])
    # ndcg@2: u0 DCG = 1, IDCG = 1 + 1/log2(3); u1 DCG = 1, IDCG = 1 + 1/log2(3)
    idcg2 = 1 + 1 / L2(3)
    np.testing.assert_allclose(res["ndcg@2"][:2], [1 / idcg2, 1 / idcg2])
    # ndcg@4: u0 DCG = 1 + 1/log2(4) = 1.5, IDCG over min(2, 4) = 2 positions;
    #         u1 DCG = 1, IDCG over min(4, 4) = 4 positions
    idcg4 = 1 + 1 / L2(3) + 1 / L2(4) + 1 / L2(5)
    np.testing.assert_allclose(res["ndcg@4"][:2], [1.5 / idcg2, 1 / idcg4])
    np.testing.assert_allclose(res["hit@2"][:2], [1.0, 1.0])
    for v in res.values():
        assert np.isnan(v[2])
    agg = aggregate(res)
    assert agg["recall@2"] == {"mean": 0.375, "n": 2, "n_skipped": 1}


def test_k_beyond_list_width_and_padding_never_hits():
    target = _csr([[0, 1, 2]], 5)
    top = np.array([[-1, 2]])  # padding first, hit second
    res = evaluate(top, target, np.array([0]), ks=(5,))
    # DCG = 1/log2(3); IDCG over min(3, 5) = 3 positions
    np.testing.assert_allclose(res["ndcg@5"], [(1 / L2(3)) / (1 + 1 / L2(3) + 1 / L2(4))])
    np.testing.assert_allclose(res["recall@5"], [1 / 3])
    with pytest.raises(ConfigError):
        evaluate(np.array([[7]]), target, np.array([0]))


def test_hits_matrix_matches_naive_loop_and_ignores_explicit_zeros():
    rng = np.random.default_rng(0)
    target = sp.random(80, 120, density=0.05, format="csr", random_state=1, dtype=np.float32)
    target.data[:] = 1
    target.data[::7] = 0  # explicit zeros are not relevant
    users = rng.permutation(80)[:60]
    top = rng.integers(-1, 120, size=(60, 25))
    h = hits_matrix(top, target, users)
    dense = target.toarray() != 0
    naive = np.array([[t >= 0 and dense[u, t] for t in row] for u, row in zip(users, top)])
    np.testing.assert_array_equal(h, naive)
    np.testing.assert_array_equal(n_relevant(target, users), dense[users].sum(1))


def test_agreement_with_ranx():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(5)
    n_u, n_i, K = 50, 70, 20
    target = (rng.random((n_u, n_i)) < rng.uniform(0.01, 0.3, size=(n_u, 1))).astype(np.float32)
    target[0] = 0  # empty R: NaN for us, not representable in ranx qrels
    target[1, :] = 0
    target[1, [3, 4]] = 1
    users = np.arange(n_u)
    top = np.stack([rng.permutation(n_i)[:K] for _ in range(n_u)])
    top[1] = np.r_[[3], rng.permutation(np.setdiff1d(np.arange(n_i), [3, 4]))[: K - 1]]
    res = evaluate(top, sp.csr_matrix(target), users, ks=(5, 10, 20))
    keep = target.sum(1) > 0
    qrels = ranx.Qrels({f"u{u:03d}": {f"i{i:03d}": 1 for i in np.flatnonzero(target[u])} for u in users[keep]})
    run = ranx.Run({f"u{u:03d}": {f"i{i:03d}": float(K - r) for r, i in enumerate(top[u])} for u in users[keep]})
    for k in (5, 10, 20):
        names = [f"recall@{k}", f"ndcg@{k}", f"hit_rate@{k}"]
        ref = ranx.evaluate(qrels, run, names, return_mean=False)
        np.testing.assert_allclose(res[f"recall@{k}"][keep], ref[f"recall@{k}"], rtol=1e-12)
        np.testing.assert_allclose(res[f"ndcg@{k}"][keep], ref[f"ndcg@{k}"], rtol=1e-12)
        np.testing.assert_allclose(res[f"hit@{k}"][keep], ref[f"hit_rate@{k}"], rtol=1e-12)
    assert np.isnan(res["ndcg@10"][0])
    assert res["ndcg@10"][1] == pytest.approx(1 / (1 + 1 / L2(3)))


# ------------------------------------------------------------------ bootstrap
def test_bootstrap_ci_skips_nan_and_matches_normal_approximation():
    rng = np.random.default_rng(0)
    v = rng.random(2000)
    v[:100] = np.nan
    r = bootstrap_ci(v, n_boot=2000, seed=1)
    x = v[100:]
    assert r["n"] == 1900 and r["n_skipped"] == 100
    assert r["mean"] == pytest.approx(x.mean())
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert r["lo"] < r["mean"] < r["hi"]
    # percentile interval width ≈ 2 * 1.96 * SE for a mean of 1,900 uniforms
    assert (r["hi"] - r["lo"]) == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert bootstrap_ci(v, n_boot=2000, seed=1) == r  # seeded
    c = bootstrap_ci(np.full(10, 0.3))
    assert c["lo"] == pytest.approx(0.3) and c["hi"] == pytest.approx(0.3)
    e = bootstrap_ci(np.array([np.nan, np.nan]))
    assert e["n"] == 0 and e["n_skipped"] == 2 and np.isnan(e["mean"])
    with pytest.raises(ConfigError):
        bootstrap_ci(v, level=1.5)


def test_paired_bootstrap():
    rng = np.random.default_rng(1)
    base = rng.random(1500)  # strong shared per-user effect
    a = base + 0.02 + rng.normal(0, 0.02, 1500)
    b = base.copy()
    b[:10] = np.nan
    r = paired_bootstrap(a, b, n_boot=1000, seed=0)
    assert r["n"] == 1490 and r["n_skipped"] == 10
    d = (a - b)[10:]
    assert r["diff"] == pytest.approx(d.mean())
    assert 0 < r["lo"] < r["diff"] < r["hi"]
    assert r["p_value"] == pytest.approx(1 / 1001)  # never 0: no resample at or below 0
    # one source: the interval excludes 0 exactly when p < 0.05, near the boundary too, for any B
    seen = set()
    for seed in range(60):
        x = rng.normal(0.0025, 0.05, 1500)
        for n_boot in (1000, 300):
            rr = paired_bootstrap(x, np.zeros(1500), n_boot=n_boot, seed=seed)
            assert (rr["lo"] > 0 or rr["hi"] < 0) == (rr["p_value"] < 0.05)
            seen.add(rr["p_value"] < 0.05)
    assert seen == {True, False}
    # pairing removes the shared variance: narrower than the unpaired CIs would suggest
    assert (r["hi"] - r["lo"]) < 0.2 * (bootstrap_ci(a)["hi"] - bootstrap_ci(a)["lo"])
    same = paired_bootstrap(b, b)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    # small difference: the bootstrap p-value matches the normal-theory paired test
    from scipy.stats import norm

    for seed in range(3):
        x = base + rng.normal(0.003, 0.05, 1500)
        y = base + rng.normal(0, 0.05, 1500)
        r = paired_bootstrap(x, y, n_boot=4000, seed=seed)
        z = (x - y).mean() / ((x - y).std(ddof=1) / np.sqrt(1500))
        assert r["p_value"] == pytest.approx(2 * norm.sf(abs(z)), abs=0.03)
    with pytest.raises(ConfigError):
        paired_bootstrap(a, b[:5])


def test_percentile_p_hand_cases():
    from analysis.bootstrap import percentile_p

    # Q(q) = np.quantile: 5 resamples at levels 0, .25, .5, .75, 1; Q crosses 0 halfway between -1 and 1 (level .375)
    assert percentile_p(np.array([-3.0, -1.0, 1.0, 2.0, 4.0])) == pytest.approx(0.75)
    assert percentile_p(np.zeros(10)) == 1.0  # every difference 0
    assert percentile_p(np.arange(1.0, 11.0)) == pytest.approx(1 / 11)  # all above 0: the floor 1 / (B + 1)
    assert percentile_p(-np.arange(1.0, 11.0)) == pytest.approx(1 / 11)
