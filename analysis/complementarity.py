"""Recommendation-level complementarity of two views (DIAGNOSTICS.md section
"Recommendation-level complementarity").

For user u, T_v is view v's top-K list and H_v = T_v ∩ R(u) its hits.

- list Jaccard  = |T_a ∩ T_b| / |T_a ∪ T_b| (padding -1 is not an item).
- RBO           = extrapolated rank-biased overlap (Webber, Moffat & Zobel 2010, eq. 32)
  for two lists of the same length K with persistence p (default 0.9):

      RBO_ext = X_K / K * p^K  +  (1 − p) / p * sum_{d=1..K} X_d / d * p^d

  where X_d = |T_a[:d] ∩ T_b[:d]| is the overlap of the depth-d prefixes. Identical
  lists give exactly 1, disjoint lists 0. A padding slot (-1) is treated as an item
  found in neither list, so short lists are compared at the common length K.
- hits: shared = |H_a ∩ H_b|, only_a = |H_a \\ H_b|, only_b = |H_b \\ H_a|.
- unique-hit share of a view = its only-hits / all distinct hits |H_a ∪ H_b|, per user
  (NaN when the user has no hit) and aggregated over users as sums (``summarise``).
- oracle bounds at the same budget K:
  * per-user view selection: max(M_a(u), M_b(u)) for recall and NDCG;
  * union pool: Recall_UB(u) = min(K, |H_a ∪ H_b|) / |R(u)|, NDCG_UB(u) = DCG of
    min(K, |H_a ∪ H_b|) hits in the first positions / IDCG over min(|R|, K).
  The union pool's NDCG gain over a view is mostly re-ordering: it is read against the
  view's own hits placed first (``hits_first_ndcg``), the part from the other view only.
  Oracle columns are NaN where R(u) is empty.

The control floor (same oracle between the collaborative view and most-popular) is the
same call with the most-popular lists as one side.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .bootstrap import bootstrap_statistic
from .errors import ConfigError
from .metrics import _disc, hits_matrix, n_relevant, ndcg_at_k, recall_at_k

_CHUNK = 1 << 22  # entries of the (users, K, K) comparison cube per chunk


def _positions_in_other(top_a: np.ndarray, top_b: np.ndarray) -> np.ndarray:
    """For every slot of ``top_a``, the position of the same item in ``top_b`` (−1 if absent)."""
    n, k = top_a.shape
    out = np.full((n, k), -1, dtype=np.int64)
    step = max(1, _CHUNK // max(k * top_b.shape[1], 1))
    for s in range(0, n, step):
        a, b = top_a[s : s + step], top_b[s : s + step]
        eq = (a[:, :, None] == b[:, None, :]) & (a[:, :, None] >= 0)
        found = eq.any(2)
        out[s : s + step] = np.where(found, eq.argmax(2), -1)
    return out


def prefix_overlap(top_a: np.ndarray, top_b: np.ndarray) -> np.ndarray:
    """X[u, d-1] = |top_a[u, :d] ∩ top_b[u, :d]| for d = 1..K (int64, ``(n, K)``)."""
    top_a, top_b = np.asarray(top_a), np.asarray(top_b)
    if top_a.shape != top_b.shape:
        raise ConfigError(f"top-K lists must have the same shape, got {top_a.shape} and {top_b.shape}")
    n, k = top_a.shape
    pos_b = _positions_in_other(top_a, top_b)
    found = pos_b >= 0
    depth = np.maximum(np.arange(k)[None, :], pos_b)  # 0-based depth at which the match counts
    rows = np.broadcast_to(np.arange(n)[:, None], (n, k))[found]
    hist = np.bincount(rows * k + depth[found], minlength=n * k).reshape(n, k)
    return np.cumsum(hist, axis=1)


def rbo_ext(top_a: np.ndarray, top_b: np.ndarray, p: float = 0.9) -> np.ndarray:
    """Extrapolated RBO per user (Webber 2010 eq. 32) of two equal-length lists."""
    if not 0 < p < 1:
        raise ConfigError(f"RBO persistence p must be in (0, 1), got {p}")
    return _rbo_from_prefix(prefix_overlap(top_a, top_b), p)


def _rbo_from_prefix(x: np.ndarray, p: float) -> np.ndarray:
    x = np.asarray(x, np.float64)
    k = x.shape[1]
    if k == 0:
        return np.full(x.shape[0], np.nan)
    d = np.arange(1, k + 1)
    return x[:, -1] / k * p**k + (1 - p) / p * (x @ (p**d / d))


def list_jaccard(top_a: np.ndarray, top_b: np.ndarray) -> np.ndarray:
    """|T_a ∩ T_b| / |T_a ∪ T_b| per user, ignoring -1 padding (NaN if both empty)."""
    top_a, top_b = np.asarray(top_a), np.asarray(top_b)
    return _jaccard_from_prefix(prefix_overlap(top_a, top_b), top_a, top_b)


def _jaccard_from_prefix(x: np.ndarray, top_a: np.ndarray, top_b: np.ndarray) -> np.ndarray:
    inter = x[:, -1] if x.shape[1] else np.zeros(len(x), np.int64)
    la, lb = (top_a >= 0).sum(1), (top_b >= 0).sum(1)
    union = la + lb - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def hits_first_ndcg(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of a list whose ``hits`` (per-user counts, capped at k) are moved to the top.

    ``cdisc[min(h, k)] / cdisc[min(|R|, k)]`` with ``cdisc`` the cumulative discounts. This is
    what a perfect re-ranking of one view's own top-k reaches; the union oracle's NDCG gain
    must be read against it (DIAGNOSTICS.md "Oracle bounds"). NaN for users with no relevant item.
    """
    cdisc = np.concatenate([[0.0], np.cumsum(_disc(k))])
    h = np.minimum(np.asarray(hits, np.int64), k)
    n_rel = np.asarray(n_rel)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, cdisc[h] / cdisc[np.clip(np.minimum(n_rel, k), 1, k)], np.nan)


