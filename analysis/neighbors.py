"""Item-level agreement of two views: cosine kNN (faiss), neighbourhood overlap, Procrustes cosine.

Definitions follow DIAGNOSTICS.md ("Item-level agreement"):

* neighbourhoods are taken by cosine in each view's **original** vectors (never in a 2-D map),
  and an item is excluded from its own neighbourhood **by index** — duplicate titles give
  identical text vectors, so "drop the first neighbour" would drop the duplicate instead;
* overlap@k(i) = |N_k^a(i) ∩ N_k^b(i)| / k, Jaccard@k(i) = m / (2k − m), disagreement = 1 − overlap,
  always read against the chance level k / (N − 1);
* Procrustes-aligned cosine per item: cos(x_i Q, y_i) after orthogonal Procrustes on centred,
  unit-Frobenius views, the smaller dimension zero-padded.

Validity masks: a view may have no meaningful vector for some items (the collaborative view has
none for cold items).  Invalid items are never neighbours and their own rows are -1 / NaN.  To
compare two views fairly, compute both kNN graphs with the **same** mask (items valid in both
views); :func:`neighbourhood_agreement` refuses graphs whose neighbourhoods contain items the
other view cannot place, since those could never overlap and would bias the score below chance.

kNN at scale (:func:`knn_cosine_with_report`): exact up to ``EXACT_MAX_ITEMS`` valid items (faiss
``IndexFlatIP`` on the unit-normalised float32 vectors), an HNSW index above it, whose recall@k against
exact search on a seeded sample of items is measured and reported.  Both paths fetch a few candidates
beyond k and re-score them exactly in float64, so the reported sims do not depend on the engine and ties
are ordered by item index; the exact path widens its candidate list for rows whose k-th sim is not clear
of the next candidate's by the float32 error bound, so it equals brute force, ties included.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from .backend import Backend, get_backend
from .errors import ConfigError, VectorError


def _valid_mask(valid: np.ndarray | None, n: int, what: str = "valid") -> np.ndarray:
    if valid is None:
        return np.ones(n, dtype=bool)
    v = np.asarray(valid)
    if v.dtype != bool:
        raise ConfigError(f"{what} must be a boolean mask, got dtype {v.dtype}")
    if v.shape != (n,):
        raise ConfigError(f"{what} mask has shape {v.shape}, expected ({n},) (one entry per item)")
    return v


def _unit_rows(X: np.ndarray, valid: np.ndarray, fix: str = "mark such items invalid with `valid`") -> np.ndarray:
    """float32 unit-normalised rows of ``X[valid]``; VectorError naming the first bad row (``fix``: what to do)."""
    Xv = np.asarray(X[valid], dtype=np.float32)
    rows = np.flatnonzero(valid)
    bad = ~np.isfinite(Xv).all(axis=1)
    if bad.any():
        raise VectorError(f"item row {rows[np.argmax(bad)]} has NaN/inf values ({int(bad.sum())} such rows); {fix}")
    norms = np.linalg.norm(Xv, axis=1)
    zero = norms <= 0
    if zero.any():
        raise VectorError(f"item row {rows[np.argmax(zero)]} has a zero-norm vector ({int(zero.sum())} such rows): "
                          f"cosine is undefined; {fix}")
    return Xv / norms[:, None]


# ------------------------------------------------------------------ cosine kNN (faiss)
#: above this many valid items, :func:`knn_cosine` uses an approximate (HNSW) index; override with the
#: ``exact_max`` argument or ``$SEMCOLLAB_KNN_EXACT_MAX``.  Exact search grows with n²·d: on two cores,
#: k = 40, 2.5 s at 20k × 384, 11 s at 50k × 384 and at 100k × 64, 100 s at 100k × 384 (HNSW there: 76 s,
#: recall 0.9996); above ~100k items the index is the only option that stays fast.
EXACT_MAX_ITEMS = 50_000
RECALL_SAMPLE = 1_000  # query items on which the approximate graph is checked against exact search
RECALL_TARGET = 0.95  # efSearch is doubled (up to EF_SEARCH_MAX) until the sample's recall@k reaches this
HNSW_M = 32
EF_CONSTRUCTION = 128
EF_SEARCH_MAX = 1024
_MARGIN = 8  # candidates fetched beyond k (+1 for the item itself) before the exact re-rank
_CELLS = 2**22  # float64 cells per re-rank block (32 MB)


def _exact_max(exact_max: int | None) -> int:
    if exact_max is None:
        env = os.environ.get("SEMCOLLAB_KNN_EXACT_MAX")
        if env is None:
            return EXACT_MAX_ITEMS
        try:
            exact_max = int(env)
        except ValueError:
            raise ConfigError(f"$SEMCOLLAB_KNN_EXACT_MAX must be an integer, got {env!r}") from None
    if exact_max < 0:
        raise ConfigError(f"exact_max must be >= 0, got {exact_max}")
    return int(exact_max)


def _tolerance(d: int) -> float:
    """Bound on |float32 inner product − exact| for unit vectors of dimension d (γ_d, doubled), plus the
    float32 rounding of the re-ranked value: a candidate search may misorder items closer than this."""
    return (d + 4) * 2.0**-23


def _exact_sims(U: np.ndarray, qpos: np.ndarray, cand: np.ndarray, Q: np.ndarray | None = None) -> np.ndarray:
    """Cosine of each query row with its candidates, float32, clipped to ≤ 1; the query itself and
    missing candidates (-1) get -inf.  Products are taken in float64 and each sum reduces the same way,
    so identical vectors get bit-identical sims (exact ties stay ties).  The query vectors are
    ``U[qpos]``, or ``Q`` (one unit row per query) when given; ``qpos`` is then only left out."""
    q, c = cand.shape
    out = np.empty((q, c), dtype=np.float32)
    step = max(1, _CELLS // max(c * U.shape[1], 1))
    for s in range(0, q, step):
        e = min(s + step, q)
        A = (U[qpos[s:e]] if Q is None else Q[s:e]).astype(np.float64)[:, None, :]
        B = U[np.maximum(cand[s:e], 0)].astype(np.float64)
        out[s:e] = np.minimum((A * B).sum(axis=2), 1.0)
    out[(cand < 0) | (cand == qpos[:, None])] = -np.inf
    return out


def _rerank(U: np.ndarray, qpos: np.ndarray, cand: np.ndarray, k: int,
            Q: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Candidates re-scored exactly and sorted by (−sim, position): ``(pos (q, k), sims (q, k))``, -inf / -1
    where a row has fewer than k candidates (query vectors: :func:`_exact_sims`)."""
    sims = _exact_sims(U, qpos, cand, Q)
    cand = np.where(np.isfinite(sims), cand, np.iinfo(np.int64).max)  # the item itself / missing: last
    order = np.lexsort((cand, -sims), axis=1)[:, :k]
    pos = np.take_along_axis(cand, order, axis=1)
    sims = np.take_along_axis(sims, order, axis=1)
    pos[~np.isfinite(sims)] = -1
    return pos, sims


