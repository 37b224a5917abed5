"""End-to-end dashboard tests in headless Chromium (Playwright + Debian's /usr/bin/chromium).

A real ``streamlit run`` serves the small pipeline run. The tests click a point and box-select in
one map and check that the other map and the selection table follow, open and pivot an item
drill-down, check that an HTML title stays text, and save a screenshot of every page under
tests/output/screenshots/ (the Maps one is also copied to assets/maps.png for the README).
Skipped cleanly when Chromium is not installed.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from app_fixtures import (  # noqa: F401  (fixtures)
    SHOTS,
    TIMEOUT,
    APP_HTML_ITEM,
    APP_HTML_TITLE,
    ROOT,
    app_browser,
    app_chromium,
    app_server,
    app_serve,
    app_umap_run,
    app_umap_run_path,
)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(app_chromium() is None, reason="Debian chromium (/usr/bin/chromium) is not installed")]

JS_PLOT = ("(name) => Array.from(document.querySelectorAll('.js-plotly-plot'))"
           ".find(g => g.layout && g.layout.title && String(g.layout.title.text).startsWith(name))")
JS_MAPS_READY = ("() => Array.from(document.querySelectorAll('.js-plotly-plot')).filter(g => g._fullLayout && g._fullData"
                 " && g.layout.title && /map$/.test(g.layout.title.text)).length == 2")


def _selected_in(page, name: str) -> list[int] | None:
    """item_idx of the 'selected' ring trace of map ``name`` (None when there is none)."""
    return page.evaluate(f"""(name) => {{ const gd = ({JS_PLOT})(name); if (!gd) return null;
        const t = gd._fullData.find(t => String(t.name).startsWith('selected'));
        return t ? Array.from(t.customdata).map(c => Number(c[0])) : null; }}""", name)


def _wait_selected(page, name: str, n: int | None = None) -> None:
    cond = "t => String(t.name).startsWith('selected')" if n is None else \
        f"t => String(t.name).startsWith('selected (' + {n} + ')')"
    page.wait_for_function(f"""(name) => {{ const gd = ({JS_PLOT})(name);
        return gd && gd._fullData && gd._fullData.some({cond}); }}""", arg=name, timeout=TIMEOUT)


def _new_page(browser, height: int = 1150):
    """A page that records any JavaScript dialog (an executed ``alert`` from a title would show up)."""
    page = browser.new_page(viewport={"width": 1500, "height": height})
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    return page


def _metrics(page) -> dict[str, str]:
    """{label: value} of every st.metric card on the page."""
    return page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('[data-testid="stMetric"]'))
        .map(m => [m.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
                   m.querySelector('[data-testid="stMetricValue"]').innerText.trim()]))""")


def _trace_x(page, name: str) -> list[str] | None:
    """The x values of the first Plotly trace named ``name`` on the page (None when there is none)."""
    return page.evaluate("""(name) => { for (const g of document.querySelectorAll('.js-plotly-plot')) {
        const t = (g._fullData || []).find(t => t.name === name); if (t) return Array.from(t.x).map(String); }
        return null; }""", name)


