"""`make bench-scale`: complete synthetic runs at tiers S, M and L, written to benchmarks/scale.md.

Each tier is one ``semcollab run --dataset synthetic --synthetic n_users=N --synthetic n_items=M
--synthetic mean_per_user=P`` in a fresh process with empty caches, so nothing is reused. Recorded:
the wall time and peak resident memory of the whole process (``wait4``'s ``ru_maxrss``), each
stage's time and peak memory (the run's manifest: ``timings`` / ``peak_memory_gib``), what the run
skipped and why, and how long opening the run and reading the tables the dashboard's pages read
takes. Results accumulate in benchmarks/scale.json (one entry per tier, the latest run), from
which the table is rendered, so tier L's row survives re-running S and M alone.

    python benchmarks/bench_scale.py            # tiers S and M
    python benchmarks/bench_scale.py S M L      # all three (L takes over an hour on 2 cores)
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: tier -> (synthetic generator parameters, target minutes, target GiB) -- issue 10's targets
TIERS = {
    "S": ({"n_users": 6040, "n_items": 3706, "mean_per_user": 165}, 5, 4),
    "M": ({"n_users": 100_000, "n_items": 20_000, "mean_per_user": 50}, 20, 10),
    "L": ({"n_users": 1_000_000, "n_items": 100_000, "mean_per_user": 50}, 90, 20),
}
RESULTS = ROOT / "benchmarks" / "scale.json"
TABLE = ROOT / "benchmarks" / "scale.md"


def run_tier(tier: str, runs: Path) -> dict:
    """One complete run of ``tier`` in a child process with its own empty cache."""
    params, _, _ = TIERS[tier]
    out = runs / f"scale-{tier}"
    cmd = [sys.executable, "-m", "analysis", "run", "--dataset", "synthetic", "--out", str(out), "--force"]
    for k, v in params.items():
        cmd += ["--synthetic", f"{k}={v}"]
    cache = Path(tempfile.mkdtemp(prefix=f"semcollab-scale-{tier}-"))
    log = runs / f"scale-{tier}.log"
    env = {**os.environ, "SEMCOLLAB_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    t = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    shutil.rmtree(cache, ignore_errors=True)
    rc = os.waitstatus_to_exitcode(status)
    entry = {"tier": tier, "params": params, "rc": rc, "wall_s": round(wall, 1),
             "peak_gib": round(usage.ru_maxrss / 2**20, 2), "log": str(log)}
    if rc != 0:
        entry["error"] = log.read_text(errors="replace")[-2000:]
        return entry
    return {**entry, **read_run(out), "pages_s": page_times(out)}


def read_run(out: Path) -> dict:
    """Stage times and memory from the manifest; the time to open the run and read what the pages read."""
    from analysis.runstore import open_run

    t = time.perf_counter()
    run = open_run(out)
    tables = {name: len(run.table(name)) for name in ("items", "users", "topk", "metrics", "neighbors", "interactions")}
    open_s = time.perf_counter() - t
    m = run.manifest
    return {"stages_s": m["timings"], "stages_gib": m.get("peak_memory_gib", {}), "open_s": round(open_s, 2),
            "rows": tables, "evaluation": m.get("evaluation", {}), "skipped": m.get("skipped", {}),
            "n_interactions": m["dataset"]["n_interactions"], "maps": m.get("maps", {}),
            "neighbor_search": {k: v.get("method") for k, v in (m.get("neighbor_search") or {}).items()}}


def page_times(out: Path) -> list[list]:
    """Seconds each dashboard page takes to render on the run (Streamlit's AppTest, the server side:
    the first visit of each page, so it includes loading and caching what the page reads); a page
    that raises or shows an error is recorded as its message."""
    import logging

    from streamlit.testing.v1 import AppTest

    os.environ["SEMCOLLAB_RUNS"] = str(out.parent)
    sys.argv = ["app/main.py", "--run", str(out)]
    from app.main import PAGES  # (importing it runs the app once, bare: the run must be set first)

    for name in [n for n in logging.root.manager.loggerDict if n.startswith("streamlit")]:
        logging.getLogger(name).setLevel(logging.ERROR)  # bare-mode warnings of every page's imports
    times: list[list] = []  # [page title, seconds or error], in the dashboard's order
    t = time.perf_counter()
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=600).run()
    for f, title, *_ in PAGES:
        if f != PAGES[0][0]:
            t = time.perf_counter()
            at.switch_page(f"views/{f}")
            at.run()
        problems = [str(e.value)[:120] for e in (*at.exception, *at.error)]
        times.append([title, problems[0] if problems else round(time.perf_counter() - t, 2)])
    return times


def render(results: dict) -> str:
    """benchmarks/scale.md from the accumulated results."""
    lines = ["# Scale: complete synthetic runs (`make bench-scale`)", "",
             "One `semcollab run --dataset synthetic` per tier in a fresh process with empty caches on this 2-core box "
             "(times drift ±10–15 % on shared machines). Peak = the process's maximum resident memory.", "",
             "| tier | users × items | interactions | users evaluated | complete run | target | peak memory | target "
             "| open the run | measured |", "|---|---|---|---|---|---|---|---|---|---|"]
    for tier in TIERS:
        r = results.get(tier)
        if r is None:
            lines.append(f"| {tier} | not run yet | | | | | | | | |")
            continue
        p, tmin, tgib = r["params"], TIERS[tier][1], TIERS[tier][2]
        ok_t, ok_m = r["wall_s"] <= 60 * tmin, r["peak_gib"] <= tgib
        status = "" if r["rc"] == 0 else f" (failed, rc {r['rc']})"
        ev = r.get("evaluation", {})
        lines.append(
            f"| {tier} | {p['n_users']:,} × {p['n_items']:,} | {r.get('n_interactions', 0):,} | "
            f"{ev.get('n_evaluated', 0):,} | {r['wall_s'] / 60:.1f} min{status} | ≤ {tmin} min {'✓' if ok_t else '✗'} | "
            f"{r['peak_gib']:.1f} GiB | ≤ {tgib} GiB {'✓' if ok_m else '✗'} | {r.get('open_s', float('nan')):.1f} s | "
            f"{r['date']} |")
    lines += ["", "## Per stage: seconds (peak GiB)", ""]
    done = [t for t in TIERS if t in results and results[t]["rc"] == 0]
    from analysis.stages import STAGE_NAMES

    seen = {s for t in done for s in results[t]["stages_s"]}
    stages = [s for s in STAGE_NAMES if s in seen] + sorted(seen - set(STAGE_NAMES))  # pipeline order
    lines += ["| stage | " + " | ".join(done) + " |", "|---|" + "---|" * len(done)]
    for s in stages:
        cells = [f"{results[t]['stages_s'].get(s, float('nan')):.1f} ({results[t]['stages_gib'].get(s, float('nan')):.2f})"
                 for t in done]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    pages = list(dict.fromkeys(p for t in done for p, _ in results[t].get("pages_s", [])))
    if pages:
        lines += ["", "## Dashboard: first render of each page on the run (server side, seconds)", "",
                  "| page | " + " | ".join(done) + " |", "|---|" + "---|" * len(done)]
        lines += [f"| {p} | " + " | ".join(str(dict(results[t].get("pages_s", [])).get(p, "")) for t in done) + " |"
                  for p in pages]
    notes = [f"- {t}: {results[t]['note']}" for t in TIERS if results.get(t, {}).get("note")]
    notes += [f"- {t}: skipped {k}: {v}" for t in done for k, v in (results[t].get("skipped") or {}).items()]
    notes += [f"- {t}: maps " + "; ".join(f"{v}: {m[v]['method']}, fitted on {m[v]['n_fit']:,} of {m[v]['n_valid']:,}, "
                                          f"{m[v]['n_transformed']:,} placed by transform"
                                          for v in ("semantic", "collaborative"))
              for t in done if (m := results[t].get("maps"))]
    notes += [f"- {t}: neighbour search {results[t]['neighbor_search']}" for t in done]
    if notes:
        lines += ["", "## What each run did at its size", "", *notes]
    lines += ["", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
              f"{platform.python_version()}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    tiers = [t.upper() for t in argv] or ["S", "M"]
    bad = [t for t in tiers if t not in TIERS]
    if bad:
        print(f"unknown tier(s) {bad}: use {list(TIERS)}", file=sys.stderr)
        return 2
    runs = Path(os.environ.get("SEMCOLLAB_RUNS", ROOT / "runs"))
    runs.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for tier in tiers:
        print(f"tier {tier}: {TIERS[tier][0]} ...", flush=True)
        r = run_tier(tier, runs)
        r["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        results[tier] = r
        print(f"tier {tier}: rc {r['rc']}, {r['wall_s'] / 60:.1f} min, peak {r['peak_gib']:.2f} GiB", flush=True)
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        TABLE.write_text(render(results))
    print(f"written {TABLE}")
    return 0 if all(results[t]["rc"] == 0 for t in tiers) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
