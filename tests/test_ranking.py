"""The fused top-K path of ``analysis.ranking.rank`` against an exact reference.

Reference: each row's scores (the model's own ``score``) with seen items set to -inf,
ordered by ``np.lexsort((index, -score))`` (score descending, lower index first), -inf
dropped, -1 padding. Cases: deliberate ties (inside the list and at the K-th boundary,
across chunk boundaries), unscorable (-inf) items, fully masked rows, k larger than the
candidates and than the catalogue, explicit zeros in the CSR mask, arbitrary user
subsets and block sizes, float64 vectors, and the generic path it must agree with.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from analysis.backend import MIN_ROWS, Backend, EmbeddingScorer, chunk_size, fused_topk, padded_items
from analysis.errors import VectorError
from analysis.models.base import EmbeddingRecommender
from analysis.ranking import _fused_scorer, choose_block, mask_seen, rank


def reference(model, users, seen, k):
    s = model.score(users)
    if seen is not None:
        mask_seen(s, seen, users)
    out = np.full((len(users), k), -1, np.int32)
    for j, row in enumerate(s):
        o = np.lexsort((np.arange(len(row)), -row))[:k]
        o = o[np.isfinite(row[o])]
        out[j, : len(o)] = o
    return out


class Wrapped:
    """The same scores through the generic path (not an EmbeddingRecommender)."""

    def __init__(self, m):
        self.m, self.name, self.scorable = m, "wrapped", m.scorable

    def score(self, users):
        return self.m.score(users)


def _case(rng, n_u, n_i, d, ties):
    if ties:  # small integers: exact products, heavy ties everywhere
        U = rng.integers(-2, 3, (n_u, d)).astype(np.float32)
        V = rng.integers(-2, 3, (n_i, d)).astype(np.float32)
    else:
        U = rng.standard_normal((n_u, d)).astype(np.float32)
        V = rng.standard_normal((n_i, d)).astype(np.float32)
    scorable = rng.random(n_i) > 0.15
    seen = sp.random(n_u, n_i, density=0.2, format="csr", random_state=int(rng.integers(1 << 30)), dtype=np.float32)
    seen = sp.lil_matrix(seen)
    seen[0, :] = 1  # a fully masked row
    seen = seen.tocsr()
    return EmbeddingRecommender("t", U, V, scorable), seen


@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
@pytest.mark.parametrize("n_i,k", [(7, 3), (40, 50), (300, 5), (1500, 20), (3000, 7), (5000, 100)])
def test_fused_rank_matches_exact_reference(ties, n_i, k):
    rng = np.random.default_rng(n_i * 31 + k + ties)
    m, seen = _case(rng, 90, n_i, 6, ties)
    users = np.arange(90)
    ref = reference(m, users, seen, k)
    assert _fused_scorer(m, users, Backend("numpy")) is not None  # the fast path is taken
    for block in (None, 1, 13, 64):
        np.testing.assert_array_equal(rank(m, users, seen, k, block=block), ref)
    sub = rng.permutation(90)[:37]  # a subset in any order, duplicates included
    sub = np.concatenate([sub, sub[:3]])
    np.testing.assert_array_equal(rank(m, sub, seen, k, block=16), reference(m, sub, seen, k))
    # the generic path (numpy and torch selection) gives the same lists
    for be in (Backend("numpy"), Backend("torch")):
        np.testing.assert_array_equal(rank(Wrapped(m), users, seen, k, backend=be), ref)
    # the device path (what --device cuda runs), here on torch's CPU device
    assert _fused_scorer(m, users, Backend("numpy"), device="cpu").device == torch.device("cpu")
    for block in (None, 1, 13):
        np.testing.assert_array_equal(rank(m, users, seen, k, block=block, device="cpu"), ref)
    np.testing.assert_array_equal(rank(m, sub, seen, k, block=16, device="cpu"), reference(m, sub, seen, k))
    assert (ref[0] == -1).all()  # the fully masked row is all padding


def test_ties_at_the_chunk_boundary_and_within_chunks():
    """Equal scores spread over many chunks, the K-th value shared by items in unselected
    chunks: the lower indices must win."""
    n_i, k = 4000, 20
    g = chunk_size(padded_items(n_i), k)
    V = np.zeros((n_i, 1), np.float32)
    V[::7] = 1.0  # ties at 1.0 everywhere, more than k of them
    V[5] = 3.0
    V[g + 1] = 2.0
    V[3 * g + 2] = 2.0
    U = np.ones((3, 1), np.float32)
    U[2] = -1.0  # the reversed order: ties at 0 (many) and -1
    m = EmbeddingRecommender("tie", U, V, np.ones(n_i, bool))
    seen = sp.csr_matrix(([1.0, 1.0], ([1, 1], [0, 7])), shape=(3, n_i))
    got = rank(m, np.arange(3), seen, k)
    np.testing.assert_array_equal(got, reference(m, np.arange(3), seen, k))
    np.testing.assert_array_equal(rank(m, np.arange(3), seen, k, device="cpu"), got)
    assert got[0, :3].tolist() == [5, g + 1, 3 * g + 2]
    assert got[0, 3:6].tolist() == [0, 7, 14]
    assert got[1, 3:6].tolist() == [14, 21, 28]  # 0 and 7 seen


def test_fused_topk_direct_with_minus_zero_and_few_finite():
    S = torch.full((4, 256), float("-inf"))
    S[0, :200] = torch.arange(200, dtype=torch.float32) % 3  # ties
    S[1, 10], S[1, 20], S[1, 30] = 0.0, -0.0, 0.0  # -0.0 == 0.0: index order
    S[2, :] = 1.0
    S[2, 250:] = float("-inf")
    out = fused_topk(S, 250, 5, g=32)
    assert out[0].tolist() == [2, 5, 8, 11, 14]
    assert out[1].tolist() == [10, 20, 30, -1, -1]
    assert out[2].tolist() == [0, 1, 2, 3, 4]
    assert out[3].tolist() == [-1] * 5


def test_explicit_zeros_in_seen_are_not_masked():
    rng = np.random.default_rng(5)
    m, _ = _case(rng, 20, 500, 4, False)
    seen = sp.csr_matrix(np.where(rng.random((20, 500)) < 0.1, 1.0, 0.0))
    seen.data[::3] = 0.0  # stored zeros: not seen
    ref = reference(m, np.arange(20), seen, 10)
    np.testing.assert_array_equal(rank(m, np.arange(20), seen, 10, block=7), ref)
    np.testing.assert_array_equal(rank(m, np.arange(3, 17), seen, 10), reference(m, np.arange(3, 17), seen, 10))


def test_float64_vectors_and_no_seen_matrix():
    rng = np.random.default_rng(6)
    U = rng.standard_normal((30, 5))
    V = rng.standard_normal((800, 5))
    m = EmbeddingRecommender("f64", U, V, np.ones(800, bool))
    assert m.score(np.arange(3)).dtype == np.float32
    np.testing.assert_array_equal(rank(m, np.arange(30), None, 12), reference(m, np.arange(30), None, 12))
    np.testing.assert_array_equal(rank(m, np.arange(30), None, 12, device="cpu"), reference(m, np.arange(30), None, 12))


def test_scores_are_bit_identical_across_blocks_subsets_and_threads():
    """score() and the fused path share one kernel: a user's scores do not depend on the
    block it is computed in or on torch's thread count."""
    rng = np.random.default_rng(7)
    U = rng.standard_normal((300, 64)).astype(np.float32)
    V = rng.standard_normal((1682, 64)).astype(np.float32)
    m = EmbeddingRecommender("x", U, V, np.ones(1682, bool))
    full = m.score(np.arange(300))
    for rows in (np.arange(5), np.arange(17, 50), rng.permutation(300)[:100], np.array([299])):
        np.testing.assert_array_equal(m.score(rows), full[rows])
    sc = EmbeddingScorer(U, V)
    buf = torch.empty(512, sc.n_cols)
    np.testing.assert_array_equal(sc.block(np.arange(300), buf).numpy()[:, :1682], full)
    dev = EmbeddingScorer(U, V, device="cpu")  # the device kernel: same shapes, same bits on the CPU
    np.testing.assert_array_equal(dev.device_block(np.arange(300)).numpy()[:, :1682], full)
    np.testing.assert_array_equal(dev.device_block(np.arange(5)).numpy()[:5, :1682], full[:5])
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        np.testing.assert_array_equal(m.score(np.arange(300)), full)
    finally:
        torch.set_num_threads(old)
    assert MIN_ROWS >= 12


