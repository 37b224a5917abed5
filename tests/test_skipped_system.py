"""A system skipped at the run's size (EASE above its item limit) is recorded with its reason and
absent everywhere else; the command line and every dashboard page still work."""
from __future__ import annotations

import sys

import pytest

import analysis
from analysis.models.reference import EASE_DEFAULT_MAX_ITEMS, ease_skip_reason
from app_fixtures import APP_MAIN, assert_clean
from conftest import QUICK_TUNING

SMALL = {"n_users": 250, "n_items": 300, "mean_per_user": 30.0}


def test_ease_skip_reason_names_the_size_and_the_limit():
    assert ease_skip_reason(EASE_DEFAULT_MAX_ITEMS) is None
    reason = ease_skip_reason(20_000)
    assert "20,000 items" in reason and f"{EASE_DEFAULT_MAX_ITEMS:,}" in reason


@pytest.fixture(scope="module")
def skipped_run(tmp_path_factory):
    import analysis.models.reference as ref

    mp = pytest.MonkeyPatch()
    mp.setattr(ref, "ease_skip_reason", lambda n_items: ease_skip_reason(n_items, max_items=100))
    try:
        cfg = analysis.RunConfig(dataset="synthetic", synthetic=SMALL, n_boot=100, n_alphas=6, tuning=QUICK_TUNING,
                                 umap=False)
        return analysis.run(cfg, out=tmp_path_factory.mktemp("skip") / "no-ease", log=lambda m: None)
    finally:
        mp.undo()


def test_the_skipped_system_is_recorded_and_absent_from_every_table(skipped_run):
    m = skipped_run.manifest
    assert m["skipped"] == {"ease": ease_skip_reason(300, max_items=100)}
    assert "ease" not in m["systems"] and "ease" not in m["summary"]["metrics"]
    assert "ease" not in set(skipped_run.table("metrics")["system"])
    assert "ease" not in set(skipped_run.table("topk")["system"])
    assert not [c for c in skipped_run.users.columns if c.startswith("ease_")]
    assert "ease" not in set(skipped_run.table("differences")["system_a"])
    assert "ease" not in {b["system"] for b in m["tuning"].values()}
    assert {"collab", "pop", "fusion", "rrf"} <= set(m["summary"]["metrics"])


def test_cli_summary_says_what_was_skipped(skipped_run, capsys):
    from analysis.cli import main

    main(["summary", str(skipped_run.path)])
    out = capsys.readouterr().out
    assert "ease" in out and "skipped: EASE skipped: 300 items is above its limit of 100" in out


def test_every_page_renders_without_the_skipped_system(skipped_run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SEMCOLLAB_RUNS", str(skipped_run.path.parent))
    monkeypatch.setattr(sys, "argv", ["app/main.py"])
    from app.main import PAGES  # (importing it runs the app once, bare: the runs folder must be set first)
    at = AppTest.from_file(APP_MAIN, default_timeout=180).run()
    assert_clean(at)
    for f, *_ in PAGES:
        at.switch_page(f"views/{f}")
        at.run()
        assert_clean(at)
