"""AppTest checks of the Structure and Alignment pages and their lines on Overview / Items.

On the small real run of :mod:`app_fixtures` (made by the pipeline, so it holds the similarity,
cca, ajive, variance, probes and fusion-model tables): every number a page shows must equal the
run's tables — the shared dimension (leading held-out CCA components above their null), the
AJIVE joint rank, the shared-variance bars, the similarity table and its debiased CKA, the map's
colours (per-item shared energy), the probe curves and ceilings, the worst-explained items, the
fusion-model table and the verdicts read from its paired intervals. A run without the probe
tables gets a clear message instead of charts, and a worst-explained item opens the Items
drill-down. The verdict and similarity readings are also checked on hand-made toy tables.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app_fixtures import (  # noqa: F401  (fixtures)
    arr,
    assert_clean,
    figure,
    plain,
    APP_MAIN,
    app_env,
    app_run,
    app_run_path,
    app_test,
)

OVERVIEW, ITEMS, ALIGNMENT, STRUCTURE = ("views/overview.py", "views/items.py", "views/alignment.py",
                                         "views/structure.py")
PROBE_TABLES = ("probes", "fusion_models", "fusion_model_differences")


# ----------------------------------------------------------------------------- helpers
def trace(fig: dict, prefix: str) -> dict:
    found = [t for t in fig["data"] if str(t.get("name", "")).startswith(prefix)]
    assert len(found) == 1, (prefix, [t.get("name") for t in fig["data"]])
    return found[0]


def floats(v) -> np.ndarray:
    return np.asarray(arr(v), dtype=float)


def reading_lines(at) -> list[str]:
    md = next(m.value for m in at.markdown if "Shared dimension" in m.value)
    return [plain(line)[2:] for line in md.split("\n")]


def leading_significant(cca: pd.DataFrame) -> int:
    sig = cca.sort_values("component")["significant"].astype(bool).tolist()
    n = 0
    while n < len(sig) and sig[n]:
        n += 1
    return n


def best_by_valid(probes: pd.DataFrame, regime: str) -> pd.Series:
    d = probes[probes.regime == regime].reset_index(drop=True)
    return d.loc[int(np.flatnonzero(d.valid_r2.to_numpy(float) >= d.valid_r2.max() - 1e-9)[0])]


@pytest.fixture
def no_probe_run(app_run_path, tmp_path, monkeypatch) -> Path:
    """A copy of the small run without the alignment tables (as a run made before that stage),
    opened by a runstore that does not require them; the dashboard points at it."""
    import analysis.runstore as rs

    dst = tmp_path / "runs" / "old"
    shutil.copytree(app_run_path, dst)
    for t in PROBE_TABLES:
        (dst / f"{t}.parquet").unlink(missing_ok=True)
    items = pd.read_parquet(dst / "items.parquet")
    items.drop(columns=["probe_residual", "probe_best"], errors="ignore").to_parquet(dst / "items.parquet", index=False)
    rs.seal_run(dst)  # re-record the checksums of the deliberately edited copy
    monkeypatch.setattr(rs, "TABLES", [t for t in rs.TABLES if t not in PROBE_TABLES])
    monkeypatch.setenv("SEMCOLLAB_RUNS", str(dst.parent))
    monkeypatch.setattr(sys, "argv", ["app/main.py"])
    return dst


def open_page(page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP_MAIN, default_timeout=120)
    at.run()
    at.switch_page(page).run()
    return at


# ----------------------------------------------------------------------------- structure
def test_structure_cards_and_charts_equal_the_tables(app_test, app_run):
    run = app_run
    cca, aj, var = run.table("cca"), run.table("ajive"), run.table("variance").set_index("view")
    sim = run.table("similarity")
    at = app_test(STRUCTURE)
    assert_clean(at)
    cards = {m.label: m.value for m in at.metric}
    n_lead = leading_significant(cca)
    assert cards["Shared dim. · CCA"] == str(n_lead) == str(run.manifest["summary"]["structure"]["shared_dim_cca"])
    joint = int(aj["joint"].sum())
    assert cards["Joint rank · AJIVE"] == str(joint) == str(int(var["joint_rank"].iloc[0]))
    assert joint == run.manifest["summary"]["structure"]["joint_rank_ajive"]
    assert cards["Shared var. · sem."] == f"{var.loc['semantic', 'shared']:.1%}"
    assert cards["Shared var. · col."] == f"{var.loc['collaborative', 'shared']:.1%}"
    dcka = sim[(sim.statistic == "debiased_cka") & (sim.variant == "raw")].iloc[0]
    assert cards["Debiased CKA"] == f"{dcka['raw']:.3f}"

    # held-out CCA: bars split by significance, the null band and the faint in-sample line
    fig = figure(at, "structure_cca")
    c = cca.sort_values("component")
    beats = trace(fig, "held-out correlation, beats the null")
    within = trace(fig, "held-out correlation, within the null")
    assert beats["name"].endswith(f"({int(c.significant.sum())})")
    np.testing.assert_allclose(floats(beats["y"]), c.loc[c.significant, "heldout_corr"].to_numpy())
    np.testing.assert_allclose(floats(within["y"]), c.loc[~c.significant, "heldout_corr"].to_numpy())
    np.testing.assert_allclose(floats(trace(fig, "null: 95th percentile")["y"]), c["null_q95"].to_numpy())
    np.testing.assert_allclose(floats(trace(fig, "in-sample correlation")["y"]), c["train_corr"].to_numpy())
    assert fig["layout"]["yaxis"]["title"]["text"].startswith("canonical correlation")
    cap = next(x.value for x in at.caption if "components beat the null held out" in x.value)
    assert cap.startswith(f"{int(c.significant.sum())} of {len(c)} components")

    # AJIVE: σ² split by joint, both bounds as lines
    fig = figure(at, "structure_ajive")
    a = aj.sort_values("component")
    np.testing.assert_allclose(floats(trace(fig, "σ², joint")["y"]), a.loc[a.joint, "sigma2"].to_numpy())
    assert trace(fig, "σ², joint")["name"].endswith(f"({joint})")
    for prefix, col in (("Wedin bound", "wedin_bound"), ("random-direction bound", "random_bound")):
        np.testing.assert_allclose(floats(trace(fig, prefix)["y"]), [a[col].iloc[0]] * 2)

    # shared / private bars
    fig = figure(at, "structure_variance")
    shared = trace(fig, "shared")
    got = dict(zip(arr(shared["y"]), floats(shared["x"])))
    assert got == pytest.approx(var["shared"].to_dict())
    for view in ("semantic", "collaborative"):
        assert floats(trace(fig, f"private to the {view} view")["x"])[0] == pytest.approx(var.loc[view, "private"])


def test_structure_similarity_table_and_map_equal_the_run(app_test, app_run):
    run = app_run
    sim = run.table("similarity").set_index(["statistic", "variant"])
    at = app_test(STRUCTURE)
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "null mean" in d.value.columns)
    assert len(table) == len(sim) == 6
    labels = {"cka": "linear CKA", "debiased_cka": "debiased CKA", "procrustes_distance": "Procrustes distance"}
    variants = {"raw": "as is", "top_pc_removed": "top principal component removed"}
    for (stat, var), r in sim.iterrows():
        row = table[(table["measure"] == labels[stat]) & (table["variant"] == variants[var])].iloc[0]
        for col, src in (("value", "raw"), ("null mean", "null_mean"), ("null 2.5 %", "null_lo"),
                         ("null 97.5 %", "null_hi"), ("p-value", "p_value")):
            assert row[col] == pytest.approx(r[src]), (stat, var, col)
        # the planted synthetic views share factors: every score is beyond its null
        assert row["verdict"].startswith("above chance" if stat != "procrustes_distance" else "below chance")
    words = plain(next(m.value for m in at.markdown if "with the item pairing shuffled" in m.value))
    d = sim.loc[("debiased_cka", "raw")]
    assert f"debiased CKA = {d['raw']:.3f} against" in words
    floor = d["p_value"] <= 1 / (1 + d["n_perm"]) + 1e-12
    assert (f"p = {d['p_value']:.2g}" + (f", the smallest {int(d['n_perm'])} shuffles can give" if floor else ")")) in words

    # the map: semantic coordinates coloured by each item's semantic shared energy (cold items have none)
    fig = figure(at, "structure_map")
    t = fig["data"][0]
    idx = arr(t["customdata"])[:, 0].astype(int)
    items = run.items.set_index("item_idx")
    assert set(idx) == set(items.index[items["sem_shared"].notna()])
    np.testing.assert_allclose(floats(t["marker"]["color"]), items.loc[idx, "sem_shared"].to_numpy())
    assert t["marker"]["colorbar"]["title"]["text"].startswith("shared energy, semantic view")
    assert all("<" not in str(h) for h in arr(t["hovertext"]))  # titles escaped (item 0 has an HTML title)
    at.radio(key="structure_view").set_value("collaborative").run()
    t = figure(at, "structure_map")["data"][0]
    idx = arr(t["customdata"])[:, 0].astype(int)
    np.testing.assert_allclose(floats(t["marker"]["color"]), items.loc[idx, "col_shared"].to_numpy())


def test_overview_lines_equal_the_tables(app_test, app_run):
    run = app_run
    at = app_test(OVERVIEW)
    assert_clean(at)
    lines = reading_lines(at)
    n_lead, joint = leading_significant(run.table("cca")), int(run.table("ajive")["joint"].sum())
    assert any(s.startswith(f"Shared dimension ≈ {n_lead} (held-out CCA) / {joint} (AJIVE)") for s in lines), lines
    sim = run.table("similarity")
    d = sim[(sim.statistic == "debiased_cka") & (sim.variant == "raw")].iloc[0]
    null = f"{d['null_mean']:.3f}".replace("-0.000", "0.000")
    assert f"Debiased CKA {d['raw']:.3f} (null {null}, p = {d['p_value']:.2g})." in lines
    probes = run.table("probes")
    ind = best_by_valid(probes, "in_distribution")
    pop = best_by_valid(probes, "shift_popularity")
    line = next(s for s in lines if s.startswith("The best map from semantic to collaborative"))
    assert f"R² = {ind['r2']:.2f} in-distribution" in line
    assert f"{pop['r2']:.2f} under popularity shift" in line


# ----------------------------------------------------------------------------- alignment
def test_alignment_charts_equal_the_probes_table(app_test, app_run):
    run = app_run
    probes = run.table("probes")
    at = app_test(ALIGNMENT)
    assert_clean(at)
    assert not at.warning
    short = {"in_distribution": "in-distribution", "shift_popularity": "popularity shift", "shift_time": "time shift"}
    names = {"reduced_rank": "reduced-rank linear", "ridge": "ridge (full rank)", "mlp": "one-hidden-layer MLP"}
    ranks = sorted(int(c) for c in probes.loc[(probes.probe == "reduced_rank") & (probes.capacity != "full"), "capacity"]
                   .unique())
    widths = sorted(int(c) for c in probes.loc[probes.probe == "mlp", "capacity"].unique())
    order = [f"rank {r}" for r in ranks] + ["full rank"] + [f"MLP {w}" for w in widths]
    for key, col in (("alignment_r2", "r2"), ("alignment_overlap", "overlap"), ("alignment_recall", "recall")):
        fig = figure(at, key)
        assert fig["layout"]["xaxis"]["categoryarray"] == order
        assert fig["layout"]["xaxis"]["title"]["text"].startswith("probe capacity")
        n = 0
        for (regime, probe), g in probes.groupby(["regime", "probe"]):
            tr = trace(fig, f"{short[regime]} · {names[probe]}")
            g = g.assign(num=g["capacity"].map(lambda c: np.inf if c == "full" else float(c))).sort_values("num")
            np.testing.assert_allclose(floats(tr["y"]), g[col].to_numpy(float), err_msg=f"{key} {regime} {probe}")
            expect_x = [("full rank" if c == "full" else f"rank {c}") if probe != "mlp" else f"MLP {c}"
                        for c in g["capacity"]]
            assert list(arr(tr["x"])) == expect_x
            n += 1
        assert n == probes.groupby(["regime", "probe"]).ngroups
    # the ceiling of each regime = the collaborative view's own Recall@K on the same held-out items
    fig = figure(at, "alignment_recall")
    for regime, g in probes.groupby("regime"):
        ceiling = trace(fig, f"ceiling ({short[regime]})")
        assert floats(ceiling["y"]).tolist() == pytest.approx([g["ceiling_recall"].iloc[0]] * 2)
    chance = run.manifest["summary"]["probes"]["chance_overlap"]
    assert floats(trace(figure(at, "alignment_overlap"), "chance")["y"]).tolist() == pytest.approx([chance] * 2)
    cards = {m.label: m.value for m in at.metric}
    for regime in probes.regime.unique():
        assert cards[f"Best map · R² · {short[regime]}"] == f"{best_by_valid(probes, regime)['r2']:.3f}"


def test_alignment_worst_items_open_the_items_drilldown(app_test, app_run):
    items = app_run.items
    at = app_test(ALIGNMENT)
    assert_clean(at)
    worst = items[items.probe_residual.notna()].sort_values(["probe_residual", "item_idx"], ascending=[False, True])
    shown = next(d.value for d in at.dataframe if "probe_residual" in d.value.columns)
    assert shown["item_id"].tolist() == worst["item_id"].head(20).tolist()
    np.testing.assert_allclose(shown["probe_residual"].to_numpy(float), worst["probe_residual"].head(20).to_numpy())
    assert items.loc[items.cold, "probe_residual"].isna().all()
    target = worst.iloc[2]
    at.selectbox(key=f"alignment_item::{app_run.path}").set_value(int(target["item_idx"])).run()
    at.button(key="alignment_open").click().run()
    assert_clean(at)
    assert at.session_state["items_item"] == int(target["item_idx"])
    assert at.query_params["item"] in (target["item_id"], [target["item_id"]])
    assert plain(at.subheader[0].value) == target["title"]  # the Items page's drill-down heading
    cards = {m.label: m.value for m in at.metric}
    assert cards["Probe residual"] == f"{target['probe_residual']:.3f}"


def test_alignment_fusion_models_read_from_the_intervals(app_test, app_run):
    run = app_run
    t, d = run.table("fusion_models"), run.table("fusion_model_differences")
    K = run.manifest["K"]
    at = app_test(ALIGNMENT)
    assert_clean(at)
    shown = next(x.value for x in at.dataframe if f"NDCG@{K}" in x.value.columns and "system" in x.value.columns)
    assert len(shown) == t[t.k == K]["system"].nunique()
    comp = t[(t.system == "complementarity_fusion") & (t.k == K)].set_index("metric")["mean"]
    row = shown[shown["system"] == "Complementarity-aware fusion"].iloc[0]
    assert row[f"NDCG@{K}"] == pytest.approx(comp["ndcg"]) and row[f"Recall@{K}"] == pytest.approx(comp["recall"])
    md = next(plain(m.value) for m in at.markdown if "the complementarity-aware fusion" in plain(m.value))
    words = {"best_single": "best single view", "score_fusion": "score fusion", "alignment": "alignment baseline"}
    for r in d[(d.system_a == "complementarity_fusion") & (d.k == K) & d.system_b.isin(list(words))].itertuples():
        name = {"ndcg": "NDCG", "recall": "Recall"}[r.metric]
        line = next(s for s in md.split("\n") if f"On {name}@{K}" in s and words[r.system_b] in s)
        expected = ("ranks exactly like" if r.diff == 0 and r.lo == 0 and r.hi == 0 else
                    "beats" if r.lo > 0 else "is worse than" if r.hi < 0 else "is not distinguishable from")
        assert f"fusion {expected} the" in line, line
        if expected != "ranks exactly like":
            assert f"{r.diff:+.4f}" in line and f"{r.lo:+.4f} to {r.hi:+.4f}" in line


def test_alignment_without_probes_says_how_to_get_them(no_probe_run):
    at = open_page(ALIGNMENT)
    assert_clean(at)
    msg = [w.value for w in at.warning]
    assert len(msg) == 1 and "this run has no alignment probes" in msg[0].lower()
    assert "semcollab run ... --force" in msg[0]
    assert not at.get("plotly_chart") and not at.dataframe
    # the other pages still work and simply leave the probe facts out
    ov = open_page(OVERVIEW)
    assert_clean(ov)
    lines = reading_lines(ov)
    assert any(s.startswith("Shared dimension ≈") for s in lines)
    assert not any(s.startswith("The best map") for s in lines)
    it = open_page(ITEMS)
    assert_clean(it)
    assert {m.label: m.value for m in it.metric}["Probe residual"] == "n/a"


def test_items_drilldown_shows_energy_and_residual(app_test, app_run):
    items = app_run.items.set_index("item_idx")
    warm = items[~items.cold].iloc[3]
    at = app_test(ITEMS, item=warm["item_id"])
    assert_clean(at)
    cards = {m.label: m.value for m in at.metric}
    assert cards["Probe residual"] == f"{warm['probe_residual']:.3f}"
    assert cards["Semantic energy · shared / private"] == f"{warm['sem_shared']:.0%} / {warm['sem_private']:.0%}"
    assert cards["Collaborative energy · shared / private"] == f"{warm['col_shared']:.0%} / {warm['col_private']:.0%}"
    cold = items[items.cold].iloc[0]
    at = app_test(ITEMS, item=cold["item_id"])
    assert_clean(at)
    cards = {m.label: m.value for m in at.metric}
    assert cards["Probe residual"] == "n/a (cold)"
    assert cards["Collaborative energy · shared / private"] == "n/a / n/a"


# ----------------------------------------------------------------------------- toy readings
def test_fusion_model_verdicts_on_a_toy_table():
    from app.derive_more import FUSION_MODEL_LABELS, fusion_model_summary, fusion_model_verdicts

    rows = [("best_single", "ndcg", 0.02, 0.01, 0.03), ("score_fusion", "ndcg", 0.0, 0.0, 0.0),
            ("alignment", "ndcg", -0.01, -0.02, 0.005), ("best_single", "recall", 0.03, 0.01, 0.05),
            ("score_fusion", "recall", 0.0, 0.0, 0.0), ("alignment", "recall", -0.02, -0.03, -0.01),
            ("semantic", "ndcg", 0.2, 0.1, 0.3)]
    d = pd.DataFrame([{"system_a": "complementarity_fusion", "system_b": b, "metric": m, "k": 20, "diff": x,
                       "lo": lo, "hi": hi, "p_value": 0.01} for b, m, x, lo, hi in rows])
    nd = fusion_model_verdicts(d, "ndcg", 20)
    assert [(v["baseline"], v["verdict"]) for v in nd] == [
        ("best_single", "better"), ("score_fusion", "identical"), ("alignment", "no clear difference")]
    assert "beats the best single view (difference +0.0200, 95 % interval +0.0100 to +0.0300" in nd[0]["text"]
    assert nd[1]["text"] == "On NDCG@20 the complementarity-aware fusion ranks exactly like the score fusion (validation α)."
    rc = fusion_model_verdicts(d, "recall", 20)
    assert rc[2]["verdict"] == "worse" and "is worse than the alignment baseline" in rc[2]["text"]
    assert fusion_model_verdicts(d, "ndcg", 10) == []
    s = fusion_model_summary({"ndcg": nd, "recall": rc}, FUSION_MODEL_LABELS)
    assert s == ("Against the best single view: better on every metric; against the score fusion (validation α): "
                 "identical rankings (no gain); against the alignment baseline: no clear difference.")


def test_similarity_reading_on_a_toy_table(tmp_path):
    from analysis.runstore import Run
    from app.derive_more import similarity_frame

    t = pd.DataFrame([
        {"statistic": "debiased_cka", "variant": "raw", "raw": 0.004, "null_mean": -0.0001, "null_std": 0.002,
         "null_lo": -0.004, "null_hi": 0.004, "p_value": 0.03, "n_items": 100, "n_perm": 200},
        {"statistic": "cka", "variant": "raw", "raw": 0.11, "null_mean": 0.109, "null_std": 0.002,
         "null_lo": 0.105, "null_hi": 0.113, "p_value": 0.4, "n_items": 100, "n_perm": 200},
        {"statistic": "procrustes_distance", "variant": "raw", "raw": 0.9, "null_mean": 1.8, "null_std": 0.01,
         "null_lo": 1.78, "null_hi": 1.82, "p_value": 1 / 201, "n_items": 100, "n_perm": 200},
    ])
    run = Run(path=tmp_path, manifest={}, _tables={"similarity": t})
    f = similarity_frame(run).set_index("statistic")
    # raw = the null's upper end is not beyond it; biased CKA of 0.11 sits inside its (inflated) null
    assert not f.loc["debiased_cka", "beyond_null"] and not f.loc["cka", "beyond_null"]
    assert f.loc["cka", "reading"] == ("linear CKA = 0.110 against 0.109 with the item pairing shuffled (95 % of shuffles "
                                       "0.105 to 0.113; p = 0.4): within chance: no evidence of shared structure.")
    assert "against 0.000 with" in f.loc["debiased_cka", "reading"]  # no negative zero
    assert f.loc["procrustes_distance", "beyond_null"]
    assert f.loc["procrustes_distance", "reading"].endswith(
        "p = 0.005, the smallest 200 shuffles can give): below chance: the spaces share structure.")
    assert list(f.index) == ["debiased_cka", "cka", "procrustes_distance"]
