"""Dashboard tests with Streamlit's AppTest on a small real run made by the pipeline.

Each page is rendered headless and its content is checked against the run's tables:
card values equal the metrics table, table row counts and drill-down neighbours equal what the
items / neighbors tables say, derived hit counts and oracles equal the engine's stored columns,
linked map selections reach the other map and the selection table, HTML titles stay text, and a
missing or broken run gives an ``st.error`` instead of a stack trace.
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
    APP_HTML_ITEM,
    APP_HTML_TITLE,
    APP_MAIN,
    app_env,
    app_run,
    app_run_path,
    app_test,
    app_umap_run_path,
)

OVERVIEW, MAPS, ITEMS, HITS = "views/overview.py", "views/maps.py", "views/items.py", "views/hits.py"


# ----------------------------------------------------------------------------- helpers
def simulate_plotly_selection(at, key: str, item_idx: list[int]):
    """Run the app as if the user had selected ``item_idx`` points in the Plotly chart ``key``.

    The only place that uses Streamlit's private testing API (``AppTest._tree`` / ``AppTest._run``):
    AppTest cannot interact with Plotly charts, so the selection event the browser would send is
    added to the widget states by hand, with ``customdata[0] = item_idx`` as the app's maps carry it.
    """
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))
    points = [{"curve_number": 0, "point_number": n, "point_index": n, "customdata": [int(i)]}
              for n, i in enumerate(item_idx)]
    event = {"selection": {"points": points, "point_indices": list(range(len(points))), "box": [], "lasso": []}}
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=chart.proto.id, string_value=json.dumps(event)))
    return at._run(states)


def system_of(run, role: str) -> str:
    """The run's system of ``role``, as its manifest records it."""
    from analysis.systems import roles

    return roles(run.manifest)[role]


def key_of(run):
    from app.data.common import RunKey

    return RunKey.of(run.path)


# ----------------------------------------------------------------------------- run-level reads = stored columns
def test_recomputed_hits_oracles_and_overlap_equal_the_stored_columns(app_run):
    """What the dashboard recomputes for any K / k / segment (analysis.run_queries over the saved lists
    and neighbours) equals the columns the engine stored at the run's K and k."""
    from analysis import run_queries as rq

    run, K, k = app_run, app_run.manifest["K"], app_run.manifest["k_neighbors"]
    items, users = run.items.set_index("item_idx"), run.users.set_index("user_idx")
    sem, col = system_of(run, "semantic_trained"), system_of(run, "collaborative")
    assert (sem, col) == (run.manifest["compared"]["semantic"], run.manifest["compared"]["collaborative"])
    ih = rq.item_hit_counts(rq.hit_pairs(run, K, sem, col), len(items))
    for c in ("hits_shared", "hits_sem_only", "hits_col_only", "hits_missed_by_both", "n_test"):
        np.testing.assert_array_equal(ih[c].to_numpy(), items[c].to_numpy(), err_msg=c)
    comp = rq.compare_systems(run, sem, col, K).reindex(users.index)
    for mine, theirs in (("shared", "shared"), ("only_a", "only_sem"), ("only_b", "only_col"), ("n_rel", "n_test")):
        np.testing.assert_array_equal(comp[mine].to_numpy(), users[theirs].to_numpy(), err_msg=theirs)
    ctrl = rq.compare_systems(run, system_of(run, "mostpop"), col, K).reindex(users.index)
    for c in ("list_jaccard", "rbo", "hits_first_ndcg_a", "hits_first_ndcg_b", "oracle_select_recall",
              "oracle_select_ndcg", "oracle_union_recall", "oracle_union_ndcg"):
        np.testing.assert_allclose(comp[c], users[c], rtol=1e-9, equal_nan=True, err_msg=c)
        np.testing.assert_allclose(ctrl[c], users[f"control_{c}"], rtol=1e-9, equal_nan=True, err_msg=c)
    for oracle in ("select", "union"):
        for metric in ("recall", "ndcg"):
            m = rq.metric_row(run, f"oracle_{oracle}", metric, K)
            assert rq.oracle_value(run, oracle, sem, col, metric, K) == pytest.approx(m["mean"]), (oracle, metric)
    # overlap re-cut from the neighbors table at the run's own k = the engine's, item by item
    from analysis.neighbors import recut_agreement

    g = rq.neighbour_graphs(run)
    ov = recut_agreement(g.semantic_idx, g.collaborative_idx, k)
    np.testing.assert_array_equal(ov["overlap"].notna().to_numpy(), items["overlap"].notna().to_numpy())
    np.testing.assert_allclose(ov["overlap"], items["overlap"], equal_nan=True)
    np.testing.assert_allclose(ov["jaccard"], items["jaccard"], equal_nan=True)
    assert ov.attrs["chance"] == pytest.approx(run.manifest["chance_overlap"])
    assert ov.attrs["chance_jaccard"] == pytest.approx(run.manifest["chance_jaccard"])
    shown = rq.overlap_at_k(run, k)  # at the run's own k the dashboard shows the stored values
    np.testing.assert_array_equal(shown["disagreement"].to_numpy(), items["disagreement"].to_numpy())


