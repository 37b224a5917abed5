"""AppTest checks of the Fusion, Users, Regimes and Compute pages on small real runs.

The Fusion page's α, reference lines (labelled as the run's manifest names the systems), its one
headroom (against the run's best single view, chosen on validation) and differences must equal the
run's manifest, summary, metrics / fusion / differences tables; the Users page's fused list, recomputed on the fly from
the saved vectors, must equal a direct ``fuse_topk`` call and the engine's saved lists (fusion
at the validation α, semantic at α = 1, collaborative at α = 0); the Regimes page must draw the
rows of a real (tiny) sweep; the Compute page must show the engine's own error for a bad upload,
validate a good one, and follow a background job to the end and select its run.
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import QUICK_TUNING

from app_fixtures import (  # noqa: F401  (fixtures)
    arr,
    assert_clean,
    figure,
    plain,
    APP_MAIN,
    app_env,
    app_make_data,
    app_run,
    app_run_path,
    app_test,
)

FUSION, USERS, REGIMES, COMPUTE = "views/fusion.py", "views/users.py", "views/regimes.py", "views/compute.py"


# ----------------------------------------------------------------------------- helpers
def trace(fig: dict, prefix: str) -> dict:
    found = [t for t in fig["data"] if str(t.get("name", "")).startswith(prefix)]
    assert len(found) == 1, (prefix, [t.get("name") for t in fig["data"]])
    return found[0]


def metric_value(run, system: str, metric: str, k: int, part: str = "test") -> float:
    m = run.table("metrics")
    r = m[(m.system == system) & (m.metric == metric) & (m.k == k) & (m.part == part) & (m.segment == "all")]
    assert len(r) == 1
    return float(r["mean"].iloc[0])


def table_with(at, *columns: str, nth: int = 0) -> pd.DataFrame:
    """The ``nth`` st.dataframe of the page holding all ``columns`` (AppTest does not expose their keys)."""
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert len(found) > nth, (columns, [list(d.value.columns) for d in at.dataframe])
    return found[nth]


# ----------------------------------------------------------------------------- fusion
def test_fusion_page_alpha_reference_lines_and_headroom(app_test, app_run):
    run, K = app_run, app_run.manifest["K"]
    at = app_test(FUSION)
    assert_clean(at)
    cards = {m.label: m.value for m in at.metric}
    alpha = run.manifest["fusion"]["alpha_valid"]
    assert cards["α chosen on validation"] == f"{alpha:.2f}"
    fig = figure(at, "fusion_curve_test")
    # reference lines = the metrics table (NDCG@K on test), named with the run's own labels
    labels = {name: d["label"] for name, d in run.manifest["systems"].items()}
    for system in ("oracle_select", "oracle_union", "control_oracle_select", "collab", "semantic", "rrf"):
        t = trace(fig, labels[system] + ": ")
        y = [float(v) for v in arr(t["y"])]
        assert y == [pytest.approx(metric_value(run, system, "ndcg", K))] * 2, system
    # the curve of the chosen method = the fusion table; the star = the fused system at the chosen alpha
    method = run.manifest["fusion"]["method"]
    f = run.table("fusion")
    f = f[(f.part == "test") & (f.method == method) & (f.metric == "ndcg") & (f.k == K) & (f.segment_type == "all")]
    curve = trace(fig, "M(α), " + {"cold_aware": "cold-aware", "score": "plain"}[method])
    np.testing.assert_allclose(np.asarray(arr(curve["y"]), float), f.sort_values("alpha")["value"].to_numpy())
    star = trace(fig, "fused system at α")
    assert float(arr(star["x"])[0]) == pytest.approx(alpha)
    assert float(arr(star["y"])[0]) == pytest.approx(metric_value(run, "fusion", "ndcg", K))
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("α = weight of the semantic view")
    assert fig["layout"]["yaxis"]["title"]["text"].startswith(f"NDCG@{K}")
    # the validation chart has no oracle lines (the engine stores them for test only)
    names = [t["name"] for t in figure(at, "fusion_curve_valid")["data"]]
    oracles = [labels[s] for s in ("oracle_select", "oracle_union", "control_oracle_select")]
    assert not any(n.startswith(o) for n in names for o in oracles)
    assert any(n.startswith(labels["collab"] + ": ") for n in names)
    # the excess card: the run summary's oracle excess over the control floor, with its interval
    summary = run.manifest["summary"]
    ex = summary["oracle_excess_ndcg"]
    assert cards[f"Oracle excess over the floor · NDCG@{K}"] == f"{ex['value']:+.3f}"
    assert any(f"→ excess {ex['value']:+.3f} [{ex['lo']:+.3f}, {ex['hi']:+.3f}]" in c.value for c in at.caption)
    # one headroom (a caption, no duplicate card): the run summary's, against the best single view
    assert not [c for c in cards if "Headroom" in c]
    h = summary["fusion_headroom_ndcg"]
    assert any(f"→ headroom realised {h:.1%}" in c.value for c in at.caption)
    best = metric_value(run, summary["best_single"], "ndcg", K)
    orc, fus = metric_value(run, "oracle_select", "ndcg", K), metric_value(run, "fusion", "ndcg", K)
    assert summary["fusion_headroom_ndcg"] == pytest.approx((fus - best) / (orc - best))
    caption = next(plain(c.value) for c in at.caption if c.value.startswith(f"Test NDCG@{K}: fusion"))
    assert f"best single view (chosen on validation) {labels[summary['best_single']]} {best:.4f}" in caption


def test_fusion_page_recomputes_oracles_for_other_metrics_and_cutoffs(app_test, app_run):
    """Recall@10 and hit@K oracles are not stored: recomputed from the saved lists / users table, and
    the recomputation agrees with the stored value at K."""
    from analysis.run_queries import oracle_value

    run, K = app_run, app_run.manifest["K"]
    users = run.users
    at = app_test(FUSION)
    at.selectbox(key="fusion_metric").set_value("recall").run()
    at.selectbox(key="fusion_k").set_value(10).run()
    assert_clean(at)
    fig = figure(at, "fusion_curve_test")
    labels = {name: d["label"] for name, d in run.manifest["systems"].items()}
    sel = float(arr(trace(fig, labels["oracle_select"])["y"])[0])
    by_hand = np.nanmean(np.fmax(users["semantic_recall@10"], users["collab_recall@10"]))
    assert sel == pytest.approx(by_hand)
    assert "(recomputed)" in trace(fig, labels["oracle_select"])["name"]
    ctrl = float(arr(trace(fig, labels["control_oracle_select"])["y"])[0])
    assert ctrl == pytest.approx(np.nanmean(np.fmax(users["pop_recall@10"], users["collab_recall@10"])))
    # at K the recomputed oracles equal the engine's stored ones
    for oracle, system in (("select", "oracle_select"), ("union", "oracle_union")):
        for metric in ("recall", "ndcg"):
            got = oracle_value(run, oracle, "semantic", "collab", metric, K)
            assert got == pytest.approx(metric_value(run, system, metric, K)), (oracle, metric)
    # hit rate: the union and the selection oracle coincide (a hit in either list)
    at.selectbox(key="fusion_metric").set_value("hit").run()
    fig = figure(at, "fusion_curve_test")
    u = float(arr(trace(fig, labels["oracle_union"])["y"])[0])
    assert u == pytest.approx(np.nanmean(np.fmax(users["semantic_hit@10"], users["collab_hit@10"])))


def test_fusion_page_segments_and_differences(app_test, app_run):
    run, K = app_run, app_run.manifest["K"]
    at = app_test(FUSION)
    method = run.manifest["fusion"]["method"]
    f = run.table("fusion")
    f = f[(f.part == "test") & (f.method == method) & (f.metric == "ndcg") & (f.k == K)]
    for seg_type in ("item_pop", "user_activity"):
        fig = figure(at, f"fusion_seg_{seg_type}")
        want = f[f.segment_type == seg_type]
        assert len(fig["data"]) == want["segment"].nunique()
        for seg, d in want.groupby("segment"):
            t = trace(fig, f"{seg} (")
            np.testing.assert_allclose(np.asarray(arr(t["y"]), float), d.sort_values("alpha")["value"].to_numpy())
    # the headline difference = the differences row (fusion vs the best single system chosen on validation)
    d = run.table("differences")
    best = run.manifest["summary"]["best_single"]
    row = d[(d.system_a == "fusion") & (d.system_b == best) & (d.metric == "ndcg") & (d.k == K)].iloc[0]
    text = " ".join(m.value for m in at.markdown).replace("\\", "")
    assert f"{row['diff']:+.4f}" in text and f"{row['lo']:+.4f} to {row['hi']:+.4f}" in text
    assert f"p = {row['p_value']:.3g}" in text
    table = table_with(at, "comparison", "difference (A − B)")
    assert len(table) == int(((d.part == "test") & (d.k == K)).sum())
    top = table.iloc[0]
    assert top["fusion vs best single"] and top["difference (A − B)"] == pytest.approx(
        d[(d.system_a == "fusion") & (d.system_b == best) & (d.k == K)].sort_values("metric")["diff"].iloc[0])


# ----------------------------------------------------------------------------- users
def direct_fused(run, user: int, alpha: float, K: int, cold_aware: bool) -> np.ndarray:
    """The fused top-K of one user built here from the saved vectors, independently of the app."""
    import scipy.sparse as sp

    from analysis.fusion import fuse_topk
    from analysis.models.base import EmbeddingRecommender

    vec = lambda n: np.load(run.path / "vectors" / f"{n}.npy")  # noqa: E731
    sem = EmbeddingRecommender("s", vec("semantic_rec_users"), vec("semantic_rec_items"), np.ones(len(run.items), bool))
    ci = vec("collab_items")
    ok = ~np.isnan(ci).any(axis=1)
    col = EmbeddingRecommender("c", vec("collab_users"), np.nan_to_num(ci), ok)
    it = run.table("interactions")
    seen_df = it[it.part.isin(["train", "valid"])]
    seen = sp.csr_matrix((np.ones(len(seen_df)), (seen_df.user_idx, seen_df.item_idx)),
                         shape=(len(run.users), len(run.items)))
    top = fuse_topk(sem, col, np.array([user]), seen, K, alpha, cold_aware=cold_aware)[0]
    return top[top >= 0]


def saved(run, user: int, system: str, K: int) -> list[int]:
    tk = run.table("topk")
    return tk[(tk.user_idx == user) & (tk.system == system) & (tk["rank"] <= K)].sort_values("rank")["item_idx"].tolist()


def list_table(at, name: str) -> pd.DataFrame:
    """The Users page's list ``name`` (semantic / collaborative: the 1st / 2nd with an "in fusion" column)."""
    if name == "fusion":
        return table_with(at, "rank", "in a view")
    return table_with(at, "rank", "in fusion", nth={"semantic": 0, "collaborative": 1}[name])


