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
    monkeypatch.setattr(cal, "FEW_SINGLES", 0)  # every column through the full sort
    slow = cal.single_view_slots(*args)
    np.testing.assert_array_equal(fast.slot, slow.slot)
    np.testing.assert_array_equal(fast.single, slow.single)
    # the keys may differ in value but must order each row's single-view items identically
    for r in range(40):
        it = np.flatnonzero(fast.single[r])
        np.testing.assert_array_equal(it[np.argsort(fast.key[r, it])], it[np.argsort(slow.key[r, it])])
    np.testing.assert_array_equal(fast_scores, cal.calibrated_scores(blend, slow))
