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
    """The single-view items of a block of users and where they go (module docstring)."""

    #: bool (n, m): unseen items only one view can score
    single: np.ndarray
    #: int64 (n, m): the slot q of each single-view item (0 elsewhere)
    slot: np.ndarray
    #: float (n, m): the item's normalised score in the view that scores it (-inf elsewhere)
    own: np.ndarray
    #: int (n,): number of warm candidates per user
    n_warm: np.ndarray
    #: int64 (n, m): unique sort key (slot, own score descending, index) of single-view items
    #: (int64 max elsewhere); None when no user has a single-view item
    key: np.ndarray | None


#: up to this many single-view item columns per view, slots are counted by comparison (a few passes
#: over the block per column) instead of a full sort of every row (the sort costs ~m log m per row)
FEW_SINGLES = 16


def _slots_sorted(x: np.ndarray, w: np.ndarray, o: np.ndarray) -> np.ndarray:
    """Slots of the items ``o`` (bool rows) among the warm candidates ``w`` by one full ranking per row."""
    order = desc_order(np.where(w | o, x, -np.inf))  # the view's own ranking
    wo = np.take_along_axis(w, order, 1).astype(np.int64)
    above = np.cumsum(wo, 1) - wo  # warm candidates ranked above each position
    out = np.empty_like(above)
    np.put_along_axis(out, order, above, 1)
    return out


def _slots_counted(x: np.ndarray, w: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Slots of the item columns ``cols``: warm candidates with a higher score, or an equal score and
    a lower index (the view order of :func:`desc_order`), counted per column. int64 (n, m), 0 elsewhere."""
    out = np.zeros(x.shape, dtype=np.int64)
    for c in cols:
        xc = x[:, c : c + 1]
        out[:, c] = ((x > xc) & w).sum(1) + ((x[:, :c] == xc) & w[:, :c]).sum(1)
    return out


def _own_rank(own: np.ndarray, single: np.ndarray) -> np.ndarray:
    """Rank of each single-view item among its row's single-view items by own score descending, then
    lower index (only their order matters: it breaks ties within a slot)."""
    n, m = own.shape
    cols = np.flatnonzero(single.any(0))
    if len(cols) > FEW_SINGLES:
        rank = np.empty((n, m), dtype=np.int64)
        np.put_along_axis(rank, desc_order(own), np.arange(m, dtype=np.int64)[None, :], 1)
        return rank
    rank = np.zeros((n, m), dtype=np.int64)
    sub = np.where(single[:, cols], own[:, cols], -np.inf)
    order = np.argsort(-sub, axis=1, kind="stable")  # ties: lower index (cols are sorted)
    r = np.empty_like(order)
    np.put_along_axis(r, order, np.arange(len(cols))[None, :], 1)
    rank[:, cols] = r
    return rank


def single_view_slots(a: np.ndarray, b: np.ndarray, fa: np.ndarray, fb: np.ndarray, seen: np.ndarray) -> Slots:
    """:class:`Slots` of a user block from the views' normalised scores ``a``, ``b`` (n, m),
    which items each view can score (``fa``, ``fb``) and the users' seen items (all bool (n, m))."""
    unseen = ~seen
    warm = fa & fb & unseen
    only_a, only_b = fa & ~fb & unseen, fb & ~fa & unseen
    single = only_a | only_b
    own = np.where(only_a, a, np.where(only_b, b, -np.inf))
    n, m = a.shape
    slot = np.zeros((n, m), dtype=np.int64)
    rows = np.flatnonzero(single.any(1))
    if not len(rows):
        return Slots(single, slot, own, warm.sum(1), None)
    w = warm[rows]
    for x, only in ((a, only_a), (b, only_b)):
        o = only[rows]
        cols = np.flatnonzero(o.any(0))
        if not len(cols):
            continue
        xr = x[rows]
        found = _slots_counted(xr, w, cols) if len(cols) <= FEW_SINGLES else _slots_sorted(xr, w, o)
        sl = slot[rows]
        sl[o] = found[o]
        slot[rows] = sl
    own_rank = _own_rank(own[rows], single[rows])
    key = np.full((n, m), _NO_KEY, dtype=np.int64)
    key[rows] = np.where(single[rows], slot[rows] * m + own_rank, _NO_KEY)
    return Slots(single, slot, own, warm.sum(1), key)


def first_singles(s: Slots, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` single-view items per row in (slot, own desc, index) order, and their slots.

    Padding: item -1, slot m + 1 (after every real slot).
    """
    n, m = s.single.shape
    items = np.full((n, k), -1, dtype=np.int64)
    slots = np.full((n, k), m + 1, dtype=np.int64)
    if s.key is None:
        return items, slots
    kk = min(k, m)
    idx = np.argpartition(s.key, kk - 1, axis=1)[:, :kk] if kk < m else np.broadcast_to(np.arange(m), (n, m))
    idx = np.take_along_axis(idx, np.argsort(np.take_along_axis(s.key, idx, 1), axis=1), 1)
    ok = np.take_along_axis(s.single, idx, 1)
    items[:, :kk] = np.where(ok, idx, -1)
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


def calibrated_scores(blend: np.ndarray, s: Slots) -> np.ndarray:
    """Scores of the single-view items as values (float64 (n, m), NaN elsewhere), from the warm
    candidates' blended scores ``blend`` (-inf outside W).

    A slot-q item (q < |W|) sits just above the warm blend it copies (the (q+1)-th best), the
    items of one slot ordered among themselves; slot |W|: just below the lowest warm blend;
    a user with no warm candidate keeps the items' own normalised scores.
    """
    out = np.full(blend.shape, np.nan)
    if s.key is None:
        return out
    for r in np.flatnonzero(s.single.any(1)):
        it = np.flatnonzero(s.single[r])
        nw = int(s.n_warm[r])
        if nw == 0:
            out[r, it] = s.own[r, it]
            continue
        it = it[np.argsort(s.key[r, it])]  # slot, own score descending, index
        slot = s.slot[r, it]
        start = np.r_[0, np.flatnonzero(slot[1:] != slot[:-1]) + 1]
        size = np.diff(np.r_[start, len(slot)])
        grp = np.repeat(np.arange(len(start)), size)
        j, cnt = np.arange(len(slot)) - start[grp], size[grp]
        val = (-np.sort(-blend[r]))[np.minimum(slot, nw - 1)]  # (numpy's sort beat np.partition here)
        step = np.where(slot < nw, cnt - j, -(j + 1)).astype(np.float64)
        out[r, it] = val + step * np.spacing(np.abs(val))
    return out
