"""Recommendation-level complementarity: list overlap, RBO, hit decomposition, oracles."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from analysis.complementarity import compare_lists, list_jaccard, prefix_overlap, rbo_ext, summarise
from analysis.metrics import evaluate


def _csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(rows), n_items))


def rbo_loop(a, b, p=0.9):
    """Webber 2010 eq. 32 written literally with Python sets (independent reference)."""
    k = len(a)
    x = [len(set(a[:d]) & set(b[:d])) for d in range(1, k + 1)]
    return x[-1] / k * p**k + (1 - p) / p * sum(x[d - 1] / d * p**d for d in range(1, k + 1))


def _random_case(seed=0, n_u=60, n_i=50, k=10):
    rng = np.random.default_rng(seed)
    top_a = np.stack([rng.permutation(n_i)[:k] for _ in range(n_u)])
    # b shares a random part of a, shuffled a little
    top_b = top_a.copy()
    for u in range(n_u):
        m = rng.integers(0, k + 1)
        rest = rng.permutation(np.setdiff1d(np.arange(n_i), top_a[u]))[: k - m]
        top_b[u] = rng.permutation(np.r_[rng.choice(top_a[u], m, replace=False), rest])
    target = sp.csr_matrix((rng.random((n_u, n_i)) < 0.15).astype(np.float32))
    return top_a, top_b, target, np.arange(n_u)


def test_rbo_hand_computed():
    # A = [1, 2, 3], B = [2, 1, 4], p = 0.9, K = 3
    # X_1 = |{1} ∩ {2}| = 0, X_2 = |{1,2} ∩ {2,1}| = 2, X_3 = |{1,2,3} ∩ {2,1,4}| = 2
    # RBO_ext = X_3/3 p^3 + (1-p)/p (X_1/1 p + X_2/2 p^2 + X_3/3 p^3)
    #         = (2/3)(0.729) + (0.1/0.9)(0 + 0.81 + (2/3)(0.729))
    #         = 0.486 + (1/9)(1.296) = 0.486 + 0.144 = 0.630
    a, b = np.array([[1, 2, 3]]), np.array([[2, 1, 4]])
    assert prefix_overlap(a, b).tolist() == [[0, 2, 2]]
    assert rbo_ext(a, b)[0] == pytest.approx(0.630, abs=1e-12)
    assert list_jaccard(a, b)[0] == pytest.approx(2 / 4)


def test_rbo_matches_literal_formula_on_random_lists():
    top_a, top_b, _, _ = _random_case(1)
    for p in (0.5, 0.9, 0.98):
        ref = [rbo_loop(list(x), list(y), p) for x, y in zip(top_a, top_b)]
        np.testing.assert_allclose(rbo_ext(top_a, top_b, p), ref, rtol=1e-12)


def test_identical_lists():
    top_a, _, target, users = _random_case(2)
    df = compare_lists(top_a, top_a, target, users, k=10)
    np.testing.assert_allclose(df["list_jaccard"], 1.0)
    np.testing.assert_allclose(df["rbo"], 1.0, rtol=1e-12)
    assert (df["only_a"] == 0).all() and (df["only_b"] == 0).all()
    assert (df["shared"] == df["hits_a"]).all()
    has = df["n_rel"] > 0
    np.testing.assert_allclose(df.loc[has, "oracle_select_recall"], df.loc[has, "recall_a"])
    np.testing.assert_allclose(df.loc[has, "oracle_select_ndcg"], df.loc[has, "ndcg_a"])
    # union of identical hit sets: recall UB = recall of the view itself
    np.testing.assert_allclose(df.loc[has, "oracle_union_recall"], df.loc[has, "recall_a"])
    s = summarise(df)
    assert s["unique_hit_share_a"] == 0 and s["unique_hit_share_b"] == 0
    assert s["oracle_select_recall_gain"] == 0 and s["oracle_union_recall_gain"] == pytest.approx(0)


def test_disjoint_lists():
    top_a = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    top_b = np.array([[4, 5, 6, 7], [0, 1, 2, 3]])
    target = _csr([[0, 4], [1, 2, 5]], 8)
    df = compare_lists(top_a, top_b, target, np.array([0, 1]), k=4)
    np.testing.assert_array_equal(df["list_jaccard"], [0, 0])
    np.testing.assert_array_equal(df["rbo"], [0, 0])
    assert (df["shared"] == 0).all()
    assert df["only_a"].tolist() == [1, 1] and df["only_b"].tolist() == [1, 2]


def test_hit_decomposition_and_oracles_hand_computed():
    # A = [1, 2, 3], B = [3, 4, 5], R = {1, 3, 5, 7}, K = 3
    # H_a = {1, 3}, H_b = {3, 5}: shared 1, only_a 1, only_b 1, distinct 3
    # recall_a = recall_b = 2/4; union UB = min(3, 3)/4 = 0.75
    # ndcg_a: hits at positions 1, 3 -> DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/2
    # ndcg_b: hits at positions 1, 3 as well -> same; union NDCG = 3 hits first / IDCG = 1
    # user 1: R = {} -> oracle columns NaN
    target = _csr([[1, 3, 5, 7], []], 9)
    df = compare_lists(np.array([[1, 2, 3], [1, 2, 3]]), np.array([[3, 4, 5], [3, 4, 5]]), target, np.array([0, 1]), k=3)
    r = df.iloc[0]
    assert (r.hits_a, r.hits_b, r.shared, r.only_a, r.only_b) == (2, 2, 1, 1, 1)
    assert r.unique_share_a == pytest.approx(1 / 3) and r.unique_share_b == pytest.approx(1 / 3)
    idcg = 1 + 1 / np.log2(3) + 0.5
    assert r.ndcg_a == pytest.approx(1.5 / idcg) and r.ndcg_b == pytest.approx(1.5 / idcg)
    assert r.oracle_select_recall == pytest.approx(0.5)
    assert r.oracle_union_recall == pytest.approx(0.75)
    assert r.oracle_union_ndcg == pytest.approx(1.0)
    assert r.list_jaccard == pytest.approx(1 / 5)
    for c in ("oracle_select_recall", "oracle_select_ndcg", "oracle_union_recall", "oracle_union_ndcg"):
        assert np.isnan(df.iloc[1][c])
    s = summarise(df)
    assert s["hits_distinct"] == 3 and s["unique_hit_share_a"] == pytest.approx(1 / 3)
    assert s["n_users_with_relevant"] == 1


def test_oracles_dominate_single_views_on_random_data():
    top_a, top_b, target, users = _random_case(3, n_u=200, n_i=80, k=10)
    df = compare_lists(top_a, top_b, target, users, k=10)
    ea = evaluate(top_a, target, users, ks=(10,))
    eb = evaluate(top_b, target, users, ks=(10,))
    np.testing.assert_allclose(df["recall_a"], ea["recall@10"])  # same metric code path
    np.testing.assert_allclose(df["ndcg_b"], eb["ndcg@10"])
    has = (df["n_rel"] > 0).to_numpy()
    for m in ("recall", "ndcg"):
        for o in ("select", "union"):
            col = df[f"oracle_{o}_{m}"].to_numpy()[has]
            assert (col >= df[f"{m}_a"].to_numpy()[has] - 1e-12).all()
            assert (col >= df[f"{m}_b"].to_numpy()[has] - 1e-12).all()
        # the union pool dominates per-user selection
        assert (df[f"oracle_union_{m}"].to_numpy()[has] >= df[f"oracle_select_{m}"].to_numpy()[has] - 1e-12).all()
    assert (df["oracle_union_ndcg"].to_numpy()[has] <= 1 + 1e-12).all()
    s = summarise(df)
    assert s["oracle_union_recall_gain"] > 0
    # aggregated shares: the three parts partition all distinct hits
    assert s["shared_hit_share"] + s["unique_hit_share_a"] + s["unique_hit_share_b"] == pytest.approx(1)
    # jaccard and rbo lie in [0, 1] and agree with the planted overlap ordering
    assert df["list_jaccard"].between(0, 1).all() and df["rbo"].between(0, 1 + 1e-12).all()
    assert np.corrcoef(df["list_jaccard"], df["rbo"])[0, 1] > 0.7


def test_padding_is_not_an_item():
    a = np.array([[1, 2, -1, -1]])
    b = np.array([[1, 3, -1, -1]])
    assert list_jaccard(a, b)[0] == pytest.approx(1 / 3)  # {1} / {1, 2, 3}
    # pads are distinct non-matching items: X = [1, 1, 1, 1]
    assert prefix_overlap(a, b).tolist() == [[1, 1, 1, 1]]


def test_union_oracle_ndcg_gain_is_read_against_hits_first_of_the_better_view():
    # R = {1, 2, 3, 4}, K = 4. A = [9, 1, 8, 2]: hits at ranks 2 and 4. B = [3, 7, 6, 5]: one hit at rank 1.
    # IDCG = 1 + 1/log2(3) + 1/2 + 1/log2(5). ndcg_a = (1/log2 3 + 1/log2 5) / IDCG > ndcg_b = 1 / IDCG.
    # A's own hits first: (1 + 1/log2 3) / IDCG. Union pool {1, 2, 3} first: (1 + 1/log2 3 + 1/2) / IDCG.
    # Raw gain = union − ndcg_a; the part from the other view = union − hits-first(A) = 0.5 / IDCG.
    target = _csr([[1, 2, 3, 4]], 10)
    df = compare_lists(np.array([[9, 1, 8, 2]]), np.array([[3, 7, 6, 5]]), target, np.array([0]), k=4)
    idcg = 1 + 1 / np.log2(3) + 0.5 + 1 / np.log2(5)
    r = df.iloc[0]
    assert r.hits_first_ndcg_a == pytest.approx((1 + 1 / np.log2(3)) / idcg)
    assert r.hits_first_ndcg_b == pytest.approx(1 / idcg)
    assert r.oracle_union_ndcg == pytest.approx((1 + 1 / np.log2(3) + 0.5) / idcg)
    s = summarise(df)
    assert s["hits_first_ndcg_best"] == pytest.approx((1 + 1 / np.log2(3)) / idcg)
    assert s["oracle_union_ndcg_gain"] == pytest.approx(0.5 / idcg)
    assert s["oracle_union_ndcg_gain_raw"] == pytest.approx((0.5 + 1 - 1 / np.log2(5)) / idcg)


def test_hits_first_ndcg_matches_ranx_on_the_reordered_list():
    """hits_first_ndcg(h) = NDCG of the same list with its hits moved to the top (ranx as reference)."""
    from ranx import Qrels, Run, evaluate as rx_evaluate

    from analysis.complementarity import hits_first_ndcg

    top = _random_case(seed=4)[0]
    rng = np.random.default_rng(4)
    rel = [list(rng.choice(50, size=rng.integers(1, 12), replace=False)) for _ in range(len(top))]
    target = _csr(rel, 50)
    h = np.array([np.isin(t, r).sum() for t, r in zip(top, rel)])
    reordered = [sorted(t, key=lambda i, r=set(r): i not in r) for t, r in zip(top, rel)]
    qrels = Qrels({f"u{u:03d}": {str(i): 1 for i in r} for u, r in enumerate(rel)})  # ids sort like users
    run = Run({f"u{u:03d}": {str(i): float(len(t) - j) for j, i in enumerate(t)} for u, t in enumerate(reordered)})
    ref = rx_evaluate(qrels, run, "ndcg@10", return_mean=False)
    np.testing.assert_allclose(hits_first_ndcg(h, np.diff(target.indptr), 10), ref, rtol=1e-9)


def test_kept_bootstrap_draws_give_the_same_means_as_fresh_draws():
    """Reusing the resampled indices across metric vectors changes nothing: the means equal those of
    the plain draw (``rng.integers`` chunk by chunk) bit for bit, for kept and for too-large draws."""
    import analysis.bootstrap as b

    rng = np.random.default_rng(5)
    for n, keep in ((943, b._KEEP_ENTRIES), (3000, 10)):  # 3000 x 1000 > 10: not kept
        v = rng.random(n)
        r, ref = np.random.default_rng(3), []
        step = max(1, b._CHUNK_ENTRIES // n)
        for s in range(0, 1000, step):
            ref.append(v[r.integers(0, n, size=(min(step, 1000 - s), n))].mean(1))
        b._KEEP_ENTRIES, old = keep, b._KEEP_ENTRIES
        try:
            np.testing.assert_array_equal(b.bootstrap_means(v, 1000, 3), np.concatenate(ref))
            np.testing.assert_array_equal(b.bootstrap_means(v, 1000, 3), np.concatenate(ref))  # second call: kept
        finally:
            b._KEEP_ENTRIES = old


def test_oracle_excess_hand_computed_and_its_interval_from_the_same_resamples():
    """excess = (compared pair's select-oracle gain) − (control pair's), as summarise() defines each gain;
    interval: every column resampled with the same users, checked against a literal loop."""
    import pandas as pd

    from analysis.bootstrap import _draws
    from analysis.complementarity import oracle_excess

    # 4 users: a = semantic, b = collaborative, c = most-popular NDCG; user 3 has no relevant item
    a, b, c = np.array([0.2, 0.0, 0.6, np.nan]), np.array([0.4, 0.3, 0.0, np.nan]), np.array([0.0, 0.5, 0.0, np.nan])
    comp = pd.DataFrame({"user": np.arange(4), "ndcg_a": a, "ndcg_b": b})
    ctrl = pd.DataFrame({"user": np.arange(4), "ndcg_a": c, "ndcg_b": b})
    ex = oracle_excess(comp, ctrl, n_boot=300, seed=4)
    # pair (a, b): mean max = (0.4 + 0.3 + 0.6) / 3, better view a (mean 0.8 / 3 against b 0.7 / 3)
    gain = (0.4 + 0.3 + 0.6) / 3 - max(0.8 / 3, 0.7 / 3)  # = 0.5 / 3
    control = (0.4 + 0.5 + 0.0) / 3 - max(0.5 / 3, 0.7 / 3)  # = 0.2 / 3 (better view of the control: b)
    assert ex["gain"] == pytest.approx(gain) and ex["control_gain"] == pytest.approx(control)
    assert ex["value"] == pytest.approx(0.1) and ex["n"] == 3 and ex["n_skipped"] == 1
    vals = []
    ok = np.arange(3)
    for idx in _draws(3, 300, 4):
        for row in idx:
            aa, bb, cc = a[ok][row], b[ok][row], c[ok][row]
            vals.append((np.fmax(aa, bb).mean() - max(aa.mean(), bb.mean()))
                        - (np.fmax(cc, bb).mean() - max(cc.mean(), bb.mean())))
    assert ex["lo"] == pytest.approx(np.quantile(vals, 0.025)) and ex["hi"] == pytest.approx(np.quantile(vals, 0.975))
    from analysis.bootstrap import percentile_p

    assert ex["p_value"] == percentile_p(np.array(vals))
    with pytest.raises(Exception, match="same users"):
        oracle_excess(comp, ctrl.iloc[::-1].reset_index(drop=True))


def test_oracle_excess_matches_summarise_on_random_lists():
    from analysis.complementarity import oracle_excess

    top_a, top_b, target, users = _random_case(5, n_u=300, n_i=60, k=10)
    top_c = np.tile(np.arange(10), (300, 1))  # a most-popular-like list
    comp = compare_lists(top_a, top_b, target, users, k=10)
    ctrl = compare_lists(top_c, top_b, target, users, k=10)
    ex = oracle_excess(comp, ctrl, n_boot=200)
    want = summarise(comp)["oracle_select_ndcg_gain"] - summarise(ctrl)["oracle_select_ndcg_gain"]
    assert ex["value"] == pytest.approx(want, abs=1e-12)
    assert ex["lo"] <= ex["value"] <= ex["hi"]
