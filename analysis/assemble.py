"""The last stage: a run's tables, vectors, summary and manifest from the pipeline's state.

The column layout of every table is documented in :mod:`analysis.runstore`; system names, roles
and labels come from :mod:`analysis.systems` and are written into the manifest, which is the
seam between the engine and the dashboard.
"""
from __future__ import annotations

from datetime import datetime, timezone
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sps

from .complementarity import oracle_excess, summarise
from .fusion import headroom
from .metrics import hits_matrix
from .split import activity_buckets, pop_buckets
from .systems import RANKED, manifest_systems

if TYPE_CHECKING:
    from .stages import State

VERSIONED_PACKAGES = ["numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "torch", "implicit", "umap-learn", "faiss-cpu",
                      "sentence-transformers", "semcollab"]


def assemble(s: "State") -> None:
    """Fill ``s.tables`` (every run table), ``s.results["vectors"]`` and ``s.results["manifest"]``."""
    from .stages import union_gain

    s.results["comp_summary"] = summarise(s.results["comp"])
    s.results["union_gain"] = union_gain(s.results["comp"], s.results["comp_summary"], s.cfg.n_boot, s.cfg.seed)
    s.results["oracle_excess"] = oracle_excess(s.results["comp"], s.results["ctrl"], "ndcg", s.cfg.n_boot, s.cfg.seed)
    s.tables.update(items=items_table(s), users=users_table(s), topk=topk_table(s),
                    interactions=interactions_table(s.split, s.users), tuning=pd.concat(s.tuning, ignore_index=True))
    sem = s.models["semantic"]
    s.results["vectors"] = {
        "semantic_items": s.sem_vecs, "semantic_rec_items": np.asarray(sem.item_vecs, np.float32),
        "semantic_rec_users": np.asarray(sem.user_vecs, np.float32), "collab_items": s.results["col_items"],
        "collab_users": np.asarray(s.models["collab"].user_vecs, np.float32)}
    s.results["manifest"] = manifest(s)