def test_nan_and_overflowing_vectors_take_the_generic_path():
    rng = np.random.default_rng(8)
    U = rng.standard_normal((10, 4)).astype(np.float32)
    V = rng.standard_normal((50, 4)).astype(np.float32)
    V[7, 2] = np.nan
    m = EmbeddingRecommender("nan", U, V, np.ones(50, bool))
    assert _fused_scorer(m, np.arange(10), Backend("numpy")) is None
    with pytest.raises(VectorError, match="item index 7"):
        rank(m, np.arange(10), None, 5)
    big = EmbeddingRecommender("big", U * 1e20, np.full((50, 4), 1e20, np.float32), np.ones(50, bool))
    assert _fused_scorer(big, np.arange(10), Backend("numpy")) is None
    np.testing.assert_array_equal(rank(big, np.arange(10), None, 5), reference(big, np.arange(10), None, 5))


def test_subclass_overriding_score_is_not_fused():
    class Shifted(EmbeddingRecommender):
        def score(self, users):
            return super().score(users) + 1

    U = np.ones((2, 1), np.float32)
    V = np.arange(3, dtype=np.float32)[:, None]
    assert _fused_scorer(Shifted("s", U, V, np.ones(3, bool)), np.arange(2), Backend("numpy")) is None
    assert _fused_scorer(Shifted("s", U, V, np.ones(3, bool)), np.arange(2), Backend("numpy"), "cpu") is None


def test_fused_matches_today_numpy_path_on_exact_integer_scores():
    """With integer-valued vectors every BLAS gives exact scores, so the fused path and the
    previous engine (numpy matmul + Backend('numpy').topk) must give the same lists."""
    rng = np.random.default_rng(9)
    U = rng.integers(-3, 4, (200, 16)).astype(np.float32)
    V = rng.integers(-3, 4, (1682, 16)).astype(np.float32)
    scorable = rng.random(1682) > 0.05
    seen = sp.random(200, 1682, density=0.06, format="csr", random_state=3, dtype=np.float32)
    m = EmbeddingRecommender("int", U, V, scorable)
    s = np.asarray(U @ V.T, np.float32)
    s[:, ~scorable] = -np.inf
    mask_seen(s, seen, np.arange(200))
    idx, vals = Backend("numpy").topk(s, 20)
    old = idx.astype(np.int32)
    old[~np.isfinite(vals)] = -1
    np.testing.assert_array_equal(rank(m, np.arange(200), seen, 20), old)


def test_choose_block():
    assert choose_block(3706, 64) == 512
    assert choose_block(20000, 64) == 64
    assert choose_block(1682, 64) == 1024
    assert choose_block(100_000, 64) == 64
    assert choose_block(50, 384) == 2048
    for n_i, d in ((1, 1), (3706, 128), (10**6, 64)):
        b = choose_block(n_i, d)
        assert 64 <= b <= 2048 and b & (b - 1) == 0
