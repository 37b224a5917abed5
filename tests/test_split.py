"""Split protocol and data regimes, checked on hand-made interactions."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.data import index, make_interactions, make_items, Dataset
from analysis.errors import ConfigError
from analysis.split import split


def _toy(n_users=20, n_items=30, per_user=10, seed=0):
    rng = np.random.default_rng(seed)
    u, i, t = [], [], []
    for user in range(n_users):
        items = rng.choice(n_items, per_user, replace=False)
        u += [user] * per_user
        i += list(items)
        t += list(np.arange(per_user) + 100 * user)
    ds = Dataset("toy", make_interactions(u, i, None, t), make_items([str(x) for x in range(n_items)]))
    return index(ds)


def test_random_split_is_disjoint_complete_and_80_10_10():
    ix = _toy()
    s = split(ix, seed=1)
    total = s.train + s.valid + s.test
    assert total.nnz == len(ix.users) and total.max() == 1  # disjoint and complete
    assert np.all(np.diff(s.valid.indptr) == 1) and np.all(np.diff(s.test.indptr) == 1)  # 10 % of 10
    assert np.all(np.diff(s.train.indptr) == 8)
    s2 = split(ix, seed=1)
    assert (s.test != s2.test).nnz == 0  # seeded
    assert (s.test != split(ix, seed=2).test).nnz > 0


def test_loo_takes_latest_as_test_and_previous_as_valid():
    ix = _toy()
    s = split(ix, method="loo")
    for u in range(ix.n_users):
        mine = ix.users == u
        order = np.argsort(ix.timestamps[mine])
        items = ix.items[mine][order]
        assert s.test[u].indices.tolist() == [items[-1]]
        assert s.valid[u].indices.tolist() == [items[-2]]


def test_sparsity_keeps_fraction_of_training_only():
    ix = _toy(per_user=20)
    full = split(ix, seed=0)
    sparse = split(ix, seed=0, keep_fraction=0.25)
    assert (full.valid != sparse.valid).nnz == 0 and (full.test != sparse.test).nnz == 0
    assert np.all(np.diff(sparse.train.indptr) == 4)  # 25 % of 16
    assert (sparse.train - sparse.train.multiply(full.train)).nnz == 0  # a subset
    tiny = split(ix, seed=0, keep_fraction=0.01)
    assert np.all(np.diff(tiny.train.indptr) == 1)  # at least one kept


def test_cold_items_have_no_training_interactions_but_keep_test_pairs():
    ix = _toy(n_users=50, per_user=12)
    s = split(ix, seed=0, cold_item_share=0.2)
    pop = np.asarray(s.train.sum(0)).ravel()
    assert s.cold_items.sum() >= 6
    assert np.all(pop[s.cold_items] == 0) and np.all(pop[~s.cold_items] > 0)
    full = split(ix, seed=0)
    assert (full.test != s.test).nnz == 0
    assert s.regime["n_cold_items"] == int(s.cold_items.sum())


def test_seen_for_masks_train_on_valid_and_train_plus_valid_on_test():
    s = split(_toy(), seed=0)
    assert (s.seen_for("valid") != s.train).nnz == 0
    assert (s.seen_for("test") != (s.train + s.valid)).nnz == 0


@pytest.mark.parametrize("kw", [{"keep_fraction": 0}, {"keep_fraction": 1.5}, {"cold_item_share": 1.0},
                                {"ratios": (0.5, 0.1, 0.1)}, {"method": "weekly"}])
def test_bad_regimes_are_refused(kw):
    with pytest.raises(ConfigError):
        split(_toy(), **kw)