def test_page_data_equals_the_stored_summary(app_run):
    """The Overview's data functions give the run summary's numbers when nothing is filtered."""
    from app.data import overview

    key, K, k = key_of(app_run), app_run.manifest["K"], app_run.manifest["k_neighbors"]
    s = app_run.manifest["summary"]
    sem, col = app_run.manifest["compared"]["semantic"], app_run.manifest["compared"]["collaborative"]
    shares = overview.hit_shares(key, K, sem, col)
    assert shares["share_only_a"] == pytest.approx(s["complementarity"]["unique_hit_share_a"])
    assert shares["share_only_b"] == pytest.approx(s["complementarity"]["unique_hit_share_b"])
    assert overview.hit_shares(key, K, system_of(app_run, "mostpop"), col)["share_only_a"] == pytest.approx(
        s["control"]["unique_hit_share_a"])
    gains = overview.oracle_gains(key, K).set_index(["pair", "metric", "oracle"])["gain"]
    for pair, src in ((overview.PAIR_MAIN, "complementarity"), (overview.PAIR_CONTROL, "control")):
        for metric in ("recall", "ndcg"):
            assert gains[(pair, metric, "per-user selection")] == pytest.approx(s[src][f"oracle_select_{metric}_gain"])
        assert gains[(pair, "ndcg", "union pool vs own hits first")] == pytest.approx(s[src]["oracle_union_ndcg_gain"])
    assert overview.list_overlap(key, K)["jaccard"] == pytest.approx(s["complementarity"]["list_jaccard"])
    ov = overview.mean_overlap(key, k)
    assert (ov["mean"], ov["jaccard"]) == (pytest.approx(s["mean_overlap"]), pytest.approx(s["mean_jaccard"]))


def test_overlap_for_smaller_k_is_recomputed_from_the_neighbors_table(app_run):
    """overlap@k for k below the run's k, checked with a plain loop over the neighbors table."""
    from app.data.common import overlap_at_k

    k = 3
    nb = app_run.table("neighbors")
    cold = app_run.items.set_index("item_idx")["cold"]
    got = overlap_at_k(key_of(app_run), k)["overlap"]
    assert k != app_run.manifest["k_neighbors"]
    checked = 0
    for i in app_run.items["item_idx"].to_numpy()[:120]:
        s = nb[(nb.item_idx == i) & (nb.view == "semantic")].sort_values("rank")["neighbor_idx"]
        c = nb[(nb.item_idx == i) & (nb.view == "collaborative")].sort_values("rank")["neighbor_idx"]
        s = [j for j in s if not cold[j]][:k]
        if cold[i] or len(c) < k or len(s) < k:
            assert np.isnan(got[i])
            continue
        assert got[i] == pytest.approx(len(set(s) & set(c.iloc[:k])) / k)
        checked += 1
    assert checked > 50


def test_map_sample_keeps_tail_and_cold_and_stratifies():
    from app.data.maps import sample_for_map

    rng = np.random.default_rng(1)
    n = 50_000
    pop = rng.zipf(1.6, n).astype(float)
    frame = pd.DataFrame({"item_idx": np.arange(n), "pop_decile": pd.qcut(pd.Series(pop).rank(method="first"), 10,
                                                                         labels=False) + 1,
                          "cold": rng.random(n) < 0.05})
    frame["pop_bucket"] = np.where(frame["pop_decile"] <= 5, "tail", np.where(frame["pop_decile"] >= 9, "head", "torso"))
    s = sample_for_map(frame, 30_000)
    keep = frame[(frame.pop_bucket == "tail") | frame.cold]["item_idx"]
    assert set(keep) <= set(s)
    assert 29_000 <= len(s) <= 30_500 and len(np.unique(s)) == len(s)
    rest = frame[~frame.item_idx.isin(keep)]
    share = rest.assign(drawn=rest.item_idx.isin(s)).groupby("pop_decile")["drawn"].mean()
    assert share.max() - share.min() < 0.02  # every decile sampled at the same rate
    small = frame.iloc[:100]
    np.testing.assert_array_equal(sample_for_map(small, 30_000), small["item_idx"].to_numpy())


