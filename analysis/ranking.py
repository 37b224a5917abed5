"""Full-catalogue top-K with the user's seen items masked (DIAGNOSTICS.md protocol).

``rank`` scores users block by block through a :class:`Recommender`; ``rank_scores`` does
the same from a score matrix already in memory. Both mask seen items with one vectorised
scatter from the CSR matrix, never return seen or unscorable (``-inf``) items, break ties
by lower item index (see :mod:`analysis.backend`) and pad unfillable slots with -1.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .backend import Backend, get_backend
from .errors import ConfigError, VectorError
from .models.base import Recommender


def _check_k(k: int) -> int:
    if int(k) < 1:
        raise ConfigError(f"top-K length must be >= 1, got k={k}")
    return int(k)


def seen_rows(seen: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row position within ``rows``, item) of every stored non-zero of ``seen[rows]``."""
    sub = seen.tocsr()[rows].tocsr()
    r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
    keep = sub.data != 0
    return r[keep], sub.indices[keep]


def mask_seen(scores: np.ndarray, seen: sp.csr_matrix | None, rows: np.ndarray) -> np.ndarray:
    """Set ``scores[j, i] = -inf`` for every item ``i`` seen by user ``rows[j]`` (in place)."""
    if seen is None:
        return scores
    if seen.shape[1] != scores.shape[1]:
        raise ConfigError(f"seen matrix has {seen.shape[1]} items but scores have {scores.shape[1]} columns")
    r, c = seen_rows(seen, rows)
    scores[r, c] = -np.inf
    return scores


def check_scores(scores: np.ndarray, rows: np.ndarray, who: str = "model") -> None:
    """Raise VectorError if a score block contains NaN (it would sort unpredictably).

    NaN scores come from NaN in a model's vectors (e.g. user-supplied item vectors); the
    message names the user and item index.
    """
    nan = np.isnan(scores)
    if nan.any():
        j, i = np.argwhere(nan)[0]
        raise VectorError(f"{who} returned NaN score for user index {int(rows[j])}, item index {int(i)}")


def topk_padded(scores: np.ndarray, k: int, be: Backend) -> np.ndarray:
    """Top-``k`` item indices (int32) of each row, best first; non-finite slots and missing ones are -1."""
    idx, vals = be.topk(scores, k)
    out = np.full((scores.shape[0], k), -1, dtype=np.int32)
    idx = idx.astype(np.int32)
    idx[~np.isfinite(vals)] = -1
    out[:, : idx.shape[1]] = idx
    return out


def rank(
    model: Recommender,
    users: np.ndarray,
    seen: sp.csr_matrix | None,
    k: int,
    block: int = 512,
    backend: Backend | None = None,
) -> np.ndarray:
    """Top-``k`` item indices (int32, ``(len(users), k)``), best first.

    Seen items (``seen`` may be None: no masking) and items the model cannot score
    (``-inf``) are never returned; slots that cannot be filled hold -1.
    """
    k = _check_k(k)
    be = backend or get_backend()
    users = np.asarray(users, dtype=np.int64)
    out = np.empty((len(users), k), dtype=np.int32)
    for s in range(0, len(users), block):
        rows = users[s : s + block]
        scores = model.score(rows)
        check_scores(scores, rows, getattr(model, "name", "model"))
        out[s : s + block] = topk_padded(mask_seen(scores, seen, rows), k, be)
    return out


def rank_scores(
    scores: np.ndarray,
    k: int,
    seen: sp.csr_matrix | None = None,
    users: np.ndarray | None = None,
    backend: Backend | None = None,
    block: int = 4096,
) -> np.ndarray:
    """Top-``k`` from a precomputed ``(n, n_items)`` score matrix (not modified).

    Row ``j`` belongs to user ``users[j]`` (default: ``arange(n)``), whose seen items in
    ``seen`` are masked. Same output convention as :func:`rank`.
    """
    k = _check_k(k)
    be = backend or get_backend()
    scores = np.asarray(scores)
    users = np.arange(scores.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    if len(users) != scores.shape[0]:
        raise ConfigError(f"{len(users)} users for a score matrix with {scores.shape[0]} rows")
    out = np.empty((len(users), k), dtype=np.int32)
    for s in range(0, len(users), block):
        rows = users[s : s + block]
        sc = np.array(scores[s : s + block], copy=True)
        check_scores(sc, rows, "score matrix")
        out[s : s + block] = topk_padded(mask_seen(sc, seen, rows), k, be)
    return out