def compare_lists(
    top_a: np.ndarray, top_b: np.ndarray, target: sp.spmatrix, users: np.ndarray, k: int, p: float = 0.9
) -> pd.DataFrame:
    """Per-user complementarity of two top-K lists (first ``k`` columns of each).

    Columns: user, n_rel, list_jaccard, rbo, hits_a, hits_b, shared, only_a, only_b,
    unique_share_a, unique_share_b, recall_a, recall_b, ndcg_a, ndcg_b,
    hits_first_ndcg_a, hits_first_ndcg_b (each view's own hits moved to the top),
    oracle_select_recall, oracle_select_ndcg, oracle_union_recall, oracle_union_ndcg.
    """
    k = int(k)
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    top_a, top_b = np.asarray(top_a), np.asarray(top_b)
    if top_a.shape[1] < k or top_b.shape[1] < k:
        raise ConfigError(f"lists of width {top_a.shape[1]} and {top_b.shape[1]} are shorter than k={k}")
    top_a, top_b = top_a[:, :k], top_b[:, :k]
    users = np.asarray(users, dtype=np.int64)
    n_rel = n_relevant(target, users)
    ha = hits_matrix(top_a, target, users)
    hb = hits_matrix(top_b, target, users)
    in_b = _positions_in_other(top_a, top_b) >= 0
    hits_a, hits_b = ha.sum(1), hb.sum(1)
    shared = (ha & in_b).sum(1)
    only_a, only_b = hits_a - shared, hits_b - shared
    distinct = hits_a + hits_b - shared
    with np.errstate(invalid="ignore", divide="ignore"):
        ua = np.where(distinct > 0, only_a / distinct, np.nan)
        ub = np.where(distinct > 0, only_b / distinct, np.nan)
    ra, rb = recall_at_k(ha, n_rel, k), recall_at_k(hb, n_rel, k)
    na, nb = ndcg_at_k(ha, n_rel, k), ndcg_at_k(hb, n_rel, k)
    n_ub = np.minimum(k, distinct)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec_ub = np.where(n_rel > 0, n_ub / n_rel, np.nan)
    ndcg_ub = hits_first_ndcg(n_ub, n_rel, k)
    x = prefix_overlap(top_a, top_b)
    jac, rbo = _jaccard_from_prefix(x, top_a, top_b), _rbo_from_prefix(x, p)
    return pd.DataFrame(
        {
            "user": users,
            "n_rel": n_rel,
            "list_jaccard": jac,
            "rbo": rbo,
            "hits_a": hits_a,
            "hits_b": hits_b,
            "shared": shared,
            "only_a": only_a,
            "only_b": only_b,
            "unique_share_a": ua,
            "unique_share_b": ub,
            "recall_a": ra,
            "recall_b": rb,
            "ndcg_a": na,
            "ndcg_b": nb,
            "hits_first_ndcg_a": hits_first_ndcg(hits_a, n_rel, k),
            "hits_first_ndcg_b": hits_first_ndcg(hits_b, n_rel, k),
            "oracle_select_recall": np.fmax(ra, rb),
            "oracle_select_ndcg": np.fmax(na, nb),
            "oracle_union_recall": rec_ub,
            "oracle_union_ndcg": ndcg_ub,
        }
    )