def page_list(at, run, name: str) -> list[int]:
    df = list_table(at, name)
    ids = run.items.set_index("item_id")["item_idx"]
    return [int(ids[i]) for i in df["item_id"]]


def test_users_page_fused_list_follows_the_slider(app_test, app_run):
    run, K = app_run, app_run.manifest["K"]
    at = app_test(USERS)
    assert_clean(at)
    cold_aware = run.manifest["fusion"]["method"] == "cold_aware"
    assert at.slider(key="users_alpha").value == pytest.approx(run.manifest["fusion"]["alpha_valid"])
    user = int(at.selectbox(key="users_user").value)
    assert page_list(at, run, "fusion") == saved(run, user, "fusion", K)
    assert page_list(at, run, "semantic") == saved(run, user, "semantic", K)
    assert page_list(at, run, "collaborative") == saved(run, user, "collab", K)
    lists = {}
    for alpha in (0.6, 0.1):
        at.slider(key="users_alpha").set_value(alpha).run()
        assert_clean(at)
        lists[alpha] = page_list(at, run, "fusion")
        assert lists[alpha] == direct_fused(run, user, alpha, K, cold_aware).tolist()
    assert lists[0.6] != lists[0.1]
    # hits are marked: the "hit" column flags exactly the user's test items
    test_items = set(run.table("interactions").query("user_idx == @user and part == 'test'")["item_idx"])
    df = list_table(at, "fusion")
    assert [h.startswith("✓") for h in df["hit"]] == [i in test_items for i in lists[0.1]]
    # ... with who finds each hit: the compared views' saved lists
    sem, col = set(saved(run, user, "semantic", K)), set(saved(run, user, "collab", K))
    want = [("shared" if i in sem and i in col else "semantic-only" if i in sem else "collaborative-only" if i in col
             else "fusion-only") for i in lists[0.1] if i in test_items]
    assert [h.split(" ", 1)[1] for h in df["hit"] if h] == want
    # another user, picked in the selectbox
    other = int(run.users["user_idx"].iloc[7])
    at.selectbox(key="users_user").set_value(other).run()
    assert page_list(at, run, "fusion") == direct_fused(run, other, 0.1, K, cold_aware).tolist()
    train = run.table("interactions").query("user_idx == @other and part == 'train'")
    assert len(table_with(at, "genres", "pop_bucket")) == train["item_idx"].nunique()


