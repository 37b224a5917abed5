"""Cold-item calibration: where an item that only one view can score goes among the warm items.

Used by cold-aware score fusion (:mod:`analysis.fusion`) and by the gated fusion
(:mod:`analysis.fusion_model`); the rule is written once, here (DIAGNOSTICS.md "Fusion",
README "Deviations").

Per user, the *warm candidates* W are the unseen items both views can score. An unseen item c
that only view v can score gets a **slot** q(c) = the number of warm candidates view v ranks
above c (view order: normalised score descending, ties by lower item index). In a fused
ranking c comes right after the blend's q(c)-th warm candidate; single-view items with the same
slot are ordered by their own normalised score descending, then lower index. As a score, c
copies the blended score of the warm candidate ranked q(c)+1 by the blend (nudged just above
it), or of the last one when q(c) = |W|.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import top_set

_NO_KEY = np.iinfo(np.int64).max


def desc_order(s: np.ndarray) -> np.ndarray:
    """Items of each row by score descending, ties by lower index (a full ranking).

    float32 rows use one unstable sort of unique int64 keys (order-preserving bits of
    the score, then the item index), about 5x faster than a stable argsort.
    """
    n, m = s.shape
    if s.dtype != np.float32:
        return np.argsort(-s, axis=1, kind="stable")
    x = s + np.float32(0.0)  # -0.0 -> +0.0: equal scores must get equal keys
    i = x.view(np.int32)
    i ^= (i >> 31) & np.int32(0x7FFFFFFF)  # signed-int order == float order
    key = np.invert(i).astype(np.int64)  # descending
    key <<= 32
    key |= np.arange(m, dtype=np.int64)
    key.sort(axis=1)
    key &= 0xFFFFFFFF
    return key


@dataclass
class Slots:
    """The single-view items of a block of users and where they go (module docstring).

    Stored for the item columns ``cols`` that hold a single-view item in some row of the block
    (cold items are few: a few hundred of 20,000 columns), so every array is (n, len(cols)).
    """

    #: int64 (c,): the item columns of the arrays below
    cols: np.ndarray
    #: bool (n, c): unseen items only one view can score
    single: np.ndarray
    #: int64 (n, c): the slot q of each single-view item (0 elsewhere)
    slot: np.ndarray
    #: float (n, c): the item's normalised score in the view that scores it (-inf elsewhere)
    own: np.ndarray
    #: int (n,): number of warm candidates per user
    n_warm: np.ndarray
    #: int64 (n, c): unique sort key (slot, own score descending, index) of single-view items
    #: (int64 max elsewhere); None when no user has a single-view item
    key: np.ndarray | None
    #: the catalogue size m
    n_items: int


#: up to this many single-view item columns per view, slots are counted by comparison (a few passes
#: over the block per column) instead of sorting each row's warm scores
FEW_SINGLES = 16


def _count_above(x: np.ndarray, w: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """For cells (r, c): warm candidates (``w``) of row r that the view ranks above item c (a higher
    score, or an equal score and a lower index), counted over the whole row (chunked)."""
    out = np.empty(len(r), dtype=np.int64)
    m = x.shape[1]
    step = max(1, (1 << 24) // max(m, 1))
    for s in range(0, len(r), step):
        rr, cc = r[s : s + step], c[s : s + step]
        xr, xc, wr = x[rr], x[rr, cc][:, None], w[rr]
        lower = np.arange(m)[None, :] < cc[:, None]
        out[s : s + step] = ((xr > xc) & wr).sum(1) + ((xr == xc) & wr & lower).sum(1)
    return out


def _slots_counted(x: np.ndarray, w: np.ndarray, cols: np.ndarray, o: np.ndarray) -> np.ndarray:
    """Slots (n, len(cols)) of the item columns ``cols`` among the warm candidates ``w``: warm
    candidates with a higher score, or an equal score and a lower index (the view order of
    :func:`desc_order`), counted per column."""
    out = np.zeros(o.shape, dtype=np.int64)
    for j, c in enumerate(cols):
        xc = x[:, c : c + 1]
        out[:, j] = ((x > xc) & w).sum(1) + ((x[:, :c] == xc) & w[:, :c]).sum(1)
    return out


def _slots_sorted(x: np.ndarray, w: np.ndarray, cols: np.ndarray, o: np.ndarray) -> np.ndarray:
    """Exact slots of the cells ``o`` (n, len(cols)): each row's warm scores sorted once, each item
    placed by binary search (items tied with a warm score recounted with the index tie-break)."""
    out = np.zeros(o.shape, dtype=np.int64)
    xs = np.sort(np.where(w, x, np.inf), axis=1)  # warm scores ascending, then +inf padding
    nw = w.sum(1)
    tie_r, tie_j = [], []
    for r in np.flatnonzero(o.any(1)):
        j = np.flatnonzero(o[r])
        v, xc = xs[r, : nw[r]], x[r, cols[j]]
        hi = np.searchsorted(v, xc, "right")
        out[r, j] = nw[r] - hi
        tie = hi > np.searchsorted(v, xc, "left")
        tie_r.append(np.full(int(tie.sum()), r))
        tie_j.append(j[tie])
    r, j = np.concatenate(tie_r), np.concatenate(tie_j)
    if len(r):
        out[r, j] = _count_above(x, w, r, cols[j])
    return out


def _slots_capped(x: np.ndarray, w: np.ndarray, cols: np.ndarray, o: np.ndarray, cap: int) -> np.ndarray:
    """Slots of the cells ``o`` capped at ``cap``: exact below ``cap``, ``cap`` for "``cap`` or more".

    A top-``cap`` fusion needs no more: an item with ``cap`` warm candidates above it falls off the list
    (:func:`merge_topk`), and a capped item's calibrated score is at most the (cap+1)-th warm blend plus its nudges
    (:meth:`analysis.fusion_model.GatedFusion.for_topk`). Only the items at or above the ``cap``-th best
    warm score are counted, against the row's top-``cap`` warm candidates (the whole row where a tie at
    that threshold could hide one); every other item gets ``cap``.
    """
    m = x.shape[1]
    out = np.where(o, cap, 0).astype(np.int64)
    xc_all = np.where(o, x[:, cols], -np.inf)
    near = o.copy()
    if cap < m:
        vals, top = top_set(np.where(w, x, -np.inf), cap)  # ties at the threshold are recounted below
        t = vals.min(1)
        near &= xc_all >= t[:, None]
    r, j = np.nonzero(near)
    if not len(r):
        return out
    c, xc = cols[j], xc_all[r, j]
    if cap >= m:
        out[r, j] = _count_above(x, w, r, c)
        return out
    cnt = (vals[r] > xc[:, None]).sum(1) + ((vals[r] == xc[:, None]) & (top[r] < c[:, None])).sum(1)
    at_t = xc == t[r]  # warm candidates tied with the threshold may lie outside the top set
    if at_t.any():
        cnt[at_t] = _count_above(x, w, r[at_t], c[at_t])
    out[r, j] = np.minimum(cnt, cap)
    return out


def _own_rank(own: np.ndarray, single: np.ndarray) -> np.ndarray:
    """Rank of each single-view item among its row's single-view items by own score descending, then
    lower index (only their order matters: it breaks ties within a slot)."""
    order = desc_order(np.where(single, own, -np.inf))  # ties: lower index (columns are sorted)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(own.shape[1], dtype=order.dtype)[None, :], 1)
    return rank


def _view_slots(x: np.ndarray, w: np.ndarray, cols: np.ndarray, o: np.ndarray, cap: int | None) -> np.ndarray:
    if cap is not None:
        return _slots_capped(x, w, cols, o, int(cap))
    return (_slots_counted if len(cols) <= FEW_SINGLES else _slots_sorted)(x, w, cols, o)


def single_view_slots(a: np.ndarray, b: np.ndarray, fa: np.ndarray, fb: np.ndarray, seen: np.ndarray,
                      cap: int | None = None) -> Slots:
    """:class:`Slots` of a user block from the views' normalised scores ``a``, ``b`` (n, m),
    which items each view can score (``fa``, ``fb``) and the users' seen items (all bool (n, m)).

    ``cap``: slots exact below ``cap`` only, larger ones reported as ``cap`` (:func:`_slots_capped`;
    enough for a top-``cap`` list, never for calibrated scores). None: every slot exact.
    """
    n, m = a.shape
    unseen = ~seen
    warm = fa & fb & unseen
    only = (fa ^ fb) & unseen
    cols = np.flatnonzero(only.any(0))
    single, fa_c = only[:, cols], fa[:, cols]
    own = np.where(single, np.where(fa_c, a[:, cols], b[:, cols]), -np.inf)
    slot = np.zeros(single.shape, dtype=np.int64)
    rows = np.flatnonzero(single.any(1))
    if not len(rows):
        return Slots(cols, single, slot, own, warm.sum(1), None, m)
    w, blk = warm[rows], slot[rows]
    for x, o in ((a, single[rows] & fa_c[rows]), (b, single[rows] & ~fa_c[rows])):
        vc = np.flatnonzero(o.any(0))
        if len(vc):
            blk[:, vc] = np.where(o[:, vc], _view_slots(x[rows], w, cols[vc], o[:, vc], cap), blk[:, vc])
    slot[rows] = blk
    key = np.where(single, slot * m + _own_rank(own, single), _NO_KEY)
    return Slots(cols, single, slot, own, warm.sum(1), key, m)


def first_singles(s: Slots, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` single-view items per row in (slot, own desc, index) order, and their slots.

    Padding: item -1, slot m + 1 (after every real slot).
    """
    n, m, c = len(s.single), s.n_items, len(s.cols)
    items = np.full((n, k), -1, dtype=np.int64)
    slots = np.full((n, k), m + 1, dtype=np.int64)
    if s.key is None:
        return items, slots
    kk = min(k, c)
    idx = np.argpartition(s.key, kk - 1, axis=1)[:, :kk] if kk < c else np.broadcast_to(np.arange(c), (n, c))
    idx = np.take_along_axis(idx, np.argsort(np.take_along_axis(s.key, idx, 1), axis=1), 1)
    ok = np.take_along_axis(s.single, idx, 1)
    items[:, :kk] = np.where(ok, s.cols[idx], -1)
    slots[:, :kk] = np.where(ok, np.take_along_axis(s.slot, idx, 1), m + 1)
    return items, slots


