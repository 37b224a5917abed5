"""End-to-end runs of the engine on the synthetic ground truth (small, quick grids)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.errors import RunError, VectorError
from analysis.summary import RunSummary
from analysis.runstore import TABLES, VECTORS, open_run
from conftest import QUICK_TUNING, ROOT

SMALL = {"n_users": 250, "n_items": 300, "mean_per_user": 30.0}


def _cfg(**kw) -> analysis.RunConfig:
    base = dict(dataset="synthetic", synthetic=SMALL, n_boot=200, n_alphas=11, tuning=QUICK_TUNING)
    base.update(kw)
    return analysis.RunConfig(**base)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "small"
    return analysis.run(_cfg(), out=out, log=lambda m: None)


def test_run_is_complete_and_documented(small_run):
    p = small_run.path
    for t in TABLES:
        assert (p / f"{t}.parquet").exists(), t
    for v in VECTORS:
        assert (p / "vectors" / f"{v}.npy").exists(), v
    m = small_run.manifest
    assert m["dataset"]["n_users"] == 250 and m["dataset"]["n_items"] == 300
    assert m["planted"]["d_shared"] == 8
    assert {"load", "split", "fusion", "projection", "assemble"} <= set(m["timings"])
    assert m["versions"]["numpy"] == np.__version__
    items = small_run.items
    assert len(items) == 300 and items["item_idx"].tolist() == list(range(300))
    assert np.isfinite(items.loc[~items.cold, ["sem_x", "sem_y", "col_x", "col_y"]].to_numpy()).all()
    # vectors load without pickles and match the item table
    assert small_run.vectors("semantic_items").shape[0] == 300


def test_metrics_table_matches_per_user_values(small_run):
    users, metrics = small_run.users, small_run.table("metrics")
    K = small_run.manifest["K"]
    for system in ("semantic", "collab", "ease", "pop", "fusion", "rrf", "semantic_zs"):
        row = metrics[(metrics.system == system) & (metrics.part == "test") & (metrics.metric == "recall") & (metrics.k == K)]
        assert row["mean"].iloc[0] == pytest.approx(np.nanmean(users[f"{system}_recall@{K}"]))
        assert row["lo"].iloc[0] <= row["mean"].iloc[0] <= row["hi"].iloc[0]


def test_collaborative_beats_control_and_oracle_bounds_hold(small_run):
    u = small_run.users
    K = small_run.manifest["K"]
    assert np.nanmean(u[f"collab_ndcg@{K}"]) > np.nanmean(u[f"pop_ndcg@{K}"])
    ok = u[f"semantic_recall@{K}"].notna()
    best = np.maximum(u.loc[ok, f"semantic_recall@{K}"], u.loc[ok, f"collab_recall@{K}"])
    assert (u.loc[ok, "oracle_select_recall"] >= best - 1e-12).all()
    assert (u.loc[ok, "oracle_union_recall"] >= u.loc[ok, "oracle_select_recall"] - 1e-12).all()
    # per-item hit counts add up to the per-user decomposition
    items = small_run.items
    assert items["hits_shared"].sum() == u["shared"].sum()
    assert items["hits_sem_only"].sum() == u["only_sem"].sum() and items["hits_col_only"].sum() == u["only_col"].sum()
    assert (items["hits_missed_by_both"] >= 0).all()
    # hit decomposition agrees with the top-K table
    top = small_run.table("topk")
    sem = top[(top.system == "semantic") & top.hit].groupby("user_idx").size()
    assert u.set_index("user_idx")["hits_sem"].fillna(0).astype(int).reindex(sem.index).tolist() == sem.tolist()


def test_fusion_curve_endpoints_are_the_single_views(small_run):
    f = small_run.table("fusion")
    m = small_run.table("metrics")
    K = small_run.manifest["K"]
    plain = f[(f.method == "score") & (f.segment_type == "all") & (f.part == "test") & (f.metric == "ndcg") & (f.k == K)]
    at = dict(zip(plain.alpha.round(6), plain.value))
    val = lambda s: m[(m.system == s) & (m.part == "test") & (m.metric == "ndcg") & (m.k == K)]["mean"].iloc[0]
    assert at[1.0] == pytest.approx(val("semantic"), abs=1e-12)
    assert at[0.0] == pytest.approx(val("collab"), abs=1e-12)
    a = small_run.manifest["fusion"]["alpha_valid"]
    valid = f[(f.method == small_run.manifest["fusion"]["method"]) & (f.segment_type == "all") & (f.part == "valid")
              & (f.metric == "ndcg") & (f.k == K)]
    assert valid.loc[valid.value.idxmax(), "value"] == pytest.approx(valid[valid.alpha.round(6) == round(a, 6)].value.iloc[0])
    assert {"item_pop", "user_activity"} <= set(f.segment_type)


def test_second_run_is_a_cache_hit_and_force_recomputes(small_run):
    before = small_run.manifest["created"]
    logs = []
    again = analysis.run(_cfg(), out=small_run.path, log=logs.append)
    assert any("cache hit" in m for m in logs)
    assert again.manifest["created"] == before


def test_cli_summary_prints_headline_table(small_run):
    r = subprocess.run([sys.executable, "-m", "analysis", "summary", str(small_run.path)], capture_output=True,
                       text=True, cwd=ROOT, check=True)
    assert "Collaborative (ials)" in r.stdout and "Oracle (per-user selection)" in r.stdout
    s = RunSummary(small_run.manifest)
    assert f"{s.mean('collab', 'recall'):.4f}" in r.stdout and f"{s.mean('oracle_select', 'ndcg'):.4f}" in r.stdout


def _unit_vectors(path: Path, ds_items: pd.DataFrame, rng) -> Path:
    X = rng.standard_normal((len(ds_items), 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    np.savez(path, ids=ds_items["item_id"].to_numpy(dtype=str), vectors=X)
    return path


def test_identical_views_agree_everywhere(tmp_path):
    """Same vectors in both views, zero-shot semantic vs mean-profile collaborative: same lists."""
    from analysis.synthetic import generate

    ds = generate(**SMALL)
    vec = _unit_vectors(tmp_path / "v.npz", ds.items, np.random.default_rng(0))
    r = analysis.run(_cfg(semantic=str(vec), collab=str(vec), compare_semantic="zeroshot", umap=False),
                     out=tmp_path / "same", log=lambda m: None)
    u = r.users
    assert (u["list_jaccard"] == 1).all() and (u["rbo"] > 1 - 1e-9).all()
    assert u["only_sem"].sum() == 0 and u["only_col"].sum() == 0
    assert r.manifest["summary"]["complementarity"]["unique_hit_share_a"] == 0
    items = r.items
    assert np.allclose(items["overlap"], 1.0)
    assert np.allclose(items["procrustes_cos"], 1.0, atol=1e-5)
    sim = r.table("similarity").set_index(["statistic", "variant"])
    assert sim.loc[("cka", "raw"), "raw"] == pytest.approx(1.0) and sim.loc[("debiased_cka", "raw"), "raw"] == pytest.approx(1.0)
    assert sim.loc[("cka", "raw"), "p_value"] == pytest.approx(1 / 201)
    assert r.manifest["summary"]["structure"]["top_heldout_corr"] > 0.999


def test_independent_views_overlap_near_chance(tmp_path):
    from analysis.synthetic import generate

    ds = generate(**SMALL)
    rng = np.random.default_rng(1)
    a = _unit_vectors(tmp_path / "a.npz", ds.items, rng)
    b = _unit_vectors(tmp_path / "b.npz", ds.items, rng)
    r = analysis.run(_cfg(semantic=str(a), collab=str(b), umap=False), out=tmp_path / "indep", log=lambda m: None)
    sim = r.table("similarity").set_index(["statistic", "variant"])
    assert abs(sim.loc[("debiased_cka", "raw"), "raw"]) < 0.05 and sim.loc[("debiased_cka", "raw"), "p_value"] > 0.01
    assert r.manifest["summary"]["structure"]["shared_dim_cca"] == 0
    chance = r.manifest["chance_overlap"]
    ov = r.items["overlap"].dropna()
    se = ov.std() / np.sqrt(len(ov))
    assert abs(ov.mean() - chance) < 4 * se + 1e-3


def test_planted_private_signal_shows_up_as_unique_hits(tmp_path):
    """More taste on semantic-private factors -> more hits only the semantic view finds.

    Sparse regime (20 % of training data kept): there the collaborative model cannot learn
    the semantic-private factors from interactions, which is where complementarity lives.
    """
    shares = {}
    for w in (0.0, 2.0):
        r = analysis.run(_cfg(synthetic={**SMALL, "w_sem": w}, keep_fraction=0.2, umap=False), out=tmp_path / f"w{w}",
                         log=lambda m: None)
        c = r.manifest["summary"]["complementarity"]
        shares[w] = c["unique_hit_share_a"]
    assert shares[2.0] > shares[0.0] + 0.1


def test_bad_vectors_give_specific_error_and_no_partial_run(tmp_path, small_run):
    from analysis.synthetic import generate

    ds = generate(**SMALL)
    X = np.ones((len(ds.items), 8), np.float32)
    X[7, 3] = np.nan
    np.savez(tmp_path / "bad.npz", ids=ds.items["item_id"].to_numpy(dtype=str), vectors=X)
    out = tmp_path / "never"
    with pytest.raises(VectorError, match="i7"):
        analysis.run(_cfg(semantic=str(tmp_path / "bad.npz")), out=out, log=lambda m: None)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # a failing recompute over an existing run leaves the old run whole
    with pytest.raises(VectorError):
        analysis.run(_cfg(semantic=str(tmp_path / "bad.npz")), out=small_run.path, force=True, log=lambda m: None)
    assert open_run(small_run.path).manifest["created"] == small_run.manifest["created"]


def test_cli_reports_bad_input_without_traceback(tmp_path):
    bad = tmp_path / "ratings.csv"
    bad.write_text("user,item\n1,2\n")
    r = subprocess.run([sys.executable, "-m", "analysis", "run", "--data", str(bad), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert "semcollab: error:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_open_run_errors_are_clear(tmp_path):
    with pytest.raises(RunError, match="semcollab run"):
        open_run(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    with pytest.raises(RunError, match="not a complete run"):
        open_run(tmp_path / "half")


def test_sweep_writes_sibling_runs_and_one_table(tmp_path):
    table = analysis.sweep(_cfg(umap=False, n_boot=100), tmp_path / "sw", keep=(1.0, 0.2), cold=(0.2,),
                           log=lambda m: None)
    assert table["regime"].tolist() == ["keep-100", "keep-20", "cold-20"]
    # every regime evaluates the structure, the probes and the fusion models too
    assert {"shared_dim_cca", "probe_r2_in_distribution", "complementarity_fusion_ndcg", "alignment_ndcg"} <= set(table)
    assert table["complementarity_fusion_ndcg"].notna().all()
    # gains are read against the best single view chosen on validation (the run's best_single), not on test
    for name, row in table.set_index("regime").iterrows():
        s = RunSummary(open_run(tmp_path / "sw" / name).manifest)
        assert row["best_single"] == s.best_single
        assert row["fusion_gain_ndcg"] == pytest.approx(s.mean("fusion") - s.mean(s.best_single))
    assert (tmp_path / "sw" / "sweep.md").exists()
    assert pd.read_parquet(tmp_path / "sw" / "sweep.parquet")["regime"].tolist() == table["regime"].tolist()
    cold = open_run(tmp_path / "sw" / "cold-20")
    reg = cold.manifest["regime"]
    it = cold.table("interactions")
    assert reg["n_held_out_items"] == round(0.2 * it["item_idx"].nunique()) and reg["n_cold_items"] >= reg["n_held_out_items"]
    # standard protocol: all the held-out items' pairs are test pairs, so they are a large share of the test
    cold_items = cold.items.loc[cold.items["cold"], "item_idx"]
    held_out = cold.items.loc[cold.items["held_out"], "item_idx"]
    assert len(held_out) == reg["n_held_out_items"] and held_out.isin(cold_items).all()
    assert not it[it["part"].isin(["train", "valid"]) & it["item_idx"].isin(held_out)].shape[0]
    assert reg["n_test_pairs_cold"] == it[(it["part"] == "test") & it["item_idx"].isin(cold_items)].shape[0]
    assert reg["cold_test_share"] > 0.5
    assert cold_items.size and table.set_index("regime").loc["cold-20", "cold_test_share"] == reg["cold_test_share"]
    # validation never sees the held-out items: cold-aware blending is used, α chosen on validation
    fm = cold.manifest["fusion"]
    assert set(cold.table("fusion")["method"]) == {"cold_aware", "rrf"} and fm["method"] == "cold_aware"
    # metrics three ways; the collaborative view cannot score a cold item, the semantic view can
    seg = cold.manifest["summary"]["segments"]
    assert set(seg) == {"warm", "cold"} and seg["cold"]["collab"]["recall"]["mean"] == 0.0
    assert seg["cold"]["semantic"]["recall"]["mean"] > 0.05 and seg["cold"]["fusion"]["recall"]["mean"] > 0.05
    m = cold.table("metrics")
    assert set(m["segment"]) == {"all", "warm", "cold"}
    # the sparsity regime's removed training pairs are stored and masked, never recommended
    sp_it = open_run(tmp_path / "sw" / "keep-20").table("interactions")
    removed = sp_it[sp_it["part"] == "removed"]
    assert len(removed) > 0
    tk = open_run(tmp_path / "sw" / "keep-20").table("topk").merge(removed, on=["user_idx", "item_idx"])
    assert tk.empty
    # each regime was tuned on its own split
    keys = {open_run(tmp_path / "sw" / n).manifest["tuning"]["ease"]["cache_key"] for n in table.regime}
    assert len(keys) == 3
    full, sparse = open_run(tmp_path / "sw" / "keep-100"), open_run(tmp_path / "sw" / "keep-20")
    assert sparse.table("interactions").query("part == 'train'").shape[0] < 0.3 * full.table("interactions").query("part == 'train'").shape[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_shared_dimension_recovers_the_planted_one_from_learned_vectors(tmp_path, seed):
    """With users indifferent to text-only factors (w_sem = 0), what the text vectors and the
    *trained* collaborative vectors share is exactly the planted shared block (d_shared = 8)."""
    r = analysis.run(_cfg(seed=seed, synthetic={"n_users": 600, "n_items": 800, "w_sem": 0.0}, umap=False, n_boot=100),
                     out=tmp_path / "r", log=lambda m: None)
    st = r.manifest["summary"]["structure"]
    assert abs(st["shared_dim_cca"] - 8) <= 1
    assert r.manifest["planted"]["d_shared"] == 8


def test_run_records_each_views_tuning_budget_and_a_200_permutation_cca_null(small_run):
    tuning = small_run.manifest["tuning"]
    assert {e["system"] for e in tuning.values()} == {"semantic", "collab", "ease"}
    for e in tuning.values():
        assert e["budget"]["n_configs"] >= 1 and e["budget"]["criterion"] == f"validation ndcg@{small_run.manifest['K']}"
    assert small_run.manifest["summary"]["structure"]["n_perm"] == 200
    assert small_run.manifest["summary"]["chance_jaccard"] == pytest.approx(small_run.manifest["chance_jaccard"])
    assert small_run.manifest["chance_jaccard"] < 0.6 * small_run.manifest["chance_overlap"]


def test_the_run_logs_every_stage_the_dashboard_progress_bar_counts(tmp_path):
    """app.jobs.STAGES is the engine's own list: a run logs exactly those stages, in that order."""
    import re

    from app.jobs import STAGES

    lines: list[str] = []
    analysis.run(_cfg(umap=False, n_boot=50), out=tmp_path / "r", log=lines.append)
    started = [m.group(1) for ln in lines if (m := re.match(r"\[(.+)\] \.\.\.$", ln))]
    assert tuple(started) == STAGES
