"""Array backends for top-K selection: numpy, torch (CPU), cupy (CUDA).

Selection dominates full-ranking cost at small dimension (PERFORMANCE.md): ``torch.topk``
is 3-5x faster than ``np.argpartition`` on CPU, so the backend owns top-K.

Choice: ``SEMCOLLAB_BACKEND`` (numpy | torch | cupy | auto) forces one; otherwise
``auto``: cupy when it is importable *and* sees a CUDA device, else torch, else numpy.

Determinism: every backend returns exactly the same items in the same order. Ties are
broken by lower item index, both inside the list and at the K-th boundary: after the raw
selection, rows where more items than the selected ones reach the K-th value are
re-selected exactly (a cheap count pass finds them; with continuous scores there are
none). Scores must not contain NaN (``analysis.ranking`` checks this); ``-inf`` marks
items that must not be returned and is sorted last.
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


def _fix_boundary_ties(
    scores_host, idx: np.ndarray, vals: np.ndarray, k: int, n_ge: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Redo rows whose K-th value is shared by unselected items (lower index must win)."""
    bad = np.flatnonzero((n_ge > k) & np.isfinite(vals[:, -1]))
    for r in bad:
        row = np.asarray(scores_host(r))
        idx[r], vals[r] = _exact_row(row, k)
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
        if self.name == "torch":
            import torch

            t = torch.from_numpy(np.ascontiguousarray(scores))
            v, i = torch.topk(t, k, dim=1, largest=True, sorted=False)
            idx, vals = i.numpy(), v.numpy()
            n_ge = np.count_nonzero(scores >= v.min(dim=1).values.numpy()[:, None], axis=1)
            host = lambda r: scores[r]  # noqa: E731
        elif self.name == "cupy":
            import cupy as cp

            g = cp.asarray(scores)
            part = cp.argpartition(-g, k - 1, axis=1)[:, :k] if k < m else cp.broadcast_to(cp.arange(m), (n, m))
            pv = cp.take_along_axis(g, part, axis=1)
            n_ge = cp.asnumpy((g >= pv.min(axis=1, keepdims=True)).sum(1))
            idx, vals = cp.asnumpy(part), cp.asnumpy(pv)
            host = lambda r: cp.asnumpy(g[r])  # noqa: E731
        else:
            if k < m:
                idx = np.argpartition(scores, m - k, axis=1)[:, m - k :]
            else:
                idx = np.broadcast_to(np.arange(m), (n, m))
            vals = np.take_along_axis(scores, idx, 1)
            n_ge = np.count_nonzero(scores >= vals.min(1, keepdims=True), axis=1)
            host = lambda r: scores[r]  # noqa: E731
        idx, vals = _order_rows(np.asarray(idx, np.int64), vals)
        return _fix_boundary_ties(host, idx, vals, k, n_ge)


def cuda_available() -> bool:
    """True when cupy is importable and sees a CUDA device (False on CPU machines)."""
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:  # ImportError, CUDARuntimeError
        return False


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401

        return True
    except ImportError:
        return False


def get_backend(name: str | None = None) -> Backend:
    """Resolve ``name`` (or ``$SEMCOLLAB_BACKEND``, default ``auto``) to a backend.

    ``auto``: cupy with a CUDA device, else torch, else numpy. All give identical results.
    """
    name = (name or os.environ.get("SEMCOLLAB_BACKEND") or "auto").lower()
    if name == "auto":
        name = "cupy" if cuda_available() else ("torch" if _torch_available() else "numpy")
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r} (SEMCOLLAB_BACKEND or argument): use numpy, torch, cupy or auto")
    if name == "cupy" and not cuda_available():
        raise ConfigError("backend 'cupy' requested but cupy or a CUDA device is not available")
    return Backend(name)