def summarise(df: pd.DataFrame) -> dict[str, float]:
    """Aggregate numbers of :func:`compare_lists`.

    Means skip NaN users. ``unique_hit_share_a/b`` and ``shared_hit_share`` are ratios of
    sums over users (all distinct hits pooled); ``mean_unique_share_a/b`` average the
    per-user shares over users with at least one hit. ``oracle_*_gain`` is the oracle
    minus the better view *of this pair* on these users (a description of the pair, the same rule
    for the compared pair and its control; fusion gains use the best single view chosen on
    validation instead, :func:`analysis.fusion.best_single`), except for the union pool's NDCG: its raw gain
    (``oracle_union_ndcg_gain_raw``) is mostly re-ordering, so ``oracle_union_ndcg_gain``
    is read against the better view's own hits placed first (``hits_first_ndcg_best``):
    only that part comes from the other view.
    """
    has_rel = df["n_rel"] > 0
    sh, oa, ob = (int(df[c].sum()) for c in ("shared", "only_a", "only_b"))
    distinct = sh + oa + ob
    ratio = (lambda x: x / distinct) if distinct else (lambda x: float("nan"))
    mean = lambda c: float(df[c].mean())  # noqa: E731  (pandas mean skips NaN)
    out = {
        "n_users": int(len(df)),
        "n_users_with_relevant": int(has_rel.sum()),
        "list_jaccard": mean("list_jaccard"),
        "rbo": mean("rbo"),
        "hits_shared": sh,
        "hits_only_a": oa,
        "hits_only_b": ob,
        "hits_distinct": distinct,
        "shared_hit_share": ratio(sh),
        "unique_hit_share_a": ratio(oa),
        "unique_hit_share_b": ratio(ob),
        "mean_unique_share_a": mean("unique_share_a"),
        "mean_unique_share_b": mean("unique_share_b"),
    }
    for m in ("recall", "ndcg"):
        a, b = mean(f"{m}_a"), mean(f"{m}_b")
        best = max(a, b)
        out.update({f"{m}_a": a, f"{m}_b": b})
        for o in ("select", "union"):
            v = mean(f"oracle_{o}_{m}")
            out[f"oracle_{o}_{m}"] = v
            out[f"oracle_{o}_{m}_gain"] = v - best
    better = "a" if out["ndcg_a"] >= out["ndcg_b"] else "b"
    out["better"] = better
    out["hits_first_ndcg_best"] = mean(f"hits_first_ndcg_{better}")
    out["oracle_union_ndcg_gain_raw"] = out["oracle_union_ndcg_gain"]
    out["oracle_union_ndcg_gain"] = out["oracle_union_ndcg"] - out["hits_first_ndcg_best"]
    return out


