"""Time and peak memory of the synthetic generator at scale (issue 10: never dense in users × items).

    .venv/bin/python benchmarks/bench_synthetic.py                 # 20k × 20k (mean 60), 100k × 20k (mean 50)
    .venv/bin/python benchmarks/bench_synthetic.py 6040x3706x165   # any USERSxITEMSxMEAN

Each size runs in a fresh process, so its peak RSS is its own: the figure shown is the process's
peak resident memory, with its growth over the interpreter and imports beside it. The generator
samples one block of users at a time (``analysis.synthetic.gumbel_top_k``); the "dense" column is
what the two users × items float64 matrices (utility and Gumbel noise) of the former dense generator
alone would take. Absolute times drift on shared machines; the sampler's part is timed separately
from the whole ``generate`` (which also builds the item texts and the interaction table).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = [(20_000, 20_000, 60.0), (100_000, 20_000, 50.0)]

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from analysis import synthetic
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sampler = {{"s": 0.0}}
inner = synthetic.gumbel_top_k
def timed(*a, **k):
    t = time.perf_counter()
    try:
        return inner(*a, **k)
    finally:
        sampler["s"] += time.perf_counter() - t
synthetic.gumbel_top_k = timed
t = time.perf_counter()
ds = synthetic.generate(n_users={n_users}, n_items={n_items}, mean_per_user={mean}, seed=0)
total = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"total_s": total, "sampler_s": sampler["s"], "interactions": len(ds.interactions),
                  "peak_rss_kib": peak, "base_rss_kib": base, "threads": synthetic.sampler_threads(),
                  "block_users": synthetic.block_rows({n_items})}}))
"""


def measure(n_users: int, n_items: int, mean: float) -> dict:
    code = CHILD.format(root=str(ROOT), n_users=n_users, n_items=n_items, mean=mean)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def parse(arg: str) -> tuple[int, int, float]:
    u, i, m = arg.lower().split("x")
    return int(u), int(i), float(m)


def main(argv: list[str]) -> None:
    sizes = [parse(a) for a in argv] or DEFAULT_SIZES
    print(f"# synthetic generator: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}")
    print("| users × items (mean/user) | interactions | generate | sampler | peak RSS | growth | dense matrices | "
          "threads | users/block |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n_users, n_items, mean in sizes:
        r = measure(n_users, n_items, mean)
        dense_gib = 2 * n_users * n_items * 8 / 2**30
        print(f"| {n_users:,} × {n_items:,} ({mean:g}) | {r['interactions']:,} | {r['total_s']:.1f} s | "
              f"{r['sampler_s']:.1f} s | {r['peak_rss_kib'] / 2**20:.2f} GiB | "
              f"{(r['peak_rss_kib'] - r['base_rss_kib']) / 2**20:.2f} GiB | {dense_gib:.1f} GiB | "
              f"{r['threads']} | {r['block_users']} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