def test_on_the_fly_fusion_equals_the_engine_lists(app_run):
    """The Users page's fused list (cached data function over the recommenders rebuilt from the saved
    vectors) equals the engine's saved lists: fusion at the validation α, each view at its end."""
    from app.data.common import RunKey
    from app.data.users import fused_list as page_fused_list

    run, K = app_run, app_run.manifest["K"]
    key = RunKey.of(run.path)
    fused_list = lambda _run, *a: page_fused_list(key, *a)  # noqa: E731
    alpha = run.manifest["fusion"]["alpha_valid"]
    cold_aware = run.manifest["fusion"]["method"] == "cold_aware"
    cold = run.items.set_index("item_idx")["cold"]
    assert cold.any()  # the fixture has cold items: the cold-aware endpoint case below is exercised
    for user in run.users["user_idx"].to_numpy()[::29]:
        user = int(user)
        assert fused_list(run, user, alpha, K, cold_aware).tolist() == saved(run, user, "fusion", K)
        assert fused_list(run, user, 1.0, K, cold_aware).tolist() == saved(run, user, "semantic", K)
        assert fused_list(run, user, 0.0, K, False).tolist() == saved(run, user, "collab", K)
        # cold-aware at alpha = 0 ranks the cold items by the semantic view among the collaborative list
        ca = fused_list(run, user, 0.0, K, True).tolist()
        warm = [i for i in ca if not cold[i]]
        assert warm == saved(run, user, "collab", K)[: len(warm)]


