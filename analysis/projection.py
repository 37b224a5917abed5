"""Side-by-side 2-D maps of two views (UMAP), aligned so they can be compared by eye.

The maps are for *looking* only: every agreement number is computed in the original vectors
(:mod:`analysis.neighbors`), never in 2-D.  Each view gets its own seeded UMAP (metric cosine)
that reuses the exact kNN graph already computed by :func:`analysis.neighbors.knn_cosine`
(umap-learn's ``precomputed_knn``; umap expects every row's first neighbour to be the point
itself at distance 0, so it is prepended here).  The second map is then aligned to the first by
orthogonal Procrustes with scale and translation (a rotation/reflection of a UMAP layout carries
no meaning, so removing it loses nothing and makes corresponding regions line up).

Items invalid in a view (e.g. cold items in the collaborative view) get **NaN coordinates** in
that view's map: the view has no position for them, and placing them at, say, their semantic
neighbours' mean would draw a collaborative position that does not exist.  The dashboard can
show them from the other map.

For tiny catalogues (fewer than ``MIN_UMAP_ITEMS`` valid items) UMAP is unreliable (its
spectral initialisation and fuzzy graph need more points than neighbours), so each view falls
back to PCA to 2-D of its unit-normalised rows — still aligned the same way.

Large catalogues (:func:`map_layouts`): a view with more than ``MAX_FIT_POINTS`` valid items is
fitted on a seeded stratified sample of that many items (head / torso / tail by training popularity,
cold items apart, each in proportion: :func:`stratified_sample`) with its own exact kNN graph, and the
other items are placed by umap-learn's ``UMAP.transform`` from their exact nearest sampled items; the
sample's size and strata are returned in a report for the run.  At or below the budget the maps are
exactly those of :func:`umap_layouts`.  The dashboard draws at most a point budget per map, chosen by
:func:`plot_sample`.

umap-learn compiles with numba on first use (tens of seconds); call :func:`warm_umap` once at
set-up so the first real map is fast.  It is imported lazily so importing this module is cheap.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, VectorError
from .neighbors import knn_cosine

MIN_UMAP_ITEMS = 30


def align_layout(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """``moving`` mapped onto ``reference`` by the similarity transform (rotation/reflection,
    uniform scale, translation) that minimises the squared distance over rows finite in both.

    Rows of ``moving`` that are NaN stay NaN.  With fewer than 2 common rows it is returned as is.
    """
    from scipy.linalg import orthogonal_procrustes

    A = np.asarray(reference, dtype=np.float64)
    B = np.asarray(moving, dtype=np.float64)
    if A.shape != B.shape or A.ndim != 2:
        raise ConfigError(f"layouts must have the same 2-D shape, got {A.shape} and {B.shape}")
    ok = np.isfinite(A).all(axis=1) & np.isfinite(B).all(axis=1)
    if ok.sum() < 2:
        return B.copy()
    mu_a, mu_b = A[ok].mean(axis=0), B[ok].mean(axis=0)
    Ac, Bc = A[ok] - mu_a, B[ok] - mu_b
    R, sv_sum = orthogonal_procrustes(Bc, Ac)  # sv_sum = trace of the singular values of Bc^T Ac
    nb = (Bc**2).sum()
    s = sv_sum / nb if nb > 0 else 1.0
    return s * (B - mu_b) @ R + mu_a


def _pca2(X: np.ndarray) -> np.ndarray:
    """PCA to 2-D of unit-normalised rows, deterministic signs, zero-padded if rank < 2."""
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    U = U - U.mean(axis=0)
    u, s, _ = np.linalg.svd(U, full_matrices=False)
    c = u[:, :2] * s[:2]
    signs = np.sign(c[np.argmax(np.abs(c), axis=0), np.arange(c.shape[1])])
    c = c * np.where(signs == 0, 1.0, signs)
    out = np.zeros((X.shape[0], 2))
    out[:, : c.shape[1]] = c
    return out


def _valid_rows(X: np.ndarray, knn, valid: np.ndarray | None, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X as float32, valid mask)`` after checking shapes; a kNN graph's -1 rows mark invalid items."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise VectorError(f"{what}: item vectors must be a 2-D array, got shape {X.shape}")
    n = X.shape[0]
    if knn is not None:
        idx, dist = (np.asarray(a) for a in knn)
        if idx.shape != dist.shape or idx.shape[0] != n:
            raise ConfigError(f"{what}: kNN graph of shape {idx.shape}/{dist.shape} does not match {n} items")
        inferred = idx[:, 0] >= 0
        valid = inferred if valid is None else np.asarray(valid, dtype=bool)
        if (valid & ~inferred).any():
            raise ConfigError(f"{what}: item {int(np.flatnonzero(valid & ~inferred)[0])} is valid but has no neighbours")
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != (n,):
        raise ConfigError(f"{what}: valid mask has shape {valid.shape}, expected ({n},)")
    Xv = X[valid]
    if not np.isfinite(Xv).all() or (np.linalg.norm(Xv, axis=1) == 0).any():
        raise VectorError(f"{what}: valid items must have finite, non-zero vectors")
    return X, valid


def _self_graph(idx: np.ndarray, dist: np.ndarray, rows: np.ndarray, nn: int, n: int,
                what: str) -> tuple[np.ndarray, np.ndarray]:
    """The graph re-indexed to ``rows`` with each point itself prepended at distance 0 (umap's convention)."""
    nv = len(rows)
    pos = np.full(n, -1, dtype=np.int64)
    pos[rows] = np.arange(nv)
    sub_idx = pos[idx[rows, : nn - 1]]
    if (sub_idx < 0).any():
        raise ConfigError(f"{what}: neighbourhoods contain items marked invalid; compute kNN with the same mask")
    knn_i = np.hstack([np.arange(nv)[:, None], sub_idx]).astype(np.int32)
    knn_d = np.hstack([np.zeros((nv, 1)), np.clip(dist[rows, : nn - 1], 0.0, 2.0)]).astype(np.float32)
    return knn_i, knn_d


def _umap(nn: int, seed: int, knn_i: np.ndarray, knn_d: np.ndarray, search_index=None):
    """A seeded cosine UMAP on a precomputed graph (and, to ``transform`` later, a search index)."""
    import umap

    graph = (knn_i, knn_d) if search_index is None else (knn_i, knn_d, search_index)
    return umap.UMAP(n_neighbors=nn, n_components=2, metric="cosine", random_state=seed, precomputed_knn=graph)


@contextlib.contextmanager
def _quiet():
    """umap's warnings about precomputed graphs, search indexes and n_jobs (expected here) silenced."""
    with warnings.catch_warnings():
        for msg in (".*precomputed_knn.*", ".*n_jobs.*", ".*knn_search_index.*"):
            warnings.filterwarnings("ignore", message=msg)
        yield


def _layout(
    X: np.ndarray,
    knn: tuple[np.ndarray, np.ndarray] | None,
    valid: np.ndarray | None,
    n_neighbors: int,
    seed: int,
    what: str,
) -> np.ndarray:
    """2-D layout of one view on every valid item; NaN rows for invalid items."""
    X, valid = _valid_rows(X, knn, valid, what)
    n = X.shape[0]
    rows = np.flatnonzero(valid)
    nv = len(rows)
    out = np.full((n, 2), np.nan)
    if nv == 0:
        return out
    if nv < MIN_UMAP_ITEMS:
        out[rows] = _pca2(X[rows].astype(np.float64))
        return out
    nn = min(n_neighbors, nv - 1)
    if knn is None:
        idx, sims = knn_cosine(X, nn - 1, valid=valid)
        dist = 1.0 - sims
    else:
        idx, dist = (np.asarray(a) for a in knn)
    if idx.shape[1] < nn - 1:
        nn = idx.shape[1] + 1
    knn_i, knn_d = _self_graph(idx, dist, rows, nn, n, what)
    with _quiet():
        out[rows] = _umap(nn, seed, knn_i, knn_d).fit_transform(X[rows])
    return out


def umap_layouts(
    X_a: np.ndarray,
    X_b: np.ndarray,
    knn_a: tuple[np.ndarray, np.ndarray] | None = None,
    knn_b: tuple[np.ndarray, np.ndarray] | None = None,
    n_neighbors: int = 15,
    seed: int = 0,
    valid_b: np.ndarray | None = None,
    valid_a: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D maps ``(coords_a (n, 2), coords_b (n, 2))`` of two views, b aligned to a.

    ``knn_a`` / ``knn_b`` are ``(idx, dist)`` from :func:`analysis.neighbors.knn_cosine` with
    ``dist = 1 − sims`` (self excluded; at least ``n_neighbors − 1`` columns are used, fewer
    columns lower the effective ``n_neighbors``); when omitted they are computed here.  Rows of
    -1 in a graph mark items invalid in that view, as does ``valid_a`` / ``valid_b``; invalid
    items get NaN coordinates.  Fewer than ``MIN_UMAP_ITEMS`` valid items: PCA instead of UMAP.
    """
    X_a = np.asarray(X_a)
    X_b = np.asarray(X_b)
    if X_a.shape[0] != X_b.shape[0]:
        raise VectorError(f"views have different numbers of items: {X_a.shape[0]} and {X_b.shape[0]}")
    if n_neighbors < 2:
        raise ConfigError(f"n_neighbors must be at least 2, got {n_neighbors}")
    coords_a = _layout(X_a, knn_a, valid_a, n_neighbors, seed, "view a")
    coords_b = _layout(X_b, knn_b, valid_b, n_neighbors, seed, "view b")
    return coords_a, align_layout(coords_a, coords_b)


# --------------------------------------------------------------------- maps at scale
#: above this many valid items a view's UMAP is fitted on a stratified sample of this size and the
#: other items are placed by ``transform`` (see :func:`map_layouts`)
MAX_FIT_POINTS = 20_000
#: the strata of the fit and plot samples: :func:`analysis.split.pop_buckets` (head = top 20 % of warm
#: items by training popularity, tail = bottom 50 %, torso between) and cold items apart
STRATA = ("head", "torso", "tail", "cold")


@dataclass(frozen=True)
class MapLayouts:
    """The two maps (semantic = view a, collaborative = view b aligned to a) and how they were made."""

    sem_xy: np.ndarray
    col_xy: np.ndarray
    report: dict


def stratified_sample(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of a seeded sample of ``size`` rows keeping every stratum in proportion.

    Stratum s (rows with one value of ``labels``) of n_s of the n rows gets ⌊size·n_s / n⌋ rows, and
    the rows left over go one each to the strata with the largest remainders size·n_s mod n (Hamilton's
    method, integer arithmetic; ties to the stratum whose label sorts first), so the counts are exact
    and sum to ``size``.  Rows are drawn without replacement by one ``numpy.random.default_rng(seed)``,
    strata in sorted label order: the same labels, size and seed give the same sample.  ``size >= n``:
    every row.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if size < 0:
        raise ConfigError(f"sample size must be non-negative, got {size}")
    if size >= n:
        return np.arange(n)
    levels, inv = np.unique(labels, return_inverse=True)
    counts = np.bincount(inv.ravel(), minlength=len(levels)).astype(np.int64)
    take, rem = np.divmod(int(size) * counts, n)
    extra = int(size - take.sum())
    take[np.lexsort((np.arange(len(levels)), -rem))[:extra]] += 1
    rng = np.random.default_rng(seed)
    members = np.split(np.argsort(inv.ravel(), kind="stable"), np.cumsum(counts)[:-1])
    picked = [rng.choice(m, size=t, replace=False) for m, t in zip(members, take) if t]
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, np.int64)


def fit_strata(popularity: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """Per item its stratum in :data:`STRATA`: :func:`analysis.split.pop_buckets` of the training
    popularity over the warm items, "cold" for the items in ``cold``."""
    from .split import pop_buckets

    return pop_buckets(np.asarray(popularity, dtype=np.float64), np.asarray(cold, dtype=bool)).astype(str)


class _ExactIndex:
    """Exact cosine search over the fitted points, in the form umap-learn's ``transform`` asks of its
    search index (``query(X, k, epsilon)`` -> ``(indices, distances)``, ``_angular_trees``): faiss
    ``IndexFlatIP`` on the unit-normalised float32 rows, distance = 1 − cosine clipped to [0, 2]."""

    _angular_trees = True

    def __init__(self, X: np.ndarray):
        import faiss

        self.index = faiss.IndexFlatIP(X.shape[1])
        self.index.add(self._unit(X))

    @staticmethod
    def _unit(X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        return X / np.linalg.norm(X, axis=1, keepdims=True)

    def query(self, X: np.ndarray, k: int, epsilon: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        sims, idx = self.index.search(self._unit(X), int(k))
        return idx.astype(np.int32), np.clip(1.0 - sims, 0.0, 2.0).astype(np.float32)


def _strata_counts(strata: np.ndarray, fit: np.ndarray) -> dict:
    """{stratum: {"items": valid items, "fit": of them in the fit}} over :data:`STRATA`."""
    return {s: {"items": int((strata == s).sum()), "fit": int((strata[fit] == s).sum())} for s in STRATA}


def _sampled_layout(X: np.ndarray, rows: np.ndarray, strata: np.ndarray, n_neighbors: int, seed: int,
                    max_fit: int, what: str) -> tuple[np.ndarray, dict]:
    """UMAP of the items ``rows`` fitted on a stratified sample of ``max_fit`` of them, the rest transformed.

    The sample is :func:`stratified_sample` of the items' strata (head / torso / tail / cold kept in
    proportion, seeded).  It gets its own cosine kNN graph (:func:`knn_cosine` among the sample, exact
    at this budget; the full graph's neighbours mostly lie outside the sample), then a seeded UMAP as in
    :func:`umap_layouts`.
    Every other item is placed by ``UMAP.transform`` from its ``n_neighbors`` nearest sampled items,
    found exactly by :class:`_ExactIndex` (a precomputed graph carries no search index of its own):
    initialised at the weighted mean of those neighbours' positions, then optimised against the fixed
    fitted layout.  Returns the coordinates (NaN outside ``rows``) and the view's report.
    """
    t0 = time.perf_counter()
    fit = rows[stratified_sample(strata[rows], max_fit, seed)]
    rest = np.setdiff1d(rows, fit)
    nn = min(n_neighbors, len(fit) - 1)
    idx, sims = knn_cosine(X[fit], nn - 1)
    knn_i, knn_d = _self_graph(idx, 1.0 - sims, np.arange(len(fit)), nn, len(fit), what)
    out = np.full((X.shape[0], 2), np.nan)
    with _quiet():
        reducer = _umap(nn, seed, knn_i, knn_d, _ExactIndex(X[fit]))
        out[fit] = reducer.fit_transform(X[fit])
        t1 = time.perf_counter()
        if len(rest):
            out[rest] = reducer.transform(X[rest])
    report = {"method": "umap_sample_transform", "n_valid": int(len(rows)), "n_fit": int(len(fit)),
              "n_transformed": int(len(rest)), "strata": _strata_counts(strata[rows], np.isin(rows, fit)),
              "seconds_fit": round(t1 - t0, 3), "seconds_transform": round(time.perf_counter() - t1, 3)}
    return out, report


def _view_layout(X: np.ndarray, knn, valid: np.ndarray, strata: np.ndarray, n_neighbors: int, seed: int,
                 max_fit: int, what: str) -> tuple[np.ndarray, dict]:
    """One view's map: :func:`_layout` on every valid item up to ``max_fit`` of them (exactly the
    unsampled path of :func:`umap_layouts`), :func:`_sampled_layout` above; with its report."""
    rows = np.flatnonzero(valid)
    if len(rows) <= max_fit:
        t0 = time.perf_counter()
        out = _layout(X, knn, valid, n_neighbors, seed, what)
        method = "none" if len(rows) == 0 else "pca" if len(rows) < MIN_UMAP_ITEMS else "umap"
        return out, {"method": method, "n_valid": int(len(rows)), "n_fit": int(len(rows)), "n_transformed": 0,
                     "strata": _strata_counts(strata[rows], np.ones(len(rows), bool)),
                     "seconds_fit": round(time.perf_counter() - t0, 3), "seconds_transform": 0.0}
    return _sampled_layout(np.asarray(X, dtype=np.float32), rows, strata, n_neighbors, seed, max_fit, what)


def map_layouts(
    X_a: np.ndarray,
    X_b: np.ndarray,
    popularity: np.ndarray,
    knn_a: tuple[np.ndarray, np.ndarray] | None = None,
    knn_b: tuple[np.ndarray, np.ndarray] | None = None,
    n_neighbors: int = 15,
    seed: int = 0,
    valid_b: np.ndarray | None = None,
    valid_a: np.ndarray | None = None,
    max_fit_points: int = MAX_FIT_POINTS,
) -> MapLayouts:
    """The two maps of :func:`umap_layouts` (a = semantic, b = collaborative aligned to a) at any size.

    A view with at most ``max_fit_points`` valid items is laid out exactly as :func:`umap_layouts` does
    (the same result, bit for bit).  Above it, its UMAP is fitted on a seeded stratified sample of
    ``max_fit_points`` of its valid items and the others are placed by ``transform``
    (:func:`_sampled_layout`).  Strata (:func:`fit_strata`): head / torso / tail by ``popularity``
    (training interactions per item) among warm items, and cold = items view b cannot place or with
    no training interaction.  The kNN graphs are used only on the unsampled path.  ``report``:
    ``n_items``, ``max_fit_points``, ``seed``, ``seconds`` and per view (``semantic``,
    ``collaborative``) the method ("umap", "umap_sample_transform", "pca" below ``MIN_UMAP_ITEMS``,
    "none"), ``n_valid``, ``n_fit``, ``n_transformed``, the strata counts ``{stratum: {items, fit}}``
    and the seconds of fit and transform.
    """
    t0 = time.perf_counter()
    if np.asarray(X_a).shape[0] != np.asarray(X_b).shape[0]:
        raise VectorError(f"views have different numbers of items: {len(X_a)} and {len(X_b)}")
    if n_neighbors < 2:
        raise ConfigError(f"n_neighbors must be at least 2, got {n_neighbors}")
    if max_fit_points < 2 * MIN_UMAP_ITEMS:
        raise ConfigError(f"max_fit_points must be at least {2 * MIN_UMAP_ITEMS}, got {max_fit_points}")
    X_a, va = _valid_rows(X_a, knn_a, valid_a, "view a")
    X_b, vb = _valid_rows(X_b, knn_b, valid_b, "view b")
    pop = np.asarray(popularity, dtype=np.float64)
    if pop.shape != (X_a.shape[0],) or not np.isfinite(pop).all() or (pop < 0).any():
        raise ConfigError(f"popularity must be {X_a.shape[0]} finite non-negative counts, got shape {pop.shape}")
    strata = fit_strata(pop, ~vb | (pop == 0))
    a, rep_a = _view_layout(X_a, knn_a, va, strata, n_neighbors, seed, max_fit_points, "view a")
    b, rep_b = _view_layout(X_b, knn_b, vb, strata, n_neighbors, seed, max_fit_points, "view b")
    report = {"n_items": int(X_a.shape[0]), "max_fit_points": int(max_fit_points), "seed": int(seed),
              "semantic": rep_a, "collaborative": rep_b, "seconds": round(time.perf_counter() - t0, 3)}
    return MapLayouts(a, align_layout(a, b), report)


@dataclass(frozen=True)
class PlotSample:
    """The items a map draws: ``items`` (sorted positions), out of ``n_items`` with a ``budget``;
    ``mode`` "all" / "tail_cold_whole" / "proportional" (:func:`plot_sample`); ``strata``
    ``{bucket: {"items", "drawn"}}`` over :data:`STRATA`; ``n_kept``: items drawn only because of ``keep``."""

    items: np.ndarray
    n_items: int
    budget: int
    mode: str
    strata: dict
    n_kept: int = 0


def plot_sample(buckets: np.ndarray, budget: int, seed: int = 0, keep=(),
                strata: np.ndarray | None = None) -> PlotSample:
    """The items a map draws: every item up to ``budget``, a seeded stratified sample above it.

    ``buckets``: per item head / torso / tail / cold (:func:`analysis.split.pop_buckets`, the run's
    ``pop_bucket``); ``strata``: finer labels for the draw (e.g. the popularity decile; default the
    buckets), crossed with the buckets.  Above the budget:

    * when the tail and cold items fit in it, all of them are drawn (the items where the two views
      differ most, and the ones a thinned map would lose first) and the rest of the budget is a
      :func:`stratified_sample` of the head and torso (every stratum at the same rate): "tail_cold_whole";
    * otherwise ``budget`` items are drawn as a :func:`stratified_sample` of all items, head, torso,
      tail and cold in proportion: "proportional".

    ``keep`` (positions of the selected / searched items) are added on top of the sample, which does
    not depend on them, so the other points stay put when the selection changes.
    """
    b = np.asarray(buckets).astype(str)
    n = len(b)
    lab = b if strata is None else np.char.add(np.char.add(b, "|"), np.asarray(strata).astype(str))
    if budget < 0:
        raise ConfigError(f"the point budget must be non-negative, got {budget}")
    whole = (b == "tail") | (b == "cold")
    if n <= budget:
        mode, items = "all", np.arange(n)
    elif whole.sum() <= budget:
        rest = np.flatnonzero(~whole)
        mode = "tail_cold_whole"
        items = np.union1d(np.flatnonzero(whole), rest[stratified_sample(lab[rest], budget - int(whole.sum()), seed)])
    else:
        mode, items = "proportional", stratified_sample(lab, budget, seed)
    keep = np.asarray(list(keep), dtype=np.int64)
    if len(keep) and (keep.min() < 0 or keep.max() >= n):
        raise ConfigError(f"items to keep must be positions below {n}")
    drawn = np.union1d(items, keep)
    counts = {s: {"items": int((b == s).sum()), "drawn": int((b[drawn] == s).sum())} for s in STRATA}
    return PlotSample(drawn, n, int(budget), mode, counts, int(len(drawn) - len(items)))


def warm_umap() -> None:
    """Trigger umap-learn's numba compilation once on a tiny problem (a few seconds, then cached)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2 * MIN_UMAP_ITEMS, 8)).astype(np.float32)
    umap_layouts(X, X, n_neighbors=5, seed=0)


def pca_layout(X: np.ndarray) -> np.ndarray:
    """2-D positions of the rows of ``X`` by :func:`_pca2` (the layout used where UMAP cannot run),
    over the rows that are finite and non-zero; NaN rows elsewhere (e.g. cold items of a view)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.full((X.shape[0], 2), np.nan)
    ok = np.isfinite(X).all(axis=1)
    ok[ok] = np.linalg.norm(X[ok], axis=1) > 0
    if ok.sum() >= 3 and X.shape[1] >= 1:
        out[ok] = _pca2(X[ok])
    return out
