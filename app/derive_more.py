"""Per-run frames of the Fusion, Users and Regimes pages: pure pandas / numpy, no Streamlit.

Same contract as :mod:`app.derive` (``fn(run, *args)``, results cached per process by
:meth:`app.common.Ctx.derived` and therefore read-only). Definitions follow
/work/shared/DIAGNOSTICS.md, section "Fusion":

* the fusion-gain curve M(α) is the run's ``fusion`` table (α = weight of the semantic view,
  α = 1 the semantic view alone, α = 0 the collaborative view alone);
* reference lines come from the ``metrics`` table: the single views, RRF and the fusion at the
  validation α on each part; on test also the oracle bounds ``oracle_select`` / ``oracle_union``
  and the control floor ``control_oracle_select`` (most-popular + collaborative). The engine
  stores the oracles for Recall / NDCG at the run's K only; for another cut-off or the hit rate
  they are recomputed from the ``users`` / ``topk`` tables with the same definitions;
* headroom realised = (M_f − M_best) / (M_oracle − M_best), M_best the better compared view on
  test, M_oracle the per-user selection oracle;
* the Users page re-scores one user from the saved vectors and fuses with
  :func:`analysis.fusion.fuse_topk`, exactly as the engine did (seen = train + valid at test time).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from analysis.errors import RunError
from analysis.fusion import fuse_topk, headroom
from analysis.models.base import EmbeddingRecommender
from analysis.runstore import Run

from .derive import ROLE_LABELS, compared_systems, oracle_per_user, require_columns, system_roles

METRIC_LABELS = {"recall": "Recall", "ndcg": "NDCG", "hit": "Hit rate"}
METHOD_LABELS = {"score": "plain score fusion", "cold_aware": "cold-aware score fusion", "rrf": "RRF"}


def metric_label(metric: str, k: int) -> str:
    return f"{METRIC_LABELS.get(metric, metric)}@{k}"


def system_labels(run: Run) -> dict[str, str]:
    """system name -> readable label (roles of :func:`app.derive.system_roles`, fusion, RRF, oracles)."""
    out = {name: ROLE_LABELS[role] for role, name in system_roles(run).items()}
    alpha = (run.manifest.get("fusion") or {}).get("alpha_valid")
    out.setdefault("fusion", "Score fusion" + (f" (α={alpha:.2f})" if alpha is not None else ""))
    out.setdefault("rrf", "RRF")
    out.setdefault("oracle_select", "Oracle: per-user view selection")
    out.setdefault("oracle_union", "Oracle: union of hits")
    out.setdefault("control_oracle_select", "Control floor: most-popular + collaborative, per-user selection")
    out.setdefault("control_oracle_union", "Control floor: most-popular + collaborative, union")
    return out


# ----------------------------------------------------------------------------- fusion
def fusion_info(run: Run) -> dict[str, Any]:
    """alpha_valid, method (score / cold_aware), the validation metric, and the methods the table holds."""
    f = run.manifest.get("fusion") or {}
    tab = run.table("fusion")
    methods = [m for m in ("cold_aware", "score") if m in set(tab["method"].astype(str))]
    method = str(f.get("method") or (methods[0] if methods else "score"))
    return {"alpha_valid": float(f["alpha_valid"]) if f.get("alpha_valid") is not None else math.nan,
            "method": method, "metric": str(f.get("metric", "")), "methods": methods,
            "has_rrf": bool((tab["method"].astype(str) == "rrf").any())}


def fusion_curves(run: Run, metric: str, k: int) -> pd.DataFrame:
    """The fusion-gain curves of ``metric@k``: part, method, segment_type, segment, alpha, value, n."""
    tab = run.table("fusion")
    require_columns(tab, ["part", "method", "alpha", "metric", "k", "value", "segment_type", "segment"], "fusion", run)
    d = tab[(tab["metric"].astype(str) == metric) & (tab["k"].astype(int) == int(k))
            & tab["method"].astype(str).isin(["score", "cold_aware"])].copy()
    for c in ("part", "method", "segment_type", "segment"):
        d[c] = d[c].astype(str)
    if "n" not in d.columns:
        d["n"] = np.nan
    return d.sort_values(["part", "method", "segment_type", "segment", "alpha"]).reset_index(drop=True)[
        ["part", "method", "segment_type", "segment", "alpha", "value", "n"]]


def _users_mean(run: Run, cols: list[str], how: str) -> float:
    users = run.users
    require_columns(users, cols, "users", run)
    v = users[cols].to_numpy(float)
    with np.errstate(all="ignore"):
        x = np.fmax.reduce(v, axis=1) if how == "max" else v[:, 0]
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


def _oracle_value(run: Run, oracle: str, a: str, b: str, metric: str, k: int) -> float:
    """Oracle ``select`` / ``union`` of systems a and b for metric@k over the test users (recomputed)."""
    if oracle == "select" or metric == "hit":  # a hit in either list = a hit of the union pool
        return _users_mean(run, [f"{a}_{metric}@{k}", f"{b}_{metric}@{k}"], "max")
    orc = oracle_per_user(run, int(k), a, b)
    return float(np.nanmean(orc[f"union_{metric}"].to_numpy(float)))


def fusion_references(run: Run, metric: str, k: int) -> pd.DataFrame:
    """Horizontal reference lines of the fusion-gain chart for ``metric@k``.

    Rows: part, key (semantic / collaborative / rrf / fusion / oracle_select / oracle_union /
    control_oracle_select), system, label, value, lo, hi, source ("metrics table" or
    "recomputed from the users table").
    """
    m = run.table("metrics")
    require_columns(m, ["system", "part", "segment", "metric", "k", "mean", "lo", "hi"], "metrics", run)
    m = m[(m["metric"].astype(str) == metric) & (m["k"].astype(int) == int(k)) & (m["segment"].astype(str) == "all")]
    sem, col = compared_systems(run)
    labels = system_labels(run)
    roles = system_roles(run)
    rows = []

    def add(part: str, key: str, system: str, fallback=None) -> None:
        r = m[(m["system"].astype(str) == system) & (m["part"].astype(str) == part)]
        if len(r):
            r = r.iloc[0]
            rows.append({"part": part, "key": key, "system": system, "label": labels.get(system, system),
                         "value": float(r["mean"]), "lo": float(r["lo"]), "hi": float(r["hi"]),
                         "source": "metrics table"})
        elif fallback is not None:
            v = fallback()
            if np.isfinite(v):
                rows.append({"part": part, "key": key, "system": system, "label": labels.get(system, system),
                             "value": v, "lo": math.nan, "hi": math.nan, "source": "recomputed from the users table"})

    for part in ("valid", "test"):
        add(part, "semantic", sem)
        add(part, "collaborative", col)
        add(part, "rrf", "rrf")
        add(part, "fusion", "fusion")
    add("test", "oracle_select", "oracle_select", lambda: _oracle_value(run, "select", sem, col, metric, k))
    add("test", "oracle_union", "oracle_union", lambda: _oracle_value(run, "union", sem, col, metric, k))
    if "mostpop" in roles:
        add("test", "control_oracle_select", "control_oracle_select",
            lambda: _oracle_value(run, "select", roles["mostpop"], col, metric, k))
    return pd.DataFrame(rows, columns=["part", "key", "system", "label", "value", "lo", "hi", "source"])


def union_oracle_gain(run: Run) -> dict[str, Any]:
    """The engine's union-pool NDCG gain at K (manifest summary): raw, and from the other view only
    (against the better view's own hits placed first), with its paired-bootstrap interval."""
    g = (run.manifest.get("summary") or {}).get("union_oracle_gain")
    if not g:
        raise RunError(f"run {run.path} has no union-oracle gain: recompute it with --force")
    return dict(g)


def fusion_headroom(run: Run, metric: str, k: int) -> dict[str, Any]:
    """Headroom the fusion at the validation α realises on test for ``metric@k``.

    Returns fused, best_single (system name), best_value, oracle, headroom ((M_f − M_best) /
    (M_oracle − M_best), NaN without headroom), and the summary's stored ``fusion_headroom_ndcg``.
    """
    ref = fusion_references(run, metric, k)
    t = ref[ref["part"] == "test"].set_index("key")
    sem, col = compared_systems(run)
    singles = {s: float(t.loc[key, "value"]) for key, s in (("semantic", sem), ("collaborative", col)) if key in t.index}
    best = max(singles, key=singles.get) if singles else None
    fused = float(t.loc["fusion", "value"]) if "fusion" in t.index else math.nan
    oracle = float(t.loc["oracle_select", "value"]) if "oracle_select" in t.index else math.nan
    best_v = singles[best] if best else math.nan
    stored = (run.manifest.get("summary") or {}).get("fusion_headroom_ndcg")
    return {"fused": fused, "best_single": best, "best_value": best_v, "oracle": oracle,
            "headroom": headroom(fused, best_v, oracle) if best else math.nan,
            "stored_ndcg": float(stored) if stored is not None else math.nan,
            "stored_best_single": (run.manifest.get("summary") or {}).get("best_single")}


def fusion_differences(run: Run, k: int) -> pd.DataFrame:
    """The paired-bootstrap differences at cut-off k, readable.

    Columns: comparison ("A − B"), metric (e.g. "NDCG@20"), difference, lo, hi, p_value, n_users,
    significant (the 95 % interval excludes 0), fusion_vs_best (the row compares the fusion with
    the best single system chosen on validation), system_a, system_b.
    """
    d = run.table("differences")
    require_columns(d, ["system_a", "system_b", "part", "metric", "k", "diff", "lo", "hi", "p_value"], "differences", run)
    d = d[(d["part"].astype(str) == "test") & (d["k"].astype(int) == int(k))].copy()
    labels = system_labels(run)
    best = (run.manifest.get("summary") or {}).get("best_single")
    out = pd.DataFrame({
        "comparison": [f"{labels.get(a, a)} − {labels.get(b, b)}" for a, b in zip(d["system_a"], d["system_b"])],
        "metric": [metric_label(str(mm), int(kk)) for mm, kk in zip(d["metric"], d["k"])],
        "difference": d["diff"].to_numpy(float), "lo": d["lo"].to_numpy(float), "hi": d["hi"].to_numpy(float),
        "p_value": d["p_value"].to_numpy(float),
        "n_users": d["n_users"].to_numpy() if "n_users" in d else np.nan,
        "significant": ((d["lo"] > 0) | (d["hi"] < 0)).to_numpy(),
        "fusion_vs_best": ((d["system_a"].astype(str) == "fusion") & (d["system_b"].astype(str) == str(best))).to_numpy(),
        "system_a": d["system_a"].astype(str).to_numpy(), "system_b": d["system_b"].astype(str).to_numpy(),
    })
    order = np.lexsort((out["metric"].to_numpy(), out["comparison"].to_numpy(), ~out["fusion_vs_best"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


# ----------------------------------------------------------------------------- users
def _csr(run: Run, parts: tuple[str, ...]) -> sp.csr_matrix:
    it = run.table("interactions")
    require_columns(it, ["user_idx", "item_idx", "part"], "interactions", run)
    d = it[it["part"].astype(str).isin(parts)]
    shape = (int(run.users["user_idx"].max()) + 1, len(run.items))
    m = sp.csr_matrix((np.ones(len(d), np.float32), (d["user_idx"].to_numpy(), d["item_idx"].to_numpy())), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


_MODELS: dict[tuple[str, int], dict[str, Any]] = {}


def _stamp(run: Run) -> int:
    try:
        return (Path(run.path) / "manifest.json").stat().st_mtime_ns
    except OSError:
        return 0


def user_models(run: Run) -> dict[str, Any]:
    """The compared views as :class:`EmbeddingRecommender` objects rebuilt from the saved vectors.

    ``semantic``: the trained recommender (semantic_rec_users / semantic_rec_items), or — when the
    run compares the zero-shot profile (``compared.semantic == "semantic_zs"``) — users as the
    normalised mean of the unit-normalised ``semantic_items`` of their training items (cosine);
    ``collaborative``: collab_users / collab_items, NaN rows (cold items) unscorable (-inf).
    Also ``seen`` (train + valid + the pairs a sparsity regime removed: the test-time mask of
    :meth:`analysis.split.Split.seen_for`), ``sem`` / ``col`` (system names).
    """
    sem, col = compared_systems(run)
    train = _csr(run, ("train",))
    if str((run.manifest.get("compared") or {}).get("semantic")) == "semantic_zs" or sem == "semantic_zs":
        from analysis.models.semantic import ZeroShotSemantic

        sem_model = ZeroShotSemantic(np.asarray(run.vectors("semantic_items"), np.float32), train, name=sem)
    else:
        U = np.asarray(run.vectors("semantic_rec_users"), np.float32)
        V = np.asarray(run.vectors("semantic_rec_items"), np.float32)
        sem_model = EmbeddingRecommender(sem, U, V, np.isfinite(V).all(axis=1))
    CU = np.asarray(run.vectors("collab_users"), np.float32)
    CV = np.asarray(run.vectors("collab_items"), np.float32)
    ok = np.isfinite(CV).all(axis=1)
    col_model = EmbeddingRecommender(col, np.nan_to_num(CU), np.where(ok[:, None], CV, 0).astype(np.float32), ok)
    if CV.shape[0] != len(run.items) or sem_model.item_vecs.shape[0] != len(run.items):
        raise RunError(f"run {run.path}: saved vectors do not match the {len(run.items)} items; recompute it with --force")
    seen = (train + _csr(run, ("valid", "removed"))).tocsr()
    seen.data[:] = 1.0
    return {"semantic": sem_model, "collaborative": col_model, "seen": seen, "sem": sem, "col": col}


def _models(run: Run) -> dict[str, Any]:
    """:func:`user_models` memoised per run folder and manifest time (a few runs at most)."""
    key = (str(Path(run.path).resolve()), _stamp(run))
    if key not in _MODELS:
        if len(_MODELS) >= 4:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = user_models(run)
    return _MODELS[key]


def fused_list(run: Run, user_idx: int, alpha: float, K: int, cold_aware: bool) -> np.ndarray:
    """item_idx of the top-K score fusion at ``alpha`` for one user, computed now from the vectors."""
    m = _models(run)
    top = fuse_topk(m["semantic"], m["collaborative"], np.array([int(user_idx)]), m["seen"], int(K), float(alpha),
                    cold_aware=bool(cold_aware))[0]
    return top[top >= 0]


def unique_hit_users(run: Run) -> np.ndarray:
    """user_idx of the users with at least one semantic-only or collaborative-only test hit (sorted)."""
    u = run.users
    require_columns(u, ["user_idx", "only_sem", "only_col"], "users", run)
    return np.sort(u.loc[(u["only_sem"] > 0) | (u["only_col"] > 0), "user_idx"].to_numpy(np.int64))


def user_history(run: Run, user_idx: int) -> dict[str, pd.DataFrame]:
    """{"train": ..., "valid": ..., "test": ...}: the user's items (item_idx, item_id, title, genres,
    popularity, pop_bucket, cold) per part."""
    it = run.table("interactions")
    d = it[it["user_idx"] == int(user_idx)]
    meta = run.items.set_index("item_idx")[["item_id", "title", "genres", "popularity", "pop_bucket", "cold"]]
    out = {}
    for part in ("train", "valid", "test"):
        idx = np.unique(d.loc[d["part"].astype(str) == part, "item_idx"].to_numpy(np.int64))
        out[part] = meta.reindex(idx).reset_index()
    return out


def saved_list(run: Run, user_idx: int, system: str, K: int) -> np.ndarray:
    """item_idx of the saved top-K of ``system`` for one user (test part), in rank order."""
    tk = run.table("topk")
    d = tk[(tk["user_idx"] == int(user_idx)) & (tk["system"].astype(str) == system) & (tk["rank"] <= int(K))]
    return d.sort_values("rank")["item_idx"].to_numpy(np.int64)


def list_frame(run: Run, user_idx: int, top: tuple[int, ...], others: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """A top-K list (item_idx in rank order) as a table: rank, title, item_id, hit (a test item of the user), popularity, cold,
    and one ``in <name>`` column per list in ``others``."""
    meta = run.items.set_index("item_idx")
    items = np.asarray(top, np.int64)
    it = run.table("interactions")
    test = set(it.loc[(it["user_idx"] == int(user_idx)) & (it["part"].astype(str) == "test"), "item_idx"].tolist())
    df = pd.DataFrame({"rank": np.arange(1, len(items) + 1), "item_idx": items,
                       "title": meta["title"].reindex(items).astype(str).to_numpy(),
                       "item_id": meta["item_id"].reindex(items).astype(str).to_numpy(),
                       "hit": [i in test for i in items.tolist()],
                       "popularity": meta["popularity"].reindex(items).to_numpy(),
                       "cold": meta["cold"].reindex(items).astype(bool).to_numpy()})
    for name, other in (others or {}).items():
        df[f"in {name}"] = np.isin(items, np.asarray(other))
    return df


# ----------------------------------------------------------------------------- regimes
def sweep_folder_of(run: Run) -> str | None:
    """The sweep folder the run belongs to (its parent holds ``sweep.parquet``), or None."""
    parent = Path(run.path).resolve().parent
    return str(parent) if (parent / "sweep.parquet").is_file() else None


def _regime_order(df: pd.DataFrame) -> pd.DataFrame:
    cold = df["cold_item_share"].astype(float) > 0
    df = df.assign(_cold=cold, _keep=-df["keep_fraction"].astype(float), _share=df["cold_item_share"].astype(float))
    return df.sort_values(["_cold", "_keep", "_share"]).drop(columns=["_cold", "_keep", "_share"])


def sweep_table(run: Run, folder: str, stamp: int = 0) -> pd.DataFrame:
    """The sweep's comparison table (``folder/sweep.parquet``), regimes ordered (sparsity by
    descending kept fraction, then cold-start), with ``is_cold`` and ``x_label``. The warm_* / cold_*
    Recall@K columns are the engine's segment rankings (candidates = the segment's items, see
    :mod:`analysis.split`). ``stamp`` (the file's mtime) only keys the cache."""
    f = Path(folder) / "sweep.parquet"
    if not f.is_file():
        raise RunError(f"{folder} holds no sweep.parquet; make one with "
                       "`semcollab sweep --dataset ml-100k --out runs/ml-100k-sweep` (or `make sweep`)")
    df = pd.read_parquet(f)
    need = ["regime", "keep_fraction", "cold_item_share", "K", "semantic_recall", "collab_recall", "fusion_recall",
            "oracle_gain_ndcg", "control_oracle_gain_ndcg", "fusion_gain_ndcg", "semantic_unique_share",
            "collab_unique_share", "cold_test_share", "cold_semantic_recall", "cold_collab_recall",
            "cold_fusion_recall"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise RunError(f"{f} lacks column(s) {missing}; recompute the sweep with `semcollab sweep ... --force`")
    df = _regime_order(df).reset_index(drop=True)
    df["is_cold"] = df["cold_item_share"].astype(float) > 0
    df["x_label"] = [f"{c:.0%} cold items" if cold else f"{k:.0%} kept"
                     for k, c, cold in zip(df["keep_fraction"].astype(float), df["cold_item_share"].astype(float),
                                           df["is_cold"])]
    return df


def sweep_folders(root: str) -> list[str]:
    """Folders under ``root`` (itself, children, grandchildren) that hold a ``sweep.parquet``."""
    r = Path(root)
    if not r.exists():
        return []
    cands = [r, *r.glob("*"), *r.glob("*/*")]
    return sorted(str(p) for p in cands if p.is_dir() and (p / "sweep.parquet").is_file())


# ----------------------------------------------------------------------------- structure & alignment
# Frames of the Structure and Alignment pages (DIAGNOSTICS.md: "Global similarity of the two
# spaces", "Shared + private structure", "Alignment probes"). The structure tables (similarity,
# cca, ajive, variance) are in every schema-2 run; the alignment tables (probes, fusion_models,
# fusion_model_differences) only in runs made once the pipeline computes them, so the pages ask
# :func:`has_probes` / :func:`has_fusion_models` first.

SIM_LABELS = {"cka": "linear CKA", "debiased_cka": "debiased CKA", "procrustes_distance": "Procrustes distance"}
SIM_VARIANTS = {"raw": "as is", "top_pc_removed": "top principal component removed"}
PROBE_REGIMES = {"in_distribution": "in-distribution (random held-out items)",
                 "shift_popularity": "shift: fit on popular, test on tail items",
                 "shift_time": "shift: fit on older, test on newer items"}
PROBE_SHORT = {"in_distribution": "in-distribution", "shift_popularity": "popularity shift", "shift_time": "time shift"}
PROBE_LABELS = {"ridge": "ridge (full rank)", "reduced_rank": "reduced-rank linear", "mlp": "one-hidden-layer MLP"}
FUSION_MODEL_LABELS = {"semantic": "Semantic view", "collaborative": "Collaborative view",
                       "best_single": "Best single view", "score_fusion": "Score fusion (validation α)",
                       "alignment": "Alignment baseline", "complementarity_fusion": "Complementarity-aware fusion"}
#: the comparisons the complementarity-aware fusion is judged by, in the order they are read
FUSION_MODEL_BASELINES = ("best_single", "score_fusion", "alignment")
NO_PROBES = ("This run has no alignment probes; recompute it with `semcollab run ... --force` "
             "(runs made before the probes stage lack the probes table).")


def _f3(x: float) -> str:
    """Three decimals without a negative zero."""
    t = f"{float(x):.3f}"
    return "0.000" if t == "-0.000" else t


def _p_text(p: float, n_perm: int | None) -> str:
    """'p = 0.005' plus, at the floor 1 / (1 + n_perm), that no shuffled pairing reached the value."""
    if not np.isfinite(p):
        return "p n/a"
    txt = f"p = {p:.2g}"
    if n_perm and p <= 1.0 / (1 + n_perm) + 1e-12:
        txt += f", the smallest {n_perm} shuffles can give"
    return txt


def similarity_frame(run: Run) -> pd.DataFrame:
    """The ``similarity`` table, readable: measure, variant labels and one plain sentence per row.

    Columns: statistic, variant, measure, variant_label, raw, null_mean, null_lo, null_hi, p_value,
    n_items, n_perm, higher_is_similar, beyond_null (raw outside the null's 95 % interval on the
    similar side and p ≤ 0.05), verdict, reading (one plain sentence).
    """
    t = run.table("similarity")
    require_columns(t, ["statistic", "variant", "raw", "null_mean", "null_lo", "null_hi", "p_value", "n_items",
                        "n_perm"], "similarity", run)
    rows = []
    for r in t.itertuples(index=False):
        stat, var = str(r.statistic), str(r.variant)
        up = stat != "procrustes_distance"
        raw, lo, hi, p = float(r.raw), float(r.null_lo), float(r.null_hi), float(r.p_value)
        beyond = bool((raw > hi if up else raw < lo) and p <= 0.05)
        name = SIM_LABELS.get(stat, stat) + ("" if var == "raw" else f" ({SIM_VARIANTS.get(var, var)})")
        if beyond:
            verdict = ("above" if up else "below") + " chance: the spaces share structure"
        else:
            verdict = "within chance: no evidence of shared structure"
        rows.append({
            "statistic": stat, "variant": var, "measure": SIM_LABELS.get(stat, stat),
            "variant_label": SIM_VARIANTS.get(var, var), "raw": raw, "null_mean": float(r.null_mean),
            "null_lo": lo, "null_hi": hi, "p_value": p, "n_items": int(r.n_items), "n_perm": int(r.n_perm),
            "higher_is_similar": up, "beyond_null": beyond, "verdict": verdict,
            "reading": (f"{name} = {_f3(raw)} against {_f3(r.null_mean)} with the item pairing shuffled "
                        f"(95 % of shuffles {_f3(lo)} to {_f3(hi)}; {_p_text(p, int(r.n_perm))}): {verdict}."),
        })
    order = {s: i for i, s in enumerate(("debiased_cka", "cka", "procrustes_distance"))}
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_o"] = [order.get(s, 9) * 2 + (v != "raw") for s, v in zip(out["statistic"], out["variant"])]
    return out.sort_values("_o").drop(columns="_o").reset_index(drop=True)


def cca_summary(run: Run) -> dict[str, Any]:
    """Held-out CCA: the ``cca`` table and its counts.

    shared_dim (leading components whose held-out correlation beats the null's 95th percentile,
    the engine's ``shared_dim_cca``), n_significant (all such components), top_heldout / top_train
    (component 1), n_train / n_test (items the CCA was fitted / scored on, from the summary).
    """
    t = run.table("cca")
    require_columns(t, ["component", "train_corr", "heldout_corr", "null_q95", "significant"], "cca", run)
    t = t.sort_values("component").reset_index(drop=True)
    sig = t["significant"].astype(bool).to_numpy()
    lead = int(np.argmin(sig)) if (~sig).any() else int(len(sig))
    st_ = ((run.manifest.get("summary") or {}).get("structure") or {})
    return {"table": t, "shared_dim": lead, "n_significant": int(sig.sum()),
            "top_heldout": float(t["heldout_corr"].iloc[0]) if len(t) else math.nan,
            "top_train": float(t["train_corr"].iloc[0]) if len(t) else math.nan,
            "n_train": st_.get("n_train"), "n_test": st_.get("n_test"), "n_perm": st_.get("n_perm"),
            "stored_shared_dim": st_.get("shared_dim_cca")}


def ajive_summary(run: Run) -> dict[str, Any]:
    """AJIVE: the ``ajive`` table, joint_rank (components marked joint), the two bounds, signal ranks."""
    t = run.table("ajive")
    require_columns(t, ["component", "sigma2", "wedin_bound", "random_bound", "joint"], "ajive", run)
    t = t.sort_values("component").reset_index(drop=True)
    st_ = ((run.manifest.get("summary") or {}).get("structure") or {})
    first = (lambda c: float(t[c].iloc[0]) if len(t) else float(st_.get(c, math.nan)))
    return {"table": t, "joint_rank": int(t["joint"].astype(bool).sum()), "wedin_bound": first("wedin_bound"),
            "random_bound": first("random_bound"), "signal_rank_sem": st_.get("signal_rank_sem"),
            "signal_rank_col": st_.get("signal_rank_col"), "stored_joint_rank": st_.get("joint_rank_ajive")}


def variance_frame(run: Run) -> pd.DataFrame:
    """The ``variance`` table (view, shared, private, joint_rank), semantic first."""
    t = run.table("variance")
    require_columns(t, ["view", "shared", "private", "joint_rank"], "variance", run)
    t = t.copy()
    t["view"] = t["view"].astype(str)
    rank = {"semantic": 0, "collaborative": 1}
    return t.sort_values("view", key=lambda s: s.map(lambda v: rank.get(v, 2))).reset_index(drop=True)


def has_probes(run: Run) -> bool:
    """Whether the run holds the alignment-probe table (runs made before that stage do not)."""
    return (Path(run.path) / "probes.parquet").exists()


def has_fusion_models(run: Run) -> bool:
    return (Path(run.path) / "fusion_models.parquet").exists()


def probe_x(probe: str, capacity: str) -> str:
    """Category of a probe capacity on the capacity axis: 'rank r', 'full rank' (ridge and
    reduced-rank at full rank are the same map) or 'MLP w'."""
    cap = str(capacity)
    if probe in ("ridge", "reduced_rank"):
        return "full rank" if cap == "full" else f"rank {cap}"
    return f"MLP {cap}" if probe == "mlp" else f"{probe} {cap}"


def probe_name(best: str) -> str:
    """Readable name of a stored ``probe:capacity`` label (items.probe_best), e.g. 'reduced-rank linear, rank 16'."""
    probe, _, cap = str(best).partition(":")
    if not probe:
        return "the best probe"
    return f"{PROBE_LABELS.get(probe, probe)}, {probe_x(probe, cap)}" if cap else PROBE_LABELS.get(probe, probe)


def _cap_num(cap: str) -> float:
    try:
        return float(cap)
    except ValueError:
        return math.inf


def probe_curves(run: Run) -> pd.DataFrame:
    """The ``probes`` table with regime / probe labels and the capacity category ``x``.

    Rows are ordered regime, probe (ridge, reduced-rank, MLP), capacity ascending ("full" last);
    ``.attrs["x_order"]`` is the order of the capacity axis: reduced-rank ranks ascending, full
    rank, then the MLP widths ascending.
    """
    if not has_probes(run):
        raise RunError(f"run {run.path}: {NO_PROBES}")
    t = run.table("probes")
    require_columns(t, ["regime", "probe", "capacity", "r2", "mean_cos", "overlap", "recall", "ndcg",
                        "ceiling_recall", "ceiling_ndcg", "n_train", "n_eval"], "probes", run)
    d = t.copy()
    for c in ("regime", "probe", "capacity"):
        d[c] = d[c].astype(str)
    d["x"] = [probe_x(p, c) for p, c in zip(d["probe"], d["capacity"])]
    d["regime_label"] = d["regime"].map(lambda r: PROBE_REGIMES.get(r, r))
    d["probe_label"] = d["probe"].map(lambda p: PROBE_LABELS.get(p, p))
    reg = {r: i for i, r in enumerate(PROBE_REGIMES)}
    prb = {p: i for i, p in enumerate(PROBE_LABELS)}
    d["_r"] = d["regime"].map(lambda r: reg.get(r, 9))
    d["_p"] = d["probe"].map(lambda p: prb.get(p, 9))
    d["_c"] = d["capacity"].map(_cap_num)
    d = d.sort_values(["_r", "regime", "_p", "_c"]).drop(columns=["_r", "_p", "_c"]).reset_index(drop=True)
    lin = d[d["probe"].isin(["ridge", "reduced_rank"])]
    order = sorted(set(lin["x"]), key=lambda x: math.inf if x == "full rank" else _cap_num(x.split(" ", 1)[1]))
    rest = d[~d["probe"].isin(["ridge", "reduced_rank"])]
    order += list(dict.fromkeys(rest.sort_values(["probe"], key=lambda s: s.map(lambda p: prb.get(p, 9)),
                                                 kind="stable")["x"]))
    d.attrs["x_order"] = order
    return d


def probe_best(run: Run) -> dict[str, dict[str, Any]]:
    """Per regime, the best map: highest validation R² (``valid_r2``) when the table has it — the
    honest choice, test values are never used to pick — else highest held-out R² (said so in
    ``selected_by``). {regime: {probe, capacity, x, r2, mean_cos, overlap, recall, ceiling_recall,
    selected_by, n_eval}}."""
    d = probe_curves(run)
    by = "valid_r2" if "valid_r2" in d.columns and d["valid_r2"].notna().any() else "r2"
    out = {}
    for regime, g in d.groupby("regime", sort=False):
        v = g[by].to_numpy(float)
        if not np.isfinite(v).any():
            continue
        r = g.iloc[int(np.flatnonzero(v >= np.nanmax(v) - 1e-9)[0])]  # ties -> the simpler (earlier) probe
        out[str(regime)] = {"probe": r["probe"], "capacity": r["capacity"], "x": r["x"], "r2": float(r["r2"]),
                            "mean_cos": float(r["mean_cos"]), "overlap": float(r["overlap"]),
                            "recall": float(r["recall"]), "ceiling_recall": float(r["ceiling_recall"]),
                            "n_eval": int(r["n_eval"]),
                            "selected_by": "validation R²" if by == "valid_r2" else "held-out R² (no validation R² stored)"}
    return out


def probe_worst_items(run: Run, n: int = 20, items: tuple[int, ...] | None = None) -> pd.DataFrame:
    """The ``n`` items the best probe explains worst: highest ``probe_residual`` (cold items have
    none). Columns item_idx, item_id, title, probe_residual, probe_best, popularity, pop_bucket,
    col_private, sem_private, disagreement (where the items table has them)."""
    it = run.items
    require_columns(it, ["item_idx", "item_id", "title", "probe_residual"], "items", run)
    d = it[it["probe_residual"].notna()]
    if items is not None:
        d = d[d["item_idx"].isin(items)]
    d = d.sort_values(["probe_residual", "item_idx"], ascending=[False, True]).head(int(n))
    cols = ["item_idx", "item_id", "title", "probe_residual", "probe_best", "popularity", "pop_bucket", "col_private",
            "sem_private", "disagreement"]
    out = d[[c for c in cols if c in d.columns]].reset_index(drop=True)
    out["item_id"] = out["item_id"].astype(str)
    return out


def fusion_model_verdicts(diffs: pd.DataFrame, metric: str, k: int, labels: dict[str, str] | None = None,
                          model: str = "complementarity_fusion") -> list[dict[str, Any]]:
    """Read the paired differences of ``model`` against each baseline at ``metric@k``.

    One dict per baseline present (order of :data:`FUSION_MODEL_BASELINES`): baseline, label, diff,
    lo, hi, p_value and verdict: "better" (95 % interval above 0), "worse" (below 0), "identical"
    (difference and interval exactly 0: the same rankings) or "no clear difference" (interval
    covers 0), with a plain sentence ``text``.
    """
    labels = {**FUSION_MODEL_LABELS, **(labels or {})}
    d = diffs[(diffs["system_a"].astype(str) == model) & (diffs["metric"].astype(str) == metric)
              & (diffs["k"].astype(int) == int(k))]
    out = []
    for base in FUSION_MODEL_BASELINES:
        r = d[d["system_b"].astype(str) == base]
        if r.empty:
            continue
        r = r.iloc[0]
        diff, lo, hi, p = float(r["diff"]), float(r["lo"]), float(r["hi"]), float(r["p_value"])
        if diff == 0 and lo == 0 and hi == 0:
            verdict, word = "identical", "ranks exactly like"
        elif lo > 0:
            verdict, word = "better", "beats"
        elif hi < 0:
            verdict, word = "worse", "is worse than"
        else:
            verdict, word = "no clear difference", "is not distinguishable from"
        name = metric_label(metric, k)
        lab = labels.get(base, base)
        tail = "" if verdict == "identical" else f" (difference {diff:+.4f}, 95 % interval {lo:+.4f} to {hi:+.4f}, p = {p:.2g})"
        out.append({"baseline": base, "label": lab, "diff": diff, "lo": lo, "hi": hi, "p_value": p, "verdict": verdict,
                    "text": f"On {name} the complementarity-aware fusion {word} the {lab[0].lower() + lab[1:]}{tail}."})
    return out


def fusion_model_results(run: Run) -> dict[str, Any]:
    """The complementarity-aware fusion against its baselines (tables ``fusion_models`` and
    ``fusion_model_differences``): table (system, label, metric, k, mean, lo, hi), differences
    (readable, with ``significant``), best_single (the view the best-single row equals, when
    found), verdicts {metric: list of :func:`fusion_model_verdicts`} at the run's K."""
    if not has_fusion_models(run):
        raise RunError(f"run {run.path}: no fusion_models table; recompute it with `semcollab run ... --force`")
    t = run.table("fusion_models")
    require_columns(t, ["system", "metric", "k", "mean", "lo", "hi"], "fusion_models", run)
    t = t.copy()
    t["system"] = t["system"].astype(str)
    best = None
    if "best_single" in set(t["system"]):
        key = ["metric", "k"]
        b = t[t["system"] == "best_single"].set_index(key)["mean"]
        for view in ("collaborative", "semantic"):
            v = t[t["system"] == view].set_index(key)["mean"]
            if len(v) and v.reindex(b.index).to_numpy().tolist() == b.to_numpy().tolist():
                best = view
                break
    labels = dict(FUSION_MODEL_LABELS)
    if best:
        labels["best_single"] = f"Best single view ({FUSION_MODEL_LABELS[best].split()[0].lower()})"
    t["label"] = t["system"].map(lambda s: labels.get(s, s))
    sys_rank = {s: i for i, s in enumerate(FUSION_MODEL_LABELS)}
    t = t.sort_values(["metric", "k", "system"], key=lambda s: s.map(lambda v: sys_rank.get(v, 99))
                      if s.name == "system" else s).reset_index(drop=True)
    K = int(run.manifest.get("K", t["k"].max()))
    diffs = pd.DataFrame(columns=["system_a", "system_b", "metric", "k", "diff", "lo", "hi", "p_value"])
    if (Path(run.path) / "fusion_model_differences.parquet").exists():
        diffs = run.table("fusion_model_differences")
        require_columns(diffs, ["system_a", "system_b", "metric", "k", "diff", "lo", "hi", "p_value"],
                        "fusion_model_differences", run)
    readable = pd.DataFrame({
        "comparison": [f"{labels.get(str(a), a)} − {labels.get(str(b), b)}" for a, b in zip(diffs["system_a"], diffs["system_b"])],
        "metric": [metric_label(str(m), int(k)) for m, k in zip(diffs["metric"], diffs["k"])],
        "difference": diffs["diff"].to_numpy(float), "lo": diffs["lo"].to_numpy(float), "hi": diffs["hi"].to_numpy(float),
        "p_value": diffs["p_value"].to_numpy(float),
        "significant": ((diffs["lo"] > 0) | (diffs["hi"] < 0)).to_numpy(bool),
        "system_a": diffs["system_a"].astype(str).to_numpy(), "system_b": diffs["system_b"].astype(str).to_numpy()})
    verdicts = {m: fusion_model_verdicts(diffs, m, K, labels) for m in ("ndcg", "recall")} if len(diffs) else {}
    return {"table": t, "differences": readable, "best_single": best, "K": K, "verdicts": verdicts, "labels": labels,
            "summary": fusion_model_summary(verdicts, labels)}


def fusion_model_summary(verdicts: dict[str, list[dict[str, Any]]], labels: dict[str, str]) -> str:
    """One sentence over the metrics of :func:`fusion_model_verdicts`: per baseline, "better" /
    "worse" / "identical rankings" when every metric agrees, else "no clear difference"."""
    per: dict[str, set[str]] = {}
    for rows in verdicts.values():
        for v in rows:
            per.setdefault(v["baseline"], set()).add(v["verdict"])
    if not per:
        return ""
    words = {"better": "better on every metric", "worse": "worse on every metric",
             "identical": "identical rankings (no gain)"}
    parts = []
    for base in FUSION_MODEL_BASELINES:
        if base in per:
            vs = per[base]
            word = words[next(iter(vs))] if len(vs) == 1 and next(iter(vs)) in words else "no clear difference"
            lab = labels.get(base, base)
            parts.append(f"against the {lab[0].lower() + lab[1:]}: {word}")
    s = "; ".join(parts)
    return s[0].upper() + s[1:] + "."


def structure_lines(run: Run) -> list[str]:
    """Overview sentences: the shared dimension, the debiased CKA against its null and, when the
    run has probes, what the best semantic → collaborative map recovers in and out of distribution."""
    out = []
    cca, aj = cca_summary(run), ajive_summary(run)
    out.append(f"Shared dimension ≈ {cca['shared_dim']} (held-out CCA) / {aj['joint_rank']} (AJIVE): canonical "
               f"components that beat their permutation null on held-out items, and the AJIVE joint rank.")
    sim = similarity_frame(run)
    d = sim[(sim["statistic"] == "debiased_cka") & (sim["variant"] == "raw")]
    if len(d):
        r = d.iloc[0]
        out.append(f"Debiased CKA {_f3(r['raw'])} (null {_f3(r['null_mean'])}, p = {r['p_value']:.2g}).")
    if has_probes(run):
        best = probe_best(run)
        if "in_distribution" in best:
            shifts = [f"{best[r]['r2']:.2f} under {PROBE_SHORT[r]}" for r in ("shift_popularity", "shift_time")
                      if r in best]
            out.append(f"The best map from semantic to collaborative recovers R² = {best['in_distribution']['r2']:.2f} "
                       f"in-distribution" + (", " + ", ".join(shifts) if shifts else "") + " (held-out items).")
    return out
