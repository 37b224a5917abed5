"""AppTest checks of the Structure and Alignment pages and their lines on Overview / Items.

On the small real run of :mod:`app_fixtures` (made by the pipeline, so it holds the similarity,
cca, ajive, variance, probes and fusion-model tables): every number a page shows must equal the
run's tables — the shared dimension (leading held-out CCA components above their null), the
AJIVE joint rank, the shared-variance bars, the similarity table and its debiased CKA, the map's
colours (per-item shared energy), the probe curves and ceilings, the worst-explained items, the
fusion-model table and the verdicts read from its paired intervals. Counts the engine decided
(shared dimension, joint rank, each regime's best map) are checked against the run summary, not
re-derived here. A run of an older schema gets a clear "recompute with --force" message, and a
worst-explained item opens the Items drill-down. The verdict and similarity readings are also
checked on hand-made toy tables.
"""
from __future__ import annotations

import json
import shutil
import sys

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


def best_map(run, regime: str) -> pd.Series:
    """The probes row of the map the engine chose for ``regime`` (run summary, by validation R²)."""
    probe, _, cap = run.manifest["summary"]["probes"]["regimes"][regime]["best_by_valid"].partition(":")
    p = run.table("probes")
    return p[(p.regime == regime) & (p.probe == probe) & (p.capacity == cap)].iloc[0]


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
    stored = run.manifest["summary"]["structure"]
    assert cards["Shared dim. · CCA"] == str(stored["shared_dim_cca"])
    # the shared dimension is a run of leading components that beat the null
    assert cca.sort_values("component")["significant"].iloc[: stored["shared_dim_cca"]].all()
    joint = int(aj["joint"].sum())
    assert cards["Joint rank · AJIVE"] == str(stored["joint_rank_ajive"]) == str(joint) == str(int(var["joint_rank"].iloc[0]))
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
    stored = run.manifest["summary"]["structure"]
    assert any(s.startswith(f"Shared dimension ≈ {stored['shared_dim_cca']} (held-out CCA) / "
                            f"{stored['joint_rank_ajive']} (AJIVE)") for s in lines), lines
    sim = run.table("similarity")
    d = sim[(sim.statistic == "debiased_cka") & (sim.variant == "raw")].iloc[0]
    null = f"{d['null_mean']:.3f}".replace("-0.000", "0.000")
    assert f"Debiased CKA {d['raw']:.3f} (null {null}, p = {d['p_value']:.2g})." in lines
    ind, pop = best_map(run, "in_distribution"), best_map(run, "shift_popularity")
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
    regimes = run.manifest["summary"]["probes"]["regimes"]
    assert set(regimes) == set(probes.regime)
    for regime, stored in regimes.items():
        card = cards[f"Map chosen on validation · R² · {short[regime]}"]
        assert card == f"{stored['r2']:.3f}" == f"{best_map(run, regime)['r2']:.3f}"
        top = probes[probes.regime == regime].r2.max()  # and the best map on held-out items beside it
        assert any(f"(R² {top:.3f})" in c.value and "best on held-out items" in c.value for c in at.caption)


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
    words = {"best_single": "best single view", "fusion": "score fusion", "alignment": "alignment baseline"}
    assert set(words) <= set(d.system_b)
    for r in d[(d.system_a == "complementarity_fusion") & (d.k == K) & d.system_b.isin(list(words))].itertuples():
        name = {"ndcg": "NDCG", "recall": "Recall"}[r.metric]
        line = next(s for s in md.split("\n") if f"On {name}@{K}" in s and words[r.system_b] in s)
        expected = ("ranks exactly like" if r.diff == 0 and r.lo == 0 and r.hi == 0 else
                    "beats" if r.lo > 0 else "is worse than" if r.hi < 0 else "is not distinguishable from")
        assert f"fusion {expected} the" in line, line
        if expected != "ranks exactly like":
            assert f"{r.diff:+.4f}" in line and f"{r.lo:+.4f} to {r.hi:+.4f}" in line


