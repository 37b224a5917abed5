"""Full-catalogue top-K with the user's seen items masked (DIAGNOSTICS.md protocol).

``rank`` scores users block by block through a :class:`Recommender`; ``rank_scores`` does
the same from a score matrix already in memory. Both mask seen items (an
:class:`analysis.seen.Seen`: each user's history, one vectorised scatter from its CSR rows, plus
item columns masked for every user, one column fill per block; a CSR matrix is a history), never return seen or unscorable (``-inf``) items, break ties
by lower item index (see :mod:`analysis.backend`) and pad unfillable slots with -1.

An :class:`EmbeddingRecommender` (score = ``<u, v>``, ``-inf`` on unscorable items) is
ranked by the fused path: per user block, the scores are computed by torch into one
reused buffer (:class:`analysis.backend.EmbeddingScorer`, the kernel ``score`` uses too),
the seen items are set to ``-inf`` in place from precomputed flat CSR positions, and
:func:`analysis.backend.fused_topk` selects in about one pass; the block size follows the
catalogue size and dimension (:func:`choose_block`). With ``device=`` (``--device cuda``) the
same steps run on that torch device (vectors kept there, ``index_fill_`` masks,
:func:`analysis.backend.device_topk`), only the top-K indices come back. Other recommenders
and vectors that could overflow or hold NaN/inf take the generic path (``score`` per block,
NaN check, mask, ``Backend.topk``); all apply the same tie rule, and on the CPU they give identical lists (on
CUDA, cuBLAS may round float32 scores differently in the last bits, so near-ties can order differently:
``make gpu-check`` measures it).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .backend import MIN_ROWS, Backend, EmbeddingScorer, device_topk, fused_topk, get_backend, padded_items
from .errors import ConfigError, VectorError
from .seen import Seen, as_seen
from .models.base import EmbeddingRecommender, Recommender


def _check_k(k: int) -> int:
    if int(k) < 1:
        raise ConfigError(f"top-K length must be >= 1, got k={k}")
    return int(k)


def mask_seen(scores: np.ndarray, seen: "Seen | sp.spmatrix | None", rows: np.ndarray) -> np.ndarray:
    """Set ``scores[j, i] = -inf`` for every item ``i`` masked for user ``rows[j]`` (in place):
    the user's history and the mask's item columns."""
    seen = as_seen(seen, scores.shape[1])
    if seen is None:
        return scores
    if len(seen.columns):
        scores[:, seen.columns] = -np.inf
    r, c = seen.rows(rows)
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


#: bytes of one score block in the fused path: large enough that per-block Python work is
#: amortised, small enough to stay in the last-level cache (measured on the 2-core box)
BLOCK_BYTES = 8 << 20


def choose_block(n_items: int, dim: int) -> int:
    """Users per block of the fused ranking: a power of two, ~``BLOCK_BYTES`` of scores
    (twice that from d=256 on, where the product dominates), between 64 and 2048."""
    target = BLOCK_BYTES * (2 if dim >= 256 else 1)
    b = max(64, min(2048, target // (4 * padded_items(n_items))))
    return 1 << (int(b).bit_length() - 1)


def _seen_rows_csr(seen: Seen, users: np.ndarray):
    """(entries per user, items, data) of ``seen.history[users]`` (CSR order; a slice when ``users`` is a range)."""
    hist = seen.history
    n = len(users)
    a = int(users[0]) if n else 0
    contiguous = n and 0 <= a and a + n <= hist.shape[0] and users[-1] == a + n - 1
    if contiguous and np.array_equal(users, np.arange(a, a + n)):
        lo, hi = hist.indptr[a], hist.indptr[a + n]
        counts, items, data = np.diff(hist.indptr[a : a + n + 1]), hist.indices[lo:hi], hist.data[lo:hi]
    else:
        sub = hist[users]
        counts, items, data = np.diff(sub.indptr), sub.indices, sub.data
    return counts, items, data


def _seen_positions(seen: Seen, users: np.ndarray, block: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the users' seen entries inside their block's ``(block, n_cols)`` score buffer,
    and where each block's positions start (``flat[bounds[i]:bounds[i + 1]]`` are block i's)."""
    n = len(users)
    counts, items, data = _seen_rows_csr(seen, users)
    flat = np.repeat(np.arange(n, dtype=np.int64) % block * n_cols, counts) + items
    starts = np.concatenate([[0], np.cumsum(counts)])  # entries of user j: starts[j]:starts[j + 1]
    if not data.all():  # explicit zeros are not seen items
        keep = data != 0
        flat, starts = flat[keep], np.concatenate([[0], np.cumsum(keep)])[starts]
    return flat, starts[np.minimum(np.arange(0, n + block, block), n)]


