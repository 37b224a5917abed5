"""The cold-item calibration's fast paths (few single-view columns) give exactly the full-sort results."""
from __future__ import annotations

import numpy as np
import pytest

import analysis.calibration as cal


def _block(rng, n, m, n_single, ties):
    a = rng.integers(0, 6, (n, m)).astype(np.float64) / 5 if ties else rng.random((n, m))
    b = rng.integers(0, 6, (n, m)).astype(np.float64) / 5 if ties else rng.random((n, m))
    fa, fb = np.ones((n, m), bool), np.ones((n, m), bool)
    cols = rng.choice(m, n_single, replace=False)
    fb[:, cols[: n_single // 2]] = False  # semantic-only
    fa[:, cols[n_single // 2:]] = False  # collaborative-only
    seen = rng.random((n, m)) < 0.2
    return a, b, fa, fb, seen


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n_single", [1, 5, 16])
def test_counted_slots_equal_sorted_slots(monkeypatch, ties, n_single):
    rng = np.random.default_rng(n_single + 100 * ties)
    args = _block(rng, 40, 300, n_single, ties)
    fast = cal.single_view_slots(*args)
    blend = np.where(args[2] & args[3] & ~args[4], rng.random((40, 300)), -np.inf)
    fast_scores = cal.calibrated_scores(blend, fast)
    monkeypatch.setattr(cal, "FEW_SINGLES", 0)  # every column through the sorted search
    slow = cal.single_view_slots(*args)
    np.testing.assert_array_equal(fast.slot, slow.slot)
    np.testing.assert_array_equal(fast.single, slow.single)
    # the keys may differ in value but must order each row's single-view items identically
    np.testing.assert_array_equal(fast.cols, slow.cols)
    for r in range(40):
        it = np.flatnonzero(fast.single[r])
        np.testing.assert_array_equal(it[np.argsort(fast.key[r, it])], it[np.argsort(slow.key[r, it])])
    np.testing.assert_array_equal(fast_scores, cal.calibrated_scores(blend, slow))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n_single", [3, 40, 200])
@pytest.mark.parametrize("cap", [1, 5, 20, 400])
def test_capped_slots_give_the_exact_top_k(ties, n_single, cap):
    """Slots capped at K: exact wherever they are below K, the others K; the merged top-K of a blend is
    then the one the exact slots give (ties included)."""
    rng = np.random.default_rng(n_single + 7 * cap + 100 * ties)
    a, b, fa, fb, seen = _block(rng, 60, 300, n_single, ties)
    exact = cal.single_view_slots(a, b, fa, fb, seen)
    capped = cal.single_view_slots(a, b, fa, fb, seen, cap=cap)
    np.testing.assert_array_equal(capped.single, exact.single)
    np.testing.assert_array_equal(capped.slot, np.minimum(exact.slot, cap))
    first_exact = cal.first_singles(exact, cap)
    first_capped = cal.first_singles(capped, cap)
    fell = first_exact[1] >= cap  # items whose exact slot is cap or more fall off a top-cap list
    np.testing.assert_array_equal(np.where(fell, -1, first_exact[0]), np.where(first_capped[1] >= cap, -1, first_capped[0]))
    np.testing.assert_array_equal(np.minimum(first_exact[1], cap), np.minimum(first_capped[1], cap))
    warm_blend = np.where(fa & fb & ~seen, 0.5 * a + 0.5 * b, -np.inf)
    order = np.argsort(-warm_blend, axis=1, kind="stable")[:, :cap]
    warm = np.full((60, cap), -1)
    warm[:, : order.shape[1]] = np.where(np.isfinite(np.take_along_axis(warm_blend, order, 1)), order, -1)
    np.testing.assert_array_equal(cal.merge_topk(warm, *first_capped, 300), cal.merge_topk(warm, *first_exact, 300))


def test_best_first_partial_equals_the_full_sort():
    rng = np.random.default_rng(3)
    x = np.where(rng.random((30, 200)) < 0.3, -np.inf, rng.integers(0, 9, (30, 200)) / 8)
    full = cal.best_first(x)
    assert (full[:, :-1] >= full[:, 1:]).all()
    for depth in (1, 5, 21, 199, 200, 300):
        np.testing.assert_array_equal(cal.best_first(x, depth), full[:, :depth])
