"""Recommender models: closed forms on toy data, recovery of planted structure, tuning cache."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from analysis.data import Indexed
from analysis.errors import ConfigError, VectorError
from analysis.ranking import rank
from analysis.split import split as make_split
from analysis.models.collaborative import train_bpr, train_ials
from analysis.models.reference import EASE, MostPop
from analysis.models.semantic import ZeroShotSemantic, train_semantic
from analysis.models.tuning import tune
from analysis.models.validation import EarlyStopping, validate


def planted(seed=0, n_users=200, n_items=150, rank_=4, per_user=30, pop_scale=0.7):
    """Low-rank utilities + popularity; each user keeps their top items under Gumbel noise."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n_items, rank_))
    U = rng.standard_normal((n_users, rank_))
    pop = pop_scale * rng.standard_normal(n_items)
    util = U @ F.T + pop + rng.gumbel(size=(n_users, n_items))
    top = np.argsort(-util, axis=1)[:, :per_user]
    users = np.repeat(np.arange(n_users), per_user).astype(np.int32)
    ix = Indexed(
        user_ids=np.array([str(u) for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        users=users,
        items=top.ravel().astype(np.int32),
        timestamps=np.arange(len(users), dtype=float),
    )
    return ix, F, rng


@pytest.fixture(scope="module")
def data():
    ix, F, rng = planted()
    return make_split(ix, seed=0), F, rng


def ndcg(model, s):
    return validate(model, s)["ndcg@20"]


# ---------------------------------------------------------------- reference models
def test_ease_matches_hand_computed_closed_form():
    # X^T X + I = 2 [[2,1,1],[1,2,1],[1,1,2]] -> P = 1/8 [[3,-1,-1],...] -> B_ij = 1/3 off-diagonal
    X = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]], np.float32))
    m = EASE(X, lam=1.0)
    np.testing.assert_allclose(m.B, (np.ones((3, 3)) - np.eye(3)) / 3, atol=1e-6)
    np.testing.assert_allclose(m.score(np.array([0, 3])), [[1 / 3, 1 / 3, 2 / 3], [2 / 3, 2 / 3, 2 / 3]], atol=1e-6)
    # and the general formula B = I - P / diag(P) for another lam, against numpy
    P = np.linalg.inv(X.T @ X + 7.0 * np.eye(3))
    B = np.eye(3) - P / np.diag(P)
    np.testing.assert_allclose(EASE(X, lam=7.0).B, B, atol=1e-6)


def test_ease_cold_items_are_unscorable():
    X = sp.csr_matrix(np.array([[1, 0, 1, 0], [1, 0, 0, 1], [0, 0, 1, 1]], np.float32))
    s = EASE(X, lam=2.0).score(np.arange(3))
    assert np.isneginf(s[:, 1]).all() and np.isfinite(np.delete(s, 1, axis=1)).all()


def test_mostpop_ranks_by_training_popularity_and_keeps_cold_items_scorable():
    X = sp.csr_matrix(np.array([[1, 0, 1, 0, 0], [1, 0, 1, 1, 0], [1, 0, 0, 1, 0], [1, 0, 1, 0, 0]], np.float32))
    m = MostPop(X)
    assert m.scorable.all()
    np.testing.assert_array_equal(m.score(np.array([0, 2])), [[4, 0, 3, 2, 0]] * 2)
    empty = sp.csr_matrix((4, 5), dtype=np.float32)
    # popularity order; zero-popularity items (cold) are real predictions, last, index order
    np.testing.assert_array_equal(rank(m, np.array([1]), empty, 5), [[0, 2, 3, 1, 4]])


# ---------------------------------------------------------------- collaborative models
def test_ials_and_bpr_beat_mostpop_on_planted_low_rank_data(data):
    s, _, _ = data
    base = ndcg(MostPop(s.train), s)
    ials = train_ials(s, factors=8, regularization=10.0, alpha=5.0, iterations=15, seed=0)
    bpr = train_bpr(s, dim=8, lr=1e-2, reg=1e-3, epochs=40, batch_size=512, seed=0)
    assert ndcg(ials, s) > base + 0.05, (ndcg(ials, s), base)
    assert ndcg(bpr, s) > base + 0.05, (ndcg(bpr, s), base)
    # the recorded validation score is that of the returned (best) factors
    assert ials.params["valid"]["ndcg@20"] == pytest.approx(ndcg(ials, s))
    assert bpr.params["valid"]["ndcg@20"] == pytest.approx(ndcg(bpr, s))