# ----------------------------------------------------------------------------- overview
def test_overview_cards_equal_the_metrics_table(app_test, app_run):
    at = app_test()
    assert_clean(at)
    K = app_run.manifest["K"]
    m = app_run.table("metrics")
    m = m[(m.part == "test") & (m.k == K) & (m.segment == "all")].set_index(["system", "metric"])
    cards = {}
    for el in at.metric:
        cards.setdefault(el.label, []).append(el.value)
    systems = app_run.manifest["systems"]
    # card labels are the short labels the run's manifest records for each role (never guessed from names)
    for role in ("semantic_trained", "semantic_zeroshot", "collaborative", "ease", "mostpop", "oracle"):
        sysname = system_of(app_run, role)
        assert cards[systems[sysname]["short"]][:2] == [f"{m.loc[(sysname, 'recall'), 'mean']:.4f}",
                                                        f"{m.loc[(sysname, 'ndcg'), 'mean']:.4f}"], role
    # the headline oracle is the per-user selection (the union pool is mostly re-ordering)
    assert system_of(app_run, "oracle") == "oracle_select" and systems["oracle_select"]["short"] == "Oracle (per user)"
    fusions = [system_of(app_run, "fusion"), system_of(app_run, "rrf")]
    best = max(fusions, key=lambda s: m.loc[(s, "ndcg"), "mean"])
    assert cards["Best fusion"][:2] == [f"{m.loc[(best, 'recall'), 'mean']:.4f}", f"{m.loc[(best, 'ndcg'), 'mean']:.4f}"]
    assert cards[f"List Jaccard@{K}"] == [f"{app_run.users['list_jaccard'].mean():.3f}"]
    captions = [c.value for c in at.caption]
    sem = system_of(app_run, "semantic_trained")
    assert f"95% CI {m.loc[(sem, 'recall'), 'lo']:.4f} – {m.loc[(sem, 'recall'), 'hi']:.4f}" in captions
    # the reading quotes this run's numbers
    reading = at.main.markdown[-1].value.replace("\\", "")
    assert f"{m.loc[(sem, 'recall'), 'mean']:.3f}" in reading
    assert "control pair" in reading
    # the fusion is read against the run's best single view (chosen on validation), with the one headroom
    from analysis.fusion import headroom

    b = app_run.manifest["summary"]["best_single"]
    f, bv, o = (m.loc[(s_, "recall"), "mean"] for s_ in (best, b, "oracle_select"))
    assert f"the best single view chosen on validation ({systems[b]['label']}, {bv:.3f})" in reading
    h = headroom(f, bv, o)
    assert f > bv and np.isfinite(h)  # on the fixture the fusion beats the best single view
    assert f"realising {h:.0%} of the headroom to the per-user oracle" in reading
    for key in ("ov_shares", "ov_gains"):
        fig = figure(at, key)
        assert fig["layout"]["xaxis"]["title"]["text"] and fig["layout"]["yaxis"]["title"]["text"]
        assert len(fig["data"]) >= 2


