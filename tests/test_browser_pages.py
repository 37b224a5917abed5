"""Headless-Chromium checks of the Fusion, Users, Regimes and Compute pages (Playwright + Debian's
/usr/bin/chromium), over a real ``streamlit run`` of the small pipeline run (app_fixtures' ``app_server``).

On the Users page the fusion slider is moved with the keyboard and the fused list (read from the
data grid's accessible table) must change and, at α = 1, equal the semantic list. Every page is
screenshotted under tests/output/screenshots/ (the Regimes page over a real tiny sweep served by a
second server). Skipped cleanly when Chromium is not installed.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from app_fixtures import (  # noqa: F401  (fixtures)
    SHOTS,
    TIMEOUT,
    APP_MAIN,
    ROOT,
    app_serve as serve,
    app_browser,
    app_chromium,
    app_server,
    app_umap_run,
    app_umap_run_path,
)
from test_app_pages import pages_sweep  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(app_chromium() is None, reason="Debian chromium (/usr/bin/chromium) is not installed")]

JS_GRID_COLUMN = """([n, col]) => { const g = document.querySelectorAll('[data-testid="stDataFrame"]')[n];
    if (!g) return null; return Array.from(g.querySelectorAll('td[data-testid^="glide-cell-' + col + '-"]'))
        .map(td => td.textContent); }"""


def new_page(browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    return page


def settle(page) -> None:
    """Wait until the script run is over and no element is a loading skeleton or stale."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
                           " && !document.querySelector('[data-testid=\"stSkeleton\"]')"
                           " && !document.querySelector('[data-stale=\"true\"]')", timeout=TIMEOUT)
    page.wait_for_timeout(500)


def wait_plots(page, n: int) -> None:
    page.wait_for_function(f"() => Array.from(document.querySelectorAll('.js-plotly-plot')).length >= {n} && "
                           "Array.from(document.querySelectorAll('.js-plotly-plot')).every(g => g._fullLayout)",
                           timeout=TIMEOUT)


def shoot(page, name: str) -> Path:
    settle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def fused_titles(page) -> list[str]:
    return page.evaluate(JS_GRID_COLUMN, [2, 2])


def wait_list_change(page, old: list[str], K: int) -> None:
    """Wait until the fused list (3rd data grid) shows K titles different from ``old``."""
    page.wait_for_function(f"""(old) => {{ const now = ({JS_GRID_COLUMN})([2, 2]);
        return now && now.length == {K} && JSON.stringify(now) !== JSON.stringify(old); }}""", arg=old,
                           timeout=TIMEOUT)
    settle(page)


def test_users_slider_recomputes_the_fused_list(app_browser, app_server, app_umap_run):
    app_run = app_umap_run  # the run app_server serves
    page = new_page(app_browser)
    page.goto(f"{app_server}/users")
    K = app_run.manifest["K"]
    page.wait_for_function(f"""() => {{ const g = document.querySelectorAll('[data-testid="stDataFrame"]');
        return g.length >= 5 && g[2].querySelectorAll('td[data-testid^="glide-cell-2-"]').length == {K}; }}""",
                           timeout=TIMEOUT)
    before = fused_titles(page)
    semantic = page.evaluate(JS_GRID_COLUMN, [0, 2])
    assert len(before) == K and before != semantic
    slider = page.get_by_role("slider", name="Fusion weight α (weight of the semantic view)")
    assert float(slider.input_value()) == pytest.approx(app_run.manifest["fusion"]["alpha_valid"])
    slider.focus()
    page.keyboard.press("End")  # α = 1: the fused list becomes the semantic view's list
    wait_list_change(page, before, K)
    assert float(slider.input_value()) == 1.0
    page.get_by_text("Fusion at α = 1.00").wait_for(timeout=TIMEOUT)
    after = fused_titles(page)
    assert after != before and after == semantic
    slider.focus()
    page.keyboard.press("Home")  # α = 0
    page.get_by_text("Fusion at α = 0.00").wait_for(timeout=TIMEOUT)
    wait_list_change(page, after, K)
    assert fused_titles(page) != after
    assert page.dialogs == []
    slider.focus()
    for _ in range(7):  # back to 0.35 for the screenshot
        page.keyboard.press("ArrowRight")
    page.get_by_text("Fusion at α = 0.35").wait_for(timeout=TIMEOUT)
    shoot(page, "users")
    page.close()


@pytest.mark.parametrize("path,name,text,plots", [("fusion", "fusion", "Paired-bootstrap differences", 4),
                                                   ("compute", "compute", "Start the run", 0)])
def test_page_screenshots(app_browser, app_server, path, name, text, plots):
    page = new_page(app_browser)
    page.goto(f"{app_server}/{path}")
    page.get_by_text(text).first.wait_for(timeout=TIMEOUT)
    if plots:
        wait_plots(page, plots)
    shoot(page, name)
    page.close()


def test_regimes_screenshot_over_a_sweep(app_browser, pages_sweep):
    with serve(pages_sweep.parent, "--run", str(pages_sweep / "keep-100")) as url:
        page = new_page(app_browser)
        page.goto(f"{url}/regimes")
        page.get_by_text("Complementarity across data regimes").first.wait_for(timeout=TIMEOUT)
        wait_plots(page, 1)
        names = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullData.map(t => t.name)")
        assert "oracle gain (semantic + collaborative)" in names and "collaborative" in names
        shoot(page, "regimes")
        page.close()
