"""Top-K backends and ranking: numpy and torch agree exactly, ties go to the lower index,
seen / unscorable items are never returned, padding is -1."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from analysis.backend import Backend, get_backend
from analysis.errors import ConfigError, VectorError
from analysis.models.base import EmbeddingRecommender
from analysis.ranking import mask_seen, rank, rank_scores

BACKENDS = [Backend("numpy"), Backend("torch")]


def reference_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row by row: value descending, then item index ascending (the documented order)."""
    idx = np.array([np.lexsort((np.arange(len(r)), -r))[:k] for r in scores])
    return idx, np.take_along_axis(scores, idx, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 7, 40, 60])
def test_numpy_torch_agree_on_continuous_scores(dtype, k):
    rng = np.random.default_rng(1)
    s = rng.standard_normal((97, 50)).astype(dtype)
    s[rng.random(s.shape) < 0.2] = -np.inf
    s[3] = -np.inf  # a row with nothing scorable
    ref_i, ref_v = reference_topk(s, min(k, 50))
    for be in BACKENDS:
        i, v = be.topk(s, k)
        assert i.shape == (97, min(k, 50))
        fin = np.isfinite(ref_v)
        np.testing.assert_array_equal(i[fin], ref_i[fin])
        np.testing.assert_array_equal(v, ref_v)


@pytest.mark.parametrize("k", [1, 3, 5, 9])
def test_ties_broken_by_lower_index_including_boundary(k):
    rng = np.random.default_rng(2)
    s = rng.integers(0, 4, size=(200, 30)).astype(np.float32)  # heavy ties everywhere
    ref_i, ref_v = reference_topk(s, k)
    for be in BACKENDS:
        i, v = be.topk(s, k)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_array_equal(v, ref_v)
    # hand case: all equal -> the first k items in index order
    i, _ = Backend("numpy").topk(np.zeros((1, 6), np.float32), 3)
    assert i.tolist() == [[0, 1, 2]]
    i, _ = Backend("torch").topk(np.array([[1, 2, 2, 0, 2]], np.float32), 2)
    assert i.tolist() == [[1, 2]]


def test_get_backend_env_and_errors(monkeypatch):
    monkeypatch.setenv("SEMCOLLAB_BACKEND", "numpy")
    assert get_backend().name == "numpy"
    monkeypatch.setenv("SEMCOLLAB_BACKEND", "torch")
    assert get_backend().name == "torch"
    assert get_backend("numpy").name == "numpy"  # explicit argument wins
    monkeypatch.delenv("SEMCOLLAB_BACKEND")
    assert get_backend().name == "numpy"  # auto
    with pytest.raises(ConfigError, match="unknown backend"):
        get_backend("jax")
    with pytest.raises(ConfigError, match="--device cuda"):  # no host->GPU copy of finished score blocks
        get_backend("cupy")


def _toy_model():
    # 3 users, 5 items; scores = user_vecs @ item_vecs.T with 1-d vectors
    user_vecs = np.array([[1.0], [-1.0], [2.0]], np.float32)
    item_vecs = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], np.float32)
    scorable = np.array([True, True, True, False, True])
    return EmbeddingRecommender("toy", user_vecs, item_vecs, scorable)


@pytest.mark.parametrize("be", BACKENDS, ids=lambda b: b.name)
def test_rank_masks_seen_and_unscorable_and_pads(be):
    m = _toy_model()
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 0, 1]], np.float32))
    top = rank(m, np.array([0, 1, 2]), seen, k=4, block=2, backend=be)
    assert top.dtype == np.int32
    # user 0: item 0 seen, item 3 unscorable -> 1, 2, 4, pad
    # user 1: scores negative -> best is item 4 but seen -> 2, 1, 0, pad
    # user 2: only item 3 left and it is unscorable -> all pad
    assert top.tolist() == [[1, 2, 4, -1], [2, 1, 0, -1], [-1, -1, -1, -1]]
    # k larger than the catalogue is padded, not an error
    assert rank(m, np.array([0]), None, k=7, backend=be).tolist() == [[0, 1, 2, 4, -1, -1, -1]]


def test_rank_scores_matches_rank_and_does_not_modify_input():
    rng = np.random.default_rng(3)
    m = EmbeddingRecommender("r", rng.standard_normal((40, 8)).astype(np.float32),
                             rng.standard_normal((60, 8)).astype(np.float32), np.ones(60, bool))
    seen = sp.random(40, 60, density=0.2, format="csr", random_state=4, dtype=np.float32)
    users = np.arange(40)[::-1].copy()
    s = m.score(users)
    s0 = s.copy()
    a = rank_scores(s, 10, seen, users, backend=Backend("numpy"), block=7)
    b = rank(m, users, seen, 10, block=16, backend=Backend("torch"))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(s, s0)
    # no returned item is seen
    assert not np.asarray(seen[users].todense())[np.arange(40)[:, None], a].any()


def test_mask_seen_vectorised_and_nan_rejected():
    s = np.zeros((2, 4), np.float32)
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 1, 0]], np.float32))
    mask_seen(s, seen, np.array([2, 1]))
    assert np.isneginf(s).tolist() == [[False, False, True, False], [True, False, False, True]]
    bad = np.zeros((2, 3), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(VectorError, match="user index 9, item index 2"):
        rank_scores(bad, 2, users=np.array([4, 9]))
    with pytest.raises(ConfigError):
        rank_scores(np.zeros((2, 3)), 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 5, 30, 45])
def test_device_topk_matches_the_reference_with_ties(dtype, k):
    """The device selection (torch.topk of K+1, then the tie rule) on torch's CPU device."""
    import torch

    from analysis.backend import device_topk

    rng = np.random.default_rng(6)
    for s in (rng.standard_normal((40, 30)).astype(dtype), rng.integers(0, 3, (40, 30)).astype(dtype)):
        s[rng.random(s.shape) < 0.1] = -np.inf
        s[2] = -np.inf
        got = device_topk(torch.from_numpy(s), k)
        ref_i, ref_v = reference_topk(s, min(k, 30))
        want = np.full((40, k), -1, np.int32)
        want[:, : ref_i.shape[1]] = np.where(np.isfinite(ref_v), ref_i, -1)
        np.testing.assert_array_equal(got, want)


def test_ranking_device_resolution(monkeypatch):
    """--device: the host's fused path on a CPU, the torch device path on CUDA (asked for, or found by auto)."""
    import torch

    from analysis.backend import ranking_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ranking_device("cpu") is None and ranking_device("auto") is None and ranking_device(None) is None
    with pytest.raises(ConfigError, match="no CUDA device"):
        ranking_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ranking_device("auto") == "cuda" and ranking_device("cuda") == "cuda" and ranking_device("cpu") is None


def test_top_set_holds_the_k_largest_of_each_row():
    from analysis.backend import top_set

    rng = np.random.default_rng(3)
    S = rng.integers(0, 6, size=(200, 40)).astype(np.float64)  # many ties at the threshold
    S[:, 7] = -np.inf
    vals, idx = top_set(S, 5)
    assert vals.shape == idx.shape == (200, 5) and idx.dtype == np.int64
    np.testing.assert_array_equal(np.take_along_axis(S, idx, 1), vals)  # the values are the entries'
    np.testing.assert_array_equal(np.sort(vals, 1), np.sort(S, 1)[:, -5:])  # and the 5 largest
    assert all(len(set(r)) == 5 for r in idx)
