"""Fusion of two views and the fusion-gain curve (DIAGNOSTICS.md section "Fusion").

Score fusion
    s_α(u, i) = α · norm(s_a)(u, i) + (1 − α) · norm(s_b)(u, i)
    norm = per-user min-max over the finite scores of the whole catalogue
    (``norm_scope="catalogue"``, the default: every item the view can score, seen
    items included) or over the items actually ranked (``"candidates"``: scorable and
    unseen). Denominator max(max − min, 1e-9), as ranx's ``min-max``. Arithmetic is in
    float64 so the fused run is bit-identical to ranx's ``wsum``.

    Unscorable items (``-inf``, e.g. cold items for the collaborative view):
    - plain fusion: a view that cannot score an item contributes 0 (the bottom of its
      normalised range; ranx's fill value for a missing item). An item is a candidate
      when some view with positive weight can score it, so α = 1 ranks exactly like
      view a and α = 0 exactly like view b.
    - cold-aware fusion (calibrated): see below.

Cold-aware fusion (calibrated)
    Per user, the *warm candidates* W are the unseen items both views can score; they
    get the blend above. An unseen item c that only view v can score is placed where
    view v would place it among W:
        q(c)   = number of warm candidates view v ranks above c (view order: norm(s_v)
                 descending, ties by lower item index, as everywhere in the engine);
        p(c)   = (|W| − q(c)) / |W|, c's percentile among W in view v (the share of W
                 that v ranks below c; "norm(s_v) <= c's" up to the index tie-break);
        s(c)   = the p-quantile of the user's blended scores over W: with B_0 <= … <=
                 B_{n−1} the sorted blends (n = |W|), B_{floor(p·(n−1))}. This is exactly
                 the blended score of the warm candidate ranked q(c)+1 by the blend (of the
                 last one when q(c) = n), so s(c) is non-increasing in q(c).
    Ranking (``fuse_topk``, the curve): c comes right after the blend's q(c)-th warm
    candidate, i.e. ahead of the warm candidate whose blended score it copies (behind it
    when q(c) = n, after the lowest one), so that exactly q(c) warm candidates precede
    it. Single-view items with the same q are ordered by their own normalised score
    descending, then lower index. The fused scores are therefore non-increasing along
    the ranking; exact ties in value are resolved by that rule, not by item index. A
    user with no warm candidate ranks single-view items by their own normalised score
    (which is also their fused score).
    Why calibrated: giving c its own view's normalised score alone (the uncalibrated
    reading of "ranked by the other view's score alone") puts it on a different scale
    from the blended scores: a blend of two [0, 1] scores rarely reaches the top of
    either, so cold items with high semantic scores flooded the top of the lists (on
    MovieLens-100K with 31 cold items, NDCG@20 0.29 at α = 0 against the collaborative
    view's 0.34). Calibrated, items one view cannot score are still ranked by the other
    view's score among themselves (monotone in it) and are interleaved with the warm
    items at the rank that view gives them. At α = 0 (collaborative view b) cold items
    are placed by their semantic percentile instead of being excluded (plain fusion)
    or flooding; with a view a that scores every item, α = 1 ranks exactly like view a.
    With no single-view items cold-aware fusion equals plain fusion.

Rank fusion (RRF, Cormack et al. 2009)
    s(u, i) = Σ_v 1 / (k + rank_v(u, i)), k = 60, rank 1 = best. Each view ranks its
    candidates (scorable, unseen) over the **full catalogue** by default (``depth=None``,
    exact, equal to ranx ``rrf`` fed the full candidate lists); ``depth=d`` keeps each
    view's top d only. An item a view does not rank contributes 0 from it (as in ranx);
    items no view ranks are excluded.

The fusion-gain curve M(α) is computed per user block: both score matrices are
normalised once, then every α reuses them (blend, mask seen, top-K, metrics). Ties in
every top-K are broken by lower item index (analysis.backend). The top-K of a blend is
found exactly from a candidate pool (each view's top-M items, M = 1/16 of the catalogue
by default) with a per-row certificate and a full-catalogue fallback (``_Prepared``), so
each extra α costs a blend over ~2M items instead of the whole catalogue. Cold-aware
fusion uses the same pool for the warm candidates' blend (no fill values there, so the
certificate holds) and merges it with the single-view items, whose slots q(c) do not
depend on α and are computed once per user block (a few row sorts).

Segments (``segments={name: (kind, labels)}``):
- ``kind="item"``, labels per item (n_items,), e.g. popularity bucket or cold/warm:
  the top-K list is unchanged and the metric is computed against R(u) ∩ bucket; users
  with no relevant item in the bucket are skipped.
- ``kind="user"``, labels per user id (n_users,), e.g. activity bucket: users grouped.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .backend import Backend, get_backend
from .errors import ConfigError
from .metrics import METRICS, metrics_from_hits
from .models.base import Recommender
from .calibration import desc_order, first_singles, merge_topk, single_view_slots
from .ranking import check_scores, topk_padded
from .seen import Seen, as_seen

DEFAULT_ALPHAS = np.linspace(0.0, 1.0, 21)
_EPS = 1e-9
_BLOCK_ENTRIES = 8_000_000  # cap on users x items per block (float64 matrices)


# ----------------------------------------------------------------- matrix level
def minmax_rows(scores: np.ndarray, valid: np.ndarray | None = None, fill: float = -np.inf) -> np.ndarray:
    """Per-row min-max of ``scores`` over ``valid`` entries (default: finite) -> float64.

    (x − min) / max(max − min, 1e-9) as ranx's ``min-max``; entries outside ``valid``
    (or not finite) become ``fill``.
    """
    s = np.asarray(scores)
    fin = np.isfinite(s)
    if valid is not None:
        fin &= np.asarray(valid, bool)
    # min / max on the input dtype (exact: casting to float64 preserves them)
    mn = np.where(fin, s, np.inf).min(1, initial=np.inf).astype(np.float64)
    mx = (s if valid is None else np.where(fin, s, -np.inf)).max(1, initial=-np.inf).astype(np.float64)
    den = np.maximum(mx - mn, _EPS)
    x = s.astype(np.float64)  # a copy
    with np.errstate(invalid="ignore", over="ignore"):
        x -= mn[:, None]
        x /= den[:, None]
    x[~fin] = fill
    return x


def _dense_mask(seen: "Seen | sp.spmatrix | None", rows: np.ndarray, n_items: int) -> np.ndarray:
    """bool ``(len(rows), n_items)``: the items masked for ``rows`` (or a CSR's non-zeros)."""
    seen = as_seen(seen, n_items)
    return np.zeros((len(rows), n_items), dtype=bool) if seen is None else seen.dense(rows)


def _pool_topk(cand: np.ndarray, score: np.ndarray, k: int, be: Backend) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items (int32, -1 padding) of per-row candidate pools ``cand`` scored ``score``, and the values."""
    idx, vals = be.topk(score, k)
    out = np.full((len(score), k), -1, dtype=np.int32)
    got = np.take_along_axis(cand, idx, 1).astype(np.int32)
    got[~np.isfinite(vals)] = -1
    out[:, : got.shape[1]] = got
    return out, vals


class _CandidatePool:
    """Each view's top-``m`` eligible items per row, and the bound on what lies outside them.

    An eligible item outside both pools scores at most bound(α) = α·a_m + (1 − α)·b_m (float
    rounding is monotone, so this holds for the computed values too): a row whose pool K-th
    fused value is strictly above the bound (or whose pool covers every eligible item) has an
    exact top-K from the pool alone.
    """

    def __init__(self, a0: np.ndarray, b0: np.ndarray, elig: np.ndarray, m: int):
        n, n_items = a0.shape
        sel_a, sel_b = np.where(elig, a0, -np.inf), np.where(elig, b0, -np.inf)
        ia = np.argpartition(sel_a, n_items - m, axis=1)[:, n_items - m :]
        ib = np.argpartition(sel_b, n_items - m, axis=1)[:, n_items - m :]
        self.m = m
        self.a_m = np.take_along_axis(sel_a, ia, 1).min(1)
        self.b_m = np.take_along_axis(sel_b, ib, 1).min(1)
        self.cand = np.sort(np.concatenate([ia, ib], axis=1), axis=1)  # column order = item order
        flat = (self.cand + (np.arange(n, dtype=np.int64) * n_items)[:, None]).ravel()
        take = lambda x: x.reshape(-1)[flat].reshape(self.cand.shape)  # noqa: E731
        valid = take(elig)
        valid[:, 1:] &= self.cand[:, 1:] != self.cand[:, :-1]  # drop duplicates
        self.ca, self.cb = take(a0), take(b0)
        self.add = np.where(valid, 0.0, -np.inf)
        self.covered = elig.sum(1) <= m

    def topk(self, alpha: float, k: int, be: Backend) -> tuple[np.ndarray, np.ndarray]:
        """(top-``k`` from the pool (int32, -1 padding), rows whose result is not certified exact)."""
        f = np.multiply(self.ca, alpha)
        f += np.multiply(self.cb, 1.0 - alpha)
        f += self.add
        out, vals = _pool_topk(self.cand, f, k, be)
        with np.errstate(invalid="ignore"):  # 0 * -inf on rows the pool covers entirely
            bound = alpha * self.a_m + (1.0 - alpha) * self.b_m
        kth = vals[:, k - 1] if vals.shape[1] >= k else np.full(len(f), -np.inf)
        return out, np.flatnonzero(~(self.covered | (kth > bound)))


def _check_block(sa: np.ndarray, sb: np.ndarray, norm_scope: str) -> None:
    if norm_scope not in ("catalogue", "candidates"):
        raise ConfigError(f"norm_scope must be 'catalogue' or 'candidates', got {norm_scope!r}")
    if sa.shape != sb.shape:
        raise ConfigError(f"score matrices differ in shape: {sa.shape} vs {sb.shape}")


class _Prepared:
    """Normalised scores of one user block, reused across α.

    The blend's top-K (``_blend_topk``) is exact but avoids blending the whole catalogue
    for every α: each view's top-M eligible items form a :class:`_CandidatePool`; rows the
    pool cannot certify are recomputed over the full catalogue. Eligible: unseen and
    scorable by a view with positive weight (plain), or unseen and scorable by both views
    (the warm candidates of cold-aware fusion, whose blend has no fill values, so the same
    bound holds). Cold-aware fusion places the single-view items by their slots
    (:mod:`analysis.calibration`, computed once per block: α-independent) and merges them
    with the warm blend's top-K.
    """

    def __init__(self, sa, sb, seen_mask, cold_aware: bool, norm_scope: str):
        _check_block(sa, sb, norm_scope)
        self.fa, self.fb = np.isfinite(sa), np.isfinite(sb)
        seen_mask = np.zeros(sa.shape, bool) if seen_mask is None else np.asarray(seen_mask, bool)
        va, vb = (self.fa, self.fb) if norm_scope == "catalogue" else (self.fa & ~seen_mask, self.fb & ~seen_mask)
        # a view that cannot score an item contributes 0 (ranx's fill for a missing item);
        # seen items outside a "candidates" scope keep a value but are always excluded
        self.a0 = minmax_rows(sa, va, fill=0.0)
        self.b0 = minmax_rows(sb, vb, fill=0.0)
        self.seen, self.cold_aware, self._slots = seen_mask, cold_aware, {}
        if cold_aware:  # the blend covers the warm candidates only: unseen, both views score them
            self.excl_mid = seen_mask | ~(self.fa & self.fb)
        else:
            self.excl_mid = seen_mask | ~(self.fa | self.fb)
        self._pool, self._m = None, None

    def slots(self, cap: int | None = None):
        """The single-view items' slots (:func:`analysis.calibration.single_view_slots`, α-independent,
        computed once per ``cap``: exact for scores, capped at K for a top-K list)."""
        if cap not in self._slots:
            self._slots[cap] = single_view_slots(self.a0, self.b0, self.fa, self.fb, self.seen, cap=cap)
        return self._slots[cap]

    # ------------------------------------------------------------------- scores
    def _excl(self, alpha: float) -> np.ndarray:
        if self.cold_aware or 0.0 < alpha < 1.0:
            return self.excl_mid
        return self.seen | ~(self.fa if alpha == 1.0 else self.fb)

    def _blend(self, alpha: float, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """α·a0 + (1 − α)·b0 over the eligible items (float64); the others -inf."""
        s = np.multiply(self.a0[rows], alpha)
        s += np.multiply(self.b0[rows], 1.0 - alpha)
        s[self._excl(alpha)[rows]] = -np.inf
        return s

    def fused(self, alpha: float, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Fused float64 scores of (a subset of) the block's rows; excluded items -inf."""
        alpha = float(alpha)
        s = self._blend(alpha, rows)
        if not self.cold_aware:
            return s
        slots = self.slots()
        single, slot, nw = slots.single[rows], slots.slot[rows], slots.n_warm[rows]
        desc = -np.sort(-s, axis=1)  # the warm candidates' blended scores, best first
        val = np.take_along_axis(desc, np.clip(np.minimum(slot, nw[:, None] - 1), 0, None), 1)
        val = np.where(nw[:, None] > 0, val, slots.own[rows])  # no warm candidate: own score
        s[:, slots.cols] = np.where(single, val, s[:, slots.cols])
        return s

    # -------------------------------------------------------------------- top-K
    def _blend_topk(self, alpha: float, k: int, be: Backend, pool: int | None) -> np.ndarray:
        """Exact top-``k`` (int32, -1 padding) of ``_blend(alpha)``, from the candidate pool when it pays."""
        n_items = self.a0.shape[1]
        if pool is None:  # automatic: 1/16 of the catalogue, doubled while rows fall back
            self._m = self._m or max(8 * k, n_items // 16, 100)
            m = self._m
        else:
            m = int(pool)
        endpoint = not self.cold_aware and alpha in (0.0, 1.0)
        if endpoint or m < k or 4 * m > n_items:
            return topk_padded(self._blend(alpha), k, be)
        if self._pool is None or self._pool.m != m:
            self._pool = _CandidatePool(self.a0, self.b0, ~self.excl_mid, m)
        out, bad = self._pool.topk(alpha, k, be)
        if len(bad):
            out[bad] = topk_padded(self._blend(alpha, bad), k, be)
            if pool is None and len(bad) > len(out) // 8:
                self._m = 2 * m  # the views disagree a lot: widen the pool for the next α
        return out

    def topk(self, alpha: float, k: int, be: Backend, pool: int | None = None) -> np.ndarray:
        """Exact top-``k`` (int32, -1 padding) of the fusion at ``alpha``."""
        alpha = float(alpha)
        warm = self._blend_topk(alpha, k, be, pool)
        if not self.cold_aware:
            return warm
        slots = self.slots(cap=k)
        if slots.key is None:
            return warm
        return merge_topk(warm, *first_singles(slots, k), self.a0.shape[1])


def _check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"fusion weight alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def fuse_scores(
    sa: np.ndarray,
    sb: np.ndarray,
    alpha: float,
    seen_mask: np.ndarray | None = None,
    cold_aware: bool = False,
    norm_scope: str = "catalogue",
) -> np.ndarray:
    """Fused float64 scores of two ``(n, n_items)`` matrices; excluded items are -inf.

    Cold-aware scores can tie a warm item's exactly (a single-view item copies a blended
    score); ``fuse_topk`` resolves such ties by the rule in the module docstring, so rank
    with it, not with a sort of these values.
    """
    return _Prepared(np.asarray(sa), np.asarray(sb), seen_mask, cold_aware, norm_scope).fused(_check_alpha(alpha))