def test_zero_shot_user_vectors_reproduce_the_zero_shot_lists(app_run):
    """When a run compares the zero-shot semantic profile, the page derives its user vectors from
    semantic_items and the training history; at alpha = 1 that equals the saved semantic_zs list."""
    from analysis.run_queries import fused_list, recommenders_from_run
    from analysis.runstore import Run

    manifest = json.loads(json.dumps(app_run.manifest))
    manifest["compared"]["semantic"] = "semantic_zs"
    zs = Run(path=app_run.path, manifest=manifest)
    models = recommenders_from_run(zs)
    assert models.sem == "semantic_zs" and manifest["systems"]["semantic_zs"]["role"] == "semantic_zeroshot"
    it = app_run.table("interactions")
    X = np.load(app_run.path / "vectors" / "semantic_items.npy")
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    for user in (0, 11, 123):
        items = np.unique(it.query("user_idx == @user and part == 'train'")["item_idx"])
        prof = Xn[items].mean(axis=0)
        np.testing.assert_allclose(models.semantic.user_vecs[user], prof / np.linalg.norm(prof), atol=1e-5)
        got = fused_list(models, user, 1.0, app_run.manifest["K"], True).tolist()
        assert got == saved(app_run, user, "semantic_zs", app_run.manifest["K"])


def test_random_user_button(app_test, app_run):
    users = app_run.users.set_index("user_idx")
    pool = tuple(int(u) for u in users.index[(users.only_sem > 0) | (users.only_col > 0)])
    at = app_test(USERS)
    picks = []
    for n in (1, 2, 3):
        at.button(key="users_random").click().run()
        assert_clean(at)
        assert at.session_state["users_random_counter"] == n
        u = int(at.selectbox(key="users_user").value)
        rng = np.random.default_rng([at.session_state["users_random_seed"], n])
        assert u == pool[int(rng.integers(len(pool)))]
        assert users.loc[u, "only_sem"] > 0 or users.loc[u, "only_col"] > 0
        picks.append(u)
    assert len(set(picks)) > 1
    # another session draws its own sequence
    other = app_test(USERS)
    other.button(key="users_random").click().run()
    assert other.session_state["users_random_seed"] != at.session_state["users_random_seed"]