def test_overview_hit_shares_and_gains_match_users_table(app_test, app_run):
    at = app_test()
    users = app_run.users
    fig = figure(at, "ov_shares")
    pair = {t["name"]: t for t in fig["data"]}
    shared, only_s, only_c = (users[c].sum() for c in ("shared", "only_sem", "only_col"))
    total = shared + only_s + only_c
    sem_row = {name: arr(t["x"])[list(arr(t["y"])).index("semantic vs collaborative")] for name, t in pair.items()
               if "semantic vs collaborative" in list(arr(t["y"]))}
    assert sem_row["shared"] == pytest.approx(shared / total)
    assert sem_row["semantic-only"] == pytest.approx(only_s / total)
    gains = figure(at, "ov_gains")["data"]
    main = next(t for t in gains if t["name"] == "semantic + collaborative")
    K = app_run.manifest["K"]
    best = max(users[f"{system_of(app_run, 'semantic_trained')}_recall@{K}"].mean(),
               users[f"{system_of(app_run, 'collaborative')}_recall@{K}"].mean())
    assert arr(main["y"])[0] == pytest.approx(users["oracle_select_recall"].mean() - best)
    # the union pool's NDCG gain is read against the better view's own hits placed first (as the engine does)
    better = max(("sem", "col"), key=lambda v: users[f"{system_of(app_run, 'semantic_trained' if v == 'sem' else 'collaborative')}_ndcg@{K}"].mean())
    hits_first = users["hits_first_ndcg_a" if better == "sem" else "hits_first_ndcg_b"].mean()
    union_ndcg = arr(main["y"])[3]
    assert union_ndcg == pytest.approx(users["oracle_union_ndcg"].mean() - hits_first)
    assert union_ndcg == pytest.approx(app_run.manifest["summary"]["union_oracle_gain"]["gain_other_view"], abs=1e-12)
    assert union_ndcg < users["oracle_union_ndcg"].mean() - users[f"{system_of(app_run, 'collaborative')}_ndcg@{K}"].mean()


def test_overview_shows_tuning_budgets_and_jaccard_with_its_own_chance(app_test, app_run):
    at = app_test()
    assert_clean(at)
    captions = [c.value for c in at.caption]
    for entry in app_run.manifest["tuning"].values():
        b = entry["budget"]
        assert any(c.startswith(f"tuned: {b['n_configs']} configs, {b['seconds']:.0f} s") for c in captions), entry["system"]
    assert "no hyper-parameters tuned" in captions  # zero-shot semantic and most-popular
    cards = {m.label: m.value for m in at.metric}
    k = app_run.manifest["k_neighbors"]
    assert cards[f"Chance Jaccard@{k}"] == f"{app_run.manifest['chance_jaccard']:.4f}"
    assert cards[f"Chance overlap@{k}"] == f"{app_run.manifest['chance_overlap']:.4f}"
    assert cards[f"Mean neighbourhood Jaccard@{k}"] == f"{app_run.items['jaccard'].mean():.3f}"


def test_segment_filter_recomputes_cards_over_the_chosen_users(app_test, app_run):
    at = app_test()
    label = [w for w in at.sidebar.multiselect if w.label == "User activity bucket"][0]
    label.set_value(["heavy"]).run()
    assert_clean(at)
    K = app_run.manifest["K"]
    u = app_run.users
    col = f"{system_of(app_run, 'collaborative')}_recall@{K}"
    expected = u.loc[u.activity_bucket == "heavy", col].mean()
    collab = [el.value for el in at.metric if el.label == "Collaborative"]
    assert collab[0] == f"{expected:.4f}"
    assert f"{u[col].mean():.4f}" != collab[0]


def test_changing_K_uses_the_smaller_cutoff(app_test, app_run):
    at = app_test()
    at.sidebar.selectbox[1].set_value(10).run()
    assert_clean(at)
    m = app_run.table("metrics")
    sysname = system_of(app_run, "collaborative")
    r = m[(m.system == sysname) & (m.metric == "recall") & (m.k == 10) & (m.part == "test") & (m.segment == "all")].iloc[0]
    assert [el.value for el in at.metric if el.label == "Collaborative"][0] == f"{r['mean']:.4f}"


# ----------------------------------------------------------------------------- maps
def test_item_maps_are_svg_up_to_the_point_budget_and_webgl_above():
    """Same traces, same properties (positions, item ids, colours) either way; only the renderer changes."""
    from app.charts.maps import SVG_MAX_POINTS, item_map

    rng = np.random.default_rng(0)
    for n, kind in ((SVG_MAX_POINTS, "scatter"), (SVG_MAX_POINTS + 1, "scattergl")):
        df = pd.DataFrame({"item_idx": np.arange(n), "item_id": [f"i{i}" for i in range(n)], "title": "t",
                           "label": "t", "popularity": rng.integers(0, 9, n), "disagreement": rng.random(n),
                           "x": rng.random(n), "y": rng.random(n), "genre": rng.choice(["a", "b"], n)})
        for categorical, color in ((True, "genre"), (False, "disagreement")):
            fig = item_map(df, "x", "y", "semantic", color, color, categorical, selected=[1, 2], focus=3)
            assert {t.type for t in fig.data} == {kind}
            pts = [t for t in fig.data if not t.name.startswith(("selected", "found"))]
            assert sorted(int(c[0]) for t in pts for c in t.customdata) == list(range(n))
            assert np.allclose(np.concatenate([t.x for t in pts]), df.set_index("item_idx").loc[
                [int(c[0]) for t in pts for c in t.customdata], "x"])
            assert [t.name for t in fig.data][-2:] == ["selected (2)", "found item"]