def rrf_scores(
    sa: np.ndarray,
    sb: np.ndarray,
    seen_mask: np.ndarray | None = None,
    rrf_k: int = 60,
    depth: int | None = None,
    backend: Backend | None = None,
) -> np.ndarray:
    """Reciprocal-rank-fusion float64 scores; items no view ranks are -inf.

    Each view ranks its scorable, unseen items (rank 1 = best, ties by lower index);
    ``depth=None`` ranks the full catalogue, ``depth=d`` keeps each view's top d.
    """
    if np.shape(sa) != np.shape(sb):
        raise ConfigError(f"score matrices differ in shape: {np.shape(sa)} vs {np.shape(sb)}")
    n, m = np.shape(sa)
    if depth is not None and int(depth) < 1:
        raise ConfigError(f"RRF depth must be >= 1 or None, got {depth}")
    out = np.zeros(n * m, dtype=np.float64)
    offsets = (np.arange(n, dtype=np.int64) * m)[:, None]
    for s in (sa, sb):
        s = np.array(s, copy=True)
        if seen_mask is not None:
            s[seen_mask] = -np.inf
        if depth is None or int(depth) >= m:
            order = desc_order(s)
            ok = np.arange(m) < (s > -np.inf).sum(1)[:, None]  # ranked items come first
            contrib = np.where(ok, 1.0 / (rrf_k + np.arange(1, m + 1)), 0.0)  # + 0.0 is exact
            tmp = np.empty(n * m)
            tmp[(order + offsets).ravel()] = contrib.ravel()  # a permutation: plain scatter
            out += tmp
        else:
            order, vals = (backend or get_backend()).topk(s, int(depth))
            ok = vals > -np.inf
            contrib = 1.0 / (rrf_k + np.arange(1, order.shape[1] + 1))
            out[(order + offsets)[ok]] += np.broadcast_to(contrib, order.shape)[ok]
    out = out.reshape(n, m)
    out[out == 0] = -np.inf  # ranked by no view (every contribution is > 0)
    return out