def test_implicit_fit_continues_from_current_factors():
    """train_ials relies on this: two fits of 2 sweeps == one fit of 4 sweeps."""
    from implicit.cpu.als import AlternatingLeastSquares

    ix, _, _ = planted(seed=1, n_users=60, n_items=40, per_user=10)
    X = make_split(ix).train
    a = AlternatingLeastSquares(factors=4, iterations=4, random_state=3, num_threads=1)
    a.fit(X, show_progress=False)
    b = AlternatingLeastSquares(factors=4, iterations=2, random_state=3, num_threads=1)
    b.fit(X, show_progress=False)
    b.fit(X, show_progress=False)
    np.testing.assert_allclose(a.item_factors, b.item_factors, rtol=1e-4, atol=1e-5)


def test_cold_items_get_minus_inf_from_collaborative_models_not_from_semantic():
    ix, F, _ = planted(seed=2)
    s = make_split(ix, seed=0, cold_item_share=0.1)
    cold = s.cold_items
    assert cold.sum() >= 10
    X = F + 0.1 * np.random.default_rng(0).standard_normal(F.shape)
    users = np.arange(20)
    for m in (
        train_ials(s, factors=4, iterations=2, eval_every=1),
        train_bpr(s, dim=4, epochs=2, eval_every=1),
        EASE(s.train, lam=10.0),
    ):
        sc = m.score(users)
        assert np.isneginf(sc[:, cold]).all(), m.name
        assert np.isfinite(sc[:, ~cold]).all(), m.name
        assert not np.isin(rank(m, users, s.seen_for("valid"), 20), np.flatnonzero(cold)).any()
    sem = train_semantic(X, s, dim=4, epochs=2, eval_every=1)
    assert sem.scorable.all() and np.isfinite(sem.score(users)).all()


# ---------------------------------------------------------------- semantic models
def test_zero_shot_is_cosine_to_the_normalised_mean_profile():
    X = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    train = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 0]], np.float32))
    m = ZeroShotSemantic(X, train)
    u = np.array([1.0, 1.0]) / np.sqrt(2)  # mean of (1,0) and (0,1), normalised
    np.testing.assert_allclose(m.score(np.array([0]))[0], [u @ [1, 0], u @ [0, 1], 1.0], atol=1e-6)
    np.testing.assert_array_equal(m.score(np.array([1])), 0.0)  # no history: zero everywhere
    with pytest.raises(VectorError):
        ZeroShotSemantic(np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), train)
    with pytest.raises(VectorError):
        ZeroShotSemantic(X[:2], train)


def test_trained_semantic_beats_zero_shot_when_the_signal_hides_among_nuisance_dimensions(data):
    s, F, rng = data
    # text vectors: the 4 taste factors plus 16 louder dimensions that no user cares about
    X = np.hstack([F, 3.0 * rng.standard_normal((F.shape[0], 16))])
    zs = ndcg(ZeroShotSemantic(X, s.train), s)
    tr = train_semantic(X, s, dim=16, lr=1e-2, epochs=60, eval_every=2, patience=5, batch_size=64, seed=0)
    assert tr.item_vecs.shape == (F.shape[0], 17)
    assert ndcg(tr, s) > zs + 0.05, (ndcg(tr, s), zs)
    assert ndcg(tr, s) > ndcg(MostPop(s.train), s)
    assert tr.params["objective"] == "full softmax"
    # the sampled-softmax path (used for catalogues > 20k items) learns the same signal
    sampled = train_semantic(
        X, s, dim=16, lr=1e-2, epochs=60, eval_every=2, patience=5, batch_size=64, seed=0,
        full_softmax_max_items=50, n_negatives=64,
    )
    assert sampled.params["objective"].startswith("sampled softmax")
    assert ndcg(sampled, s) > zs + 0.05, (ndcg(sampled, s), zs)


def test_early_stopping_keeps_best_and_honours_patience():
    es = EarlyStopping(patience=2)
    stops = [es.step(e, {"ndcg@20": v, "recall@20": 0.0}) for e, v in enumerate([0.1, 0.3, 0.2, 0.3, 0.25])]
    assert stops == [False, False, False, False, True]  # 0.3 again is not an improvement
    assert es.best_epoch == 1 and es.best == 0.3