def test_maps_linked_selection_reaches_other_map_and_table(app_test, app_run):
    at = app_test(MAPS)
    assert_clean(at)
    sem_fig = figure(at, "maps_sem")
    assert all(t["type"] == "scatter" for t in sem_fig["data"])  # a small catalogue: SVG (see the next test)
    drawn = np.concatenate([[int(c[0]) for c in arr(t["customdata"])] for t in sem_fig["data"]])
    items = app_run.items
    assert sorted(drawn) == list(range(len(items)))  # every item has a semantic position
    chosen = sorted(items.loc[~items["cold"], "item_idx"].to_numpy()[[3, 17, 42, 99]].tolist())
    simulate_plotly_selection(at, "maps_sem", chosen)
    assert_clean(at)
    col_fig = figure(at, "maps_col")
    ring = next(t for t in col_fig["data"] if t["name"].startswith("selected"))
    assert sorted(int(c[0]) for c in arr(ring["customdata"])) == chosen
    table = at.dataframe[0].value
    assert sorted(table["item_id"]) == sorted(items.set_index("item_idx").loc[chosen, "item_id"])
    assert at.download_button[0].proto.label.startswith("Download the selection")
    # selecting in the collaborative map drives the semantic map the same way
    chosen2 = chosen[:2]
    simulate_plotly_selection(at, "maps_col", chosen2)
    ring = next(t for t in figure(at, "maps_sem")["data"] if t["name"].startswith("selected"))
    assert sorted(int(c[0]) for c in arr(ring["customdata"])) == chosen2
    assert len(at.dataframe[0].value) == 2
    at.button(key="maps_clear").click().run()
    assert not any(t["name"].startswith("selected") for t in figure(at, "maps_sem")["data"])


def test_maps_search_highlights_and_zooms_and_escapes_titles(app_test, app_run):
    at = app_test(MAPS)
    at.text_input(key="maps_query").input("script").run()
    assert_clean(at)
    idx = int(app_run.items.set_index("item_id").loc[APP_HTML_ITEM, "item_idx"])
    assert not app_run.items.loc[idx, "cold"]  # the HTML-titled item has a place in both maps
    # a single match jumps straight to the item: no picker
    assert not [sb for sb in at.selectbox if sb.key == "maps_pick::script"]
    assert at.session_state["maps_focus"] == idx
    for key in ("maps_sem", "maps_col"):
        fig = figure(at, key)
        spec = json.dumps(fig)
        assert "<script>" not in spec and "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in spec
        star = [t for t in fig["data"] if t["name"] == "found item"]
        assert len(star) == 1 and int(arr(star[0]["customdata"])[0][0]) == idx, key
        assert len(fig["layout"]["xaxis"]["range"]) == 2
        label = [a["text"] for a in fig["layout"]["annotations"]]  # the found item is labelled, escaped
        assert any(t.startswith("&lt;script&gt;") for t in label), label
    links = [p for p in at.get("page_link") if p.proto.label == "Open in Items"]
    assert len(links) == 1 and f"item={APP_HTML_ITEM}" in links[0].proto.query_string


def test_maps_colour_by_hit_type_and_disagreement_range(app_test, app_run):
    at = app_test(MAPS)
    at.selectbox(key="maps_color").set_value("hit type at K=20").run()
    assert_clean(at)
    names = {t["name"].split(" (")[0] for t in figure(at, "maps_sem")["data"]}
    assert {"shared", "semantic-only", "collaborative-only", "missed by both"} <= names
    counts = {t["name"].split(" (")[0]: len(arr(t["x"])) for t in figure(at, "maps_sem")["data"]}
    from analysis.complementarity import item_hit_type

    it = app_run.items  # the hit type of each item from its stored hit counts
    expected = pd.Series(item_hit_type(it.hits_shared, it.hits_sem_only, it.hits_col_only, it.n_test)).value_counts()
    for kind in ("shared", "semantic-only", "collaborative-only", "missed by both"):
        assert counts[kind] == expected[kind], kind
    at.slider(key="maps_range").set_value((0.5, 0.8)).run()
    d = app_run.items["disagreement"]
    n = sum(len(arr(t["x"])) for t in figure(at, "maps_sem")["data"])
    assert n == int(d.between(0.5, 0.8).sum())