def _ranks_of(x: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank of ``items`` (n, p) in each row of ``x`` (n, m): 1 = best, value descending, 0 for -inf
    (not ranked; +inf ranks first, as in :func:`rrf_scores`); rows where some item's value is tied,
    whose ranks are then not exact). One sort of each row, then binary searches."""
    n, m = x.shape
    asc = np.sort(x, axis=1)
    vals = np.take_along_axis(x, items, 1)
    rank = np.zeros(items.shape, np.int64)
    tied = np.zeros(n, bool)
    for r in range(n):
        hi = np.searchsorted(asc[r], vals[r], side="right")
        tied[r] = bool((hi - np.searchsorted(asc[r], vals[r], side="left") > 1)[vals[r] > -np.inf].any())
        rank[r] = m - hi + 1
    rank[vals == -np.inf] = 0
    return rank, tied


def _rrf_pool_topk(sa: np.ndarray, sb: np.ndarray, seen_mask: np.ndarray | None, rrf_k: int, k: int,
                   be: Backend) -> np.ndarray:
    """The top-``k`` of :func:`rrf_scores` (full depth) without ranking the whole catalogue.

    Pool: each view's top d = rrf_k + 2k + 2 items, whose exact ranks in both views come from one
    sort per row and binary searches. An item outside the pool has rank >= g_v + 1 in each view v
    that ranks more than d items (g_v: items strictly above the view's d-th value), so it scores at
    most bound = Σ_v 1/(rrf_k + g_v + 1) (0 from a view whose ranked items all are in the pool). A
    row whose k-th pool score is above the bound (always, without ties: it is >= 1/(rrf_k + k) >
    2/(rrf_k + d)) has its exact list from the pool; rows with tied scores are ranked in full."""
    n, m = sa.shape
    d = rrf_k + 2 * k + 2
    if 4 * d > m:
        return topk_padded(rrf_scores(sa, sb, seen_mask, rrf_k, backend=be), k, be)
    xs, parts, bound = [], [], np.zeros(n)
    for s in (sa, sb):
        x = np.array(s, copy=True)
        if seen_mask is not None:
            x[seen_mask] = -np.inf
        top = np.argpartition(x, m - d, axis=1)[:, m - d :]
        v = np.take_along_axis(x, top, 1)
        g = (v > v.min(1, keepdims=True)).sum(1)
        bound += np.where((x > -np.inf).sum(1) > d, 1.0 / (rrf_k + g + 1), 0.0)
        xs.append(x)
        parts.append(top)
    cand = np.sort(np.concatenate(parts, axis=1), axis=1)  # column order = item order
    score, bad = np.zeros(cand.shape), np.zeros(n, bool)
    for x in xs:  # the same additions, in the same order, as rrf_scores
        rank, tied = _ranks_of(x, cand)
        score += np.where(rank > 0, 1.0 / (rrf_k + np.maximum(rank, 1)), 0.0)
        bad |= tied
    score[score == 0] = -np.inf
    score[:, 1:][cand[:, 1:] == cand[:, :-1]] = -np.inf  # an item in both pools counts once
    out, vals = _pool_topk(cand, score, k, be)
    kth = vals[:, k - 1] if vals.shape[1] >= k else np.full(n, -np.inf)
    bad |= ~((kth > bound) | (bound == 0))
    rows = np.flatnonzero(bad)
    if len(rows):
        out[rows] = topk_padded(rrf_scores(sa[rows], sb[rows], None if seen_mask is None else seen_mask[rows], rrf_k,
                                           backend=be), k, be)
    return out


# ------------------------------------------------------------------ model level
def _block_size(block: int, n_items: int) -> int:
    return max(1, min(int(block), max(64, _BLOCK_ENTRIES // max(n_items, 1))))


def _scores(model: Recommender, rows: np.ndarray) -> np.ndarray:
    s = model.score(rows)
    check_scores(s, rows, getattr(model, "name", "model"))
    return s


def _n_items(model_a: Recommender, model_b: Recommender) -> int:
    na, nb = len(model_a.scorable), len(model_b.scorable)
    if na != nb:
        raise ConfigError(f"views score different catalogues: {na} vs {nb} items")
    return na


def fuse_topk(
    model_a: Recommender,
    model_b: Recommender,
    users: np.ndarray,
    seen: Seen | sp.spmatrix | None,
    k: int,
    alpha: float,
    cold_aware: bool = False,
    block: int = 512,
    norm_scope: str = "catalogue",
    backend: Backend | None = None,
    pool: int | None = 0,
) -> np.ndarray:
    """Top-``k`` (int32 ``(n, k)``, -1 padding) of the score fusion at one ``alpha``.

    ``cold_aware``: calibrated cold-aware fusion (module docstring), the same lists that
    ``fusion_curve(..., cold_aware=True)`` evaluates.

    ``pool``: candidate-pool size per view for the exact pruned top-K (None: automatic, 0: blend
    the full catalogue); the result does not depend on it. Default 0: building the pool costs about
    20 blends of the catalogue (measured at 20k items), so it pays across the curve's α, not for one.
    """
    alpha = _check_alpha(alpha)
    be = backend or get_backend()
    users = np.asarray(users, dtype=np.int64)
    n_items = _n_items(model_a, model_b)
    block = _block_size(block, n_items)
    out = np.empty((len(users), int(k)), dtype=np.int32)
    for s in range(0, len(users), block):
        rows = users[s : s + block]
        prep = _Prepared(_scores(model_a, rows), _scores(model_b, rows), _dense_mask(seen, rows, n_items), cold_aware, norm_scope)
        out[s : s + block] = prep.topk(alpha, int(k), be, pool)
    return out


def rrf_topk(
    model_a: Recommender,
    model_b: Recommender,
    users: np.ndarray,
    seen: Seen | sp.spmatrix | None,
    k: int,
    rrf_k: int = 60,
    depth: int | None = None,
    block: int = 512,
    backend: Backend | None = None,
) -> np.ndarray:
    """Top-``k`` (int32 ``(n, k)``, -1 padding) of reciprocal rank fusion (at full depth from a
    certified candidate pool, :func:`_rrf_pool_topk`: the same lists as ranking every item)."""
    be = backend or get_backend()
    users = np.asarray(users, dtype=np.int64)
    n_items = _n_items(model_a, model_b)
    block = _block_size(block, n_items)
    out = np.empty((len(users), int(k)), dtype=np.int32)
    for s in range(0, len(users), block):
        rows = users[s : s + block]
        sa, sb, mask = _scores(model_a, rows), _scores(model_b, rows), _dense_mask(seen, rows, n_items)
        if depth is None:
            out[s : s + block] = _rrf_pool_topk(sa, sb, mask, int(rrf_k), int(k), be)
        else:
            out[s : s + block] = topk_padded(rrf_scores(sa, sb, mask, rrf_k, depth, be), int(k), be)
    return out


# ------------------------------------------------------------ fusion-gain curve
def _codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(np.asarray(labels), return_inverse=True)
    return uniq, inv.ravel().astype(np.int64)


def _parse_segments(segments, users: np.ndarray, n_items: int) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(name, kind, bucket labels, per-item or per-user bucket codes) of each segment spec."""
    segs = []
    for name, spec in (segments or {}).items():
        try:
            kind, labels = spec
        except (TypeError, ValueError):
            raise ConfigError(f"segment {name!r} must be (kind, labels) with kind 'item' or 'user'") from None
        if kind not in ("item", "user"):
            raise ConfigError(f"segment {name!r}: kind must be 'item' or 'user', got {kind!r}")
        uniq, codes = _codes(labels)
        if kind == "item" and len(codes) != n_items:
            raise ConfigError(f"item segment {name!r} has {len(codes)} labels for {n_items} items")
        if kind == "user" and (len(users) and len(codes) <= users.max()):
            raise ConfigError(f"user segment {name!r} has {len(codes)} labels but user index {int(users.max())} is evaluated")
        segs.append((name, kind, uniq, codes))
    return segs


class _CurveSums:
    """Running sums and counts of per-user metrics, per α × (metric, k), overall and per segment bucket."""

    def __init__(self, alphas: np.ndarray, keys: list[tuple[str, int]], ks: list[int], segs: list):
        self.alphas, self.keys, self.ks, self.segs = alphas, keys, ks, segs
        self.metrics = list(dict.fromkeys(m for m, _ in keys))
        n_a, n_k = len(alphas), len(keys)
        self.sum = np.zeros((n_a, n_k))
        self.cnt = np.zeros((n_a, n_k), dtype=np.int64)
        self.seg_sum = [np.zeros((n_a, n_k, len(u))) for _, _, u, _ in segs]
        self.seg_cnt = [np.zeros((n_a, n_k, len(u)), dtype=np.int64) for _, _, u, _ in segs]
        # item segments: one-hot (n_items, n_buckets) to count relevant items per bucket
        self.onehots = [np.eye(len(u), dtype=np.float32)[c] if kind == "item" else None for _, kind, u, c in segs]

    def _values(self, hits: np.ndarray, n_rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res = metrics_from_hits(hits, n_rel, self.ks, self.metrics)
        vals = np.stack([res[f"{m}@{k}"] for m, k in self.keys], axis=1)  # (nb, n_k)
        return vals, ~np.isnan(vals)

    def add(self, ai: int, rows: np.ndarray, top: np.ndarray, rel: np.ndarray, seg_nrel: list) -> None:
        """Add one user block's metrics at α index ``ai`` from its top-K (-1 padded) and relevance mask."""
        valid = top >= 0
        topc = np.where(valid, top, 0)
        hits = rel[np.arange(len(rows))[:, None], topc] & valid
        vals, ok = self._values(hits, rel.sum(1))
        self.sum[ai] += np.where(ok, vals, 0).sum(0)
        self.cnt[ai] += ok.sum(0)
        for si, (_, kind, u, c) in enumerate(self.segs):
            if kind == "user":
                cu = c[rows]
                for ki in range(len(self.keys)):
                    o = ok[:, ki]
                    self.seg_sum[si][ai, ki] += np.bincount(cu[o], weights=vals[o, ki], minlength=len(u))
                    self.seg_cnt[si][ai, ki] += np.bincount(cu[o], minlength=len(u))
                continue
            lab = c[topc]
            for b in range(len(u)):
                vb, okb = self._values(hits & (lab == b), seg_nrel[si][:, b])
                self.seg_sum[si][ai, :, b] += np.where(okb, vb, 0).sum(0)
                self.seg_cnt[si][ai, :, b] += okb.sum(0)

    def segment_relevance(self, rel: np.ndarray) -> list:
        """Per item segment: relevant items per user per bucket (None for user segments)."""
        if not any(o is not None for o in self.onehots):
            return [None] * len(self.onehots)
        relf = rel.astype(np.float32)
        return [None if o is None else np.rint(relf @ o).astype(np.int64) for o in self.onehots]

    def frame(self) -> pd.DataFrame:
        recs = []

        def emit(sums, cnts, seg_type, seg):
            for ai, alpha in enumerate(self.alphas):
                for ki, (m, k) in enumerate(self.keys):
                    c = int(cnts[ai, ki])
                    recs.append((float(alpha), m, k, sums[ai, ki] / c if c else np.nan, c, seg_type, seg))

        emit(self.sum, self.cnt, "all", "all")
        for si, (name, _, u, _) in enumerate(self.segs):
            for b, lab in enumerate(u):
                emit(self.seg_sum[si][:, :, b], self.seg_cnt[si][:, :, b], name, str(lab))
        return pd.DataFrame(recs, columns=["alpha", "metric", "k", "value", "n", "segment_type", "segment"])


def fusion_curve(
    model_a: Recommender,
    model_b: Recommender,
    users: np.ndarray,
    seen: Seen | sp.spmatrix | None,
    target: sp.spmatrix,
    ks: Iterable[int] = (10, 20),
    alphas: Iterable[float] | None = None,
    block: int = 512,
    cold_aware: bool = False,
    segments: Mapping[str, tuple[str, np.ndarray]] | None = None,
    metrics: Iterable[str] = tuple(METRICS),
    norm_scope: str = "catalogue",
    backend: Backend | None = None,
    pool: int | None = None,
) -> pd.DataFrame:
    """Fusion-gain curve M(α) as a long DataFrame (α default: 21 points on [0, 1]).

    Columns: alpha, metric, k, value (mean over counted users), n (users counted),
    segment_type ("all" or the segment name), segment ("all" or the bucket label, str).
    Each user block is normalised once and every α reuses it (``_Prepared``).
    """
    metrics = list(metrics)
    be = backend or get_backend()
    ks = sorted({int(k) for k in ks})
    alphas = np.asarray(DEFAULT_ALPHAS if alphas is None else list(alphas), dtype=np.float64)
    for a in alphas:
        _check_alpha(a)
    users = np.asarray(users, dtype=np.int64)
    n_items = _n_items(model_a, model_b)
    if target.shape[1] != n_items:
        raise ConfigError(f"target has {target.shape[1]} items but the views score {n_items}")
    acc = _CurveSums(alphas, [(m, k) for k in ks for m in metrics], ks, _parse_segments(segments, users, n_items))
    block = _block_size(block, n_items)
    tgt = target.tocsr()
    for s in range(0, len(users), block):
        rows = users[s : s + block]
        rel = _dense_mask(tgt, rows, n_items)
        seg_nrel = acc.segment_relevance(rel)
        prep = _Prepared(_scores(model_a, rows), _scores(model_b, rows), _dense_mask(seen, rows, n_items), cold_aware,
                         norm_scope)
        for ai, alpha in enumerate(alphas):
            acc.add(ai, rows, prep.topk(alpha, max(ks), be, pool), rel, seg_nrel)
    return acc.frame()


def choose_alpha(
    curve_valid: pd.DataFrame, metric: str = "ndcg", k: int = 20, segment_type: str = "all", segment: str = "all"
) -> float:
    """α with the best validation value of ``metric@k`` on the chosen segment.

    Ties (within 1e-12) go to the α closest to 0.5 (the least committed blend), then to
    the smaller α.
    """
    c = curve_valid[
        (curve_valid["metric"] == metric)
        & (curve_valid["k"] == int(k))
        & (curve_valid["segment_type"] == segment_type)
        & (curve_valid["segment"] == segment)
    ].dropna(subset=["value"])
    if c.empty:
        raise ConfigError(f"fusion curve has no values for {metric}@{k} on segment {segment_type}={segment}")
    a = c["alpha"].to_numpy(dtype=float)
    v = c["value"].to_numpy(dtype=float)
    best = np.flatnonzero(v >= v.max() - 1e-12)
    order = np.lexsort((a[best], np.abs(a[best] - 0.5)))
    return float(a[best][order[0]])


def choose_fusion(curves: pd.DataFrame, k: int) -> tuple[str, float, dict[str, tuple[float, float]]]:
    """The blending method and α with the best *validation* NDCG@k: (method, α, {method: (value, α)}).

    ``curves``: fusion-curve rows with a ``method`` column (``score`` / ``cold_aware``) and a ``part``
    column; α per method by :func:`choose_alpha`, then the method with the higher value (ties:
    cold-aware). The one rule the pipeline, the fusion-model baselines and the gate's start use.
    """
    best = {}
    for meth in curves["method"].unique():
        cv = curves[(curves["part"] == "valid") & (curves["method"] == meth)]
        a = float(choose_alpha(cv, metric="ndcg", k=k))
        v = cv[(cv["metric"] == "ndcg") & (cv["k"] == k) & (cv["segment_type"] == "all") & np.isclose(cv["alpha"], a)]
        best[str(meth)] = (float(v["value"].iloc[0]), a)
    method = max(best, key=lambda m: (best[m][0], m == "cold_aware"))
    return method, best[method][1], best


def fusion_methods(split, model_a: Recommender, model_b: Recommender) -> tuple[str, ...]:
    """The blending methods to choose from on validation: ``("cold_aware", "score")`` or one.

    - No item that only one view can score: plain ``score`` fusion (the two are equal).
    - Items held out by the standard cold-start protocol: ``cold_aware`` only. Validation
      never sees those items, so it cannot judge how to rank them, and plain fusion buries
      them at the bottom of a view's range (DIAGNOSTICS.md "Fusion"); α is still chosen on
      validation.
    - Otherwise (e.g. items a sparsity regime left without training pairs, present in
      validation): both, chosen on validation NDCG@K (ties: cold-aware).
    """
    only_one = np.asarray(model_a.scorable, bool) ^ np.asarray(model_b.scorable, bool)
    if not only_one.any():
        return ("score",)
    if np.asarray(split.held_out_items, bool).any():
        return ("cold_aware",)
    return ("cold_aware", "score")


def best_single(valid: Mapping[str, float], collaborative: str) -> str:
    """The best single view: the compared view with the higher *validation* NDCG@K (``valid``:
    {system: value}); ties go to the collaborative view. The one definition every headroom,
    gain and comparison uses (never chosen on test)."""
    if collaborative not in valid:
        raise ConfigError(f"best single view: {collaborative!r} is not among {sorted(valid)}")
    return max(valid, key=lambda s: (float(np.nan_to_num(valid[s], nan=-np.inf)), s == collaborative))


def headroom(m_fused, m_best_single, m_oracle):
    """Share of the oracle headroom a fusion realises: (M_f − M_best) / (M_oracle − M_best).

    NaN where the oracle is not above the best single view (no headroom to realise).
    Works on scalars and arrays.
    """
    f, b, o = (np.asarray(x, dtype=np.float64) for x in (m_fused, m_best_single, m_oracle))
    den = o - b
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(den > 0, (f - b) / den, np.nan)
    return float(h) if h.ndim == 0 else h
