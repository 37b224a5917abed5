"""Fusion: exact endpoints, agreement with ranx.fuse (wsum + min-max, rrf), cold-aware
fusion, segments, alpha choice and headroom."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from analysis.backend import Backend
from analysis.errors import ConfigError, VectorError
from analysis.fusion import (
    choose_alpha,
    fuse_scores,
    fuse_topk,
    fusion_curve,
    headroom,
    minmax_rows,
    rrf_scores,
    rrf_topk,
)
from analysis.metrics import evaluate
from analysis.models.base import EmbeddingRecommender
from analysis.ranking import rank

N_U, N_I = 30, 40


def _case(seed=0, n_cold=0, n_u=N_U, n_i=N_I):
    rng = np.random.default_rng(seed)
    a = EmbeddingRecommender("sem", rng.standard_normal((n_u, 8)).astype(np.float32),
                             rng.standard_normal((n_i, 8)).astype(np.float32), np.ones(n_i, bool))
    scorable = np.ones(n_i, bool)
    scorable[rng.choice(n_i, n_cold, replace=False)] = False
    b = EmbeddingRecommender("col", 3 * rng.standard_normal((n_u, 6)).astype(np.float32),
                             rng.standard_normal((n_i, 6)).astype(np.float32), scorable)
    seen = sp.csr_matrix((rng.random((n_u, n_i)) < 0.2).astype(np.float32))
    target = sp.csr_matrix(((rng.random((n_u, n_i)) < 0.15) & ~seen.toarray().astype(bool)).astype(np.float32))
    return a, b, seen, target, np.arange(n_u)


def _run(ranx, scores, keep):
    """ranx Run with every item in ``keep`` for each user (full candidate list, no truncation)."""
    return ranx.Run({f"u{u:03d}": {f"i{i:03d}": float(scores[u, i]) for i in np.flatnonzero(keep[u])}
                     for u in range(scores.shape[0])})


def _as_matrix(run, n_u, n_i):
    out = np.full((n_u, n_i), -np.inf)
    for q, docs in run.to_dict().items():
        for d, v in docs.items():
            out[int(q[1:]), int(d[1:])] = v
    return out


# ------------------------------------------------------------------ endpoints
@pytest.mark.parametrize("n_cold", [0, 6])
def test_curve_endpoints_equal_single_views_exactly(n_cold):
    a, b, seen, target, users = _case(1, n_cold)
    be = Backend("numpy")
    np.testing.assert_array_equal(fuse_topk(a, b, users, seen, 10, 1.0, backend=be), rank(a, users, seen, 10, backend=be))
    np.testing.assert_array_equal(fuse_topk(a, b, users, seen, 10, 0.0, backend=be), rank(b, users, seen, 10, backend=be))
    curve = fusion_curve(a, b, users, seen, target, ks=(5, 10), alphas=[0.0, 0.5, 1.0], block=7, backend=be)
    for alpha, model in ((1.0, a), (0.0, b)):
        ref = evaluate(rank(model, users, seen, 10, backend=be), target, users, ks=(5, 10))
        for name, v in ref.items():
            m, k = name.split("@")
            row = curve[(curve.alpha == alpha) & (curve.metric == m) & (curve.k == int(k))]
            assert row["value"].item() == pytest.approx(np.nanmean(v), rel=1e-12, abs=1e-15)
            assert row["n"].item() == int((~np.isnan(v)).sum())
    assert set(curve.segment_type) == {"all"}


def test_numpy_and_torch_give_identical_curves_and_lists():
    a, b, seen, target, users = _case(2, 5)
    c1 = fusion_curve(a, b, users, seen, target, ks=(10,), alphas=[0.2, 0.7], backend=Backend("numpy"))
    c2 = fusion_curve(a, b, users, seen, target, ks=(10,), alphas=[0.2, 0.7], backend=Backend("torch"))
    pd.testing.assert_frame_equal(c1, c2)
    np.testing.assert_array_equal(rrf_topk(a, b, users, seen, 10, backend=Backend("numpy")),
                                  rrf_topk(a, b, users, seen, 10, backend=Backend("torch")))


# ------------------------------------------------------------------ vs ranx
@pytest.mark.parametrize("norm_scope", ["candidates", "catalogue"])
@pytest.mark.parametrize("n_cold", [0, 7])
def test_score_fusion_matches_ranx_wsum(norm_scope, n_cold):
    ranx = pytest.importorskip("ranx")
    a, b, seen, target, users = _case(3, n_cold)
    sa, sb = a.score(users), b.score(users)
    seen_m = seen.toarray().astype(bool)
    fa, fb = np.isfinite(sa), np.isfinite(sb)
    # ranx normalises over what it is given: unseen items ("candidates") or every scorable item
    keep_a = fa & ~seen_m if norm_scope == "candidates" else fa
    keep_b = fb & ~seen_m if norm_scope == "candidates" else fb
    ra, rb = _run(ranx, sa, keep_a), _run(ranx, sb, keep_b)
    for alpha in (0.3, 0.75):
        fused = ranx.fuse([ra, rb], norm="min-max", method="wsum", params={"weights": [alpha, 1 - alpha]})
        ref = _as_matrix(fused, N_U, N_I)
        ref[seen_m] = -np.inf  # the engine masks seen items after fusing
        ours = fuse_scores(sa, sb, alpha, seen_m, norm_scope=norm_scope)
        np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(ref))
        np.testing.assert_allclose(ours[np.isfinite(ours)], ref[np.isfinite(ref)], rtol=1e-12, atol=1e-15)
        # the top-10 lists agree too (continuous scores: no ties)
        top = fuse_topk(a, b, users, seen, 10, alpha, norm_scope=norm_scope)
        ref_top = np.argsort(-ref, axis=1, kind="stable")[:, :10]
        np.testing.assert_array_equal(top, ref_top)


@pytest.mark.parametrize("n_cold", [0, 7])
def test_rrf_matches_ranx(n_cold):
    ranx = pytest.importorskip("ranx")
    a, b, seen, target, users = _case(4, n_cold)
    sa, sb = a.score(users), b.score(users)
    seen_m = seen.toarray().astype(bool)
    ra = _run(ranx, sa, np.isfinite(sa) & ~seen_m)
    rb = _run(ranx, sb, np.isfinite(sb) & ~seen_m)
    ref = _as_matrix(ranx.fuse([ra, rb], norm=None, method="rrf", params={"k": 60}), N_U, N_I)
    ours = rrf_scores(sa, sb, seen_m, rrf_k=60)
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(ref))
    np.testing.assert_allclose(ours[np.isfinite(ours)], ref[np.isfinite(ref)], rtol=1e-12)
    # lists: same scores in the same order (RRF can tie exactly; compare fused values by slot)
    top = rrf_topk(a, b, users, seen, 10)
    np.testing.assert_allclose(np.take_along_axis(ref, top.astype(np.int64), 1), -np.sort(-ref, axis=1)[:, :10], rtol=1e-12)


def test_rrf_hand_computed_and_depth():
    sa = np.array([[3.0, 2.0, 1.0, 0.0]])
    sb = np.array([[0.0, 1.0, 3.0, -np.inf]])
    # ranks a: 0->1, 1->2, 2->3, 3->4;  b: 2->1, 1->2, 0->3, item 3 unscorable
    s = rrf_scores(sa, sb, rrf_k=60)
    np.testing.assert_allclose(s[0], [1 / 61 + 1 / 63, 1 / 62 + 1 / 62, 1 / 63 + 1 / 61, 1 / 64])
    # depth 1: only each view's top item counts; the others are not ranked at all
    d = rrf_scores(sa, sb, rrf_k=60, depth=1)
    np.testing.assert_allclose(d[0], [1 / 61, -np.inf, 1 / 61, -np.inf])
    # seen item 0 is removed before ranking: ranks shift
    m = np.array([[True, False, False, False]])
    np.testing.assert_allclose(rrf_scores(sa, sb, m)[0, 1:], [1 / 61 + 1 / 62, 1 / 62 + 1 / 61, 1 / 63])


# ------------------------------------------------------------------ cold items
def test_minmax_rows_hand_computed():
    x = np.array([[1.0, 3.0, -np.inf, 2.0], [5.0, 5.0, 5.0, -np.inf]])
    np.testing.assert_allclose(minmax_rows(x), [[0, 1, -np.inf, 0.5], [0, 0, 0, -np.inf]])


def test_cold_aware_ranks_cold_items_by_other_view():
    a, b, seen, target, users = _case(5, n_cold=10)
    sa, sb = a.score(users), b.score(users)
    cold = ~b.scorable
    na, nb = minmax_rows(sa), minmax_rows(sb)
    for alpha in (0.0, 0.4):
        f = fuse_scores(sa, sb, alpha, cold_aware=True)
        np.testing.assert_array_equal(f[:, cold], na[:, cold])  # other view alone
        np.testing.assert_allclose(f[:, ~cold], alpha * na[:, ~cold] + (1 - alpha) * nb[:, ~cold], rtol=1e-15)
        # plain fusion: the view that cannot score an item contributes 0
        p = fuse_scores(sa, sb, alpha, cold_aware=False)
        np.testing.assert_allclose(p[:, cold], alpha * na[:, cold] if alpha > 0 else -np.inf)
    # at alpha = 0 plain fusion never recommends a cold item; cold-aware does, by a's order
    plain = fuse_topk(a, b, users, seen, 10, 0.0)
    aware = fuse_topk(a, b, users, seen, 10, 0.0, cold_aware=True)
    assert not cold[plain].any()
    assert cold[aware].any()
    for u in range(N_U):
        c = [i for i in aware[u] if cold[i]]
        assert c == sorted(c, key=lambda i: -na[u, i])
    # cold-aware recall on cold items beats plain fusion at a collaborative-heavy alpha
    seg = {"cold": ("item", cold.astype(int))}
    cp = fusion_curve(a, b, users, seen, target, ks=(10,), alphas=[0.2], segments=seg)
    ca = fusion_curve(a, b, users, seen, target, ks=(10,), alphas=[0.2], segments=seg, cold_aware=True)
    q = "metric == 'recall' and segment_type == 'cold' and segment == '1'"
    assert ca.query(q)["value"].item() > cp.query(q)["value"].item()


def test_no_cold_items_cold_aware_equals_plain():
    a, b, seen, target, users = _case(6)
    np.testing.assert_array_equal(fuse_topk(a, b, users, seen, 10, 0.3, cold_aware=True),
                                  fuse_topk(a, b, users, seen, 10, 0.3))


# ------------------------------------------------------------------ segments
def test_segments_match_restricted_evaluation():
    a, b, seen, target, users = _case(7, n_cold=4, n_u=45)
    rng = np.random.default_rng(0)
    pop = rng.integers(0, 3, N_I)
    act = np.array(["low", "high"])[rng.integers(0, 2, 45)]
    curve = fusion_curve(a, b, users, seen, target, ks=(5, 10), alphas=[0.0, 0.6], block=8,
                         segments={"pop": ("item", pop), "activity": ("user", act)})
    top = fuse_topk(a, b, users, seen, 10, 0.6)
    for bucket in range(3):
        t = sp.csr_matrix(target.multiply((pop == bucket)[None, :].astype(np.float32)))
        ref = evaluate(top, t, users, ks=(5, 10))
        for name, v in ref.items():
            m, k = name.split("@")
            row = curve.query(f"alpha == 0.6 and metric == '{m}' and k == {k} and segment_type == 'pop' and segment == '{bucket}'")
            assert row["value"].item() == pytest.approx(np.nanmean(v), rel=1e-12)
            assert row["n"].item() == int((~np.isnan(v)).sum())
    ref = evaluate(top, target, users, ks=(10,))
    for g in ("low", "high"):
        row = curve.query(f"alpha == 0.6 and metric == 'ndcg' and k == 10 and segment_type == 'activity' and segment == '{g}'")
        assert row["value"].item() == pytest.approx(np.nanmean(ref["ndcg@10"][act == g]), rel=1e-12)
    with pytest.raises(ConfigError):
        fusion_curve(a, b, users, seen, target, segments={"bad": ("item", pop[:5])})


# ------------------------------------------------------------------ choice
def test_choose_alpha_and_headroom():
    curve = pd.DataFrame({
        "alpha": [0.0, 0.3, 0.6, 0.9, 1.0, 0.3],
        "metric": ["ndcg"] * 5 + ["recall"],
        "k": [20] * 6,
        "value": [0.1, 0.25, 0.25, 0.2, 0.15, 0.9],
        "n": [10] * 6,
        "segment_type": ["all"] * 6,
        "segment": ["all"] * 6,
    })
    # 0.3 and 0.6 tie for the best ndcg@20: 0.6 is closer to 0.5
    assert choose_alpha(curve, "ndcg", 20) == 0.6
    assert choose_alpha(curve, "recall", 20) == 0.3
    with pytest.raises(ConfigError):
        choose_alpha(curve, "ndcg", 10)
    assert headroom(0.25, 0.2, 0.4) == pytest.approx(0.25)
    assert np.isnan(headroom(0.25, 0.2, 0.2))
    np.testing.assert_allclose(headroom(np.array([0.2, 0.3]), 0.2, 0.3), [0.0, 1.0])


def test_fusion_curve_on_real_sized_case_is_consistent():
    """Moderate case: the curve at the chosen alpha reproduces evaluate(fuse_topk)."""
    a, b, seen, target, users = _case(8, n_cold=0, n_u=300, n_i=200)
    curve = fusion_curve(a, b, users, seen, target, ks=(20,), block=64)
    assert len(curve) == 21 * 3
    alpha = choose_alpha(curve, "ndcg", 20)
    ref = evaluate(fuse_topk(a, b, users, seen, 20, alpha), target, users, ks=(20,))
    got = curve.query(f"alpha == {alpha} and metric == 'ndcg'")["value"].item()
    assert got == pytest.approx(np.nanmean(ref["ndcg@20"]), rel=1e-12)
    assert got >= curve.query("metric == 'ndcg' and alpha in (0.0, 1.0)")["value"].max()


@pytest.mark.parametrize("cold_aware", [False, True])
@pytest.mark.parametrize("quantised", [False, True])
def test_pruned_topk_equals_full_catalogue_blend(cold_aware, quantised):
    """The candidate-pool top-K is exact: same lists as blending every item, for any pool
    size (small pools force the full-catalogue fallback), with heavy ties too."""
    a, b, seen, target, users = _case(9, n_cold=60, n_u=64, n_i=700)
    if quantised:  # coarse scores: many exact ties inside and across the pools
        a.item_vecs = np.round(a.item_vecs)
        b.item_vecs = np.round(b.item_vecs)
        a.user_vecs = np.round(a.user_vecs)
        b.user_vecs = np.round(b.user_vecs)
    for alpha in (0.0, 0.15, 0.5, 0.85, 1.0):
        full = fuse_topk(a, b, users, seen, 20, alpha, cold_aware=cold_aware, pool=0)
        sa, sb = a.score(users), b.score(users)
        ref = np.argsort(-fuse_scores(sa, sb, alpha, seen.toarray().astype(bool), cold_aware), axis=1, kind="stable")[:, :20]
        np.testing.assert_array_equal(full, ref)
        for pool in (None, 20, 50, 60, 150):  # 50-60: some rows fall back, some do not
            np.testing.assert_array_equal(fuse_topk(a, b, users, seen, 20, alpha, cold_aware=cold_aware, pool=pool), full)


def test_full_ranking_key_sort_matches_stable_argsort():
    from analysis.fusion import _desc_order

    rng = np.random.default_rng(10)
    s = np.round(rng.standard_normal((50, 300)), 1).astype(np.float32)  # many ties
    s[rng.random(s.shape) < 0.1] = -np.inf
    s[:, 5] = -0.0  # -0.0 and +0.0 are equal scores: index order decides
    s[:, 7] = 0.0
    s[0, :] = np.inf
    ref = np.argsort(-s, axis=1, kind="stable")
    np.testing.assert_array_equal(_desc_order(s), ref)
    np.testing.assert_array_equal(_desc_order(s.astype(np.float64)), ref)
    # RRF from float32 and float64 scores is identical
    m = rng.random(s.shape) < 0.2
    np.testing.assert_array_equal(rrf_scores(s[1:], s[1:][::-1], m[1:]), rrf_scores(s[1:].astype(np.float64), s[1:][::-1].astype(np.float64), m[1:]))


def test_bad_inputs_raise():
    a, b, seen, target, users = _case(11)
    with pytest.raises(ConfigError, match="alpha"):
        fuse_topk(a, b, users, seen, 10, 1.5)
    with pytest.raises(ConfigError, match="norm_scope"):
        fuse_topk(a, b, users, seen, 10, 0.5, norm_scope="global")
    with pytest.raises(ConfigError, match="kind"):
        fusion_curve(a, b, users, seen, target, segments={"x": ("shop", np.zeros(N_I))})
    with pytest.raises(ConfigError, match="shape"):
        rrf_scores(np.zeros((2, 3)), np.zeros((2, 4)))
    b.item_vecs = b.item_vecs.copy()
    b.item_vecs[3] = np.nan
    with pytest.raises(VectorError, match="col returned NaN"):
        fuse_topk(a, b, users, seen, 10, 0.5)
