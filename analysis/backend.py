"""Array backends for top-K selection (numpy, torch on the CPU) and the device path (torch on CUDA).

Selection dominates full-ranking cost at small dimension (PERFORMANCE.md), so the
backend owns top-K.

Choice: ``SEMCOLLAB_BACKEND`` (numpy | torch | auto) forces one; ``auto`` is numpy. torch is
not the CPU default: on this 2-core machine under load it was no faster than numpy in the
engine's loops (scores come from numpy, the fused scores are float64, and torch's OpenMP
threads compete with OpenBLAS), and importing it costs seconds.

The GPU is not a backend: copying finished host score blocks to a device only to select the
top K is slower than staying on the CPU. On a device (``--device cuda``), the embedding
scores are *computed* there: :class:`EmbeddingScorer` keeps the user and item vectors on the
device, :func:`analysis.ranking.rank` masks each block there and :func:`device_topk` selects
there, so only the top-K indices cross back. The same torch code runs with ``device="cpu"``
(how the tests cover it on machines without a GPU).

Determinism: every backend returns exactly the same items in the same order. Ties are
broken by lower item index, both inside the list and at the K-th boundary: the raw
selection takes K+1 items, and rows whose (K+1)-th value equals the K-th (other items
may tie the boundary) are re-selected exactly (with continuous scores there are none).
Scores must not contain NaN (``analysis.ranking`` checks this); ``-inf`` marks items
that must not be returned and is sorted last.

Embedding scores (``<user_vec, item_vec>``) have one kernel, :class:`EmbeddingScorer`
(torch ``mm`` on CPU, whatever the backend): ``EmbeddingRecommender.score`` and the fused
ranking of :func:`analysis.ranking.rank` both go through it, with the same padded shapes,
so a user's scores are bit-identical whichever host path, block or thread count produced them
(numpy's OpenBLAS gives different last bits for different block sizes; MKL's ``mm`` does
not once a block has ``MIN_ROWS`` rows). :func:`fused_topk` selects from a masked score
block in about one pass: exact top-K with the same tie rule (see its docstring).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

BACKENDS = ("numpy", "torch")


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
            vals, idx = top_set(scores, kk)
        else:
            if kk < m:
                idx = np.argpartition(scores, m - kk, axis=1)[:, m - kk :]
            else:
                idx = np.broadcast_to(np.arange(m), (n, m))
            vals = np.take_along_axis(scores, idx, 1)
        host = lambda r: scores[r]  # noqa: E731
        idx, vals = _order_rows(np.asarray(idx, np.int64), vals)
        return _fix_boundary_ties(host, idx, vals, k)


def get_backend(name: str | None = None) -> Backend:
    """Resolve ``name`` (or ``$SEMCOLLAB_BACKEND``, default ``auto`` = numpy) to a backend.

    Both give identical results. ``cupy`` is no backend any more: use ``--device cuda``.
    """
    name = (name or os.environ.get("SEMCOLLAB_BACKEND") or "auto").lower()
    if name == "auto":
        name = "numpy"
    if name == "cupy":
        raise ConfigError("the cupy backend is gone (it copied finished score blocks to the GPU): "
                          "use --device cuda, which computes and selects the scores on the device")
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r} (SEMCOLLAB_BACKEND or argument): use numpy, torch or auto")
    return Backend(name)


def ranking_device(device: str | None) -> str | None:
    """The torch device that embedding rankings run on for a run's ``--device`` (auto | cpu | cuda):
    the CUDA device when one is requested or found, None (the host's fused path) on the CPU."""
    from .models.validation import resolve_device

    d = resolve_device(device or "auto")
    return None if d == "cpu" else d


def device_topk(S, k: int) -> np.ndarray:
    """Exact top-``k`` item indices (int32 ``(b, k)``, -1 padded) of a masked score block ``S`` (a torch
    tensor on any device; ``-inf`` = never returned), selected on that device: ``torch.topk`` of K+1,
    then the tie rule of :meth:`Backend.topk` on the small result (a row whose K-th and (K+1)-th
    values tie is redone exactly from its scores)."""
    import torch

    b, m = S.shape
    out = np.full((b, k), -1, dtype=np.int32)
    kk = min(k + 1, m)
    if b == 0 or kk == 0:
        return out
    v, i = torch.topk(S, kk, dim=1, largest=True, sorted=True)
    idx, vals = _order_rows(i.cpu().numpy().astype(np.int64), v.cpu().numpy())
    idx, vals = _fix_boundary_ties(lambda r: S[r].cpu().numpy(), idx, vals, min(k, m))
    idx = idx.astype(np.int32)
    idx[~np.isfinite(vals)] = -1
    out[:, : idx.shape[1]] = idx
    return out


def top_set(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Some ``k`` largest entries of each row of a float matrix, unordered: ``(values, indices int64)``.

    Which of several entries tied at the k-th value are returned is unspecified: for callers that
    only need the threshold and a top set and recount ties themselves (the capped slots of
    :mod:`analysis.calibration`). ``torch.topk`` (unsorted): ~3x numpy's argpartition here.
    """
    import torch

    v, i = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), int(k), dim=1, sorted=False)
    return v.numpy(), i.numpy()


# --------------------------------------------------------------------------------------
# Embedding scores and the fused top-K (analysis.ranking's fast path)

#: items are padded (zero vectors, scores then set to -inf) to a multiple of this
COL_ALIGN = 128
#: score blocks are computed with at least this many rows (MKL picks another kernel, with
#: other rounding, for fewer rows; measured: 1-11 rows differ, 12+ agree)
MIN_ROWS = 16
#: the fast path needs max ||u|| * max ||v|| below this, so no score can overflow or be NaN
_SAFE_BOUND = 1e37


def padded_items(n_items: int) -> int:
    """Number of score columns the kernel computes for ``n_items`` items."""
    return max(COL_ALIGN, -(-int(n_items) // COL_ALIGN) * COL_ALIGN)


class EmbeddingScorer:
    """``<user_vecs[u], item_vecs[i]>`` through one torch kernel (float32 vectors: float32
    ``mm``; float64 vectors: float64 ``mm``, scores cast to float32).

    ``block(rows, out)`` writes the ``(len(rows), padded_items(n_items))`` scores of a block
    into ``out`` (a float32 torch tensor with at least ``max(len(rows), MIN_ROWS)`` rows);
    the padding columns are 0 and must be masked by the caller.
    """

    def __init__(self, user_vecs, item_vecs, device: str | None = None):
        import torch

        self.torch = torch
        U = np.asarray(user_vecs)
        V = np.asarray(item_vecs)
        if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
            raise ConfigError(f"user vectors {U.shape} and item vectors {V.shape} do not match")
        dt = np.result_type(U.dtype, V.dtype)
        self.dtype = np.float64 if dt == np.float64 else np.float32
        self.U = U
        self.n_items, self.dim = V.shape
        self.n_cols = padded_items(self.n_items)
        Vp = np.zeros((self.n_cols, self.dim), self.dtype)
        Vp[: self.n_items] = V
        self.Vt = torch.from_numpy(Vp).T  # (d, n_cols) view of a row-major (n_cols, d) matrix
        #: None: scores on the host (``block``); else a torch device holding both vector sets (``device_block``)
        self.device = None if device is None else torch.device(device)
        if self.device is not None:
            self.U_dev = torch.from_numpy(np.ascontiguousarray(U, dtype=self.dtype)).to(self.device)
            self.Vt_dev = torch.from_numpy(Vp).to(self.device).T

    def bounded(self, users: np.ndarray) -> bool:
        """True when every score of ``users`` is finite (vectors finite, Cauchy-Schwarz bound)."""
        Ub = self.U[users]
        V = self.Vt.T.numpy()[: self.n_items]
        if not (np.isfinite(Ub).all() and np.isfinite(V).all()):
            return False
        if len(Ub) == 0 or len(V) == 0:
            return True
        nu = float(np.sqrt(np.einsum("ij,ij->i", Ub, Ub, dtype=np.float64).max()))
        nv = float(np.sqrt(np.einsum("ij,ij->i", V, V, dtype=np.float64).max()))
        return nu * nv < _SAFE_BOUND

    def block(self, rows: np.ndarray, out, ubuf: np.ndarray | None = None):
        """Scores of ``rows`` into ``out[:max(len(rows), MIN_ROWS)]``; returns ``out[:len(rows)]``.

        ``ubuf``: optional ``(>= max(len(rows), MIN_ROWS), dim)`` array of ``self.dtype``
        reused for the gathered user vectors.
        """
        torch = self.torch
        b = len(rows)
        m = max(b, MIN_ROWS)
        if ubuf is None or ubuf.shape[0] < m:
            ubuf = np.empty((m, self.dim), self.dtype)
        ub = ubuf[:m]
        if self.U.dtype == self.dtype:
            np.take(self.U, rows, axis=0, out=ub[:b])
        else:
            ub[:b] = self.U[rows]
        if b < m:
            ub[b:] = 0
        if self.dtype == np.float32:
            torch.mm(torch.from_numpy(ub), self.Vt, out=out[:m])
        else:
            out[:m].copy_(torch.mm(torch.from_numpy(ub), self.Vt))
        return out[:b]

    def device_block(self, rows: np.ndarray):
        """Scores of ``rows`` computed on ``self.device``: a float32 tensor there of
        ``(max(len(rows), MIN_ROWS), n_cols)`` (rows past ``len(rows)`` and the padding columns are
        0 and must be ignored or masked by the caller); the same shapes as :meth:`block`."""
        torch = self.torch
        b = len(rows)
        m = max(b, MIN_ROWS)
        idx = torch.zeros(m, dtype=torch.int64)
        idx[:b] = torch.from_numpy(np.asarray(rows, np.int64))
        ub = self.U_dev.index_select(0, idx.to(self.device))
        if b < m:
            ub[b:] = 0
        S = torch.mm(ub, self.Vt_dev)
        return S if S.dtype == torch.float32 else S.float()

    def scores(self, users: np.ndarray) -> np.ndarray:
        """float32 ``(len(users), n_items)`` scores (a new array)."""
        torch = self.torch
        users = np.asarray(users)
        if users.ndim == 0:  # one user: one row of scores, as numpy indexing gives
            return self.scores(users[None])[0]
        out = torch.empty((max(len(users), MIN_ROWS), self.n_cols), dtype=torch.float32)
        s = self.block(users, out).numpy()
        return s if self.n_cols == self.n_items else np.ascontiguousarray(s[:, : self.n_items])


def chunk_size(n_cols: int, k: int) -> int:
    """Chunk width of :func:`fused_topk` (a divisor of ``n_cols``): about sqrt(n_cols / k),
    at least 32 (torch's chunk-max reduction is slow below that), at most 128."""
    g = 32
    while g < 128 and g * g * k < n_cols and n_cols % (2 * g) == 0:
        g *= 2
    return g


def _desc_key(v: np.ndarray) -> np.ndarray:
    """int64 key in [0, 2^32), ascending in descending float32 value (-0.0 == 0.0; no NaN)."""
    b = (v + np.float32(0)).view(np.int32)
    b ^= (b >> 31) & 0x7FFFFFFF  # signed int32 ``o``, ascending with the value
    b ^= np.int32(0x7FFFFFFF)  # bits of 0x7FFFFFFF - o as uint32: descending
    return b.view(np.uint32).astype(np.int64)


_NEG_INF_KEY = int(_desc_key(np.array([-np.inf], np.float32))[0])


def fused_topk(S, n_items: int, k: int, g: int | None = None) -> np.ndarray:
    """Exact top-``k`` item indices (int32 ``(b, k)``, -1 padded) of a masked score block.

    ``S``: float32 torch tensor ``(b, n_cols)``, C-contiguous, no NaN and no ``+inf``, with
    ``-inf`` on every column that must not be returned (seen, unscorable, padding beyond
    ``n_items``). Same result as sorting each row by (score descending, item index
    ascending) and dropping ``-inf``.

    Selection in about one pass: the maximum of each chunk of ``g`` columns; ``T`` = the
    K-th largest chunk maximum is a lower bound of the row's K-th largest score (K chunks
    each hold a score >= T) and, when the (K+1)-th chunk maximum is strictly smaller, every
    score >= T lies in the K chunks whose maximum is >= T. Those K*g candidates are
    gathered, the ones >= T (about K per row) sorted by one int64 key (row, descending
    value, item), and the first K of each row taken. Rows where that does not hold (the
    (K+1)-th chunk maximum ties the K-th, or fewer than K chunks hold a finite score) go
    through the exact :meth:`Backend.topk`; continuous scores rarely have any.
    """
    import torch

    b, n_cols = S.shape
    out = np.full((b, k), -1, np.int32)
    if b == 0:
        return out
    g = g or chunk_size(n_cols, k)
    nc = n_cols // g
    Sn = S.numpy()
    cb = (n_cols - 1).bit_length()
    if nc <= k or g & (g - 1) or nc * g != n_cols or (b - 1).bit_length() + 32 + cb > 63:
        # small catalogue (or a block too large for the int64 key): exact selection over every column
        return _exact_topk(Sn, np.arange(b), n_items, k, out)
    Cm = S.view(b, nc, g).amax(2).numpy()
    part = np.partition(Cm, nc - k - 1, axis=1)
    nxt = part[:, nc - k - 1]  # the (K+1)-th largest chunk maximum
    T = part[:, nc - k :].min(1)  # the K-th
    slow = (nxt == T) | (T == -np.inf)
    rows = np.arange(b)
    if slow.any():
        T[slow] = np.inf  # no chunk qualifies: these rows are redone exactly below
        rows = rows[~slow]
        if len(rows) == 0:
            return _exact_topk(Sn, np.flatnonzero(slow), n_items, k, out)
    pc = np.flatnonzero(Cm >= T[:, None])  # row * nc + chunk: exactly K per row, ascending
    cand = S.view(b * nc, g).index_select(0, torch.from_numpy(pc)).numpy()
    width = k * g
    p = np.flatnonzero(cand.reshape(len(rows), width) >= T[rows][:, None])
    r = rows[p // width]
    col = pc[p >> (g.bit_length() - 1)] * g + (p & (g - 1)) - r * n_cols
    key = (r << (32 + cb)) | (_desc_key(cand.reshape(-1)[p]) << cb) | col
    key.sort()
    cnt = np.bincount(r, minlength=b)[rows]  # >= K on every row here
    start = np.cumsum(cnt) - cnt
    out[rows] = key[start[:, None] + np.arange(k)] & ((1 << cb) - 1)
    if len(rows) < b:
        _exact_topk(Sn, np.flatnonzero(slow), n_items, k, out)
    return out


def _exact_topk(Sn: np.ndarray, rows: np.ndarray, n_items: int, k: int, out: np.ndarray) -> np.ndarray:
    """``out[rows]`` = exact top-``k`` of ``Sn[rows, :n_items]`` (-1 for ``-inf``), via numpy."""
    idx, vals = Backend("numpy").topk(Sn[rows, :n_items], k)
    idx = idx.astype(np.int32)
    idx[~np.isfinite(vals)] = -1
    out[rows] = -1
    out[rows, : idx.shape[1]] = idx
    return out
