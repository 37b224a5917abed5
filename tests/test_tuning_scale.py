"""Tuning that scales (issue 10): sampled validation users, successive halving over user
subsamples above a size threshold (exactly the full grid below it), the semantic epoch cap,
and the EASE size guard. Small planted problems; thresholds are forced low."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import ConfigError
from analysis.models.reference import EASE_DEFAULT_MAX_ITEMS, EASE_MAX_ITEMS, ease_skip_reason
from analysis.models.semantic import train_semantic
from analysis.models.tuning import tune, user_subsplit
from analysis.models.validation import sample_users, valid_users, validate
from analysis.split import split as make_split
from test_models import planted

ALS = {"factors": [8], "regularization": [3000.0, 5.0, 20000.0], "alpha": [5.0]}


@pytest.fixture(scope="module")
def small():
    ix, F, _ = planted(n_users=600, n_items=150, per_user=30)
    return make_split(ix, seed=0), F


def _no_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMCOLLAB_CACHE", str(tmp_path))


# ---------------------------------------------------------------- the validation sample
def test_validation_sample_is_seeded_sorted_and_of_the_stated_size(small):
    s, _ = small
    everyone = np.flatnonzero(np.diff(s.valid.indptr) > 0)
    np.testing.assert_array_equal(valid_users(s, max_users=len(everyone)), everyone)  # at the cap: all
    np.testing.assert_array_equal(valid_users(s, max_users=0), everyone)  # 0: always all
    np.testing.assert_array_equal(valid_users(s), everyone)  # default cap 10,000 > 600
    a, b = valid_users(s, max_users=100, seed=1), valid_users(s, max_users=100, seed=1)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 100 and len(np.unique(a)) == 100 and (np.diff(a) > 0).all() and np.isin(a, everyone).all()
    assert not np.array_equal(a, valid_users(s, max_users=100, seed=2))
    with pytest.raises(ConfigError, match=">= 0"):
        sample_users(everyone, -1)


def test_below_the_thresholds_tuning_is_todays_full_grid(small, tmp_path, monkeypatch):
    """600 users, 14k training pairs: no sample is drawn and the grid is searched in full; the result is
    the one of the explicit full grid over every validation user, bit for bit."""
    _no_cache(monkeypatch, tmp_path)
    s, _ = small
    auto = tune("ials", s, grid=ALS, fixed={"iterations": 6}, progress=False)
    full = tune("ials", s, grid=ALS, fixed={"iterations": 6}, progress=False, cache=False, valid_sample=0,
                search="grid")
    assert auto.budget["search"] == "grid" and "rounds" not in auto.budget
    assert auto.budget["valid_users"] == auto.budget["valid_users_total"] == len(valid_users(s, 0))
    assert auto.budget["train_users"] == s.n_users and auto.budget["train_pairs"] == s.train.nnz
    assert auto.best_params == full.best_params
    pd_cols = [c for c in auto.table.columns if c != "seconds"]
    assert auto.table[pd_cols].equals(full.table[pd_cols])
    np.testing.assert_array_equal(auto.model.item_vecs, full.model.item_vecs)
    assert auto.key == full.key  # same computation, same cache entry as before this feature


def test_a_sampled_validation_set_scores_tuning_and_early_stopping(small, tmp_path, monkeypatch):
    _no_cache(monkeypatch, tmp_path)
    s, _ = small
    r = tune("ials", s, grid={"factors": [8], "regularization": [5.0]}, fixed={"iterations": 4}, progress=False,
             valid_sample=120, seed=3)
    assert r.budget["valid_users"] == 120 and r.budget["valid_users_total"] > 120 and r.budget["valid_sample"] == 120
    assert r.model.params["valid_users"] == 120
    users = valid_users(s, 120, seed=3)
    assert r.model.params["valid"]["ndcg@20"] == pytest.approx(validate(r.model, s, 20, users)["ndcg@20"])
    assert r.table["ndcg@20"].iloc[0] == pytest.approx(r.model.params["valid"]["ndcg@20"])
    # a drawn sample is part of the cache key; a cap above the number of users is not
    other = tune("ials", s, grid={"factors": [8], "regularization": [5.0]}, fixed={"iterations": 4}, progress=False,
                 valid_sample=0, seed=3, cache=False)
    assert other.key != r.key


# ---------------------------------------------------------------- successive halving
def test_user_subsplit_keeps_whole_users_and_recomputes_cold_items(small):
    s, _ = small
    users = np.arange(0, s.n_users, 7)
    sub = user_subsplit(s, users)
    assert sub.n_users == len(users) and sub.n_items == s.n_items
    assert (sub.train != s.train[users]).nnz == 0 and (sub.valid != s.valid[users]).nnz == 0
    assert (sub.test != s.test[users]).nnz == 0
    no_train = np.asarray(s.train[users].sum(0)).ravel() == 0
    np.testing.assert_array_equal(sub.cold_items, no_train | s.held_out_items)


def test_successive_halving_keeps_the_planted_best_and_records_its_budget(small, tmp_path, monkeypatch):
    """Regularisation 5 is far better than 3,000 or 20,000 on this problem (the full grid says so);
    halving from ~1,500 training pairs (about 60 users) keeps it and retrains it on every user."""
    _no_cache(monkeypatch, tmp_path)
    s, _ = small
    grid = tune("ials", s, grid=ALS, fixed={"iterations": 6}, progress=False, cache=False, search="grid")
    assert grid.best_params["regularization"] == 5.0
    r = tune("ials", s, grid=ALS, fixed={"iterations": 6}, progress=False, halving_above=0, first_rung_pairs=1500)
    assert r.budget["search"] == "halving" and r.best_params == grid.best_params
    (r0,) = r.budget["rounds"]  # 3 configurations, eta 3: one round, then the winner on every user
    assert r0["configs"] == 3 and r0["kept"] == 1 and 0 < r0["users"] < s.n_users
    assert r0["train_pairs"] >= 1500 and r0["valid_users"] <= r0["users"]
    assert 3 <= r0["epochs_run"] <= 18 and r0["seconds"] >= 0
    f = r.budget["final"]
    assert f["users"] == s.n_users and f["retrained"] and f["train_pairs"] == s.train.nnz
    assert r.model.user_vecs.shape[0] == s.n_users  # the returned model is trained on every user
    assert r.model.params["valid"]["ndcg@20"] == pytest.approx(f["ndcg@20"])
    assert list(r.table["round"]) == [0, 0, 0] and (r.table["users"] == r0["users"]).all()
    assert r.key != grid.key
    # cached: the winner is retrained on every user, identical
    hit = tune("ials", s, grid=ALS, fixed={"iterations": 6}, progress=False, halving_above=0, first_rung_pairs=1500)
    assert hit.cache_hit and hit.best_params == r.best_params and hit.budget == r.budget
    np.testing.assert_allclose(hit.model.item_vecs, r.model.item_vecs, rtol=1e-5, atol=1e-6)


def test_halving_rounds_grow_by_eta_and_a_round_on_every_user_is_not_retrained(small, tmp_path, monkeypatch):
    _no_cache(monkeypatch, tmp_path)
    s, _ = small
    grid = {"factors": [4, 8], "regularization": [3000.0, 5.0, 20000.0], "alpha": [1.0, 5.0, 20.0]}  # 18 configs
    r = tune("ials", s, grid=grid, fixed={"iterations": 3}, progress=False, halving_above=0, first_rung_pairs=1000)
    rounds = r.budget["rounds"]
    assert [x["configs"] for x in rounds] == [18, 6, 2] and [x["kept"] for x in rounds] == [6, 2, 1]
    assert rounds[0]["users"] < rounds[1]["users"] < rounds[2]["users"] <= s.n_users
    assert sorted(r.table["round"].value_counts().to_dict().items()) == [(0, 12), (1, 4), (2, 2)]
    assert r.best_params["regularization"] == 5.0
    # validation users per round: first_rung_valid, then eta times more (never above valid_sample)
    v = tune("ials", s, grid=grid, fixed={"iterations": 2}, progress=False, cache=False, halving_above=0,
             first_rung_pairs=1000, first_rung_valid=20, valid_sample=100)
    assert [x["valid_users"] for x in v.budget["rounds"]] == [20, 60, 100] and v.budget["final"]["valid_users"] == 100
    assert v.budget["first_rung_valid"] == 20
    # first round on every user: one round, its winner is the model (no retraining)
    once = tune("ials", s, grid=ALS, fixed={"iterations": 3}, progress=False, cache=False, halving_above=0,
                first_rung_pairs=10**9)
    assert once.budget["rounds"][0]["users"] == s.n_users and not once.budget["final"]["retrained"]


def test_halving_also_tunes_the_semantic_recommender(small, tmp_path, monkeypatch):
    _no_cache(monkeypatch, tmp_path)
    s, F = small
    X = np.hstack([F, 0.05 * np.random.default_rng(0).standard_normal((len(F), 12))]).astype(np.float32)
    r = tune("semantic_trained", s, grid={"dim": [8], "weight_decay": [0.0, 0.1, 0.01]}, vectors=X,
             fixed={"epochs": 4}, progress=False, halving_above=0, first_rung_pairs=2000, device="cpu")
    assert r.budget["search"] == "halving" and len(r.budget["rounds"]) == 1
    assert r.model.user_vecs.shape[0] == s.n_users and r.budget["final"]["retrained"]


def test_bad_search_settings_are_refused(small):
    s, _ = small
    with pytest.raises(ConfigError, match="unknown tuning search"):
        tune("ials", s, search="random", cache=False, progress=False)
    with pytest.raises(ConfigError, match="EASE is tuned on its full"):
        tune("ease", s, search="halving", cache=False, progress=False)
    with pytest.raises(ConfigError, match="eta"):
        tune("ials", s, eta=1, cache=False, progress=False)
    with pytest.raises(ConfigError, match="valid_sample"):
        tune("ials", s, valid_sample=-5, cache=False, progress=False)


def test_ease_is_never_halved_but_scored_on_the_sample(small, tmp_path, monkeypatch):
    _no_cache(monkeypatch, tmp_path)
    s, _ = small
    r = tune("ease", s, grid={"lam": [10.0, 100.0]}, progress=False, halving_above=0, valid_sample=150)
    assert r.budget["search"] == "grid" and r.budget["valid_users"] == 150
    users = valid_users(s, 150, seed=0)
    assert r.table["ndcg@20"].max() == pytest.approx(validate(r.model, s, 20, users)["ndcg@20"])


# ---------------------------------------------------------------- semantic epoch cap
def test_semantic_epoch_cap_is_recorded_and_changes_nothing_below_it(small):
    s, F = small
    X = np.hstack([F, 0.05 * np.random.default_rng(0).standard_normal((len(F), 12))]).astype(np.float32)
    kw = dict(dim=8, epochs=2, eval_every=1, seed=0, device="cpu")
    a = train_semantic(X, s, **kw)
    b = train_semantic(X, s, epoch_users=s.n_users, **kw)
    np.testing.assert_array_equal(a.item_vecs, b.item_vecs)
    assert a.params["users_per_epoch"] == b.params["users_per_epoch"] == s.n_users
    c = train_semantic(X, s, epoch_users=100, **kw)
    assert c.params["users_per_epoch"] == 100 and c.params["epochs_run"] == 2
    assert not np.array_equal(a.item_vecs, c.item_vecs)
    with pytest.raises(ConfigError, match="epoch_users"):
        train_semantic(X, s, epoch_users=-1, **kw)


# ---------------------------------------------------------------- EASE guard
def test_ease_skip_reason_names_the_size_and_the_limit():
    assert ease_skip_reason(EASE_DEFAULT_MAX_ITEMS) is None and ease_skip_reason(3706) is None
    why = ease_skip_reason(20_000, n_lams=8)
    assert why is not None and "20,000" in why and f"{EASE_DEFAULT_MAX_ITEMS:,}" in why
    assert "3.0 GiB" in why and "8 ridge weights" in why
    assert ease_skip_reason(20_000, max_items=25_000) is None
    assert "30,000" in ease_skip_reason(40_000, max_items=10**6)  # never above what EASE itself accepts
    assert EASE_DEFAULT_MAX_ITEMS <= EASE_MAX_ITEMS
    with pytest.raises(ConfigError):
        ease_skip_reason(100, max_items=0)
