"""Ranking metrics per user (RecBole definitions, DIAGNOSTICS.md "Protocol").

For a top-K list T(u) and relevant set R(u) (binary relevance):

- Recall@K  = |T_K(u) ∩ R(u)| / |R(u)|
- NDCG@K    = sum_{i<=K} rel_i / log2(i+1)  /  sum_{i<=min(|R|,K)} 1 / log2(i+1)
- HitRate@K = 1 if T_K(u) ∩ R(u) is non-empty, else 0

Per-user values are float64 arrays with NaN for users whose relevant set is empty;
aggregates skip NaN and report how many users were counted and skipped.

These agree with ranx's ``recall@k``, ``ndcg@k`` and ``hit_rate@k`` to float precision
(tests/test_metrics.py). ranx's ``ndcg`` is the Järvelin form rel_i / log2(i+1) with the
ideal DCG over min(|R|, K) positions, exactly the above (its ``ndcg_burges`` uses
2^rel − 1, also identical for binary relevance). Differences are conventions only: ranx
scores a user with no relevant item 0 (we return NaN and skip it) and cannot represent
-1 padding (we count padded slots as misses).

Hits are looked up without a per-user loop: relevant pairs become sorted integer keys
``row * n_items + item`` and every top-K slot is found with one ``np.searchsorted``.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import scipy.sparse as sp

from .errors import ConfigError


def _target_rows(target: sp.spmatrix, users: np.ndarray) -> sp.csr_matrix:
    sub = target.tocsr()[np.asarray(users, dtype=np.int64)].tocsr()
    if sub.nnz and (sub.data == 0).any():
        sub = sub.copy()
        sub.eliminate_zeros()
    if not sub.has_sorted_indices:
        sub = sub.copy()
        sub.sort_indices()
    return sub


def n_relevant(target: sp.spmatrix, users: np.ndarray) -> np.ndarray:
    """|R(u)| per user (int64): stored non-zeros of ``target`` rows ``users``."""
    return np.diff(_target_rows(target, users).indptr).astype(np.int64)


def hits_matrix(topk: np.ndarray, target: sp.spmatrix, users: np.ndarray) -> np.ndarray:
    """bool ``(n, K)``: whether ``topk[j, r]`` is in user ``users[j]``'s relevant set.

    Padding (-1) is never a hit. Vectorised: one searchsorted over sorted pair keys.
    """
    topk = np.asarray(topk)
    users = np.asarray(users, dtype=np.int64)
    if topk.ndim != 2 or topk.shape[0] != len(users):
        raise ConfigError(f"top-K array of shape {topk.shape} does not match {len(users)} users")
    n_items = target.shape[1]
    if topk.size and topk.max() >= n_items:
        raise ConfigError(f"top-K contains item index {int(topk.max())} but the target has {n_items} items")
    sub = _target_rows(target, users)
    if sub.nnz == 0:
        return np.zeros(topk.shape, dtype=bool)
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr))
    keys = rows * n_items + sub.indices  # ascending: rows ascending, indices sorted per row
    q = np.arange(len(users), dtype=np.int64)[:, None] * n_items + topk
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return (keys[pos] == q) & (topk >= 0)


def _disc(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def recall_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """|topK ∩ R| / |R| per user; NaN where |R| = 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = hits[:, :k].sum(1) / n_rel
    return np.where(n_rel > 0, r, np.nan)


def ndcg_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """DCG@K / IDCG over min(|R|, K) positions; NaN where |R| = 0."""
    disc = _disc(k)
    h = hits[:, :k]
    dcg = h @ disc[: h.shape[1]] if h.shape[1] else np.zeros(len(h))
    idcg = np.cumsum(disc)[np.clip(np.minimum(n_rel, k) - 1, 0, k - 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, dcg / idcg, np.nan)


def hitrate_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """1 if any of the top K is relevant; NaN where |R| = 0."""
    return np.where(n_rel > 0, hits[:, :k].any(1).astype(float), np.nan)


METRICS = {"recall": recall_at_k, "ndcg": ndcg_at_k, "hit": hitrate_at_k}


def metrics_from_hits(
    hits: np.ndarray, n_rel: np.ndarray, ks: Iterable[int] = (10, 20), metrics: Iterable[str] = tuple(METRICS)
) -> dict[str, np.ndarray]:
    """Per-user ``{"recall@10": array, ...}`` from a hit matrix and |R| per user."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ConfigError(f"unknown metric(s) {sorted(unknown)}: use {sorted(METRICS)}")
    hits = np.asarray(hits, dtype=np.float64)
    n_rel = np.asarray(n_rel)
    return {f"{m}@{k}": METRICS[m](hits, n_rel, int(k)) for k in ks for m in metrics}


def evaluate(
    topk: np.ndarray,
    target: sp.spmatrix,
    users: np.ndarray,
    ks: Iterable[int] = (10, 20),
    metrics: Iterable[str] = tuple(METRICS),
) -> dict[str, np.ndarray]:
    """Per-user metrics ``{"recall@10": array, ...}`` for every metric and K.

    ``topk[j]`` is user ``users[j]``'s list (best first, -1 padding); K larger than the
    list width uses the whole list (IDCG still counts min(|R|, K) positions).
    """
    hits = hits_matrix(topk, target, users)
    return metrics_from_hits(hits, n_relevant(target, users), ks, metrics)


def aggregate(per_user: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """``{name: {"mean", "n", "n_skipped"}}``: NaN users are skipped and counted."""
    out = {}
    for name, v in per_user.items():
        v = np.asarray(v, dtype=np.float64)
        ok = ~np.isnan(v)
        out[name] = {
            "mean": float(v[ok].mean()) if ok.any() else float("nan"),
            "n": int(ok.sum()),
            "n_skipped": int((~ok).sum()),
        }
    return out