class _FlatSearch:
    """Top-kk inner products of some rows of U (or of other query vectors) against all rows of U: faiss
    ``IndexFlatIP``, numpy blocks and the backend's top-k where faiss is not installed."""

    def __init__(self, U: np.ndarray, be: Backend, block: int):
        self.U, self.be, self.block = U, be, block
        self.index = None
        try:
            import faiss
        except ImportError:  # a stale environment: the same result, more slowly
            self.engine = "numpy matmul"
            return
        self.index = faiss.IndexFlatIP(U.shape[1])
        self.index.add(U)
        self.engine = "faiss.IndexFlatIP"

    def __call__(self, qpos: np.ndarray, kk: int, Q: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-kk of the rows ``U[qpos]`` (or of the vectors ``Q``, one per query, when given)."""
        Q = self.U[qpos] if Q is None else np.ascontiguousarray(Q, np.float32)
        if self.index is not None:
            D, I = self.index.search(Q, kk)
            return D, I.astype(np.int64)
        nv = self.U.shape[0]
        D = np.empty((len(Q), kk), np.float32)
        I = np.empty((len(Q), kk), np.int64)
        step = max(1, min(self.block, 2**26 // max(nv, 1)))  # a score block of at most ~256 MB
        for s in range(0, len(Q), step):
            top, val = self.be.topk(Q[s:s + step] @ self.U.T, kk)
            I[s:s + step], D[s:s + step] = np.asarray(top), np.asarray(val, dtype=np.float32)
        return D, I


def _exact_knn(U: np.ndarray, search: _FlatSearch, qpos: np.ndarray, k: int,
               Q: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact top-k (by index, ties to the lower position) of the rows ``qpos``: candidates from the flat
    search, re-ranked exactly; a row whose k-th sim is not clear of the last candidate's by the float
    tolerance (ties or near-ties at the boundary) is searched again with 4× the candidates.
    ``Q``: query vectors (float32 unit rows, one per ``qpos``) searched instead of ``U[qpos]``, with
    row ``qpos`` still left out (leave one out).  Returns ``(pos, sims, n_widened)``."""
    nv, d = U.shape
    tol = _tolerance(d)
    pos = np.full((len(qpos), k), -1, np.int64)
    sims = np.full((len(qpos), k), -np.inf, np.float32)
    todo = np.arange(len(qpos))
    kk = min(k + 1 + _MARGIN, nv)
    widened = 0
    while len(todo):
        step = max(1, 2**24 // kk)
        unresolved = []
        for s in range(0, len(todo), step):
            rows = todo[s:s + step]
            Qr = None if Q is None else Q[rows]
            D, I = search(qpos[rows], kk, Qr)
            p, v = _rerank(U, qpos[rows], I, k, Qr)
            ok = np.full(len(rows), kk >= nv) | (v[:, -1] > D[:, -1] + tol)
            pos[rows[ok]], sims[rows[ok]] = p[ok], v[ok]
            unresolved.append(rows[~ok])
        todo = np.concatenate(unresolved)
        if len(todo):
            widened = widened or len(todo)  # rows that needed more than the first k + 1 + margin candidates
            kk = min(4 * kk, nv)
    return pos, sims, widened


def _recall_sample(nv: int, size: int, seed: int) -> np.ndarray:
    """Positions (among the valid items, sorted) of the seeded sample on which recall is measured."""
    m = min(int(size), nv)
    return np.sort(np.random.default_rng(seed).choice(nv, size=m, replace=False))


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of |found_i ∩ truth_i| / k (rows of distinct ids; -1 never counts)."""
    found, truth = np.asarray(found), np.asarray(truth)
    k = truth.shape[1]
    hits = [(np.intersect1d(f[f >= 0], t[t >= 0]).size) for f, t in zip(found, truth)]
    return float(np.mean(hits) / k) if len(hits) else float("nan")


def _approx_knn(U: np.ndarray, k: int, seed: int, sample: int, target: float, m: int, ef_construction: int,
                report: dict) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    nv, d = U.shape
    kk = min(k + 1 + _MARGIN, nv)
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(d, int(m), faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(ef_construction)
    index.add(U)
    build_s = time.perf_counter() - t0

    def search(qpos: np.ndarray, ef: int) -> tuple[np.ndarray, np.ndarray]:
        index.hnsw.efSearch = int(ef)
        pos = np.empty((len(qpos), k), np.int64)
        sims = np.empty((len(qpos), k), np.float32)
        step = max(1, 2**22 // kk)
        for s in range(0, len(qpos), step):
            q = qpos[s:s + step]
            _, I = index.search(U[q], kk)
            pos[s:s + step], sims[s:s + step] = _rerank(U, q, I.astype(np.int64), k)
        return pos, sims

    spos = _recall_sample(nv, sample, seed)
    truth, _, _ = _exact_knn(U, _FlatSearch(U, get_backend("numpy"), 1024), spos, k)
    ef = max(64, 2 * kk)
    while True:
        got, _ = search(spos, ef)
        rec = recall_at_k(got, truth)
        if rec >= target or ef >= EF_SEARCH_MAX:
            break
        ef = min(2 * ef, EF_SEARCH_MAX)
    t1 = time.perf_counter()
    pos, sims = search(np.arange(nv), ef)
    short = np.flatnonzero((pos < 0).any(axis=1))  # the graph reached fewer than k items: search exactly
    if len(short):
        p, v, _ = _exact_knn(U, _FlatSearch(U, get_backend("numpy"), 1024), short, k)
        pos[short], sims[short] = p, v
    recall = recall_at_k(pos[spos], truth)
    report.update(engine="faiss.IndexHNSWFlat", metric="inner product on unit vectors", hnsw_m=int(m),
                  ef_construction=int(ef_construction), ef_search=int(ef), recall_at_k=recall,
                  recall_sample=int(len(spos)), recall_seed=int(seed), recall_target=float(target),
                  recall_met=bool(recall >= target), exact_fallback_rows=int(len(short)),
                  build_s=round(build_s, 3), search_s=round(time.perf_counter() - t1, 3))
    return pos, sims


def knn_cosine_with_report(
    X: np.ndarray,
    k: int,
    valid: np.ndarray | None = None,
    block: int = 1024,
    backend: Backend | str | None = None,
    *,
    exact_max: int | None = None,
    seed: int = 0,
    recall_sample: int = RECALL_SAMPLE,
    recall_target: float = RECALL_TARGET,
    hnsw_m: int = HNSW_M,
    ef_construction: int = EF_CONSTRUCTION,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`knn_cosine` and a JSON-able report of how it was computed: ``(idx, sims, report)``.

    Up to ``exact_max`` valid items (default :data:`EXACT_MAX_ITEMS`, or ``$SEMCOLLAB_KNN_EXACT_MAX``) the
    graph is exact (``report["method"] == "exact"``).  Above it, an HNSW index (faiss ``IndexHNSWFlat``,
    inner product on the unit vectors) gives the candidates, re-ranked exactly; its ``efSearch`` is raised
    until recall@k against exact search on a seeded sample of ``recall_sample`` valid items reaches
    ``recall_target`` (or ``EF_SEARCH_MAX``), and the report holds that recall (``recall_at_k``), the
    sample's size and seed (positions: ``_recall_sample(n_valid, recall_sample, seed)`` among the valid
    items in index order) and the index parameters.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise VectorError(f"item vectors must be a 2-D array, got shape {X.shape}")
    n = X.shape[0]
    valid = _valid_mask(valid, n)
    vidx = np.flatnonzero(valid)
    nv = len(vidx)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if k > nv - 1:
        raise ConfigError(f"k={k} neighbours requested but only {nv} valid items (at most {max(nv - 1, 0)})")
    k = int(k)
    limit = _exact_max(exact_max)
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    U = np.ascontiguousarray(_unit_rows(X, valid))
    report: dict = {"n_items": int(n), "n_valid": int(nv), "k": k, "dim": int(X.shape[1]), "exact_max": limit}
    t0 = time.perf_counter()
    if nv > limit:
        report["method"] = "approximate"
        pos, val = _approx_knn(U, k, seed, recall_sample, recall_target, hnsw_m, ef_construction, report)
    else:
        search = _FlatSearch(U, be, block)
        pos, val, widened = _exact_knn(U, search, np.arange(nv), k)
        report.update(method="exact", engine=search.engine, widened_rows=int(widened))
    report["seconds"] = round(time.perf_counter() - t0, 3)
    idx = np.full((n, k), -1, dtype=np.int32)
    sims = np.full((n, k), np.nan, dtype=np.float32)
    idx[vidx] = vidx[pos]
    sims[vidx] = val
    return idx, sims, report


def knn_cosine(
    X: np.ndarray,
    k: int,
    valid: np.ndarray | None = None,
    block: int = 1024,
    backend: Backend | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine kNN of the rows of ``X``: ``(idx int32 (n, k), sims float32 (n, k))``, best first.

    Exact up to :data:`EXACT_MAX_ITEMS` valid items (faiss ``IndexFlatIP`` on the unit-normalised
    vectors), approximate above it (HNSW, recall measured:
    :func:`knn_cosine_with_report`).  Either way the candidates are re-scored exactly (float64 products),
    so ``sims`` are the cosines of the float32 unit vectors, clipped to ≤ 1, and ties in ``sims`` are
    ordered by lower item index on every backend.  The item itself is excluded by index (an identical
    duplicate is a neighbour with sim 1).  Items with ``valid[i] == False`` are never neighbours; their
    rows are -1 / NaN.  ``k`` must be at most (number of valid items − 1).
    """
    idx, sims, _ = knn_cosine_with_report(X, k, valid=valid, block=block, backend=backend)
    return idx, sims


class CosineQuerySearch:
    """Exact cosine search of query vectors among the fixed rows of ``X``, indexed once.

    The rows are unit-normalised float32 vectors in a faiss ``IndexFlatIP`` (numpy blocks without faiss);
    each call takes queries and, per query, the row it leaves out (leave one out: a mapped vector of item
    j searched among the true vectors of the other items), and returns positions ``(q, k)`` int64, best
    first.  As in :func:`knn_cosine`, candidates are re-scored exactly (float64), so ties go to the lower
    row and the result equals brute force.  A zero query has cosine 0 with every row.
    """

    def __init__(self, X: np.ndarray, backend: Backend | str | None = None, block: int = 1024):
        X = np.asarray(X)
        if X.ndim != 2:
            raise VectorError(f"rows must be a 2-D array, got shape {X.shape}")
        self.U = np.ascontiguousarray(_unit_rows(X, np.ones(len(X), bool),
                                                 "every searched row needs a finite, non-zero vector"))
        self.search = _FlatSearch(self.U, backend if isinstance(backend, Backend) else get_backend(backend), block)

    def __call__(self, queries: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
        n, d = self.U.shape
        Q = np.asarray(queries, dtype=np.float32)
        if Q.ndim != 2 or Q.shape[1] != d:
            raise VectorError(f"queries {Q.shape} and rows {self.U.shape} must be 2-D with the same dimension")
        exclude = np.asarray(exclude, np.int64)
        if exclude.shape != (len(Q),) or (len(exclude) and (exclude.min() < 0 or exclude.max() >= n)):
            raise ConfigError(f"exclude must hold one row of X (0..{n - 1}) per query, got shape {exclude.shape}")
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
            raise ConfigError(f"k must be between 1 and {n - 1} (rows - 1), got {k!r}")
        bad = ~np.isfinite(Q).all(axis=1)
        if bad.any():
            raise VectorError(f"query row {np.argmax(bad)} has NaN/inf values ({int(bad.sum())} such rows)")
        nq = np.linalg.norm(Q, axis=1, keepdims=True)  # float32, as the rows (so a query equal to a row ties with it)
        Q = np.ascontiguousarray(Q / np.maximum(nq, np.finfo(np.float32).tiny))
        pos, _, _ = _exact_knn(self.U, self.search, exclude, int(k), Q)
        return pos


def chance_overlap(n: int, k: int) -> float:
    """Expected overlap@k of two unrelated neighbourhoods among ``n`` valid items: k / (n − 1)."""
    if n < 2:
        raise ConfigError(f"chance overlap needs at least 2 valid items, got {n}")
    return k / (n - 1)


def chance_jaccard(n: int, k: int) -> float:
    """Expected Jaccard@k of two unrelated neighbourhoods among ``n`` valid items.

    The overlap m of two independent uniform k-subsets of the n − 1 other items is
    hypergeometric(n − 1, k, k), so the chance level is E[m / (2k − m)] (exact sum over m);
    for k ≪ n it is ≈ k / (2(n − 1)), half the overlap's chance level k / (n − 1).
    """
    from scipy.stats import hypergeom

    if n < 2:
        raise ConfigError(f"chance Jaccard needs at least 2 valid items, got {n}")
    k = min(int(k), n - 1)
    m = np.arange(0, k + 1)
    return float(np.sum(hypergeom(n - 1, k, k).pmf(m) * m / (2 * k - m)))


def neighbourhood_agreement(idx_a: np.ndarray, idx_b: np.ndarray, k: int | None = None) -> pd.DataFrame:
    """Per-item overlap@k, Jaccard@k and disagreement of two kNN graphs (index = item_idx).

    Uses the first ``k`` columns of each graph (default: all; both must have at least ``k``).
    Items invalid in either view (row of -1) get NaN.  Columns: ``overlap`` = m / k,
    ``jaccard`` = m / (2k − m), ``disagreement`` = 1 − overlap, ``chance`` = k / (N − 1) with
    N = number of items valid in both views, and Jaccard's own chance level ``chance_jaccard``
    (:func:`chance_jaccard`) (also in ``.attrs``: k, n_valid, chance, chance_jaccard).
    """
    idx_a = np.asarray(idx_a)
    idx_b = np.asarray(idx_b)
    if idx_a.ndim != 2 or idx_b.ndim != 2 or idx_a.shape[0] != idx_b.shape[0]:
        raise ConfigError(f"kNN graphs must be 2-D with the same number of items, got {idx_a.shape} and {idx_b.shape}")
    n = idx_a.shape[0]
    k = min(idx_a.shape[1], idx_b.shape[1]) if k is None else int(k)
    if k < 1 or k > idx_a.shape[1] or k > idx_b.shape[1]:
        raise ConfigError(f"k={k} exceeds the neighbour depth of the graphs ({idx_a.shape[1]}, {idx_b.shape[1]})")
    a = idx_a[:, :k].astype(np.int64)
    b = idx_b[:, :k].astype(np.int64)
    va = (a >= 0).all(axis=1)
    vb = (b >= 0).all(axis=1)
    both = va & vb
    for name, g, other_valid in (("a", a, vb), ("b", b, va)):
        nb = g[both]
        stray = nb[~other_valid[nb]] if nb.size else nb
        if stray.size:
            raise ConfigError(
                f"view {name}'s neighbourhoods contain {len(np.unique(stray))} items invalid in the other view "
                f"(e.g. item {int(stray[0])}): compute both kNN graphs with the same `valid` mask"
            )
    n_valid = int(both.sum())
    m = np.full(n, np.nan)
    if n_valid:
        cat = np.sort(np.concatenate([a[both], b[both]], axis=1), axis=1)
        m[both] = (cat[:, 1:] == cat[:, :-1]).sum(axis=1)  # each graph row holds distinct items
    overlap = m / k
    chance = chance_overlap(n_valid, k) if n_valid >= 2 else np.nan
    chance_j = chance_jaccard(n_valid, k) if n_valid >= 2 else np.nan
    df = pd.DataFrame(
        {"overlap": overlap, "jaccard": m / (2 * k - m), "disagreement": 1.0 - overlap, "chance": chance,
         "chance_jaccard": chance_j},
        index=pd.RangeIndex(n, name="item_idx"),
    )
    df.attrs.update(k=k, n_valid=n_valid, chance=chance, chance_jaccard=chance_j)
    return df


def by_popularity_decile(agreement_df: pd.DataFrame, popularity: np.ndarray) -> pd.DataFrame:
    """Mean agreement per training-popularity decile (1 = least popular, 10 = most popular).

    Deciles are taken over the items with a finite overlap (items valid in both views) by rank:
    decile = ceil(10 · rank_min / N), where tied popularities share the lowest rank, so a tie
    group is never split.  Hence items with zero (or any tied) popularity all fall in one decile —
    on sparse data the lowest deciles can merge, and empty deciles are omitted.  Columns: decile,
    n_items, popularity_min, popularity_max, mean_overlap, mean_jaccard, mean_disagreement, chance.
    """
    pop = np.asarray(popularity, dtype=float)
    ids = agreement_df.index.to_numpy()
    if pop.ndim != 1 or (len(ids) and ids.max() >= len(pop)):
        raise ConfigError(f"popularity must be a 1-D array covering item_idx 0..{ids.max()}, got shape {pop.shape}")
    ok = np.isfinite(agreement_df["overlap"].to_numpy())
    sub = agreement_df.loc[ok, ["overlap", "jaccard", "disagreement"]].copy()
    p = pop[ids[ok]]
    if not np.isfinite(p).all():
        raise ConfigError(f"popularity has NaN/inf for item {int(ids[ok][~np.isfinite(p)][0])}")
    n = len(sub)
    cols = ["decile", "n_items", "popularity_min", "popularity_max",
            "mean_overlap", "mean_jaccard", "mean_disagreement", "chance"]
    if n == 0:
        return pd.DataFrame(columns=cols)
    r = pd.Series(p).rank(method="min").to_numpy()
    sub["decile"] = np.clip(np.ceil(10.0 * r / n), 1, 10).astype(int)
    sub["popularity"] = p
    g = sub.groupby("decile", sort=True)
    out = pd.DataFrame({
        "n_items": g.size(),
        "popularity_min": g["popularity"].min(),
        "popularity_max": g["popularity"].max(),
        "mean_overlap": g["overlap"].mean(),
        "mean_jaccard": g["jaccard"].mean(),
        "mean_disagreement": g["disagreement"].mean(),
    }).reset_index()
    if "chance" in agreement_df:
        ch = agreement_df["chance"].to_numpy()
        out["chance"] = ch[np.isfinite(ch)][0] if np.isfinite(ch).any() else np.nan
    else:
        out["chance"] = agreement_df.attrs.get("chance", np.nan)
    return out[cols]


def neighbour_table(idx: np.ndarray, sims: np.ndarray, view_name: str) -> pd.DataFrame:
    """Long table of a kNN graph: item_idx, view, rank (1 = nearest), neighbor_idx (the run's column name), sim.

    Rows of invalid items (-1) are left out.
    """
    idx = np.asarray(idx)
    sims = np.asarray(sims)
    if idx.shape != sims.shape or idx.ndim != 2:
        raise ConfigError(f"idx and sims must be 2-D of the same shape, got {idx.shape} and {sims.shape}")
    n, k = idx.shape
    keep = (idx >= 0).ravel()
    return pd.DataFrame({
        "item_idx": np.repeat(np.arange(n, dtype=np.int32), k)[keep],
        "view": pd.Series([view_name] * int(keep.sum()), dtype="category"),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int16), n)[keep],
        "neighbor_idx": idx.ravel()[keep].astype(np.int32),
        "sim": sims.ravel()[keep].astype(np.float32),
    })


def procrustes_cosine(X: np.ndarray, Y: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-item cos(x_i Q, y_i) after orthogonal Procrustes of X onto Y (float64 (n,), NaN if invalid).

    Both views are centred and scaled to unit Frobenius norm over the items used in the fit; the
    smaller dimension is zero-padded.  Items with ``valid == False`` or any non-finite value in
    either view get NaN and are excluded from the fit (and from the centring).
    """
    from scipy.linalg import orthogonal_procrustes

    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise VectorError(f"views must be 2-D with the same number of items, got {X.shape} and {Y.shape}")
    n = X.shape[0]
    ok = _valid_mask(valid, n) & np.isfinite(X).all(axis=1) & np.isfinite(Y).all(axis=1)
    if ok.sum() < 2:
        raise VectorError(f"Procrustes needs at least 2 items valid in both views, got {int(ok.sum())}")
    d = max(X.shape[1], Y.shape[1])
    A = np.zeros((int(ok.sum()), d))
    B = np.zeros((int(ok.sum()), d))
    A[:, : X.shape[1]] = X[ok] - X[ok].mean(axis=0)
    B[:, : Y.shape[1]] = Y[ok] - Y[ok].mean(axis=0)
    for M, name in ((A, "X"), (B, "Y")):
        f = np.linalg.norm(M)
        if f == 0:
            raise VectorError(f"view {name} is constant over the valid items: Procrustes is undefined")
        M /= f
    Q, _ = orthogonal_procrustes(A, B)
    AQ = A @ Q
    num = (AQ * B).sum(axis=1)
    den = np.linalg.norm(AQ, axis=1) * np.linalg.norm(B, axis=1)
    out = np.full(n, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[ok] = np.where(den > 0, num / den, np.nan)
    return out


def keep_valid_neighbours(idx: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each row of a kNN graph with the neighbours that are not ``valid`` dropped (order kept), -1 padded
    on the right: a graph over every item restricted to the items another view can place."""
    idx = np.asarray(idx, dtype=np.int64)
    valid = _valid_mask(valid, idx.shape[0])
    ok = (idx >= 0) & valid[np.maximum(idx, 0)]
    order = np.argsort(~ok, axis=1, kind="stable")
    out = np.take_along_axis(idx, order, axis=1)
    out[~np.take_along_axis(ok, order, axis=1)] = -1
    return out


def recut_agreement(idx_a: np.ndarray, idx_b: np.ndarray, k: int) -> pd.DataFrame:
    """:func:`neighbourhood_agreement` at a smaller ``k`` from stored graphs whose view-a rows may list
    items view b cannot place (a run's semantic lists include cold items): those are dropped from
    a's rows first, so both views compare their first ``k`` neighbours among the items both place,
    as the pipeline does. Items with fewer than ``k`` such neighbours get NaN."""
    idx_b = np.asarray(idx_b, dtype=np.int64)
    k = int(k)
    if k < 1 or k > idx_b.shape[1] or k > np.asarray(idx_a).shape[1]:
        raise ConfigError(f"k={k} is outside 1..{min(idx_b.shape[1], np.asarray(idx_a).shape[1])} (the graphs' depth)")
    placed = (idx_b[:, :k] >= 0).all(axis=1)
    a = keep_valid_neighbours(idx_a, placed)
    a[~placed] = -1
    return neighbourhood_agreement(a, idx_b, k)