def oracle_excess(comp: pd.DataFrame, ctrl: pd.DataFrame, metric: str = "ndcg", n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> dict[str, float]:
    """Excess of the compared pair's oracle gain over the control floor, with its bootstrap interval.

    With per-user values a (compared view a), b (the collaborative view) and c (most-popular, the
    control's other side) of ``metric`` over the same users::

        excess = [mean max(a, b) − max(mean a, mean b)] − [mean max(c, b) − max(mean c, mean b)]

    (each bracket is :func:`summarise`'s ``oracle_select_<metric>_gain`` of its pair). Only this
    excess is complementarity (DIAGNOSTICS.md: any second list gives a positive oracle). Interval and
    p-value: :func:`analysis.bootstrap.bootstrap_statistic` (all columns resampled with the same
    users); "evidence" needs the interval to exclude 0. ``comp``, ``ctrl``: :func:`compare_lists` of
    (a, b) and (c, b) on the same users. Returns dict(value, lo, hi, p_value, n, n_skipped, gain, control_gain).
    """
    if not np.array_equal(comp["user"].to_numpy(), ctrl["user"].to_numpy()):
        raise ConfigError("the compared pair and its control must be evaluated on the same users")
    a, b, c = (np.asarray(x, np.float64) for x in (comp[f"{metric}_a"], comp[f"{metric}_b"], ctrl[f"{metric}_a"]))
    cols = {"a": a, "b": b, "c": c, "ab": np.fmax(a, b), "cb": np.fmax(c, b)}

    def gains(m):
        return m["ab"] - np.maximum(m["a"], m["b"]), m["cb"] - np.maximum(m["c"], m["b"])

    res = bootstrap_statistic(cols, lambda m: np.subtract(*gains(m)), n_boot=n_boot, seed=seed, level=level)
    ok = ~np.isnan(a + b + c)
    g, gc = gains({k: float(v[ok].mean()) if ok.any() else float("nan") for k, v in cols.items()})
    return {**res, "gain": float(g), "control_gain": float(gc)}


# ----------------------------------------------------------------------------- hit kinds of test pairs
#: what happened to a test pair (u, i) in the two compared top-K lists (a = semantic, b = collaborative)
HIT_KINDS = ("shared", "semantic-only", "collaborative-only", "missed by both")
#: an item's hit type: the kinds, and "not in test" for items without a test pair
HIT_TYPES = (*HIT_KINDS, "not in test")


def hit_kind(a_hit: np.ndarray, b_hit: np.ndarray) -> np.ndarray:
    """Per test pair, its kind (:data:`HIT_KINDS`) from whether list a / list b holds it."""
    a, b = np.asarray(a_hit, bool), np.asarray(b_hit, bool)
    return np.select([a & b, a & ~b, ~a & b], list(HIT_KINDS[:3]), HIT_KINDS[3])


def hit_counts(kinds: np.ndarray) -> dict[str, float]:
    """Counts of shared / only_a / only_b distinct hits and missed test pairs among ``kinds``
    (:func:`hit_kind` values), with each view's unique-hit share = its only-hits / all distinct
    hits (NaN without a hit), as :func:`summarise` defines it."""
    k = np.asarray(kinds, dtype=object)
    c = {name: int((k == name).sum()) for name in HIT_KINDS}
    total = c["shared"] + c["semantic-only"] + c["collaborative-only"]
    share = (lambda x: x / total) if total else (lambda x: float("nan"))
    return {"shared": c["shared"], "only_a": c["semantic-only"], "only_b": c["collaborative-only"],
            "missed": c["missed by both"], "distinct_hits": total, "test_pairs": int(len(k)),
            "share_shared": share(c["shared"]), "share_only_a": share(c["semantic-only"]),
            "share_only_b": share(c["collaborative-only"])}


def item_hit_type(shared: np.ndarray, only_a: np.ndarray, only_b: np.ndarray, n_test: np.ndarray) -> np.ndarray:
    """Per item, its most frequent kind of test hit (ties: shared, then semantic-only); "missed by
    both" when neither view ever hit it; "not in test" without a test pair (:data:`HIT_TYPES`)."""
    c = np.c_[np.asarray(shared), np.asarray(only_a), np.asarray(only_b)]
    label = np.array(HIT_KINDS[:3], dtype=object)[np.argmax(c, axis=1)]  # first max wins
    label = np.where(c.sum(axis=1) == 0, HIT_KINDS[3], label)
    return np.where(np.asarray(n_test) == 0, HIT_TYPES[4], label)


def select_oracle(m_a: np.ndarray, m_b: np.ndarray) -> np.ndarray:
    """Per-user selection oracle of two systems' per-user values of one metric: max(M_a(u), M_b(u))
    (NaN only where both are NaN). For the hit rate it is also the union pool (a hit in either list)."""
    return np.fmax(np.asarray(m_a, np.float64), np.asarray(m_b, np.float64))
