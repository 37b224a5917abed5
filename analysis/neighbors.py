"""Item-level agreement of two views: exact cosine kNN, neighbourhood overlap, Procrustes cosine.

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
"""
from __future__ import annotations

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


def _unit_rows(X: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float32 unit-normalised rows of ``X[valid]``; VectorError naming the first bad row."""
    Xv = np.asarray(X[valid], dtype=np.float32)
    rows = np.flatnonzero(valid)
    bad = ~np.isfinite(Xv).all(axis=1)
    if bad.any():
        raise VectorError(f"item row {rows[np.argmax(bad)]} has NaN/inf values ({int(bad.sum())} such rows); "
                          "mark such items invalid with `valid`")
    norms = np.linalg.norm(Xv, axis=1)
    zero = norms <= 0
    if zero.any():
        raise VectorError(f"item row {rows[np.argmax(zero)]} has a zero-norm vector ({int(zero.sum())} such rows): "
                          "cosine is undefined; mark such items invalid with `valid`")
    return Xv / norms[:, None]


def knn_cosine(
    X: np.ndarray,
    k: int,
    valid: np.ndarray | None = None,
    block: int = 1024,
    backend: Backend | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN of the rows of ``X``: ``(idx int32 (n, k), sims float32 (n, k))``, best first.

    The item itself is excluded by index (an identical duplicate is a neighbour with sim 1).
    Items with ``valid[i] == False`` are never neighbours; their rows are -1 / NaN.
    Ties are broken by lower item index with the numpy backend (other backends: same items up
    to float ties).  ``k`` must be at most (number of valid items − 1).
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
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    U = _unit_rows(X, valid)
    xp = np
    if be.name == "cupy":
        import cupy as xp  # noqa: N813 - array-module alias

        U = xp.asarray(U)
    idx = np.full((n, k), -1, dtype=np.int32)
    sims = np.full((n, k), np.nan, dtype=np.float32)
    block = max(1, min(int(block), max(1, 2**26 // max(nv, 1))))  # cap a score block at ~256 MB
    for s in range(0, nv, block):
        e = min(s + block, nv)
        S = U[s:e] @ U.T  # (b, nv) cosine among valid items
        S[xp.arange(e - s), xp.arange(s, e)] = -xp.inf  # exclude the item itself, by index
        top, val = be.topk(S, k)
        idx[vidx[s:e]] = vidx[np.asarray(top)]
        sims[vidx[s:e]] = np.minimum(np.asarray(val, dtype=np.float32), 1.0)
    return idx, sims


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