# ---------------------------------------------------------------- tuning
def test_tune_picks_the_best_grid_point_and_caches_it(data, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path))
    s, _, _ = data
    grid = {"lam": [0.5, 30.0, 5000.0]}
    r = tune("ease", s, grid=grid, progress=False)
    assert not r.cache_hit and len(r.table) == 3
    assert r.best_params == {"lam": r.table.loc[r.table["ndcg@20"].idxmax(), "lam"]}
    assert r.best_params["lam"] == 30.0 and r.at_edge == []
    assert ndcg(r.model, s) == pytest.approx(r.table["ndcg@20"].max())
    files = list((tmp_path / "tuning").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["best_params"] == {"lam": 30.0}
    again = tune("ease", s, grid=grid, progress=False)
    assert again.cache_hit and again.best_params == r.best_params
    np.testing.assert_array_equal(again.model.score(np.arange(10)), r.model.score(np.arange(10)))
    assert again.table.equals(r.table)
    # another regime (sparser training data) is another key: tuned again
    ix, _, _ = planted()
    sparse = tune("ease", make_split(ix, seed=0, keep_fraction=0.5), grid=grid, progress=False)
    assert not sparse.cache_hit and sparse.key != r.key
    # an optimum on the grid's boundary is flagged
    low = tune("ease", s, grid={"lam": [0.01, 0.1, 0.5]}, cache=False, progress=False)
    assert low.best_params == {"lam": 0.5} and low.at_edge == ["lam"]


def test_tune_trained_models_records_grid_budget_and_best_epoch(data, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path))
    s, _, _ = data
    grid = {"factors": [8], "regularization": [0.01, 10.0], "alpha": [5.0]}
    r = tune("ials", s, grid=grid, fixed={"iterations": 6}, progress=False)
    assert list(r.table.columns[:3]) == ["factors", "regularization", "alpha"]
    assert r.best_params == r.table.drop(columns=["ndcg@20", "recall@20", "best_epoch", "seconds"]).iloc[
        int(r.table["ndcg@20"].idxmax())
    ].to_dict()
    assert r.table["best_epoch"].between(1, 6).all()
    assert r.budget["n_configs"] == 2 and r.budget["per_config"]["iterations"] == 6
    assert r.model.params["regularization"] == r.best_params["regularization"]
    hit = tune("ials", s, grid=grid, fixed={"iterations": 6}, progress=False)
    assert hit.cache_hit
    np.testing.assert_allclose(hit.model.item_vecs, r.model.item_vecs, rtol=1e-5, atol=1e-6)


def test_tune_rejects_bad_requests(data):
    s, _, _ = data
    with pytest.raises(ConfigError, match="unknown model kind"):
        tune("zeroshot", s, cache=False, progress=False)
    with pytest.raises(ConfigError, match="vectors"):
        tune("semantic_trained", s, cache=False, progress=False)
    with pytest.raises(ConfigError, match="unknown grid parameter"):
        tune("ease", s, grid={"lambda": [1.0]}, cache=False, progress=False)


def test_tuning_and_early_stopping_use_the_configured_k(data, tmp_path, monkeypatch):
    """K = 10: the grid is scored, the best point chosen and training stopped on validation NDCG@10."""
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path))
    s, _, _ = data
    r = tune("ials", s, grid={"factors": [8], "regularization": [0.01, 10.0]}, fixed={"iterations": 6},
             progress=False, k=10)
    assert {"ndcg@10", "recall@10"} <= set(r.table.columns) and "ndcg@20" not in r.table.columns
    assert r.budget["criterion"] == "validation ndcg@10"
    assert r.model.params["valid"]["ndcg@10"] == pytest.approx(r.table["ndcg@10"].max())
    assert r.model.params["valid"]["ndcg@10"] == pytest.approx(validate(r.model, s, 10)["ndcg@10"])
    assert tune("ials", s, grid={"factors": [8], "regularization": [0.01, 10.0]}, fixed={"iterations": 6},
                progress=False, k=20).key != r.key
    es = EarlyStopping(patience=1, k=10)
    assert es.step(1, {"ndcg@10": 0.2, "ndcg@20": 0.9}) is False and es.best == 0.2


def test_a_corrupt_tuning_cache_entry_is_reported_and_rebuilt(data, tmp_path, monkeypatch):
    from analysis.errors import CacheWarning

    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path))
    s, _, _ = data
    first = tune("ease", s, grid={"lam": [10.0, 100.0]}, progress=False)
    (entry,) = (tmp_path / "tuning").glob("*.json")
    entry.write_text("{ not json")
    with pytest.warns(CacheWarning, match=str(entry.name)):
        again = tune("ease", s, grid={"lam": [10.0, 100.0]}, progress=False)
    assert not again.cache_hit and again.best_params == first.best_params
    assert json.loads(entry.read_text())["best_params"] == first.best_params  # rewritten