def test_maps_without_umap_draw_the_engines_pca_layout(app_test, app_run):
    """A run made with UMAP off is drawn at the engine's PCA layout of each view's stored vectors
    (analysis.projection.pca_layout: one projection), and says so; cold items have no collaborative point."""
    from analysis.projection import pca_layout

    at = app_test(MAPS)
    assert_clean(at)
    assert any("principal components" in i.value for i in at.info)
    items = app_run.items
    for key, vec, tag in (("maps_sem", "semantic_items", "semantic"), ("maps_col", "collab_items", "collaborative")):
        fig = figure(at, key)
        assert fig["layout"]["xaxis"]["title"]["text"] == f"{tag} PC 1 (arbitrary units)"
        xy = pca_layout(np.asarray(app_run.vectors(vec)))
        t = fig["data"][0]
        idx = [int(c[0]) for c in arr(t["customdata"])]
        np.testing.assert_allclose(arr(t["x"]).astype(float), xy[idx, 0], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(arr(t["y"]).astype(float), xy[idx, 1], rtol=1e-6, atol=1e-9)
        placed = int(np.isfinite(xy).all(axis=1).sum())
        assert len(idx) == placed == (len(items) if tag == "semantic" else int((~items["cold"]).sum()))


@pytest.mark.slow
def test_maps_use_the_runs_umap_layout(app_umap_run_path, monkeypatch):
    """A run with UMAP layouts is drawn at its stored sem_x / sem_y and col_x / col_y."""
    from streamlit.testing.v1 import AppTest

    from analysis import open_run

    monkeypatch.setenv("SEMCOLLAB_RUNS", str(app_umap_run_path.parent))
    monkeypatch.setattr(sys, "argv", ["app/main.py"])
    at = AppTest.from_file(APP_MAIN, default_timeout=120).run()
    at.switch_page(MAPS).run()
    assert_clean(at)
    assert not [i for i in at.info if "principal components" in i.value]
    items = open_run(app_umap_run_path).items.set_index("item_idx")
    for key, (xc, yc) in (("maps_sem", ("sem_x", "sem_y")), ("maps_col", ("col_x", "col_y"))):
        fig = figure(at, key)
        assert fig["layout"]["xaxis"]["title"]["text"].endswith("UMAP-1 (arbitrary units)")
        t = fig["data"][0]
        idx = [int(c[0]) for c in arr(t["customdata"])]
        np.testing.assert_allclose(arr(t["x"]).astype(float), items.loc[idx, xc].to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(arr(t["y"]).astype(float), items.loc[idx, yc].to_numpy(), rtol=1e-6)
        assert len(idx) == int(items[xc].notna().sum())


def test_maps_sample_large_catalogues_and_say_so(app_test, app_run, monkeypatch):
    """Above the point budget the maps draw every tail / cold item plus a stratified sample, and say so."""
    monkeypatch.setenv("SEMCOLLAB_MAX_MAP_POINTS", "250")
    at = app_test(MAPS)
    assert_clean(at)
    note = [i.value for i in at.info if "sample" in i.value]
    assert note and "keeps every tail and cold item" in note[0]
    items = app_run.items
    drawn = {int(c[0]) for t in figure(at, "maps_sem")["data"] for c in arr(t["customdata"])}
    must = set(items.loc[(items.pop_bucket == "tail") | items.cold, "item_idx"])
    assert must <= drawn and len(drawn) < len(items)
    assert note[0].startswith(f"Showing {len(drawn):,} of {len(items):,} items")


# ----------------------------------------------------------------------------- items
def test_items_table_lists_items_by_disagreement(app_test, app_run):
    at = app_test(ITEMS)
    assert_clean(at)
    table = at.dataframe[0].value
    items = app_run.items
    assert len(table) == int(items["disagreement"].notna().sum())
    assert table["disagreement"].is_monotonic_decreasing
    genre = "Comedy"
    at.multiselect(key="items_genres").set_value([genre]).run()
    has = items["genres"].str.split("|").map(lambda g: genre in g)
    assert len(at.dataframe[0].value) == int((has & items["disagreement"].notna()).sum())


def test_items_drilldown_neighbours_match_the_neighbors_table(app_test, app_run):
    items = app_run.items.set_index("item_idx")
    k = app_run.manifest["k_neighbors"]
    tk = app_run.table("topk")
    n_hit_users = tk[tk.hit].groupby("item_idx")["user_idx"].nunique()
    # a warm item that was a test hit of some system for at least two users
    target = int(next(i for i in items.index[~items["cold"]][5:] if n_hit_users.get(i, 0) >= 2))
    at = app_test(ITEMS, item=items.loc[target, "item_id"])
    assert_clean(at)
    assert at.query_params["item"] == items.loc[target, "item_id"]
    nb = app_run.table("neighbors")
    ranked = nb[(nb.item_idx == target) & (nb.view == "semantic")].sort_values("rank")["neighbor_idx"]
    sem = set([j for j in ranked if not items.loc[j, "cold"]][:k])  # the lists overlap@k compares
    col = set(nb[(nb.item_idx == target) & (nb.view == "collaborative") & (nb["rank"] <= k)]["neighbor_idx"])
    assert len(sem & col) == round(items.loc[target, "overlap"] * k)
    frames = {}
    for df in at.dataframe:
        key = df.proto.id
        for kind in ("shared", "semantic-only", "collaborative-only"):
            if f"items_nb::{kind}::" in key:
                frames[kind] = df.value
    ids = items["item_id"]
    assert set(frames["shared"]["item_id"]) == set(ids.loc[sorted(sem & col)])
    assert set(frames["semantic-only"]["item_id"]) == set(ids.loc[sorted(sem - col)])
    assert set(frames["collaborative-only"]["item_id"]) == set(ids.loc[sorted(col - sem)])
    sims = nb[(nb.item_idx == target) & (nb.view == "semantic")].set_index("neighbor_idx")["sim"]
    got = frames["semantic-only"].set_index("item_id")["sem_sim"]
    for nid, s in got.items():
        assert s == pytest.approx(float(sims.loc[items.index[ids == nid][0]]), rel=1e-6)
    # users for whom it was a hit: exactly the topk rows with hit=True, each with the rank every system gave it
    hits = tk[(tk.item_idx == target) & tk.hit & (tk["rank"] <= app_run.manifest["K"])]
    shown = at.dataframe[-1].value
    u = app_run.users.set_index("user_idx")["user_id"]
    assert len(shown) == hits["user_idx"].nunique() >= 2
    assert set(shown["user_id"]) == set(u.loc[sorted(set(hits["user_idx"]))])
    for r in hits.itertuples():
        assert shown.set_index("user_id").loc[u[r.user_idx], r.system] == f"#{r.rank}"


def test_items_drilldown_lists_cold_semantic_neighbours_apart(app_test, app_run):
    """Cold items near a warm item in the semantic view are listed apart, not as semantic-only."""
    from app.text import md_escape

    items = app_run.items.set_index("item_idx")
    k = app_run.manifest["k_neighbors"]
    nb = app_run.table("neighbors")
    sem = nb[nb.view == "semantic"].sort_values(["item_idx", "rank"])
    found = []  # warm items with cold items among their semantic neighbours before the k-th warm one
    for target in items.index[~items["cold"]]:
        ranked = sem[sem.item_idx == target]["neighbor_idx"].tolist()
        warm_pos = [p for p, j in enumerate(ranked) if not items.loc[j, "cold"]]
        colds = [j for j in ranked[: warm_pos[k - 1] + 1] if items.loc[j, "cold"]]
        if colds:
            found.append((target, colds))
    assert found, "the fixture's 10 % cold items sit among some warm item's semantic neighbours"
    target, colds = found[0]
    at = app_test(ITEMS, item=items.loc[target, "item_id"])
    assert_clean(at)
    caption = next(c.value for c in at.caption if "cold (no training interactions" in c.value)
    for j in colds:
        assert md_escape(items.loc[j, "title"]) in caption
    shown = {df.value["item_id"].iloc[i] for df in at.dataframe if "items_nb::" in df.proto.id
             for i in range(len(df.value))}
    assert not shown & set(items.loc[colds, "item_id"])


def test_items_pivot_to_a_neighbour_updates_state_and_url(app_test, app_run):
    items = app_run.items.set_index("item_idx")
    target = int(items[~items["cold"]].index[0])
    at = app_test(ITEMS, item=items.loc[target, "item_id"])
    pivot = at.selectbox(key=f"items_pivot::{target}")
    # the options are the neighbours of each kind, labelled "title (kind)", from the neighbors table
    k = app_run.manifest["k_neighbors"]
    nb = app_run.table("neighbors")
    ranked = nb[(nb.item_idx == target) & (nb.view == "semantic")].sort_values("rank")["neighbor_idx"]
    sem = set([j for j in ranked if not items.loc[j, "cold"]][:k])
    col = set(nb[(nb.item_idx == target) & (nb.view == "collaborative") & (nb["rank"] <= k)]["neighbor_idx"])
    kind = lambda j: "shared" if j in sem and j in col else "semantic-only" if j in sem else "collaborative-only"  # noqa: E731
    assert sorted(pivot.options) == sorted(f"{items.loc[j, 'title']} ({kind(j)})" for j in sem | col)
    first = int(next(j for j in ranked if j in sem))  # the nearest warm semantic neighbour
    pivot.set_value(first).run()
    assert_clean(at)
    assert at.query_params["item"] == items.loc[first, "item_id"]
    assert at.session_state["items_item"] == first


def test_html_title_is_shown_as_text(app_test, app_run):
    at = app_test(ITEMS, item=APP_HTML_ITEM)
    assert_clean(at)
    heading = at.subheader[0].value
    assert "<script>" not in heading
    assert heading.replace("\\", "") == APP_HTML_TITLE
    for md in at.markdown:
        assert "<script>" not in md.value and "<b>" not in md.value
    assert not at.get("html")
    table = at.dataframe[0].value
    assert not app_run.items.set_index("item_id").loc[APP_HTML_ITEM, "cold"]  # so it is in the ranked table
    assert APP_HTML_TITLE in set(table["title"])


# ----------------------------------------------------------------------------- hits
def test_hits_page_counts_equal_item_columns(app_test, app_run):
    at = app_test(HITS)
    assert_clean(at)
    it = app_run.items
    values = {m.label: m.value for m in at.metric}
    assert values["Shared"] == f"{int(it['hits_shared'].sum()):,}"
    assert values["Semantic-only"] == f"{int(it['hits_sem_only'].sum()):,}"
    assert values["Collaborative-only"] == f"{int(it['hits_col_only'].sum()):,}"
    assert values["Missed by both"] == f"{int(it['hits_missed_by_both'].sum()):,}"
    by_pop = figure(at, "hits_by_popularity")
    shared = next(t for t in by_pop["data"] if t["name"] == "shared")
    head = it[it.pop_bucket == "head"]
    pos = list(arr(shared["x"])).index("head")
    assert arr(shared["customdata"])[pos][0] == int(head["hits_shared"].sum())
    for key in ("hits_by_popularity", "hits_by_activity", "hits_deciles", "hits_genres"):
        lay = figure(at, key)["layout"]
        assert lay["xaxis"]["title"]["text"] and lay["yaxis"]["title"]["text"] and lay["showlegend"]


# ----------------------------------------------------------------------------- errors
def test_no_run_gives_a_clear_error(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SEMCOLLAB_RUNS", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["app/main.py"])
    at = AppTest.from_file(APP_MAIN, default_timeout=60).run()
    assert not at.exception
    assert "no saved run found" in at.error[0].value and "semcollab run" in at.error[0].value


def test_broken_run_gives_a_clear_error(tmp_path, monkeypatch, app_run_path):
    from streamlit.testing.v1 import AppTest

    broken = tmp_path / "broken"
    shutil.copytree(app_run_path, broken)
    (broken / "items.parquet").write_bytes(b"not a parquet file")
    monkeypatch.setenv("SEMCOLLAB_RUNS", str(tmp_path / "nothing"))
    monkeypatch.setattr(sys, "argv", ["app/main.py", "--run", str(broken)])
    at = AppTest.from_file(APP_MAIN, default_timeout=60).run()
    assert not at.exception
    assert str(broken) in at.error[0].value and "could not be read" in at.error[0].value
    (broken / "items.parquet").unlink()
    at = AppTest.from_file(APP_MAIN, default_timeout=60).run()
    assert not at.exception and "incomplete" in at.error[0].value


def test_run_flag_selects_the_given_run(app_run_path, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SEMCOLLAB_RUNS", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["app/main.py", "--run", str(app_run_path)])
    at = AppTest.from_file(APP_MAIN, default_timeout=120).run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="sb_run").value == str(app_run_path)