def merge_topk(warm: np.ndarray, items: np.ndarray, slots: np.ndarray, n_items: int) -> np.ndarray:
    """Top-k of a calibrated fusion from the warm blend's top-k (-1 padded) and :func:`first_singles`.

    Warm rank r lands after r warm items and the single-view items with slot <= r; the t-th
    single-view item (slot q) after t single-view items and q warm items.
    """
    n, k = warm.shape
    off = np.arange(n, dtype=np.int64)[:, None] * (n_items + 2)
    r = np.arange(k, dtype=np.int64)[None, :]
    q = np.minimum(r, n_items + 1) + off  # (ranks past the catalogue hold no warm item)
    n_before = np.searchsorted((slots + off).ravel(), q.ravel(), side="right").reshape(n, k)
    n_before -= np.arange(n, dtype=np.int64)[:, None] * k
    pos_w = np.where(warm >= 0, r + n_before, k)
    pos_s = np.where(items >= 0, np.arange(k)[None, :] + slots, k)
    out = np.full((n, k + 1), -1, dtype=np.int32)  # column k collects what falls off the list
    rr = np.broadcast_to(np.arange(n)[:, None], (n, k))
    out[rr, np.minimum(pos_w, k)] = warm
    out[rr, np.minimum(pos_s, k)] = items
    return np.ascontiguousarray(out[:, :k])