def _masked_columns(model: EmbeddingRecommender, seen: Seen | None, scorer: EmbeddingScorer):
    """Columns set to -inf for every user (unscorable, masked item columns, padding): a torch index or None."""
    import torch

    neg = np.ones(scorer.n_cols, bool)
    neg[: scorer.n_items] = ~np.asarray(model.scorable, bool)
    if seen is not None:
        neg[seen.columns] = True
    neg = np.flatnonzero(neg)
    return torch.from_numpy(neg) if len(neg) else None


#: bytes of one score block on a device (it has the memory; larger blocks amortise the launches)
DEVICE_BLOCK_BYTES = 256 << 20


def _rank_embedding(model: EmbeddingRecommender, users: np.ndarray, seen, k: int, block: int | None,
                    scorer: EmbeddingScorer) -> np.ndarray:
    """The fused path of :func:`rank` (see the module docstring); on ``scorer.device`` when it has one."""
    import torch

    n, n_items, n_cols, dev = len(users), scorer.n_items, scorer.n_cols, scorer.device
    if dev is not None:
        block = int(block or max(64, min(16384, DEVICE_BLOCK_BYTES // (4 * n_cols))))
    block = int(block or choose_block(n_items, scorer.dim))
    out = np.empty((n, k), dtype=np.int32)
    seen = as_seen(seen, n_items)
    neg_cols = _masked_columns(model, seen, scorer)
    if seen is not None:
        flat, bounds = _seen_positions(seen, users, block, n_cols)
    if dev is not None:
        neg_cols = None if neg_cols is None else neg_cols.to(dev)
    else:
        rows = max(min(block, n), MIN_ROWS)
        buf = torch.empty((rows, n_cols), dtype=torch.float32)
        ubuf = np.empty((rows, scorer.dim), scorer.dtype)
    for i, s in enumerate(range(0, n, block)):
        b = users[s : s + block]
        S = scorer.block(b, buf, ubuf) if dev is None else scorer.device_block(b)
        if neg_cols is not None:
            S.index_fill_(1, neg_cols, float("-inf"))
        pos = flat[bounds[i] : bounds[i + 1]] if seen is not None else None
        if dev is None:
            if pos is not None:
                S.numpy().reshape(-1)[pos] = -np.inf
            out[s : s + block] = fused_topk(S, n_items, k)
            continue
        if pos is not None and len(pos):
            S.view(-1).index_fill_(0, torch.from_numpy(pos).to(dev), float("-inf"))
        out[s : s + block] = device_topk(S[: len(b), :n_items], k)
    return out


def _fused_scorer(model, users: np.ndarray, be: Backend, device: str | None = None) -> EmbeddingScorer | None:
    """The scorer of the fused path when ``model`` qualifies (see the module docstring), on ``device``."""
    if not isinstance(model, EmbeddingRecommender):
        return None
    if type(model).score is not EmbeddingRecommender.score:
        return None
    U, V = np.asarray(model.user_vecs), np.asarray(model.item_vecs)
    if U.dtype not in (np.float32, np.float64) or V.dtype not in (np.float32, np.float64):
        return None
    if V.ndim != 2 or len(np.asarray(model.scorable)) != V.shape[0]:
        return None
    scorer = EmbeddingScorer(U, V, device)
    return scorer if scorer.bounded(users) else None


def rank(
    model: Recommender,
    users: np.ndarray,
    seen: Seen | sp.csr_matrix | None,
    k: int,
    block: int | None = None,
    backend: Backend | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Top-``k`` item indices (int32, ``(len(users), k)``), best first.

    Seen items (``seen`` may be None: no masking) and items the model cannot score
    (``-inf``) are never returned; slots that cannot be filled hold -1. ``block``: users
    per block (default: :func:`choose_block` for embedding models, 512 otherwise).
    ``device``: a torch device (``"cuda"``, or ``"cpu"`` for the same code on the host) on which an
    embedding model's vectors are kept and each block is scored, masked and selected (only the
    top-K indices come back); None: the host's fused path. Other models ignore it.
    """
    k = _check_k(k)
    be = backend or get_backend()
    users = np.asarray(users, dtype=np.int64)
    if block is not None and int(block) < 1:
        raise ConfigError(f"block must be >= 1, got {block}")
    scorer = _fused_scorer(model, users, be, device)
    if scorer is not None:
        return _rank_embedding(model, users, seen, k, block, scorer)
    block = int(block or 512)
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
    seen: Seen | sp.csr_matrix | None = None,
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
