"""Array backends for top-K selection: numpy, torch (CPU), cupy (CUDA).

Selection dominates full-ranking cost at small dimension (PERFORMANCE.md), so the
backend owns top-K.

Choice: ``SEMCOLLAB_BACKEND`` (numpy | torch | cupy | auto) forces one; otherwise
``auto``: cupy when it is importable *and* sees a CUDA device, else numpy. torch is not
the CPU default: on this 2-core machine under load it was no faster than numpy in the
engine's loops (scores come from numpy, the fused scores are float64, and torch's OpenMP
threads compete with OpenBLAS), and importing it costs seconds.

Determinism: every backend returns exactly the same items in the same order. Ties are
broken by lower item index, both inside the list and at the K-th boundary: the raw
selection takes K+1 items, and rows whose (K+1)-th value equals the K-th (other items
may tie the boundary) are re-selected exactly (with continuous scores there are none).
Scores must not contain NaN (``analysis.ranking`` checks this); ``-inf`` marks items
that must not be returned and is sorted last.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

BACKENDS = ("numpy", "torch", "cupy")


def _order_rows(idx: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by value descending, then item index ascending (small (n, k) arrays)."""
    o = np.argsort(idx, axis=1, kind="stable")
    idx, vals = np.take_along_axis(idx, o, 1), np.take_along_axis(vals, o, 1)
    o = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(idx, o, 1), np.take_along_axis(vals, o, 1)


def _exact_row(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of one row with ties broken by lower index (slow path for tied rows)."""
    o = np.lexsort((np.arange(len(row)), -row))[:k]
    return o, row[o]


def _fix_boundary_ties(scores_host, idx: np.ndarray, vals: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` from a top ``k+1`` selection, redoing rows whose K-th value ties the next.

    If the (K+1)-th best value equals the K-th, unselected items may share the K-th value
    and the lower index must win: such rows (rare with continuous scores) are redone exactly.
    """
    if idx.shape[1] <= k:
        return idx, vals
    bad = np.flatnonzero((vals[:, k] == vals[:, k - 1]) & np.isfinite(vals[:, k - 1]))
    idx, vals = idx[:, :k].copy(), vals[:, :k].copy()
    for r in bad:
        idx[r], vals[r] = _exact_row(np.asarray(scores_host(r)), k)
    return idx, vals


@dataclass
class Backend:
    name: str

    def topk(self, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row-wise top-k of a float matrix: ``(indices int64, values)``, best first.

        ``k`` is clipped to the number of columns. Ties: lower item index first.
        """
        n, m = scores.shape
        k = min(int(k), m)
        if k <= 0 or n == 0:
            return np.zeros((n, max(k, 0)), np.int64), np.zeros((n, max(k, 0)), scores.dtype)
        kk = min(k + 1, m)  # one extra slot reveals ties at the K-th boundary
        if self.name == "torch":
            import torch

            v, i = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), kk, dim=1, largest=True, sorted=False)
            idx, vals = i.numpy(), v.numpy()
            host = lambda r: scores[r]  # noqa: E731
        elif self.name == "cupy":
            import cupy as cp

            g = cp.asarray(scores)
            part = cp.argpartition(g, m - kk, axis=1)[:, m - kk :] if kk < m else cp.broadcast_to(cp.arange(m), (n, m))
            idx, vals = cp.asnumpy(part), cp.asnumpy(cp.take_along_axis(g, part, axis=1))
            host = lambda r: cp.asnumpy(g[r])  # noqa: E731
        else:
            if kk < m:
                idx = np.argpartition(scores, m - kk, axis=1)[:, m - kk :]
            else:
                idx = np.broadcast_to(np.arange(m), (n, m))
            vals = np.take_along_axis(scores, idx, 1)
            host = lambda r: scores[r]  # noqa: E731
        idx, vals = _order_rows(np.asarray(idx, np.int64), vals)
        return _fix_boundary_ties(host, idx, vals, k)


def cuda_available() -> bool:
    """True when cupy is importable and sees a CUDA device (False on CPU machines)."""
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:  # ImportError, CUDARuntimeError
        return False


def get_backend(name: str | None = None) -> Backend:
    """Resolve ``name`` (or ``$SEMCOLLAB_BACKEND``, default ``auto``) to a backend.

    ``auto``: cupy with a CUDA device, else numpy. All give identical results.
    """
    name = (name or os.environ.get("SEMCOLLAB_BACKEND") or "auto").lower()
    if name == "auto":
        name = "cupy" if cuda_available() else "numpy"
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r} (SEMCOLLAB_BACKEND or argument): use numpy, torch, cupy or auto")
    if name == "cupy" and not cuda_available():
        raise ConfigError("backend 'cupy' requested but cupy or a CUDA device is not available")
    return Backend(name)