def best_first(blend: np.ndarray, depth: int | None = None) -> np.ndarray:
    """Each row's values best first: all of them, or the first ``depth`` (a partition, then a small sort)."""
    m = blend.shape[1]
    if depth is None or depth >= m:
        return -np.sort(-blend, axis=1)
    return -np.sort(np.partition(-blend, depth - 1, axis=1)[:, :depth], axis=1)


def calibrated_scores(blend: np.ndarray, s: Slots, depth: int | None = None) -> np.ndarray:
    """Scores of the single-view items as values (float64 (n, c) over ``s.cols``, NaN elsewhere), from
    the warm candidates' blended scores ``blend`` (n, m; -inf outside W).

    A slot-q item (q < |W|) sits just above the warm blend it copies (the (q+1)-th best), the
    items of one slot ordered among themselves; slot |W|: just below the lowest warm blend;
    a user with no warm candidate keeps the items' own normalised scores. ``depth``: only the
    first ``depth`` blends of each row are ordered (enough for slots below ``depth``, e.g. slots
    capped at K with depth K + 1; the capped items' values are then not theirs).
    """
    out = np.full(s.single.shape, np.nan)
    if s.key is None:
        return out
    rows = np.flatnonzero(s.single.any(1))
    desc = best_first(blend[rows], depth)  # each row's blended scores, best first (one sort per block)
    order = np.argsort(s.key[rows], axis=1)  # single-view items first: slot, own score descending, index
    valid = np.arange(order.shape[1]) < s.single[rows].sum(1)[:, None]
    slot = np.where(valid, np.take_along_axis(s.slot[rows], order, 1), -1)  # -1: a run of its own
    j, size = _runs(slot)
    nw = s.n_warm[rows][:, None]
    val = np.take_along_axis(desc, np.clip(np.minimum(slot, nw - 1), 0, None), 1)
    step = np.where(slot < nw, size - j, -(j + 1)).astype(np.float64)
    with np.errstate(invalid="ignore"):  # rows without a warm blend (-inf) take their own scores below
        val = val + step * np.spacing(np.abs(val))
    val = np.where(nw == 0, np.take_along_axis(s.own[rows], order, 1), val)
    r, c = np.nonzero(valid)
    out[rows[r], order[r, c]] = val[r, c]
    return out


def _runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per entry of each row of ``x`` (n, c): its position within its run of equal values and the run's length."""
    n, c = x.shape
    pos = np.broadcast_to(np.arange(c), (n, c))
    starts = np.ones((n, c), dtype=bool)
    starts[:, 1:] = x[:, 1:] != x[:, :-1]
    ends = np.ones((n, c), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, c)[:, ::-1], axis=1)[:, ::-1]
    return pos - first, last - first + 1
