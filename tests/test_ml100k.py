"""The real thing: MovieLens-100K through the project's fetcher, real MiniLM, real training."""
from __future__ import annotations

import numpy as np
import pytest

import analysis
from analysis.fetch import fetch_ml100k, ml100k_source
from analysis.summary import RunSummary
from app_fixtures import app_browser  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ml100k_run(tmp_path_factory):
    try:
        fetch_ml100k(log=print)
    except analysis.SemcollabError as e:  # pragma: no cover - only without any network
        pytest.skip(f"ml-100k cannot be fetched here: {e}")
    out = tmp_path_factory.mktemp("runs") / "ml-100k"
    return analysis.run(analysis.RunConfig(dataset="ml-100k", semantic="minilm"), out=out)


def test_real_data_is_loaded_with_its_quirks_fixed():
    from analysis.config import RunConfig
    from analysis.pipeline import load_dataset

    ds = load_dataset(RunConfig(dataset="ml-100k"))
    assert len(ds.interactions) == 100_000 and len(ds.items) == 1682
    assert ds.interactions["user_id"].nunique() == 943
    item = ds.items.set_index("item_id")
    assert item.loc["267", "title"] == "unknown" and item["year"].isna().loc["267"]
    assert item.loc["1412", "year"] == 1995 and "(1995)" not in item.loc["1412", "title"]
    assert item.loc["1", "title"] == "Toy Story" and item.loc["1", "genres"] == "Animation|Children's|Comedy"
    assert "SHA-256" in ml100k_source(fetch_ml100k()) or "official" in ml100k_source(fetch_ml100k())


def test_ml100k_run_has_real_views_and_collab_beats_semantic(ml100k_run):
    m = ml100k_run.manifest
    assert "all-MiniLM-L6-v2" in m["semantic_source"]
    assert ml100k_run.vectors("semantic_items").shape == (1682, 384)
    s = RunSummary(m)
    assert s.mean("collab", "recall") > s.mean("semantic", "recall")
    assert s.mean("ease", "recall") > s.mean("pop", "recall")
    # the collaborative model was trained and tuned on validation
    tuning = ml100k_run.table("tuning")
    assert tuning["chosen"].sum() == 3 and len(tuning) > 10
    # item agreement is far above chance but far from identical
    assert s.raw["chance_overlap"] < s.raw["mean_overlap"] < 0.5
    # semantic neighbours of Toy Story are found in the original vectors, itself excluded
    nb = ml100k_run.table("neighbors")
    toy = nb[(nb.item_idx == 0) & (nb.view == "semantic")]
    assert 0 not in toy["neighbor_idx"].tolist() and len(toy) >= 10
    assert np.isfinite(ml100k_run.items[["sem_x", "sem_y"]].to_numpy()).all()


@pytest.mark.browser
def test_make_app_tells_the_regime_story_without_another_command(ml100k_run, app_browser):
    """What `make app` does (SEMCOLLAB_AUTO_SWEEP=1 over the runs folder holding the ml-100k run): the
    Overview shows the background sweep's progress, then fills in by itself -- no reload, no other
    command -- with the five default regimes' story, as the sweep's own table has it."""
    from app_fixtures import TIMEOUT, app_serve

    from analysis.regimes import read_sweep
    from analysis.verdict import regime_story

    root = ml100k_run.path.parent
    page = app_browser.new_page(viewport={"width": 1500, "height": 1150})
    with app_serve(root, "--run", str(ml100k_run.path), env={"SEMCOLLAB_AUTO_SWEEP": "1"}) as url:
        page.goto(f"{url}/overview")
        page.get_by_text("Computing the regime sweep in the background").first.wait_for(timeout=TIMEOUT)
        page.get_by_text("Across 5 regimes the excess").first.wait_for(timeout=900_000)  # the same page, no reload
        story = regime_story(read_sweep(root / "ml-100k-sweep"))
        assert story["label"].tolist() == ["all data", "50% kept", "20% kept", "10% kept", "20% items cold"]
        page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(g => (g._fullData"
                               " || []).some(t => t.name === 'oracle gain: semantic + collaborative'))", timeout=TIMEOUT)
        shown = page.evaluate("""() => { for (const g of document.querySelectorAll('.js-plotly-plot')) {
            const t = (g._fullData || []).find(t => t.name === 'oracle gain: semantic + collaborative');
            if (t) return [Array.from(t.x).map(String), Array.from(t.y).map(Number)]; } }""")
        assert shown[0] == story["label"].tolist()
        assert shown[1] == pytest.approx(story["gain"].tolist(), abs=1e-12)
        assert page.locator("[data-testid='stException']").count() == 0
    page.close()
