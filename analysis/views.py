"""The one input check of every two-view diagnostic (similarity, structure): paired item vectors.

Item ``i`` is row ``i`` of both views. Items with ``valid == False`` are dropped (their vectors
may be NaN: e.g. cold items have no collaborative vector); a *valid* row with NaN/inf is a
:class:`~analysis.errors.VectorError` naming the view and the row.
"""
from __future__ import annotations

import numpy as np

from .errors import VectorError
from .neighbors import _valid_mask

VIEW_NAMES = ("semantic", "collaborative")


def check_paired_views(X: np.ndarray, Y: np.ndarray, valid: np.ndarray | None = None,
                       names: tuple[str, str] = VIEW_NAMES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X[valid], Y[valid]) as float64 and the item indices they hold, after checking both views."""
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise VectorError(f"views must be 2-D with the same number of items, got {X.shape} and {Y.shape}")
    ok = _valid_mask(valid, X.shape[0])
    rows = np.flatnonzero(ok)
    out = []
    for M, name in ((X, names[0]), (Y, names[1])):
        Mv = np.asarray(M[ok], dtype=np.float64)
        bad = ~np.isfinite(Mv).all(axis=1)
        if bad.any():
            raise VectorError(f"{name} view: valid item row {rows[np.argmax(bad)]} has NaN/inf values "
                              f"({int(bad.sum())} such rows); mark such items invalid with `valid`")
        out.append(Mv)
    return out[0], out[1], rows