def _copy_run(src, dst, edit) -> None:
    """A copy of the run at ``dst`` with its manifest edited by ``edit`` (then re-sealed)."""
    import analysis.runstore as rs

    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    edit(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    rs.seal_run(dst)


@pytest.mark.parametrize("what", ["schema", "vocabulary"])
def test_a_run_of_an_older_schema_says_recompute_with_force(what, app_run_path, tmp_path, monkeypatch):
    """A run of an older schema (or one without the system vocabulary of schema 3) is refused with
    a clear "recompute it with --force" message on every page, never a traceback."""
    def edit(m: dict) -> None:
        if what == "schema":
            m["schema_version"] = 2
        else:
            m.pop("systems")

    old = tmp_path / "runs" / "old"
    _copy_run(app_run_path, old, edit)
    monkeypatch.setenv("SEMCOLLAB_RUNS", str(old.parent))
    monkeypatch.setattr(sys, "argv", ["app/main.py"])
    for page in (OVERVIEW, ALIGNMENT, STRUCTURE):
        at = open_page(page)
        assert not at.exception, [e.value for e in at.exception]
        assert len(at.error) == 1 and "--force" in at.error[0].value, [e.value for e in at.error]
        assert ("schema version 2" if what == "schema" else "system vocabulary") in at.error[0].value
        assert not at.get("plotly_chart") and not at.metric


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
    from analysis.systems import manifest_systems
    from app.data.alignment import fusion_model_summary, fusion_model_verdicts

    labels = {name: d["label"] for name, d in manifest_systems("ials", "semantic").items()}
    rows = [("best_single", "ndcg", 0.02, 0.01, 0.03), ("fusion", "ndcg", 0.0, 0.0, 0.0),
            ("alignment", "ndcg", -0.01, -0.02, 0.005), ("best_single", "recall", 0.03, 0.01, 0.05),
            ("fusion", "recall", 0.0, 0.0, 0.0), ("alignment", "recall", -0.02, -0.03, -0.01),
            ("semantic", "ndcg", 0.2, 0.1, 0.3)]
    d = pd.DataFrame([{"system_a": "complementarity_fusion", "system_b": b, "metric": m, "k": 20, "diff": x,
                       "lo": lo, "hi": hi, "p_value": 0.01} for b, m, x, lo, hi in rows])
    nd = fusion_model_verdicts(d, "ndcg", 20, labels)
    assert [(v["baseline"], v["verdict"]) for v in nd] == [
        ("best_single", "better"), ("fusion", "identical"), ("alignment", "no clear difference")]
    assert ("beats the best single view (validation) (difference +0.0200, 95 % interval +0.0100 to +0.0300"
            in nd[0]["text"])
    assert nd[1]["text"] == "On NDCG@20 the complementarity-aware fusion ranks exactly like the score fusion."
    rc = fusion_model_verdicts(d, "recall", 20, labels)
    assert rc[2]["verdict"] == "worse" and "is worse than the alignment baseline" in rc[2]["text"]
    assert fusion_model_verdicts(d, "ndcg", 10, labels) == []
    s = fusion_model_summary({"ndcg": nd, "recall": rc}, labels)
    assert s == ("Against the best single view (validation): better on every metric; against the score fusion: "
                 "identical rankings (no gain); against the alignment baseline: no clear difference.")


def test_similarity_reading_on_a_toy_table():
    from app.data.structure import similarity_reading

    t = pd.DataFrame([
        {"statistic": "debiased_cka", "variant": "raw", "raw": 0.004, "null_mean": -0.0001, "null_std": 0.002,
         "null_lo": -0.004, "null_hi": 0.004, "p_value": 0.03, "n_items": 100, "n_perm": 200},
        {"statistic": "cka", "variant": "raw", "raw": 0.11, "null_mean": 0.109, "null_std": 0.002,
         "null_lo": 0.105, "null_hi": 0.113, "p_value": 0.4, "n_items": 100, "n_perm": 200},
        {"statistic": "procrustes_distance", "variant": "raw", "raw": 0.9, "null_mean": 1.8, "null_std": 0.01,
         "null_lo": 1.78, "null_hi": 1.82, "p_value": 1 / 201, "n_items": 100, "n_perm": 200},
    ])
    f = similarity_reading(t).set_index("statistic")
    # raw = the null's upper end is not beyond it; biased CKA of 0.11 sits inside its (inflated) null
    assert not f.loc["debiased_cka", "beyond_null"] and not f.loc["cka", "beyond_null"]
    assert f.loc["cka", "reading"] == ("linear CKA = 0.110 against 0.109 with the item pairing shuffled (95 % of shuffles "
                                       "0.105 to 0.113; p = 0.4): within chance: no evidence of shared structure.")
    assert "against 0.000 with" in f.loc["debiased_cka", "reading"]  # no negative zero
    assert f.loc["procrustes_distance", "beyond_null"]
    assert f.loc["procrustes_distance", "reading"].endswith(
        "p = 0.005, the smallest 200 shuffles can give): below chance: the spaces share structure.")
    assert list(f.index) == ["debiased_cka", "cka", "procrustes_distance"]
