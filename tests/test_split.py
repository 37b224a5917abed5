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


def _synthetic_split(cold=0.2, keep=1.0):
    from analysis.synthetic import generate

    return split(index(generate(seed=3, n_users=300, n_items=200)), seed=0, cold_item_share=cold, keep_fraction=keep)


def test_cold_items_are_held_out_entirely_standard_protocol():
    """Standard item cold-start: every pair of a held-out item is in test, none in train/valid."""
    from analysis.synthetic import generate

    ix = index(generate(seed=3, n_users=300, n_items=200))
    s = split(ix, seed=0, cold_item_share=0.2)
    held = s.held_out_items
    assert held.sum() == round(0.2 * len(np.unique(ix.items)))
    assert s.train[:, held].nnz == 0 and s.valid[:, held].nnz == 0
    every = np.zeros((ix.n_users, ix.n_items), bool)
    every[ix.users, ix.items] = True
    assert np.array_equal(s.test[:, held].toarray() > 0, every[:, held])  # all their pairs, in test
    assert np.all(s.cold_items[held]) and np.all(np.asarray(s.train.sum(0)).ravel()[s.cold_items] == 0)
    assert (s.train + s.valid + s.test).nnz == len(ix.users)  # nothing lost
    assert s.regime["n_test_pairs_cold"] == s.test[:, s.cold_items].nnz
    assert s.regime["cold_test_share"] == s.regime["n_test_pairs_cold"] / s.test.nnz


def test_held_out_items_are_not_validation_candidates():
    s = _synthetic_split()
    seen = s.seen_for("valid").to_csr().toarray() > 0
    assert seen[:, s.held_out_items].all()
    assert not seen[:, ~s.cold_items][s.train[:, ~s.cold_items].toarray() == 0].any()  # warm unseen stay candidates
    assert not (s.seen_for("test").to_csr().toarray() > 0)[:, s.held_out_items].any()  # at test they are candidates


def test_recommending_exactly_the_cold_consumptions_scores_recall_one_on_cold_ranking():
    from analysis.metrics import evaluate
    from analysis.ranking import rank_scores

    s = _synthetic_split()
    cold_target = s.target("test", "cold")
    assert cold_target.nnz == s.test[:, s.cold_items].nnz and (cold_target - s.test.multiply(cold_target)).nnz == 0
    users = np.flatnonzero(np.diff(cold_target.indptr) > 0)
    K = int(np.diff(cold_target.indptr).max())
    scores = cold_target.toarray()[users] + 0.5 * (s.test.toarray()[users] > 0)  # warm test items score too
    top = rank_scores(scores, K, seen=s.seen_for("test", "cold"), users=users)
    assert np.isin(top[top >= 0], np.flatnonzero(s.cold_items)).all()  # candidates = cold items
    rec = evaluate(top, cold_target, users, ks=(K,))[f"recall@{K}"]
    np.testing.assert_array_equal(rec, np.ones(len(users)))


def test_warm_segment_ranks_and_targets_warm_items_only():
    s = _synthetic_split()
    warm_target = s.target("test", "warm")
    assert warm_target[:, s.cold_items].nnz == 0
    assert warm_target.nnz + s.target("test", "cold").nnz == s.test.nnz
    seen = s.seen_for("test", "warm").to_csr().toarray() > 0
    assert seen[:, s.cold_items].all()


def test_sparsity_removed_pairs_are_masked_not_misses():
    full, sparse = _synthetic_split(cold=0.0), _synthetic_split(cold=0.0, keep=0.2)
    assert sparse.removed.nnz == full.train.nnz - sparse.train.nnz == sparse.regime["n_removed_train_pairs"]
    assert (sparse.removed + sparse.train != full.train).nnz == 0
    for part in ("valid", "test"):
        assert (sparse.seen_for(part).to_csr() != full.seen_for(part).to_csr()).nnz == 0  # same known history masked
    assert sparse.removed.multiply(sparse.test).nnz == 0


def test_seen_for_masks_train_on_valid_and_train_plus_valid_on_test():
    s = split(_toy(), seed=0)
    assert (s.seen_for("valid").to_csr() != s.train).nnz == 0
    assert (s.seen_for("test").to_csr() != (s.train + s.valid)).nnz == 0


def test_unknown_part_or_segment_is_a_config_error():
    s = split(_toy(), seed=0)
    with pytest.raises(ConfigError, match="unknown split part"):
        s.seen_for("train")
    with pytest.raises(ConfigError, match="unknown item segment"):
        s.target("test", "lukewarm")
    with pytest.raises(ConfigError, match="validation has no cold items"):
        s.seen_for("valid", "cold")


@pytest.mark.parametrize("kw", [{"keep_fraction": 0}, {"keep_fraction": 1.5}, {"cold_item_share": 1.0},
                                {"ratios": (0.5, 0.1, 0.1)}, {"method": "weekly"}])
def test_bad_regimes_are_refused(kw):
    with pytest.raises(ConfigError):
        split(_toy(), **kw)


def test_column_masks_are_columns_not_csr_entries_and_rank_like_their_csr():
    """Held-out and segment masks cost one index per item, not n_users entries per item, and
    ranking with them equals ranking with the same mask written out as CSR."""
    from analysis.models.base import EmbeddingRecommender
    from analysis.ranking import rank

    s = _synthetic_split()
    rng = np.random.default_rng(3)
    m = EmbeddingRecommender("r", rng.standard_normal((s.n_users, 8)).astype(np.float32),
                             rng.standard_normal((s.n_items, 8)).astype(np.float32), np.ones(s.n_items, bool))
    users = np.arange(s.n_users)
    for part, seg in (("valid", "all"), ("test", "warm"), ("test", "cold")):
        seen = s.seen_for(part, seg)
        assert seen.history.nnz == s.seen_for(part).history.nnz  # the columns are not in the CSR
        expected_cols = s.held_out_items if part == "valid" else ~s.segment_items(seg)
        np.testing.assert_array_equal(seen.columns, np.flatnonzero(expected_cols))
        np.testing.assert_array_equal(rank(m, users, seen, 20), rank(m, users, seen.to_csr(), 20))
        np.testing.assert_array_equal(rank(m, users[::3], seen, 20, block=7), rank(m, users[::3], seen.to_csr(), 20))
