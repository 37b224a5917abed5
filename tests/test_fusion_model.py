"""Complementarity-aware (gated) fusion and its comparison (analysis.fusion_model).

Hand-computed toy scores, exact agreement with analysis.fusion's cold-aware score fusion at a
constant gate, the forced gate on cold items, identical views, and the honest comparison on a
synthetic sparse regime where each view carries private signal (no assertion that it wins).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from analysis.bootstrap import paired_bootstrap
from analysis.data import index
from analysis.errors import ConfigError, VectorError
from analysis.fusion import fuse_topk
from analysis.fusion_model import (
    FUSION_MODEL_SYSTEMS,
    GatedFusion,
    _logit,
    alignment_baseline,
    evaluate_fusion_models,
    gate_features,
    train_gated_fusion,
)
from analysis.models.base import EmbeddingRecommender
from analysis.models.collaborative import train_ials
from analysis.models.semantic import ZeroShotSemantic
from analysis.probes import cross_fit, warm_mask
from analysis.ranking import rank
from analysis.split import Split, split
from analysis.synthetic import generate


@pytest.fixture(scope="module")
def sparse():
    """Sparse regime (20 % of training kept, 10 % cold items), both views with private signal."""
    ds = generate(n_users=500, n_items=600, seed=0, w_sem=1.5, w_col=1.5)
    ix = index(ds)
    s = split(ix, keep_fraction=0.2, seed=0, cold_item_share=0.1)
    ids, X = ds.vectors["semantic"]
    assert (np.asarray(ids) == ix.item_ids.astype(str)).all()
    col = train_ials(s, factors=32, regularization=1.0, alpha=1.0, iterations=15, num_threads=1)
    sem = ZeroShotSemantic(X, s.train)
    assert s.cold_items.sum() >= 50 and not col.scorable[s.cold_items].any()
    return {"split": s, "sem": sem, "col": col, "X": X}


def _toy():
    """One user, five items; item 4 is cold (the collaborative view cannot score it)."""
    z = sp.csr_matrix((2, 5), dtype=np.float32)
    train = sp.csr_matrix(([1.0], ([1], [0])), shape=(2, 5), dtype=np.float32)
    s = Split(train=train, valid=z, test=z, cold_items=np.array([0, 0, 0, 0, 1], bool))
    sem = EmbeddingRecommender("s", np.ones((2, 1), np.float32), np.arange(5, dtype=np.float32)[:, None],
                               np.ones(5, bool))
    col = EmbeddingRecommender("c", np.ones((2, 1), np.float32), np.array([[4], [3], [2], [1], [0]], np.float32),
                               np.array([1, 1, 1, 1, 0], bool))
    Fi = np.array([[0.0], [0.0], [1.0], [-1.0], [0.0]])
    return s, sem, col, GatedFusion(sem, col, Fi, np.zeros((2, 1)), np.array([0.0, 1.0, 0.0, 0.0]))


def test_toy_scores_by_hand():
    s, sem, col, m = _toy()
    # a = [0, .25, .5, .75, 1]; b over the four warm items = [1, 2/3, 1/3, 0]; g = sigmoid([0, 0, 1, -1])
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    a = np.array([0, 0.25, 0.5, 0.75])
    b = np.array([1, 2 / 3, 1 / 3, 0])
    g = sig(np.array([0.0, 0.0, 1.0, -1.0]))
    warm = g * a + (1 - g) * b  # [0.5, 0.4583, 0.4552, 0.2017]
    np.testing.assert_allclose(m.gate(np.array([0]))[0], [*g, 1.0])
    sc = m.score(np.array([0]))[0]
    np.testing.assert_allclose(sc[:4], warm, rtol=1e-12)
    # the cold item is the semantic view's best: slot 0, just above the best warm blend
    assert sc[4] > sc[0] and sc[4] == pytest.approx(warm[0], abs=1e-15)
    assert rank(m, np.array([0]), None, 5)[0].tolist() == [4, 0, 1, 2, 3]
    # user 1 has seen item 0: calibrated against the unseen warm items {1, 2, 3}
    m1 = m.with_seen(s.train)
    sc1 = m1.score(np.array([1]))[0]
    assert sc1[4] > sc1[1] and sc1[4] == pytest.approx(warm[1], abs=1e-15)
    # ρ = 0.5 demotes it to 0.25: between items 2 (0.455) and 3 (0.202)
    m.cold_scale = 0.5
    assert rank(m, np.array([0]), None, 5)[0].tolist() == [0, 1, 2, 4, 3]
    # ρ = 0: the cold item scores 0, after every warm item (whose blends are > 0 here)
    m.cold_scale = 0.0
    assert m.score(np.array([0]))[0][4] == 0.0
    assert rank(m, np.array([0]), None, 5)[0].tolist() == [0, 1, 2, 3, 4]


def test_rho_zero_shortcut_ranks_as_the_calibrated_scores_times_zero(sparse):
    """ρ = 0 skips the calibration (ρ times any calibrated score is 0): the same lists as scaling them."""
    s, sem, col = sparse["split"], sparse["sem"], sparse["col"]
    Fi, Fu, _ = gate_features(s, None, warm=col.scorable)
    users = np.arange(s.n_users)
    seen = s.seen_for("test")
    m = GatedFusion(sem, col, Fi, Fu, np.array([0.3, 0.2, -0.1, 0.4])).with_seen(seen)
    m.cold_scale = 1e-300  # calibrated scores scaled to (sub)normal zeros' neighbourhood: the slow path
    slow = m.score(users)
    m.cold_scale = 0.0
    fast = m.score(users)
    cold = np.flatnonzero(~np.asarray(col.scorable))
    unseen = ~seen.dense(users)[:, cold]
    assert unseen.sum() > 100
    np.testing.assert_allclose(fast[:, cold][unseen], 0.0)
    np.testing.assert_allclose(slow[:, cold][unseen], 0.0, atol=1e-299)
    warm = np.flatnonzero(np.asarray(col.scorable))
    np.testing.assert_array_equal(fast[:, warm], slow[:, warm])


def test_constant_gate_ranks_exactly_like_cold_aware_score_fusion(sparse):
    s, sem, col = sparse["split"], sparse["sem"], sparse["col"]
    Fi, Fu, _ = gate_features(s, None, warm=col.scorable)
    users = np.arange(s.n_users)
    seen = s.seen_for("test")
    for alpha in (0.0, 0.35, 1.0):
        m = GatedFusion(sem, col, Fi, Fu, np.r_[_logit(alpha, eps=1e-15), 0.0, 0.0, 0.0]).with_seen(seen)
        got = rank(m, users, seen, 20)
        ref = fuse_topk(sem, col, users, seen, 20, alpha, cold_aware=True)
        np.testing.assert_array_equal(got, ref)
        assert np.isin(got, np.flatnonzero(s.cold_items)).sum() > 100  # cold items do reach the lists


def test_gate_is_forced_to_one_on_cold_items_and_cold_items_follow_the_semantic_view(sparse):
    s, sem, col = sparse["split"], sparse["sem"], sparse["col"]
    rng = np.random.default_rng(0)
    Fi, Fu, _ = gate_features(s, {"noise": rng.standard_normal(s.n_items)}, warm=col.scorable)
    m = GatedFusion(sem, col, Fi, Fu, rng.standard_normal(2 + 2 * Fi.shape[1]) * 2).with_seen(s.seen_for("test"))
    users = np.arange(40)
    g = m.gate(users)
    cold = s.cold_items
    assert (g[:, cold] == 1.0).all()
    assert ((g[:, ~cold] > 0) & (g[:, ~cold] < 1)).all() and g[:, ~cold].std() > 0.05
    sc = m.score(users)
    a = sem.score(users)
    seen = s.seen_for("test").dense(users)
    for j in range(len(users)):
        c = np.flatnonzero(cold & ~seen[j])
        o = c[np.lexsort((c, -a[j, c]))]  # semantic order among the user's unseen cold items
        assert (np.diff(sc[j, o]) <= 0).all()


def test_identical_views_give_the_single_view_ranking(sparse):
    s, sem, col = sparse["split"], sparse["sem"], sparse["col"]
    users = np.arange(s.n_users)
    seen = s.seen_for("test")
    rng = np.random.default_rng(1)
    for view in (sem, col):  # col: the cold items are unscorable in both views
        Fi, Fu, _ = gate_features(s, None, warm=view.scorable)
        m = GatedFusion(view, view, Fi, Fu, rng.standard_normal(4) * 3).with_seen(seen)
        np.testing.assert_array_equal(rank(m, users, seen, 20), rank(view, users, seen, 20))
    trained = train_gated_fusion(sem, sem, s, max_steps=20)
    np.testing.assert_array_equal(rank(trained.with_seen(seen), users, seen, 20), rank(sem, users, seen, 20))


def test_alignment_baseline_with_the_true_vectors_is_the_collaborative_view(sparse):
    s, col = sparse["split"], sparse["col"]
    Y = col.item_vecs.copy()
    Y[~col.scorable] = np.nan
    out = alignment_baseline(col, Y, s)
    assert 0.0 <= out["alpha"] <= 1.0 and not out["cold_aware"]  # both score the same items
    users = np.arange(s.n_users)
    seen = s.seen_for("test")
    got = fuse_topk(out["mapped_model"], col, users, seen, 20, out["alpha"], cold_aware=out["cold_aware"])
    np.testing.assert_array_equal(got, rank(col, users, seen, 20))
    with pytest.raises(VectorError, match="shape"):
        alignment_baseline(col, Y[:, :5], s)


def test_gate_features_are_standardised_and_checked():
    s, sem, col, _ = _toy()
    Fi, Fu, names = gate_features(s, {"energy": np.array([1.0, 2.0, 3.0, np.nan, 5.0])}, warm=col.scorable)
    assert names == ["log_popularity", "energy"]
    # popularity: item 0 has one training interaction, the others none; over warm items 0..3
    lp = np.log1p(np.array([1.0, 0, 0, 0]))
    np.testing.assert_allclose(Fi[:4, 0], (lp - lp.mean()) / lp.std())
    e = np.array([1.0, 2.0, 3.0])  # NaN is unknown: it sits at the mean (0)
    np.testing.assert_allclose(Fi[[0, 1, 2, 4], 1], (np.array([1, 2, 3, 5]) - e.mean()) / e.std())
    assert Fi[3, 1] == 0.0
    # users: log1p(activity) centred over active users (one, so no spread to scale by)
    np.testing.assert_allclose(Fu[:, 0], [-np.log(2.0), 0.0])
    with pytest.raises(ConfigError, match="energy"):
        gate_features(s, {"energy": np.ones(3)})
    with pytest.raises(ConfigError, match="parameters"):
        GatedFusion(sem, col, Fi, Fu, np.zeros(3))


def test_comparison_on_the_sparse_regime(sparse):
    s, sem, col, X = sparse["split"], sparse["sem"], sparse["col"], sparse["X"]
    Y = col.item_vecs.astype(np.float64)
    Y[~col.scorable] = np.nan
    mapped_all = cross_fit(X.astype(np.float64), Y, warm_mask(Y), "ridge", "full", n_folds=3)[3]
    out = evaluate_fusion_models(sem, col, s, mapped=mapped_all, n_boot=200, gate_kw={"max_steps": 150})
    t, d, pu, summ = out["table"], out["differences"], out["per_user"], out["summary"]

    systems = ("semantic-zeroshot", "ials", *FUSION_MODEL_SYSTEMS)  # the views by their models' names
    assert set(t.system) == set(systems) and len(t) == len(systems) * 4
    assert ((t.lo <= t["mean"] + 1e-12) & (t["mean"] <= t.hi + 1e-12)).all()
    for _, r in t.iterrows():  # the table is the per-user columns' mean
        assert r["mean"] == pytest.approx(np.nanmean(pu[f"{r.system}_{r.metric}@{r.k}"]), abs=1e-12)
    v = out["valid"]

    def val(system, key="ndcg", k=20, tab=v, col_="mean"):
        return float(tab[(tab.system == system) & (tab.metric == key) & (tab.k == k)][col_].iloc[0])

    best = summ["best_single"]
    assert best == max(("semantic-zeroshot", "ials"), key=val)
    np.testing.assert_array_equal(pu[f"best_single_ndcg@20"], pu[f"{best}_ndcg@20"])
    # each view carries private signal here: score fusion beats the best single view on test
    sf = paired_bootstrap(pu["fusion_ndcg@20"], pu["best_single_ndcg@20"], n_boot=200)
    assert sf["lo"] > 0

    # the gated model, trained on validation only, is at least as good as the best single view
    # within noise (its paired difference is not significantly negative)
    assert len(d) == (len(systems) - 1) * 4 and (d.system_a == "complementarity_fusion").all()
    assert ((d.p_value > 0) & (d.p_value <= 1)).all()
    r = d[(d.system_b == "best_single") & (d.metric == "ndcg") & (d.k == 20)].iloc[0]
    assert r.hi > 0, r
    # each fold's early stopping keeps a θ at least as good as its start on the other fold's users
    cf = summ["complementarity_fusion"]
    for f in cf["folds"]:
        assert f["stop_fold_valid"]["ndcg@20"] >= f["start_stop_fold_valid"]["ndcg@20"]
        assert 0 < f["init_alpha"] < 1
    assert cf["cold_scale"] in cf["cold_scale_valid_ndcg"]
    assert cf["cold_scale_valid_ndcg"][cf["cold_scale"]] == max(cf["cold_scale_valid_ndcg"].values())
    # the alignment baseline runs and is reported (whatever it scores)
    assert summ["alignment"]["n_mapped_items"] == s.n_items and 0 <= summ["alignment"]["alpha"] <= 1
    assert np.isfinite(t[t.system == "alignment"]["mean"]).all()


def test_gate_alpha_early_stopping_and_rho_use_the_configured_k(sparse):
    s, sem, col = sparse["split"], sparse["sem"], sparse["col"]
    out = evaluate_fusion_models(sem, col, s, ks=(5, 10), n_boot=50, gate_kw={"max_steps": 20})
    p = out["summary"]["complementarity_fusion"]
    assert out["summary"]["criterion"] == "validation ndcg@10"
    for fold in p["folds"]:
        assert set(fold["stop_fold_valid"]) == {"ndcg@10", "recall@10"}
    # the split holds held-out cold items, which validation never sees: ρ is fixed, not tuned
    assert s.held_out_items.any() and p["cold_scale"] == 1.0 and list(p["cold_scale_valid_ndcg"]) == [1.0]
    assert out["summary"]["fusion"]["method"] == "cold_aware"


def test_given_per_user_metrics_and_fusion_are_reused_not_recomputed(sparse, monkeypatch):
    """The pipeline hands over the views' and the score fusion's per-user metrics: the comparison's
    table is the same as when it ranks them itself, and only the gated fusion is ranked."""
    import analysis.fusion_model as fm
    from analysis.metrics import evaluate

    s, sem, col = sparse["split"], sparse["sem"], sparse["col"]
    gated = train_gated_fusion(sem, col, s, max_steps=5)
    own = evaluate_fusion_models(sem, col, s, ks=(10, 20), n_boot=100, gated=gated)
    users, f = np.arange(s.n_users), own["summary"]["fusion"]
    per_user = {part: {m.name: evaluate(rank(m, users, s.seen_for(part), 20), s.target(part), users, (10, 20))
                       for m in (sem, col)} for part in ("valid", "test")}
    for part in per_user:
        top = fuse_topk(sem, col, users, s.seen_for(part), 20, f["alpha"], cold_aware=f["method"] == "cold_aware")
        per_user[part]["fusion"] = evaluate(top, s.target(part), users, (10, 20))
    ranked = []
    monkeypatch.setattr(fm, "rank", lambda model, *a, **kw: ranked.append(model.name) or rank(model, *a, **kw))
    monkeypatch.setattr(fm, "fuse_topk", lambda *a, **kw: ranked.append("fusion") or fuse_topk(*a, **kw))
    given = {"per_user": per_user, "fusion": (f["alpha"], f["method"] == "cold_aware", f["valid"])}
    reused = evaluate_fusion_models(sem, col, s, ks=(10, 20), n_boot=100, gated=gated, given=given)
    pd.testing.assert_frame_equal(reused["table"], own["table"])
    assert ranked == [gated.name] * 2  # valid and test: the views and the fusion were not ranked again


@pytest.mark.parametrize("rho", [1.0, 0.6, 0.25, 1e-3])
@pytest.mark.parametrize("k", [1, 10, 20])
def test_topk_scores_give_exactly_the_full_calibrations_lists(sparse, rho, k):
    """for_topk(K): slots capped at K, certified rows drop the deep single-view items, the others are
    computed in full; every top-K list equals the one of the full calibration (ties by index included)."""
    s, sem, col = sparse["split"], sparse["sem"], sparse["col"]
    Fi, Fu, _ = gate_features(s, None, warm=col.scorable)
    users = np.arange(s.n_users)
    seen = s.seen_for("test")
    m = GatedFusion(sem, col, Fi, Fu, np.array([0.2, 0.5, -0.3, 0.1])).with_seen(seen)
    m.cold_scale = rho
    full = rank(m, users, seen, k)
    fast_model = m.for_topk(k)
    np.testing.assert_array_equal(rank(fast_model, users, seen, k), full)
    cold = np.flatnonzero(~np.asarray(col.scorable))
    a, b = m.score(users[:200])[:, cold], fast_model.score(users[:200])[:, cold]
    dropped = np.isfinite(a) & np.isneginf(b)
    assert dropped.sum() > 1000  # the fast path did drop deep cold items (it is not always the full one)
    kept = np.isfinite(b)
    np.testing.assert_array_equal(a[kept], b[kept])  # what it keeps is the full calibration's value


def test_topk_scores_with_ties_in_the_blend(sparse):
    """Coarse (tied) view scores: rows where a tie could hide a deep item are computed in full."""
    s, sem, col = sparse["split"], sparse["sem"], sparse["col"]
    Fi, Fu, _ = gate_features(s, None, warm=col.scorable)

    class Rounded:
        def __init__(self, m):
            self.m, self.scorable, self.name = m, m.scorable, m.name

        def score(self, users):
            return np.round(self.m.score(users), 1)

    seen = s.seen_for("test")
    users = np.arange(s.n_users)
    m = GatedFusion(Rounded(sem), Rounded(col), Fi, Fu, np.array([0.0, 0.0, 0.0, 0.0])).with_seen(seen)
    for rho in (1.0, 0.5):
        m.cold_scale = rho
        np.testing.assert_array_equal(rank(m.for_topk(20), users, seen, 20), rank(m, users, seen, 20))
