"""One self-contained HTML report of a run (and its regime sweep): what travels after the meeting.

``semcollab report RUN [--sweep DIR] --out report.html`` and the Overview page's download button both
call :func:`report_html`: the verdict and the headline tiles (:mod:`analysis.verdict`), the
complementarity-by-regime chart and the regimes chart (the dashboard's own Plotly builders,
interactive), every system's test metrics with intervals, the paired differences, the sweep table,
the run's configuration and package versions. plotly.js is inlined once, so the file opens with no
network.
"""
from __future__ import annotations

import html
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from analysis import systems
from analysis.errors import ConfigError
from analysis.regimes import read_sweep
from analysis.runstore import Run, open_run
from analysis.summary import RunSummary
from analysis.verdict import regime_story, tiles, verdict

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
color:#1f2328;padding:0 1em}h1{margin-bottom:.1em}.sub{color:#59636e}.verdict{border:1px solid #d0d7de;
border-radius:8px;padding:1em 1.2em;background:#f6f8fa}.tiles{display:flex;gap:1em;margin:1em 0}
.tile{flex:1;border:1px solid #d0d7de;border-radius:8px;padding:.7em}.tile b{font-size:1.6em;display:block}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1.5em}td,th{border:1px solid #d0d7de;padding:3px 8px;
text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}pre{background:#f6f8fa;
padding:1em;overflow:auto;font-size:.8em}"""


def _table(df: pd.DataFrame, digits: int = 4) -> str:
    return df.to_html(index=False, float_format=lambda x: f"{x:.{digits}f}", border=0, escape=True)


def _metrics(run: Run) -> pd.DataFrame:
    """Every system's test metrics over all items, with the run's labels."""
    m = run.table("metrics")
    m = m[(m["part"] == "test") & (m["segment"] == "all")]
    return m.assign(label=[systems.label(run.manifest, s) for s in m["system"]])[["label", "system", "metric", "k", "mean", "lo", "hi", "n_users"]]


def report_html(run_path: str | Path | Run, sweep: str | Path | None = None) -> str:
    """The report of the run at ``run_path`` (or an opened :class:`Run`; and of the sweep folder ``sweep``) as one
    HTML string."""
    import plotly.offline

    from app.charts.overview import regime_headline
    from app.charts.regimes import regimes as regimes_chart

    run = run_path if isinstance(run_path, Run) else open_run(run_path)
    s = RunSummary(run.manifest)
    table = read_sweep(sweep) if sweep else None
    story = regime_story(table) if table is not None else None
    figs = []
    if story is not None:
        figs = [regime_headline(story, s.K), regimes_chart(table, int(table["K"].iloc[0]))]
    ds = run.manifest.get("dataset", {}) or {}
    parts = [f"<h1>semcollab report: {html.escape(run.path.name)}</h1>",
             f"<p class='sub'>dataset {html.escape(str(ds.get('name', '?')))} · test NDCG@{s.K} · made "
             f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} from {html.escape(str(run.path))}</p>",
             "<div class='verdict'><b>Verdict.</b> " + html.escape(" ".join(verdict(run.manifest, story))) + "</div>",
             "<div class='tiles'>" + "".join(
                 f"<div class='tile'>{html.escape(t['label'])}<b>{t['mean']:.3f}</b>95% CI {t['lo']:.3f} – "
                 f"{t['hi']:.3f}</div>" for t in tiles(run.manifest)) + "</div>"]
    parts += [f.to_html(full_html=False, include_plotlyjs=False) for f in figs]
    parts += ["<h2>Every system (test, 95 % bootstrap intervals)</h2>", _table(_metrics(run)),
              "<h2>Paired differences</h2>", _table(run.table("differences"))]
    if table is not None:
        parts += [f"<h2>Regimes ({html.escape(str(sweep))})</h2>",
                  _table(table.drop(columns=[c for c in ("path", "x_label", "is_cold") if c in table.columns]))]
    parts += ["<h2>Configuration</h2>", f"<pre>{html.escape(json.dumps(run.manifest.get('config'), indent=1))}</pre>",
              "<h2>Versions</h2>", f"<pre>{html.escape(json.dumps(run.manifest.get('versions'), indent=1))}</pre>"]
    js = plotly.offline.get_plotlyjs()
    return ("<!doctype html><html><head><meta charset='utf-8'><title>semcollab report</title>"
            f"<style>{_CSS}</style><script type='text/javascript'>{js}</script></head><body>"
            + "\n".join(parts) + "</body></html>")


def write_report(run_path: str | Path, out: str | Path, sweep: str | Path | None = None, force: bool = False) -> Path:
    """Write :func:`report_html` to ``out`` (never over an existing file unless ``force``; written to a
    temporary file and renamed, so never half-written)."""
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to replace it")
    if out.exists() and not out.is_file():
        raise ConfigError(f"{out} is not a file")
    text = report_html(run_path, sweep)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    with open(tmp, "x", encoding="utf-8") as fh:  # "x": never over a file of that name either
        fh.write(text)
    try:
        if force:
            os.replace(tmp, out)
        else:
            os.link(tmp, out)  # fails if ``out`` appeared meanwhile: nothing of the user's is overwritten
    except FileExistsError:
        raise ConfigError(f"{out} exists; pass --force to replace it") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
