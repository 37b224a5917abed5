"""Connected drill-downs: deep links, search, back, cross-page links, and the Users page's hit colours,
semantic-only filter and hits-vs-α sparkline (AppTest on the session's small real run)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from app_fixtures import (  # noqa: F401  (fixtures)
    APP_HTML_ITEM,
    app_env,
    app_run,
    app_run_path,
    app_test,
    arr,
    assert_clean,
    figure,
)

ITEMS, USERS, MAPS = "views/items.py", "views/users.py", "views/maps.py"


def _links(at, label_start: str):
    return [p for p in at.get("page_link") if p.proto.label.startswith(label_start)]


def test_every_page_has_its_own_url_path_and_the_root_forwards_to_the_overview(app_test):
    at = app_test()
    assert_clean(at)
    assert at.title[0].value == "Overview"
    paths = [p.proto.page for p in at.get("page_link")][:10]  # the sidebar's links: each page's own url path
    assert paths == ["overview", "maps", "items", "hits", "fusion", "users", "regimes", "alignment", "structure",
                     "compute"]


def test_items_search_back_and_links(app_test, app_run):
    warm = app_run.items[~app_run.items["cold"]]  # the ranking lists items with neighbours in both views
    first, second = warm.iloc[3], warm.iloc[7]
    at = app_test(ITEMS)
    at.text_input(key="items_query").input(str(first["item_id"])).run()  # an exact id: one match, opened
    assert_clean(at)
    assert at.session_state["items_item"] == int(first["item_idx"])
    at.text_input(key="items_query").input(str(second["item_id"])).run()
    assert at.session_state["items_item"] == int(second["item_idx"])
    at.button(key="items_back").click().run()  # back to the item we came from
    assert at.session_state["items_item"] == int(first["item_idx"])
    link = _links(at, "Show on Maps")
    assert len(link) == 1 and link[0].proto.query_string == f"item={first['item_id']}"
    assert any(c.value.startswith("Drilled down: ") for c in at.caption)


def test_maps_open_the_item_a_link_names(app_test, app_run):
    idx = int(app_run.items.set_index("item_id").loc[APP_HTML_ITEM, "item_idx"])
    at = app_test(MAPS, item=APP_HTML_ITEM)
    assert_clean(at)
    assert at.session_state["maps_focus"] == idx
    fig = figure(at, "maps_sem")
    assert [t for t in fig["data"] if t["name"] == "found item"]
    tr = next(t for t in fig["data"] if t.get("marker", {}).get("colorbar"))  # disagreement: a quantile scale
    bar = tr["marker"]
    assert "quantile" in bar["colorbar"]["title"]["text"] and list(bar["colorbar"]["tickvals"]) == [0, 0.25, 0.5, 0.75, 1]
    dis = np.array([np.nan if c[3] == "n/a" else float(c[3]) for c in arr(tr["customdata"])])
    col = np.asarray(arr(bar["color"]), float)
    ok = ~np.isnan(dis)
    want = pd.Series(dis[ok]).rank(pct=True, method="average").to_numpy()  # each item's quantile among those drawn
    np.testing.assert_allclose(col[ok], want)
    ticks = np.nanquantile(dis[ok], [0, 0.25, 0.5, 0.75, 1])
    assert list(bar["colorbar"]["ticktext"]) == [f"{v:.2f}" for v in ticks]


def test_maps_keep_their_plot_height_with_a_long_legend(app_test):
    at = app_test(MAPS)
    base = figure(at, "maps_sem")["layout"]
    at.selectbox(key="maps_color").set_value("primary genre").run()
    assert_clean(at)
    lay = figure(at, "maps_sem")["layout"]
    n = len(figure(at, "maps_sem")["data"])
    assert n > 4
    # the figure grows by the legend's rows; the plot area (height − top − bottom margins) stays the same
    assert lay["height"] - lay["margin"]["t"] - lay["margin"]["b"] == base["height"] - base["margin"]["t"] - base["margin"]["b"]


def test_users_link_filter_colours_and_sparkline(app_test, app_run):
    users = app_run.users.set_index("user_idx")
    target = users[users["only_sem"] > 0].index[-1]
    at = app_test(USERS, user=str(users.loc[target, "user_id"]))
    assert_clean(at)
    assert int(at.selectbox(key="users_user").value) == int(target)
    at.checkbox(key="users_sem_only").check().run()
    assert len(at.selectbox(key="users_user").options) == int((users["only_sem"] > 0).sum())
    assert int(at.selectbox(key="users_user").value) == int(target)
    # hit rows name who found them; semantic-only hits of the semantic list are not in the collaborative list
    sem_table = next(d.value for d in at.dataframe if "hit" in d.value.columns)
    kinds = {h.split(" ", 1)[1] for h in sem_table["hit"] if h}
    assert kinds and kinds <= {"shared", "semantic-only"}
    # the sparkline: the user's test hits in the fused list at each α of the grid
    from analysis.run_queries import fused_list, recommenders_from_run

    fig = figure(at, "users_sparkline")
    xs, ys = arr(fig["data"][0]["x"]), arr(fig["data"][0]["y"])
    test = app_run.table("interactions")
    test = test[(test.user_idx == target) & (test.part.astype(str) == "test")]["item_idx"].to_numpy()
    models = recommenders_from_run(app_run)
    method = app_run.manifest["fusion"]["method"]
    for a, h in zip(xs, ys):
        got = fused_list(models, int(target), float(a), app_run.manifest["K"], method == "cold_aware")
        assert int(h) == int(np.isin(got, test).sum())