# ----------------------------------------------------------------------------- regimes
@pytest.fixture(scope="module")
def pages_sweep(tmp_path_factory) -> Path:
    """A real sweep of a tiny synthetic dataset (keep 100 % / 50 %, 20 % cold items); shared with the browser tests."""
    import analysis
    from analysis.regimes import sweep as run_sweep

    out = tmp_path_factory.mktemp("sweeps") / "tiny-sweep"
    cfg = analysis.RunConfig(dataset="synthetic", synthetic={"n_users": 120, "n_items": 160, "mean_per_user": 16.0},
                             ks=(10,), k_neighbors=5, n_boot=50, n_alphas=5, umap=False, tuning=QUICK_TUNING)
    run_sweep(cfg, out, keep=(1.0, 0.5), cold=(0.2,), log=lambda _m: None)
    return out


def test_regimes_page_draws_the_sweep_rows(pages_sweep, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SEMCOLLAB_RUNS", str(pages_sweep.parent))
    monkeypatch.setattr(sys, "argv", ["app/main.py", "--run", str(pages_sweep / "keep-50")])
    at = AppTest.from_file(APP_MAIN, default_timeout=120).run()
    at.switch_page(REGIMES).run()
    assert_clean(at)
    sweep = pd.read_parquet(pages_sweep / "sweep.parquet").set_index("regime")
    assert "current run's sweep" in at.selectbox(key="regimes_folder").format_func(at.selectbox(key="regimes_folder").value)
    fig = figure(at, "regimes_chart")
    labels = {"keep-100": "all data", "keep-50": "50% kept", "cold-20": "20% items cold"}
    for name, col in (("collaborative", "collab_recall"), ("unique-hit share: semantic", "semantic_unique_share"),
                      ("oracle gain", "oracle_gain_ndcg"), ("control floor", "control_oracle_gain_ndcg"),
                      ("best fusion gain", "fusion_gain_ndcg")):
        ts = [t for t in fig["data"] if t["name"] == name or t["name"].startswith(name + " (")]
        got = {x: float(y) for t in ts for x, y in zip(arr(t["x"]), arr(t["y"]))}
        assert got == {labels[r]: pytest.approx(sweep.loc[r, col]) for r in labels}, name
    warm = next(t for t in fig["data"] if t["name"] == "collaborative" and t["mode"] == "lines+markers")
    assert list(arr(warm["x"])) == ["all data", "50% kept"]  # descending fraction kept
    # the cold-start regime's cold-only points are the engine's cold-segment ranking (metrics table)
    m = pd.read_parquet(pages_sweep / "cold-20" / "metrics.parquet")
    for prefix, system in (("cold items only: semantic", "semantic"), ("cold items only: collaborative", "collab"),
                           ("cold items only: fusion", "fusion")):
        t = next(t for t in fig["data"] if t["name"].startswith(prefix))
        want = m[(m.system == system) & (m.part == "test") & (m.segment == "cold") & (m.metric == "recall") & (m.k == 10)]
        assert float(arr(t["y"])[0]) == pytest.approx(float(want["mean"].iloc[0])), prefix
    assert float(arr(next(t for t in fig["data"] if t["name"].startswith("cold items only: collab"))["y"])[0]) == 0.0
    table = table_with(at, "regime", "keep_fraction")
    assert list(table["regime"]) == ["keep-100", "keep-50", "cold-20"]


def test_regimes_page_without_a_sweep_says_how_to_make_one(app_test):
    at = app_test(REGIMES)
    assert_clean(at)
    assert any("No sweep found" in i.value for i in at.info)
    assert any(c.value == "semcollab sweep --dataset ml-100k --out runs/ml-100k-sweep" for c in at.code)
    assert any("make sweep" in m.value for m in at.markdown)


# ----------------------------------------------------------------------------- compute
def test_validate_files_raises_the_engine_errors(tmp_path, app_run_path):
    from analysis.errors import DataError, VectorError
    from app.jobs import validate_files

    bad = tmp_path / "interactions.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(DataError, match=r"interactions\.csv: no user_id column"):
        validate_files(bad)
    data = app_make_data(tmp_path / "good")
    info = validate_files(data / "interactions.parquet", data / "items.parquet", "auto", data / "semantic.npz")
    inter = pd.read_parquet(data / "interactions.parquet")
    assert info["n_interactions"] == len(inter) and info["n_users"] == inter["user_id"].nunique()
    assert info["format"] == "table" and info["vector_dim"] == np.load(data / "semantic.npz")["vectors"].shape[1]
    z = np.load(data / "semantic.npz")
    np.savez(tmp_path / "short.npz", ids=z["ids"][:-3], vectors=z["vectors"][:-3])
    with pytest.raises(VectorError):
        validate_files(data / "interactions.parquet", data / "items.parquet", "auto", tmp_path / "short.npz")


def test_progress_maps_the_stage_lines():
    from app.jobs import STAGES, progress

    log = "[load] ...\n[load] done in 1.0s\n[split] ...\n[split] done in 0.1s\n[semantic vectors] ...\ntune ials: 50%\r"
    p = progress(log)
    assert p.n_done == 2 and p.stage == "semantic vectors"
    assert p.fraction == pytest.approx(2.5 / len(STAGES)) and not p.written and p.error is None
    full = "".join(f"[{s}] ...\n[{s}] done in 1.0s\n" for s in STAGES) + "run written to runs/x\n"
    assert progress(full).fraction == 1.0 and progress(full).written
    err = progress("[load] ...\nsemcollab: error: /x/ratings.csv, line 5: empty item id\n")
    assert err.error == "/x/ratings.csv, line 5: empty item id"


def test_build_command_round_trips_through_the_cli(tmp_path):
    from analysis.cli import _add_run_args, config_from_args
    from app.jobs import JobSpec, build_command

    import argparse

    spec = JobSpec(source="synthetic", name="s", synthetic={"n_users": 300, "n_items": 400, "mean_per_user": 25.0},
                   keep=0.5, cold_items=0.1, ks=(20, 10), k_neighbors=7, bootstrap=200, umap=False, seed=3)
    cmd = build_command(spec, tmp_path / "s")
    assert cmd[1:4] == ["-m", "analysis", "run"]
    p = argparse.ArgumentParser()
    _add_run_args(p)
    a = p.parse_args(cmd[4:])
    cfg = config_from_args(a)
    assert cfg.synthetic == {"n_users": 300, "n_items": 400, "mean_per_user": 25.0}
    assert (cfg.keep_fraction, cfg.cold_item_share, cfg.ks, cfg.k_neighbors, cfg.n_boot, cfg.umap, cfg.seed) == \
        (0.5, 0.1, (10, 20), 7, 200, False, 3)
    assert a.out == str(tmp_path / "s")
    files = JobSpec(source="files", name="f", data_path="/d/ratings.csv", item_path="/d/items.csv",
                    semantic="/d/v.npz", data_format="table")
    cfg = config_from_args(p.parse_args(build_command(files, tmp_path / "f")[4:]))
    assert (cfg.dataset, cfg.data_path, cfg.item_path, cfg.semantic, cfg.data_format) == \
        ("files", "/d/ratings.csv", "/d/items.csv", "/d/v.npz", "table")
    from analysis.errors import ConfigError

    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config_from_args(p.parse_args(["--synthetic", "n_userz=3"]))
    assert cfg.executor == "local" and "--executor" not in build_command(files, tmp_path / "f")
    on_ray = JobSpec(source="ml-100k", name="r", executor="ray")
    assert config_from_args(p.parse_args(build_command(on_ray, tmp_path / "r")[4:])).executor == "ray"


def test_compute_jobs_run_on_the_configured_executor(monkeypatch):
    from analysis.errors import ConfigError
    from app.jobs import JobSpec

    monkeypatch.setenv("SEMCOLLAB_EXECUTOR", "ray")
    assert JobSpec(source="ml-100k", name="r").executor == "ray"
    monkeypatch.setenv("SEMCOLLAB_EXECUTOR", "dask")
    with pytest.raises(ConfigError, match="SEMCOLLAB_EXECUTOR"):
        JobSpec(source="ml-100k", name="r")


FAKE_ENGINE = textwrap.dedent("""
    import shutil, sys, time
    src, out, stages = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    for s in stages:
        print(f"[{s}] ...", flush=True)
        time.sleep(0.02)
        print(f"[{s}] done in 0.0s", flush=True)
    shutil.copytree(src, out)
    print(f"run written to {out}", flush=True)
""")


@pytest.fixture
def fake_launch(monkeypatch, app_run_path, tmp_path):
    """Replace the engine subprocess by a script that prints the stage lines and copies the small run."""
    import subprocess

    from app import jobs

    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE)
    launched = []

    def launch(cmd, out, log_path):
        launched.append(cmd)
        with open(log_path, "wb") as fh:
            return subprocess.Popen([sys.executable, str(script), str(app_run_path), str(out), ",".join(jobs.STAGES)],
                                    stdout=fh, stderr=subprocess.STDOUT)

    monkeypatch.setattr(jobs, "launch", launch)
    return launched