def _deciles(pop: np.ndarray) -> np.ndarray:
    """Popularity deciles 1..10 (10 = most popular) by rank, ties broken by item index."""
    r = np.argsort(np.argsort(pop, kind="stable"), kind="stable")
    return (r * 10 // len(pop) + 1).astype(np.int8)


def item_hit_counts(top_sem: np.ndarray, top_col: np.ndarray, target, users: np.ndarray) -> dict[str, np.ndarray]:
    """Per item: in how many users' test sets it was a hit of both views, of only one."""
    n_u, n_i = target.shape

    def hit_matrix(top):
        h = hits_matrix(top, target, users)
        rows = np.repeat(users, top.shape[1])[h.ravel()]
        return sps.csr_matrix((np.ones(len(rows)), (rows, top.ravel()[h.ravel()])), shape=(n_u, n_i))

    hs, hc = hit_matrix(top_sem), hit_matrix(top_col)
    count = lambda m: np.asarray(m.sum(0)).ravel().astype(np.int64)  # noqa: E731
    shared = count(hs.multiply(hc))
    return {"shared": shared, "sem": count(hs) - shared, "col": count(hc) - shared}


def items_table(s: "State") -> pd.DataFrame:
    from .models.encoder import item_texts

    sp_, items, r = s.split, s.ds.items, s.results
    n_i = sp_.n_items
    pop = np.asarray(sp_.train.sum(0)).ravel()
    hits = item_hit_counts(s.tops["test"][s.compared_semantic], s.tops["test"]["collab"], sp_.test, s.users)
    n_test = np.asarray(sp_.test[s.users].sum(0)).ravel().astype(np.int64)  # the evaluated users' test pairs
    energy = r["energy"]
    residuals = r["probes"]["residuals"].set_index("item_idx").reindex(np.arange(n_i))
    agree = r["agree"]
    return pd.DataFrame({
        "item_idx": np.arange(n_i), "item_id": s.ix.item_ids.astype(str),
        "title": items["title"].to_numpy(), "year": items["year"].to_numpy(),
        "genres": items["genres"].to_numpy(), "description": items["description"].to_numpy(),
        "text": item_texts(items), "popularity": pop.astype(np.int64),
        "pop_decile": _deciles(pop), "pop_bucket": pop_buckets(pop, sp_.cold_items), "cold": sp_.cold_items,
        "held_out": sp_.held_out_items,
        "sem_x": r["sem_xy"][:, 0], "sem_y": r["sem_xy"][:, 1], "col_x": r["col_xy"][:, 0], "col_y": r["col_xy"][:, 1],
        "overlap": agree["overlap"].to_numpy(), "jaccard": agree["jaccard"].to_numpy(),
        "disagreement": agree["disagreement"].to_numpy(), "procrustes_cos": r["procrustes_cos"],
        "hits_shared": hits["shared"], "hits_sem_only": hits["sem"], "hits_col_only": hits["col"],
        "hits_missed_by_both": n_test - hits["shared"] - hits["sem"] - hits["col"], "n_test": n_test,
        **{c: energy[c].to_numpy() for c in ("sem_shared", "sem_private", "col_shared", "col_private")},
        "probe_residual": residuals["residual"].to_numpy(float),
        "probe_best": residuals["best_probe"].astype(object).where(residuals["best_probe"].notna(), "").astype(str)
        .to_numpy(),
    })


def users_table(s: "State") -> pd.DataFrame:
    sp_, u = s.split, s.users
    n_train = np.diff(sp_.train.indptr)
    df = pd.DataFrame({
        "user_idx": u, "user_id": s.ix.user_ids[u].astype(str), "n_train": n_train[u],
        "n_valid": np.diff(sp_.valid.indptr)[u], "n_test": np.diff(sp_.test.indptr)[u],
        "activity_bucket": activity_buckets(n_train)[u],
    })
    cols = {f"{name}_{key}": v for name, d in s.per_user["test"].items() for key, v in d.items()}
    comp = s.results["comp"].rename(columns={"hits_a": "hits_sem", "hits_b": "hits_col", "only_a": "only_sem",
                                             "only_b": "only_col"})
    cols.update({c: comp[c].to_numpy() for c in comp.columns})
    cols.update({f"control_{c}": s.results["ctrl"][c].to_numpy() for c in s.results["ctrl"].columns})
    return pd.concat([df, pd.DataFrame(cols, index=df.index)], axis=1)


def ranked(s: "State") -> list[str]:
    """The vocabulary's ranked systems this run computed (a system skipped at its size is absent)."""
    return [name for name in RANKED if name in s.tops["test"]]


def topk_table(s: "State") -> pd.DataFrame:
    K, users, target = s.K, s.users, s.split.test
    rows = []
    for name in ranked(s):
        t = s.tops["test"][name]
        rows.append(pd.DataFrame({
            "user_idx": np.repeat(users, K).astype(np.int32), "system": name,
            "rank": np.tile(np.arange(1, K + 1), len(users)).astype(np.int16),
            "item_idx": t.ravel(), "hit": hits_matrix(t, target, users).ravel()}))
    df = pd.concat(rows, ignore_index=True)
    return df[df.item_idx >= 0]


def interactions_table(sp_, users: np.ndarray) -> pd.DataFrame:
    """The evaluated ``users``' interactions by part (what the dashboard's user drill-downs show)."""
    rows = []
    for part, m in (("train", sp_.train), ("valid", sp_.valid), ("test", sp_.test), ("removed", sp_.removed)):
        coo = m[users].tocoo()
        rows.append(pd.DataFrame({"user_idx": users[coo.row].astype(np.int32), "item_idx": coo.col.astype(np.int32),
                                  "part": part}))
    return pd.concat(rows, ignore_index=True)


def _estimate(metrics: pd.DataFrame, system: str, metric: str, k: int, part: str = "test",
              segment: str = "all") -> dict[str, float]:
    r = metrics[(metrics.system == system) & (metrics.metric == metric) & (metrics.k == k)
                & (metrics.part == part) & (metrics.segment == segment)].iloc[0]
    return {"mean": float(r["mean"]), "lo": float(r["lo"]), "hi": float(r["hi"]), "n_users": int(r["n_users"])}


def summary(s: "State") -> dict[str, Any]:
    """The manifest's summary: headline estimates at K under ``metrics`` {system: {metric: estimate}}
    (read them with :class:`analysis.summary.RunSummary`), the segments, oracles and diagnostics."""
    K, m, r = s.K, s.tables["metrics"], s.results
    oracles = ("oracle_select", "oracle_union", "control_oracle_select", "control_oracle_union")
    est = {sys_: {metric: _estimate(m, sys_, metric, K) for metric in ("recall", "ndcg")}
           for sys_ in (*ranked(s), *oracles)}
    best = r["best_single"]
    sim = s.tables["similarity"]
    return {
        "K": K, "metrics": est, "best_single": best,
        "fusion_headroom_ndcg": headroom(est["fusion"]["ndcg"]["mean"], est[best]["ndcg"]["mean"],
                                         est["oracle_select"]["ndcg"]["mean"]),
        "complementarity": r["comp_summary"], "control": summarise(r["ctrl"]),
        "union_oracle_gain": r["union_gain"], "oracle_excess_ndcg": r["oracle_excess"],
        "segments": {seg: {sys_: {metric: _estimate(m, sys_, metric, K, segment=seg) for metric in ("recall", "ndcg")}
                           for sys_ in d} for seg, d in s.per_segment.items()},
        "mean_overlap": float(np.nanmean(r["agree"]["overlap"])), "chance_overlap": r["chance"],
        "mean_jaccard": float(np.nanmean(r["agree"]["jaccard"])), "chance_jaccard": r["agree"].attrs["chance_jaccard"],
        "structure": r["structure"], "probes": r["probes"]["summary"], "fusion_models": r["fusion_models"],
        "similarity": {f"{x.statistic}/{x.variant}": {"raw": x.raw, "null_mean": x.null_mean, "p_value": x.p_value}
                       for x in sim.itertuples()},
    }


def _versions() -> dict[str, str]:
    out = {}
    for p in VERSIONED_PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def evaluation_record(s: "State") -> dict[str, Any]:
    """Which users the run evaluated: all of them, or a seeded sample (metrics and intervals describe it)."""
    n, m = s.split.n_users, len(s.users)
    return {"n_users": n, "n_evaluated": m, "sampled": m < n, "max_users": s.cfg.eval_users, "seed": s.cfg.seed,
            "rule": "every user" if m == n else f"seeded uniform sample of {m:,} of {n:,} users; training used every user"}


def manifest(s: "State") -> dict[str, Any]:
    from .stages import curve_users

    cfg, ds, sp_, r, K = s.cfg, s.ds, s.split, s.results, s.K
    f = s.fusion
    out = {
        "config": cfg.to_dict(), "config_hash": cfg.key(), "regime": sp_.regime,
        "dataset": {"name": ds.name, "source": ds.source, "checksum": r["checksum"], "n_users": sp_.n_users,
                    "n_items": sp_.n_items,
                    "n_interactions": int(sp_.train.nnz + sp_.valid.nnz + sp_.test.nnz + sp_.removed.nnz)},
        "evaluation": evaluation_record(s),
        "systems": manifest_systems(cfg.collab, s.compared_semantic, skipped=s.skipped),
        "skipped": dict(s.skipped),
        "semantic_source": s.sem_source,
        "compared": {"semantic": s.compared_semantic, "collaborative": "collab"},
        "K": K, "ks": list(cfg.ks), "k_neighbors": cfg.k_neighbors, "neighbor_depth": r["depth"],
        "chance_overlap": r["chance"], "chance_jaccard": r["agree"].attrs["chance_jaccard"],
        "neighbor_search": r["knn"], "maps": r.get("map_report"),
        "fusion": {"alpha_valid": f["alpha"], "metric": f"ndcg@{K}", "method": f["method"],
                   "alphas": f["alphas"].tolist(),
                   "valid_best": {m_: {"value": v, "alpha": a_} for m_, (v, a_) in f["best_valid"].items()},
                   "rrf_k": cfg.rrf_k, "curve_users": int(len(curve_users(s)))},
        "tuning": s.budgets, "summary": summary(s), "backend": s.be.name, "ranking_device": s.device or "host",
        "executor": s.ex.describe(),
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if ds.planted is not None:
        out["planted"] = {"config": ds.planted["config"], "d_shared": ds.planted["d_shared"],
                          "sampler": ds.planted.get("sampler")}
    return out
