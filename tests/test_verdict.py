"""The story first: verdict, headline tiles, regime story, the HTML report and the background sweep."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from app_fixtures import app_env, app_run, app_run_path, app_test  # noqa: F401

from analysis.errors import ConfigError
from analysis.regimes import read_sweep, sweep_row
from analysis.summary import RunSummary
from analysis.verdict import regime_story, tiles, verdict


def _sweep_folder(tmp_path, run, rows):
    """A sweep folder whose table holds ``rows`` (dicts of overrides of the run's own sweep row)."""
    base = sweep_row("r", run)
    table = pd.DataFrame([{**base, **r} for r in rows])
    folder = tmp_path / "sweep"
    folder.mkdir()
    table.to_parquet(folder / "sweep.parquet", index=False)
    return folder


STORY_ROWS = [
    {"regime": "cold20", "keep_fraction": 1.0, "cold_item_share": 0.2, "oracle_gain_ndcg": 0.09,
     "control_oracle_gain_ndcg": 0.02, "oracle_excess_ndcg_lo": 0.05, "oracle_excess_ndcg_hi": 0.09,
     "fusion_gain_ndcg": 0.03},
    {"regime": "keep100", "keep_fraction": 1.0, "cold_item_share": 0.0, "oracle_gain_ndcg": 0.019,
     "control_oracle_gain_ndcg": 0.009, "oracle_excess_ndcg_lo": -0.002, "oracle_excess_ndcg_hi": 0.02,
     "fusion_gain_ndcg": 0.0},
    {"regime": "keep10", "keep_fraction": 0.1, "cold_item_share": 0.0, "oracle_gain_ndcg": 0.05,
     "control_oracle_gain_ndcg": 0.01, "oracle_excess_ndcg_lo": 0.02, "oracle_excess_ndcg_hi": 0.06,
     "fusion_gain_ndcg": 0.012},
]


def test_tiles_are_the_runs_four_headline_estimates(app_run):
    s = RunSummary(app_run.manifest)
    got = {t["label"]: t for t in tiles(app_run.manifest)}
    assert list(got) == ["best single view", "score fusion", "oracle (per-user selection)", "control floor"]
    for label, system in (("best single view", s.best_single), ("score fusion", "fusion"),
                          ("oracle (per-user selection)", "oracle_select"), ("control floor", "control_oracle_select")):
        e = s.estimate(system, "ndcg")
        assert (got[label]["system"], got[label]["mean"], got[label]["lo"], got[label]["hi"]) == (system, e.mean, e.lo, e.hi)


def test_the_run_records_the_excess_over_the_control_floor(app_run):
    raw = RunSummary(app_run.manifest).raw
    ex = raw["oracle_excess_ndcg"]
    want = raw["complementarity"]["oracle_select_ndcg_gain"] - raw["control"]["oracle_select_ndcg_gain"]
    assert ex["value"] == pytest.approx(want, abs=1e-12)
    assert ex["lo"] <= ex["value"] <= ex["hi"] and ex["n"] > 100


def test_regime_story_orders_labels_and_calls_evidence_only_when_the_interval_excludes_zero(tmp_path, app_run):
    folder = _sweep_folder(tmp_path, app_run, STORY_ROWS)
    story = regime_story(read_sweep(folder))
    assert story["regime"].tolist() == ["keep100", "keep10", "cold20"]
    assert story["label"].tolist() == ["all data", "10% kept", "20% items cold"]
    np.testing.assert_allclose(story["excess"], [0.010, 0.04, 0.07])
    assert story["evidence"].tolist() == [False, True, True]
    text = " ".join(verdict(app_run.manifest, story))
    assert "from +0.010 (all data) to +0.070 at 20% items cold" in text
    assert "2 of 3 regimes show evidence" in text
    assert "No regime sweep yet" in " ".join(verdict(app_run.manifest, None))


def test_verdict_names_evidence_from_the_runs_interval(app_run):
    m = {**app_run.manifest, "summary": {**app_run.manifest["summary"]}}
    m["summary"]["oracle_excess_ndcg"] = {"value": 0.01, "lo": 0.004, "hi": 0.016}
    assert "evidence of complementarity" in verdict(m)[0]
    m["summary"]["oracle_excess_ndcg"] = {"value": 0.01, "lo": -0.001, "hi": 0.02}
    assert "no evidence: the interval includes 0" in verdict(m)[0]


def test_report_is_one_self_contained_html_file_and_never_overwrites(tmp_path, app_run_path, app_run):
    from app.report import write_report

    folder = _sweep_folder(tmp_path, app_run, STORY_ROWS)
    out = write_report(app_run_path, tmp_path / "report.html", sweep=folder)
    html = out.read_text()
    assert html.count("<script type='text/javascript'>") == 1 and "Plotly" in html  # plotly.js inlined once
    assert "src=\"http" not in html and "src='http" not in html  # nothing fetched when opened
    assert "Verdict." in html and "Complementarity by regime" in html and "oracle (per-user selection)" in html
    assert "20% items cold" in html and "Paired differences" in html and "&lt;script&gt;" not in html.split("</head>")[0]
    (tmp_path / "mine.html").write_text("the user's own file")
    with pytest.raises(ConfigError, match="exists"):
        write_report(app_run_path, tmp_path / "mine.html")
    assert (tmp_path / "mine.html").read_text() == "the user's own file"


def test_report_command_line(tmp_path, app_run_path):
    from analysis.cli import main

    assert main(["report", str(app_run_path), "--out", str(tmp_path / "r.html")]) == 0
    assert "No regime sweep yet" in (tmp_path / "r.html").read_text()
    assert main(["report", str(app_run_path), "--out", str(tmp_path / "r.html")]) == 2  # exists: refused


def test_sweep_progress_from_the_log_and_start_only_when_missing(tmp_path, monkeypatch):
    from app import jobs

    root = tmp_path / "runs"
    root.mkdir()
    assert jobs.sweep_progress(root) is None
    (root / "ml-100k-sweep.log").write_text("=== regime 1/5: keep100 ===\n[load] ...\n[load] done in 1s\n"
                                           "=== regime 3/5: keep20 ===\n[load] ...\n")
    p = jobs.sweep_progress(root)
    n = len(jobs.STAGES)
    assert p.fraction == pytest.approx((2 + 0.5 / n) / 5) and p.text == "regime 3 of 5 (keep20), load"
    assert not p.running
    reads, real_read = [], jobs.read_log
    monkeypatch.setattr(jobs, "read_log", lambda path, *a: reads.append(path) or real_read(path, *a))
    assert jobs.sweep_progress(root) == p and reads == []  # unchanged log: the cached parse, no read
    with open(root / "ml-100k-sweep.log", "a") as fh:  # the log grows: parsed again
        fh.write("=== regime 4/5: keep10 ===\n")
    assert jobs.sweep_progress(root).text == "regime 4 of 5 (keep10)" and len(reads) == 1
    (root / "ml-100k-sweep").mkdir()
    (root / "ml-100k-sweep" / "sweep.parquet").write_bytes(b"")
    assert jobs.start_sweep(root) is False  # done already: nothing started
    assert jobs.sweep_progress(root).fraction == 1.0


def test_overview_opens_with_the_verdict_tiles_and_regime_chart(app_test, app_env, app_run):
    at = app_test()
    assert not at.exception
    md = " ".join(m.value for m in at.markdown)
    assert "**Verdict.**" in md and "No regime sweep yet" in md
    labels = [m.label for m in at.metric]
    assert labels[:4] == ["best single view", "score fusion", "oracle (per-user selection)", "control floor"]
    e = RunSummary(app_run.manifest).estimate("oracle_select", "ndcg")
    assert at.metric[2].value == f"{e.mean:.3f}"
    # a sweep over the same dataset under the runs folder: the regime story appears
    sweep = app_env / "demo-sweep"
    sweep.mkdir()
    try:
        base = sweep_row("r", app_run)
        pd.DataFrame([{**base, **r} for r in STORY_ROWS]).to_parquet(sweep / "sweep.parquet", index=False)
        at = app_test()
        assert not at.exception
        assert "2 of 3 regimes show evidence" in " ".join(m.value for m in at.markdown)
        assert any("Complementarity by regime" in str(c.proto.spec) for c in at.get("plotly_chart"))
    finally:  # the runs folder is shared by the session's app tests
        shutil.rmtree(sweep)


def test_sweep_estimate_is_five_times_the_runs_own_time(app_run_path, app_run):
    from app import jobs

    total = sum(app_run.manifest["timings"].values())
    assert jobs.sweep_estimate(app_run_path) == pytest.approx(5 * total)
    assert jobs.sweep_estimate(app_run_path.parent / "no-such-run") is None


def test_compute_page_offers_the_sweep_with_its_estimate(app_test, app_env):
    at = app_test("views/compute.py")
    assert not at.exception
    assert [b for b in at.button if b.key == "compute_sweep"]
    assert any("The ml-100k regimes" in c.value for c in at.caption)


def test_an_excess_below_the_floor_is_not_evidence(tmp_path, app_run):
    rows = [dict(STORY_ROWS[1]), {**STORY_ROWS[2], "oracle_gain_ndcg": 0.01, "control_oracle_gain_ndcg": 0.03,
                                  "oracle_excess_ndcg_lo": -0.03, "oracle_excess_ndcg_hi": -0.01}]
    story = regime_story(read_sweep(_sweep_folder(tmp_path, app_run, rows)))
    assert story["evidence"].tolist() == [False, False]
    assert "0 of 2 regimes show evidence" in " ".join(verdict(app_run.manifest, story))