@pytest.fixture
def compute_env(app_env, app_run_path, tmp_path, monkeypatch) -> Path:
    """A runs root of its own (holding a link to the small run), so new runs never reach other tests."""
    root = tmp_path / "runs"
    root.mkdir()
    (root / "small").symlink_to(app_run_path, target_is_directory=True)
    monkeypatch.setenv("SEMCOLLAB_RUNS", str(root))
    return root


def _wait_done(at, timeout: float = 30.0):
    import time

    t0 = time.monotonic()
    while "compute_job" in at.session_state and not at.session_state["compute_job"].get("finished"):
        assert time.monotonic() - t0 < timeout
        time.sleep(0.3)
        at.run()
    return at


def test_compute_builtin_dataset_runs_in_background_and_selects_the_run(app_test, compute_env, fake_launch):
    app_env = compute_env
    at = app_test(COMPUTE)
    assert_clean(at)
    at.radio(key="compute_source").set_value("synthetic").run()
    at.number_input(key="compute_n_users").set_value(300).run()
    at.text_input(key="compute_name").input("bad name!").run()
    at.button(key="compute_start").click().run()
    assert "is not allowed" in plain(at.error[0].value) and not fake_launch
    at.text_input(key="compute_name").input("fresh-synthetic").run()
    at.checkbox(key="compute_umap").uncheck().run()
    at.button(key="compute_start").click().run()
    assert not at.exception
    assert len(fake_launch) == 1
    cmd = fake_launch[0]
    assert cmd[cmd.index("--synthetic") + 1] == "mean_per_user=60.0" and "n_users=300" in cmd and "--no-umap" in cmd
    assert cmd[cmd.index("--out") + 1] == str((app_env / "fresh-synthetic").resolve())
    assert at.progress, "a progress bar while the job runs"
    _wait_done(at)
    assert not at.exception
    at.run()
    assert at.sidebar.selectbox(key="sb_run").value == "fresh-synthetic"
    assert any("is ready" in plain(s.value) for s in at.success)
    log = (app_env / "fresh-synthetic.log").read_text()
    assert "[write] done" in log
    # the same name is now refused
    at.button(key="compute_again").click().run()
    at.text_input(key="compute_name").input("fresh-synthetic").run()
    at.button(key="compute_start").click().run()
    assert "already holds a run" in plain(at.error[0].value)


