"""Time and peak memory of the "load" stage at scale (issue 10): generate, validate, preprocess, index, checksum.

    .venv/bin/python benchmarks/bench_synthetic.py                 # tiers S and M
    .venv/bin/python benchmarks/bench_synthetic.py S M L           # L: 1M users × 100k items (50M interactions)
    .venv/bin/python benchmarks/bench_synthetic.py L/20            # 1/20 of L's users (per-user cost is the same)
    .venv/bin/python benchmarks/bench_synthetic.py 20000x20000x60  # any USERSxITEMSxMEAN

Each size runs in a fresh process, so its peak resident memory (``ru_maxrss``) is its own; it is
read after each step, so the column of a step is the peak up to the end of that step. The steps are
those of ``analysis.pipeline.load_dataset`` then ``Dataset.checksum`` and ``analysis.data.index``
(the split stage's first call). ``sampler`` is the part of ``generate`` spent drawing the items
(``gumbel_top_k`` up to ``candidate_above`` users × items cells, ``candidate_top_k`` above it); the
"dense" column is what the users × items float64 utility and Gumbel matrices of the original dense
generator alone would take. A ``/K`` tier runs 1/K of the users and shows the times × K (per-user
cost does not depend on the number of users) marked "≈"; the per-item parts (item texts, vectors)
are then over-counted, and its memory is not extrapolated. Absolute times drift on shared machines:
the load average is printed with each row, and the total's CPU-seconds (user + system, all threads)
beside its wall time: on a quiet machine the sampler's wall time is about its CPU time / threads.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: issue 10's tiers: users, items, mean interactions per user
TIERS = {"S": (6_040, 3_706, 165.0), "M": (100_000, 20_000, 50.0), "L": (1_000_000, 100_000, 50.0)}
DEFAULT = ["S", "M"]
STEPS = ["generate", "validate", "preprocess", "index", "checksum"]

CHILD = """
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
from analysis import synthetic
from analysis.data import index, preprocess, validate
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
out = {{"base_rss_kib": peak(), "load_before": os.getloadavg()[0], "sampler_s": 0.0, "steps": {{}}}}
for name in ("gumbel_top_k", "candidate_top_k"):
    inner = getattr(synthetic, name)
    def timed(*a, _inner=inner, **k):
        t = time.perf_counter()
        try:
            return _inner(*a, **k)
        finally:
            out["sampler_s"] += time.perf_counter() - t
    setattr(synthetic, name, timed)
def step(name, f):
    t, c = time.perf_counter(), cpu()
    r = f()
    out["steps"][name] = {{"s": time.perf_counter() - t, "cpu_s": cpu() - c, "peak_rss_kib": peak()}}
    return r
ds = step("generate", lambda: synthetic.generate(n_users={n_users}, n_items={n_items}, mean_per_user={mean}, seed=0))
out["sampler"] = ds.planted["sampler"]["method"]
step("validate", lambda: validate(ds))
ds = step("preprocess", lambda: preprocess(ds))
out["interactions"] = len(ds.interactions)
ix = step("index", lambda: index(ds))
step("checksum", lambda: ds.checksum())
out["load_after"] = os.getloadavg()[0]
out["threads"] = synthetic.sampler_threads()
print(json.dumps(out))
"""


def measure(n_users: int, n_items: int, mean: float) -> dict:
    code = CHILD.format(root=str(ROOT), n_users=n_users, n_items=n_items, mean=mean)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def parse(arg: str) -> tuple[str, int, int, float, int]:
    """``S`` / ``M`` / ``L`` (optionally ``/K``: 1/K of the users) or ``USERSxITEMSxMEAN``."""
    name, _, k = arg.partition("/")
    scale = int(k) if k else 1
    if name.upper() in TIERS:
        u, i, m = TIERS[name.upper()]
        return arg.upper(), u // scale, i, m, scale
    u, i, m = name.lower().split("x")
    return arg, int(u) // scale, int(i), float(m), scale


def main(argv: list[str]) -> None:
    sizes = [parse(a) for a in argv or DEFAULT]
    print(f"# load stage at scale: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}")
    print("| tier: users × items (mean) | interactions | sampler | " + " | ".join(STEPS) + " | total | peak RSS | "
          "dense matrices | load avg |")
    print("|---|---:|---|" + "---:|" * (len(STEPS) + 4))
    for label, n_users, n_items, mean, scale in sizes:
        r = measure(n_users, n_items, mean)
        approx = "≈" if scale > 1 else ""
        times = [r["steps"][s]["s"] * scale for s in STEPS]
        cpus = [r["steps"][s]["cpu_s"] * scale for s in STEPS]
        cells = [f"{approx}{t:.1f} s" for t in times]
        cells[0] += f" ({approx}{r['sampler_s'] * scale:.1f} s sampling)"
        peak = max(v["peak_rss_kib"] for v in r["steps"].values()) / 2**20
        gen_peak = r["steps"]["generate"]["peak_rss_kib"] / 2**20
        dense = 2 * n_users * scale * n_items * 8 / 2**30
        print(f"| {label}: {n_users * scale:,} × {n_items:,} ({mean:g}) | {approx}{r['interactions'] * scale:,} | "
              f"{r['sampler']} ({r['threads']} threads) | " + " | ".join(cells)
              + f" | {approx}{sum(times):.1f} s ({approx}{sum(cpus):.0f} CPU-s) | "
              f"{peak:.2f} GiB (generate {gen_peak:.2f}){' at 1/' + str(scale) if scale > 1 else ''} | "
              f"{dense:,.0f} GiB | {r['load_before']:.1f}–{r['load_after']:.1f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