def _settle(page) -> None:
    """Wait until the script run is over and every element has been drawn (no placeholders left)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
                           "!document.querySelector('[data-testid^=\"stSkeleton\"]')", timeout=TIMEOUT)
    page.wait_for_timeout(300)


def test_maps_click_and_box_select_are_linked(app_browser, app_server, app_umap_run):
    page = _new_page(app_browser, height=1400)
    page.goto(f"{app_server}/maps")
    page.wait_for_function(JS_MAPS_READY, timeout=TIMEOUT)
    # 1. click one point of the semantic map -> ringed in the collaborative map, one table row
    warm = app_umap_run.items.loc[~app_umap_run.items["cold"], "item_idx"].tolist()
    target = page.evaluate(f"""(warm) => {{ const gd = ({JS_PLOT})('Semantic'); gd.scrollIntoView();
        const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, t = gd._fullData[0];
        const pts = []; for (let i = 0; i < t.x.length; i++) pts.push([r.left + xa._offset + xa.l2p(t.x[i]),
            r.top + ya._offset + ya.l2p(t.y[i]), Number(t.customdata[i][0])]);
        // the warm point farthest from its nearest neighbour: an unambiguous click
        let best = null, gap = -1; for (const p of pts) {{ if (!warm.includes(p[2])) continue; let m = 1e9;
            for (const q of pts) if (q !== p) m = Math.min(m, Math.hypot(p[0] - q[0], p[1] - q[1]));
            if (m > gap) {{ gap = m; best = p; }} }}
        return {{x: best[0], y: best[1], idx: best[2]}}; }}""", warm)
    page.mouse.move(target["x"], target["y"])
    page.wait_for_timeout(300)
    page.mouse.click(target["x"], target["y"])
    _wait_selected(page, "Collaborative", 1)
    assert _selected_in(page, "Collaborative") == [target["idx"]]
    assert _selected_in(page, "Semantic") == [target["idx"]]
    page.get_by_text("1 item(s) selected in the semantic map").wait_for(timeout=TIMEOUT)
    item_id = app_umap_run.items.set_index("item_idx").loc[target["idx"], "item_id"]
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=TIMEOUT)
    # 2. box-select in the collaborative map -> the same items ringed in the semantic map + the table
    page.wait_for_function(JS_MAPS_READY, timeout=TIMEOUT)
    chart = page.locator(".stPlotlyChart").filter(has=page.get_by_text("Collaborative map", exact=True))
    chart.scroll_into_view_if_needed()
    chart.hover()
    chart.locator('[data-title="Box Select"]').click()
    box = page.evaluate(f"""() => {{ const gd = ({JS_PLOT})('Collaborative'); const r = gd.getBoundingClientRect();
        const s = gd._fullLayout._size, xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const x0 = r.left + s.l + s.w * 0.35, x1 = r.left + s.l + s.w * 0.65, y0 = r.top + s.t + s.h * 0.35,
              y1 = r.top + s.t + s.h * 0.65; const inner = [], outer = [];
        for (const t of gd._fullData) {{ if (String(t.name).startsWith('selected')) continue;
          for (let i = 0; i < t.x.length; i++) {{ const px = r.left + xa._offset + xa.l2p(t.x[i]),
              py = r.top + ya._offset + ya.l2p(t.y[i]), id = Number(t.customdata[i][0]);
            if (px > x0 + 3 && px < x1 - 3 && py > y0 + 3 && py < y1 - 3) inner.push(id);
            if (px > x0 - 3 && px < x1 + 3 && py > y0 - 3 && py < y1 + 3) outer.push(id); }} }}
        return {{x0, x1, y0, y1, inner, outer}}; }}""")
    assert len(box["inner"]) >= 5
    page.mouse.move(box["x0"], box["y0"])
    page.mouse.down()
    page.mouse.move((box["x0"] + box["x1"]) / 2, (box["y0"] + box["y1"]) / 2, steps=6)
    page.mouse.move(box["x1"], box["y1"], steps=6)
    page.mouse.up()
    page.get_by_text("item(s) selected in the collaborative map").wait_for(timeout=TIMEOUT)
    _wait_selected(page, "Semantic")
    sel = set(_selected_in(page, "Semantic"))
    assert set(box["inner"]) <= sel <= set(box["outer"])
    caption = page.get_by_text("item(s) selected in the collaborative map").inner_text()
    assert caption.startswith(f"{len(sel)} item(s)")
    assert item_id  # the clicked item was resolved from the run
    assert page.dialogs == []
    _settle(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.get_by_text("Colour by").first.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / "maps.png"), full_page=True)
    (ROOT / "assets").mkdir(exist_ok=True)
    shutil.copyfile(SHOTS / "maps.png", ROOT / "assets" / "maps.png")
    page.close()


def test_item_drilldown_pivots_and_keeps_html_as_text(app_browser, app_server, app_umap_run):
    page = _new_page(app_browser)
    page.goto(f"{app_server}/items?item={APP_HTML_ITEM}")
    heading = page.get_by_role("heading", name=APP_HTML_TITLE)
    heading.wait_for(timeout=TIMEOUT)
    assert page.locator("b", has_text="x").count() == 0  # the <b> of the title was not rendered as HTML
    SHOTS.mkdir(parents=True, exist_ok=True)
    items = app_umap_run.items.set_index("item_idx")
    target = int(items[~items["cold"]].index[1])
    page.goto(f"{app_server}/items?item={items.loc[target, 'item_id']}")
    page.get_by_role("heading", name=str(items.loc[target, "title"])).first.wait_for(timeout=TIMEOUT)
    page.get_by_text("Shared neighbours").wait_for(timeout=TIMEOUT)
    _settle(page)
    page.screenshot(path=str(SHOTS / "items.png"), full_page=True)
    option = page.get_by_role("option").first
    for _ in range(5):  # the dropdown closes again if a rerun lands right after the click
        _settle(page)
        page.get_by_role("combobox", name="Open a neighbour").click()
        try:
            option.wait_for(timeout=10_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    option.wait_for(timeout=TIMEOUT)
    label = option.inner_text()
    option.click()
    page.wait_for_function("(old) => new URLSearchParams(location.search).get('item') !== old",
                           arg=str(items.loc[target, "item_id"]), timeout=TIMEOUT)
    new_id = parse_qs(urlparse(page.url).query)["item"][0]
    new = items.index[items["item_id"] == new_id][0]
    assert label.startswith(str(items.loc[new, "title"]))
    page.get_by_role("heading", name=str(items.loc[new, "title"])).first.wait_for(timeout=TIMEOUT)
    # clicking a row of a neighbour table pivots to that neighbour
    from app.data.common import RunKey
    from app.data.items import item_neighbours

    nb = item_neighbours(RunKey.of(app_umap_run.path), int(new), app_umap_run.manifest["k_neighbors"])
    kind, nth = ("semantic-only", 2) if (nb["kind"] == "semantic-only").any() else ("collaborative-only", 3)
    first = nb[nb["kind"] == kind].iloc[0]
    _settle(page)
    grid = page.locator("[data-testid='stDataFrame']").nth(nth)  # ranking, shared, semantic-only, collab-only
    grid.scroll_into_view_if_needed()
    bb = grid.bounding_box()
    page.mouse.click(bb["x"] + 14, bb["y"] + 35 + 17)  # selection checkbox of the first data row
    page.wait_for_function("(want) => new URLSearchParams(location.search).get('item') === want",
                           arg=str(first["item_id"]), timeout=TIMEOUT)
    page.get_by_role("heading", name=str(first["title"])).first.wait_for(timeout=TIMEOUT)
    assert page.dialogs == []
    page.close()


@pytest.mark.parametrize("path,name,text", [("", "overview", "Reading"), ("hits", "hits", "What each view finds")])
def test_page_screenshots(app_browser, app_server, path, name, text):
    page = _new_page(app_browser)
    page.goto(f"{app_server}/{path}")
    page.get_by_text(text).first.wait_for(timeout=TIMEOUT)
    page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).length >= 2 && "
                           "Array.from(document.querySelectorAll('.js-plotly-plot')).every(g => g._fullLayout)",
                           timeout=TIMEOUT)
    _settle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert Path(SHOTS / f"{name}.png").stat().st_size > 10_000
    page.close()


def test_deep_links_and_the_engineers_path(app_browser, app_server, app_umap_run):
    """/overview is a deep link; Maps (a found item) -> Open in Items -> a test user's row -> that user on the
    Users page, where α moves the fused list."""
    from app.data.common import RunKey
    from app.data.items import item_hit_users

    page = _new_page(app_browser)
    page.goto(f"{app_server}/overview")
    page.get_by_role("heading", name="Overview").first.wait_for(timeout=TIMEOUT)
    _settle(page)
    assert page.get_by_text("Page not found").count() == 0
    key, K = RunKey.of(app_umap_run.path), app_umap_run.manifest["K"]
    items = app_umap_run.items.set_index("item_idx")
    hit = next(int(i) for i in items.index[~items["cold"]] if len(item_hit_users(key, int(i), K)))
    item_id, title = str(items.loc[hit, "item_id"]), str(items.loc[hit, "title"])
    page.goto(f"{app_server}/maps?item={item_id}")
    page.get_by_text("Found item:").first.wait_for(timeout=TIMEOUT)
    _settle(page)
    page.get_by_role("link", name="Open in Items").click()
    page.wait_for_url(lambda u: "/items?" in u and f"item={item_id}" in u, timeout=TIMEOUT)
    page.get_by_role("heading", name=title).first.wait_for(timeout=TIMEOUT)
    _settle(page)
    users = item_hit_users(key, hit, K)
    grid = page.locator("[data-testid='stDataFrame']").last  # the test users the item was a hit for
    grid.scroll_into_view_if_needed()
    bb = grid.bounding_box()
    page.mouse.click(bb["x"] + 14, bb["y"] + 35 + 17)  # first data row
    uid = str(users["user_id"].iloc[0])
    link = page.get_by_role("link", name=f"Open user {uid} on Users")
    link.wait_for(timeout=TIMEOUT)
    link.click()
    page.wait_for_url(lambda u: "/users?" in u and f"user={uid}" in u, timeout=TIMEOUT)
    page.get_by_text(f"User {uid}:").first.wait_for(timeout=TIMEOUT)
    _settle(page)
    box = page.locator("[data-testid='stSlider']", has_text="Fusion weight α")
    slider = box.get_by_role("slider").first
    before = float(box.locator("[data-testid='stSliderThumbValue']").first.inner_text())
    slider.focus()
    page.keyboard.press("ArrowLeft" if before >= 0.95 else "ArrowRight")
    want = before - 0.05 if before >= 0.95 else before + 0.05
    page.get_by_text(f"Fusion at α = {want:.2f}").first.wait_for(timeout=TIMEOUT)  # the fused list follows α
    _settle(page)
    assert page.locator("[data-testid='stException']").count() == 0 and page.dialogs == []
    page.close()


def test_the_researchers_pages_show_the_engines_numbers(app_browser, app_umap_run, app_umap_run_path, tmp_path):
    """Overview (tiles, verdict, regime chart), Fusion, Alignment, Structure and Regimes in a real browser: every
    card and regime label shown is the engine's value (a sweep of three regimes sits beside the run)."""
    import pandas as pd

    from analysis.regimes import read_sweep, sweep_row
    from analysis.verdict import regime_story, tiles
    from app.data.alignment import probe_best
    from app.data.common import RunKey
    from app.data.fusion import fusion_info, oracle_excess
    from app.data.structure import ajive_summary, cca_summary

    root = tmp_path / "runs"
    shutil.copytree(app_umap_run_path, root / app_umap_run_path.name)
    base = sweep_row("r", app_umap_run)
    rows = [{"regime": "keep100", "keep_fraction": 1.0, "cold_item_share": 0.0, "oracle_excess_ndcg_lo": -0.01},
            {"regime": "keep10", "keep_fraction": 0.1, "cold_item_share": 0.0, "oracle_excess_ndcg_lo": 0.02},
            {"regime": "cold20", "keep_fraction": 1.0, "cold_item_share": 0.2, "oracle_excess_ndcg_lo": 0.03}]
    (root / "small-sweep").mkdir()
    pd.DataFrame([{**base, **r} for r in rows]).to_parquet(root / "small-sweep" / "sweep.parquet", index=False)
    story = regime_story(read_sweep(root / "small-sweep"))
    assert story["label"].tolist() == ["all data", "10% kept", "20% items cold"]
    key = RunKey.of(root / app_umap_run_path.name)
    page = _new_page(app_browser)
    with app_serve(root) as url:
        page.goto(f"{url}/overview")
        page.get_by_text("Verdict.").first.wait_for(timeout=TIMEOUT)
        _settle(page)
        shown = _metrics(page)
        for t in tiles(app_umap_run.manifest):
            assert shown[t["label"]] == f"{t['mean']:.3f}", t["label"]
        assert page.get_by_text(f"Across {len(story)} regimes the excess").count() == 1
        assert _trace_x(page, "oracle gain: semantic + collaborative") == story["label"].tolist()

        page.goto(f"{url}/fusion")
        page.get_by_text("α chosen on validation").first.wait_for(timeout=TIMEOUT)
        _settle(page)
        shown, info, ex = _metrics(page), fusion_info(key), oracle_excess(key)
        assert shown["α chosen on validation"] == f"{info['alpha_valid']:.2f}"
        K = app_umap_run.manifest["K"]
        assert shown[f"Oracle excess over the floor · NDCG@{K}"] == f"{ex['value']:+.3f}"
        assert page.get_by_text(f"[{ex['lo']:+.3f}, {ex['hi']:+.3f}]").count() >= 1

        page.goto(f"{url}/alignment")
        page.get_by_text("Map chosen on validation").first.wait_for(timeout=TIMEOUT)
        _settle(page)
        got = {k: v for k, v in _metrics(page).items() if k.startswith("Map chosen on validation")}
        assert sorted(got.values()) == sorted(f"{b['r2']:.3f}" for b in probe_best(key).values()) and got

        page.goto(f"{url}/structure")
        page.get_by_text("Shared dim. · CCA").first.wait_for(timeout=TIMEOUT)
        _settle(page)
        shown = _metrics(page)
        assert shown["Shared dim. · CCA"] == str(cca_summary(key)["shared_dim"])
        assert shown["Joint rank · AJIVE"] == str(ajive_summary(key)["joint_rank"])

        page.goto(f"{url}/regimes")
        page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(g => g._fullData)",
                               timeout=TIMEOUT)
        _settle(page)
        assert _trace_x(page, "collaborative") == ["all data", "10% kept"]  # descending fraction kept
        assert page.locator("[data-testid='stException']").count() == 0 and page.dialogs == []
    page.close()