def test_compute_upload_shows_the_engine_error_then_accepts_good_files(app_test, compute_env, fake_launch, tmp_path):
    app_env = compute_env
    at = app_test(COMPUTE)
    at.radio(key="compute_source").set_value("files").run()
    at.file_uploader(key="compute_inter").set_value(("ratings.csv", b"user_id,item_id\nu1,i1\nu1,i2\nu2,\n", "text/csv"))
    at.text_input(key="compute_name").input("mine").run()
    at.button(key="compute_start").click().run()
    assert not at.exception
    assert at.error and "ratings.csv, line 4: empty item id" in plain(at.error[0].value)
    assert "Traceback" not in at.error[0].value and not fake_launch
    data = app_make_data(tmp_path / "up")
    at.file_uploader(key="compute_inter").set_value(
        ("interactions.parquet", (data / "interactions.parquet").read_bytes(), "application/octet-stream"))
    at.file_uploader(key="compute_items").set_value(
        ("items.parquet", (data / "items.parquet").read_bytes(), "application/octet-stream"))
    at.file_uploader(key="compute_vectors").set_value(
        ("semantic.npz", (data / "semantic.npz").read_bytes(), "application/octet-stream"))
    at.run()
    at.button(key="compute_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    cmd = fake_launch[0]
    up = app_env / ".uploads" / "mine"  # one folder per role: an upload cannot overwrite another
    assert cmd[cmd.index("--data") + 1] == str(up / "inter" / "interactions.parquet")
    assert cmd[cmd.index("--items") + 1] == str(up / "items" / "items.parquet")
    assert cmd[cmd.index("--semantic") + 1] == str(up / "vectors" / "semantic.npz")
    inter = pd.read_parquet(data / "interactions.parquet")
    assert any(f"{len(inter):,} interactions" in plain(i.value) for i in at.info)
    _wait_done(at)
    at.run()
    at.button(key="compute_open").click().run()
    assert not at.exception
    assert at.sidebar.selectbox(key="sb_run").value == "mine"
    assert at.title[0].value == "Overview"


def test_real_engine_failure_reaches_the_log_parser(tmp_path):
    """A real ``python -m analysis run`` rejected by the engine: exit code 2 and its message, parsed."""
    from app.jobs import JobSpec, build_command, launch, log_path_for, progress, read_log

    out = tmp_path / "runs" / "bad"
    spec = JobSpec(source="synthetic", name="bad", synthetic={"n_userz": 3})
    proc = launch(build_command(spec, out), out, log_path_for(out))
    assert proc.wait(timeout=60) == 2
    p = progress(read_log(log_path_for(out)))
    assert p.error.startswith("--synthetic 'n_userz=3': expected KEY=VALUE") and not p.written
    assert not out.exists()


def test_compute_page_shows_a_failed_run(app_test, compute_env, monkeypatch, tmp_path):
    import subprocess

    from app import jobs

    def launch(cmd, out, log_path):
        with open(log_path, "wb") as fh:
            return subprocess.Popen([sys.executable, "-c", "import sys; print('[load] ...', flush=True); "
                                     "print('semcollab: error: data/x.csv, line 3: empty user id', file=sys.stderr); "
                                     "sys.exit(2)"], stdout=fh, stderr=subprocess.STDOUT)

    monkeypatch.setattr(jobs, "launch", launch)
    at = app_test(COMPUTE)
    before = at.sidebar.selectbox(key="sb_run").value
    at.text_input(key="compute_name").input("doomed").run()
    at.button(key="compute_start").click().run()
    _wait_done(at)
    at.run()
    assert not at.exception
    assert plain(at.error[0].value) == "The run doomed failed: data/x.csv, line 3: empty user id"
    assert at.sidebar.selectbox(key="sb_run").value == before  # nothing new to select
    assert not (compute_env / "doomed").exists()


@pytest.mark.slow
def test_real_tiny_run_through_the_job_runner(tmp_path):
    """The whole background path with the real engine: every stage line seen, progress 1, run opens."""
    import time

    from analysis import open_run
    from app.jobs import STAGES, JobSpec, build_command, launch, log_path_for, progress, read_log

    out = tmp_path / "runs" / "tiny"
    spec = JobSpec(source="synthetic", name="tiny", synthetic={"n_users": 100, "n_items": 120, "mean_per_user": 12.0},
                   ks=(10,), bootstrap=50, umap=False)
    proc = launch(build_command(spec, out), out, log_path_for(out))
    seen = []
    while proc.poll() is None:
        seen.append(progress(read_log(log_path_for(out))).fraction)
        time.sleep(0.5)
    assert proc.returncode == 0, read_log(log_path_for(out))[-2000:]
    p = progress(read_log(log_path_for(out)))
    assert p.n_done == len(STAGES) and p.fraction == 1.0 and p.written and p.error is None
    assert seen == sorted(seen) and any(0 < f < 1 for f in seen)  # monotone, with intermediate values
    run = open_run(out)
    assert run.manifest["config"]["synthetic"] == {"n_users": 100, "n_items": 120, "mean_per_user": 12.0}
    assert run.manifest["dataset"]["n_users"] == 100


def test_compute_page_works_before_any_run_exists(tmp_path, monkeypatch):
    """A fresh install has no run: every page says how to make one, and Compute still opens."""
    from streamlit.testing.v1 import AppTest

    empty = tmp_path / "no-runs"
    empty.mkdir()
    monkeypatch.setenv("SEMCOLLAB_RUNS", str(empty))
    at = AppTest.from_file(APP_MAIN, default_timeout=120).run()
    assert not at.exception
    assert any("Compute page" in e.value for e in at.error)
    at.switch_page(COMPUTE).run()
    assert not at.exception and not at.error
    assert at.radio(key="compute_source") is not None
