"""Regime sweeps: one dataset, several data regimes, sibling runs and one comparison table.

Complementarity is not a constant of a dataset (DIAGNOSTICS.md "Regimes"): it grows as
collaborative data gets sparser and peaks on cold items. ``sweep`` writes
``OUT/keep-100``, ``OUT/keep-50``, ..., ``OUT/cold-20`` and ``OUT/sweep.parquet`` +
``OUT/sweep.md``. Every regime is tuned on its own validation data (the tuning cache
key includes the split), never with hyper-parameters carried over.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from .config import RunConfig
from .errors import RunError
from .runstore import Run
from .summary import RunSummary


def regime_name(keep: float, cold: float) -> str:
    return f"cold-{round(cold * 100)}" if cold > 0 else f"keep-{round(keep * 100)}"


def sweep_row(name: str, r: Run) -> dict:
    """The comparison-table row of one run.

    Two kinds of gain, each with one definition: the *oracle* gains describe a pair of views and
    are read against the better view of that pair (:func:`analysis.complementarity.summarise`,
    the same for the compared pair and the control pair); the *fusion* gain is a system choice and
    is read against the best single view chosen on validation (the run's ``best_single``).
    """
    s = RunSummary(r.manifest)
    raw, regime, K = s.raw, r.manifest["regime"], s.K
    comp, ctrl = raw["complementarity"], raw["control"]
    return {
        "regime": name,
        "keep_fraction": regime["keep_fraction"],
        "cold_item_share": regime["cold_item_share"],
        "n_cold_items": regime["n_cold_items"],
        "cold_test_share": regime["cold_test_share"],
        "K": K,
        "best_single": s.best_single,
        **{f"{sys_}_recall": s.mean(sys_, "recall") if s.has(sys_) else float("nan")
           for sys_ in ("semantic", "semantic_zs", "collab", "ease", "fusion")},
        **{f"{sys_}_ndcg": s.mean(sys_, "ndcg") for sys_ in ("semantic", "collab", "fusion")},
        "oracle_ndcg": s.mean("oracle_select"),
        "oracle_gain_ndcg": comp["oracle_select_ndcg_gain"],
        "control_oracle_gain_ndcg": ctrl["oracle_select_ndcg_gain"],
        **_excess_columns(raw.get("oracle_excess_ndcg")),
        "fusion_gain_ndcg": s.gain_over_best("fusion"),
        "union_gain_ndcg_raw": raw["union_oracle_gain"]["gain_raw"],
        "union_gain_ndcg_other_view": raw["union_oracle_gain"]["gain_other_view"],
        **_segment_columns(s),
        "semantic_unique_share": comp["unique_hit_share_a"],
        "collab_unique_share": comp["unique_hit_share_b"],
        "control_pop_unique_share": ctrl["unique_hit_share_a"],
        "alpha_valid": r.manifest["fusion"]["alpha_valid"],
        **_issue4_columns(r, K),
        "path": str(r.path),
    }


def _excess_columns(ex: dict | None) -> dict:
    """The oracle excess over the control floor with its interval (NaN for runs made before it existed)."""
    ex = ex or {}
    return {f"oracle_excess_ndcg{suffix}": float(ex.get(key, float("nan")))
            for suffix, key in (("", "value"), ("_lo", "lo"), ("_hi", "hi"), ("_p", "p_value"))}


#: a warm / cold segment evaluated on fewer users than this is left out of the sweep table (NaN)
MIN_SEGMENT_USERS = 20


def _segment_columns(s: RunSummary) -> dict:
    """Warm-only and cold-only test Recall@K of the views and the fusion, and the users each is over
    (NaN without cold items, or when fewer than :data:`MIN_SEGMENT_USERS` users have a pair there)."""
    out = {}
    for seg in ("warm", "cold"):
        n = s.estimate("collab", "recall", seg).n_users if s.has_segment(seg) else 0
        out[f"{seg}_n_users"] = n
        for system in ("semantic", "semantic_zs", "collab", "fusion"):
            out[f"{seg}_{system}_recall"] = (s.mean(system, "recall", seg) if n >= MIN_SEGMENT_USERS
                                             else float("nan"))
    return out


def _issue4_columns(r: Run, K: int) -> dict:
    """Structure, probe and fusion-model numbers of one run (the sweep table's right-hand columns)."""
    s = r.manifest["summary"]
    out = {"shared_dim_cca": s["structure"]["shared_dim_cca"], "joint_rank_ajive": s["structure"]["joint_rank_ajive"]}
    for name, d in s["probes"]["regimes"].items():
        out.update({f"probe_r2_{name}": d["r2"], f"probe_r2_shared_{name}": d["r2_shared"],
                    f"probe_r2_private_{name}": d["r2_private"]})
    fm = r.table("fusion_models")
    for system, column in (("fusion", "score_fusion_ndcg"), ("alignment", "alignment_ndcg"),
                           ("complementarity_fusion", "complementarity_fusion_ndcg")):
        row = fm[(fm.system == system) & (fm.metric == "ndcg") & (fm.k == K)]
        out[column] = float(row["mean"].iloc[0]) if len(row) else float("nan")
    return out


def _regime_run(job: tuple[tuple[float, float], str], config: RunConfig, out: str, force: bool) -> str:
    """One executor job of a sweep: the run of one regime, written to ``out/<name>``; returns its path."""
    from .pipeline import run

    (k, c), name = job
    r = run(replace(config, keep_fraction=k, cold_item_share=c), out=Path(out) / name, force=force,
            log=lambda m: None, progress=False)
    return str(r.path)


def sweep(
    config: RunConfig,
    out: str | Path,
    keep: Sequence[float] = (1.0, 0.5, 0.2, 0.1),
    cold: Sequence[float] = (0.2,),
    force: bool = False,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Run every regime (sparsity levels, then item cold-start shares) and tabulate them.

    With ``config.executor == "ray"`` every regime is one Ray task (each run itself local, its files
    written under ``out`` by the worker: a shared path, or a one-node cluster); otherwise they run
    one after the other here. The table is the same either way.
    """
    from .executor import get_executor
    from .pipeline import run
    from .runstore import open_run

    out = Path(out)
    regimes = [(k, 0.0) for k in keep] + [(1.0, c) for c in cold if c > 0]
    names = [regime_name(k, c) for k, c in regimes]
    if config.executor == "local":
        runs = []
        for i, ((k, c), name) in enumerate(zip(regimes, names), 1):
            log(f"=== regime {i}/{len(regimes)}: {name} ===")
            runs.append(run(replace(config, keep_fraction=k, cold_item_share=c), out=out / name, force=force, log=log))
    else:
        ex = get_executor(config.executor, config.ray_address)
        try:
            log(f"=== {len(regimes)} regimes as tasks on {ex.describe()} ===")
            paths = ex.map(_regime_run, list(zip(regimes, names)), desc="regimes", progress=True,
                           gpus_per_job=1.0 if ex.gpus() >= 1 else 0.0,
                           config=replace(config, executor="local"), out=str(out.resolve()), force=force)
        finally:
            ex.close()
        runs = [open_run(p) for p in paths]
    rows = [sweep_row(name, r) for name, r in zip(names, runs)]
    table = pd.DataFrame(rows)
    tmp = out / ".sweep.parquet.tmp"
    table.to_parquet(tmp, index=False)
    tmp.replace(out / "sweep.parquet")
    (out / "sweep.md").write_text(table.drop(columns=["path"]).to_markdown(index=False, floatfmt=".4f") + "\n")
    return table


#: columns every consumer of a sweep table relies on (older sweeps lacking one must be recomputed)
SWEEP_COLUMNS = ["regime", "keep_fraction", "cold_item_share", "K", "semantic_recall", "collab_recall", "fusion_recall",
                 "oracle_gain_ndcg", "control_oracle_gain_ndcg", "fusion_gain_ndcg", "semantic_unique_share",
                 "collab_unique_share", "cold_test_share", "cold_semantic_recall", "cold_collab_recall",
                 "cold_fusion_recall"]


def regime_label(keep_fraction: float, cold_item_share: float) -> str:
    """How a regime is named everywhere (charts, verdict, report): "all data", "50% kept",
    "20% items cold"."""
    if cold_item_share > 0:
        return f"{cold_item_share:.0%} items cold"
    return "all data" if keep_fraction >= 1 else f"{keep_fraction:.0%} kept"


def read_sweep(folder: str | Path) -> pd.DataFrame:
    """A sweep's comparison table (``sweep.parquet``), regimes ordered (sparsity by descending kept
    fraction, then cold start), with ``is_cold`` and ``x_label``; RunError when it is missing or lacks
    :data:`SWEEP_COLUMNS`."""
    f = Path(folder) / "sweep.parquet"
    if not f.is_file():
        raise RunError(f"{folder} holds no sweep.parquet; make one with "
                       "`semcollab sweep --dataset ml-100k --out runs/ml-100k-sweep` (or `make sweep`)")
    df = pd.read_parquet(f)
    missing = [c for c in SWEEP_COLUMNS if c not in df.columns]
    if missing:
        raise RunError(f"{f} lacks column(s) {missing}; recompute the sweep with `semcollab sweep ... --force`")
    cold = df["cold_item_share"].astype(float) > 0
    df = (df.assign(_cold=cold, _keep=-df["keep_fraction"].astype(float), _share=df["cold_item_share"].astype(float))
          .sort_values(["_cold", "_keep", "_share"]).drop(columns=["_cold", "_keep", "_share"]).reset_index(drop=True))
    df["is_cold"] = df["cold_item_share"].astype(float) > 0
    df["x_label"] = [regime_label(k, c) for k, c in zip(df["keep_fraction"].astype(float),
                                                          df["cold_item_share"].astype(float))]
    return df
