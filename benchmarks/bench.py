"""`make bench`: speed of the engine, written to benchmarks/results.md.

1. End-to-end wall time of the ml-100k run by stage, cold (empty vector / tuning caches;
   the dataset itself is copied in so no network time is counted) and warm (caches kept,
   run recomputed with --force).
2. Full-ranking top-K throughput as a ratio to this machine's float32 GEMM peak,
   both measured in this same process.
3. Recall/NDCG computation time as a ratio to ranx on the same rankings (and a check
   that the numbers agree).
Ratios measured side by side in one run are what to compare; absolute times drift
±10-15 % on shared machines (PERFORMANCE.md).
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
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.backend import get_backend  # noqa: E402
from analysis.metrics import evaluate  # noqa: E402
from analysis.models.base import EmbeddingRecommender  # noqa: E402
from analysis.ranking import rank  # noqa: E402


def best_of(fn, repeat=5):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def gemm_peak() -> dict[str, float]:
    import torch

    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    flops = 2 * n**3
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return {"numpy": flops / best_of(lambda: a @ b) / 1e9, "torch": flops / best_of(lambda: ta @ tb) / 1e9}


def end_to_end(log) -> dict[str, dict[str, float]]:
    from analysis.cache import cache_dir
    from analysis.fetch import fetch_ml100k

    src = fetch_ml100k(log=log)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        shutil.copytree(src, cache / "datasets" / "ml-100k")
        env = {**os.environ, "SEMCOLLAB_CACHE": str(cache)}
        for label in ("cold", "warm"):
            run_dir = Path(tmp) / "run"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "analysis", "run", "--dataset", "ml-100k", "--out", str(run_dir),
                            "--force"], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
            total = time.perf_counter() - t
            timings = json.loads((run_dir / "manifest.json").read_text())["timings"]
            out[label] = {**timings, "total (process)": total}
            log(f"  {label}: {total:.1f}s")
    return out


def scoring(peak: dict[str, float]) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for label, n_u, n_i, d in (("ml-100k size", 943, 1682, 64), ("ml-1m size", 6040, 3706, 64)):
        U = rng.standard_normal((n_u, d), dtype=np.float32)
        V = rng.standard_normal((n_i, d), dtype=np.float32)
        m = EmbeddingRecommender("bench", U, V, np.ones(n_i, bool))
        seen = sp.random(n_u, n_i, density=0.03, format="csr", random_state=0, dtype=np.float32)
        users = np.arange(n_u)
        for be in ("numpy", "torch"):
            b = get_backend(be)
            rank(m, users[:64], seen, 20, backend=b)  # warm
            t = best_of(lambda: rank(m, users, seen, 20, backend=b), repeat=3)
            gflops = 2 * n_u * n_i * d / t / 1e9
            rows.append({"case": f"{label} ({n_u}x{n_i}, d={d}), top-20", "backend": be, "seconds": t,
                         "users/s": n_u / t, "effective GFLOP/s": gflops,
                         "ratio to GEMM peak": gflops / peak[be]})
    return rows


def metrics_vs_ranx() -> dict[str, float]:
    from ranx import Qrels, Run, evaluate as rx_evaluate

    rng = np.random.default_rng(0)
    n_u, n_i, K = 943, 1682, 20
    top = np.stack([rng.choice(n_i, K, replace=False) for _ in range(n_u)]).astype(np.int32)
    target = sp.random(n_u, n_i, density=0.01, format="csr", random_state=1, dtype=np.float32)
    target.data[:] = 1
    users = np.arange(n_u)
    qrels = {str(u): {str(i): 1 for i in target[u].indices} for u in users if target[u].nnz}
    run = {str(u): {str(i): float(K - r) for r, i in enumerate(top[u])} for u in users if target[u].nnz}
    q, r = Qrels(qrels), Run(run)
    ms = ["recall@20", "ndcg@20"]
    rx_evaluate(q, r, ms)  # compile once
    t_rx = best_of(lambda: rx_evaluate(q, r, ms), repeat=5)
    t_ours = best_of(lambda: evaluate(top, target, users, (20,)), repeat=5)
    ours = evaluate(top, target, users, (20,))
    rx = rx_evaluate(q, r, ms)
    agree = all(abs(np.nanmean(ours[m]) - rx[m]) < 1e-9 for m in ms)
    return {"ours_s": t_ours, "ranx_s": t_rx, "speed-up": t_rx / t_ours, "identical": agree}


def main() -> None:
    log = print
    log("GEMM peak ...")
    peak = gemm_peak()
    log(f"  numpy {peak['numpy']:.0f} GFLOP/s, torch {peak['torch']:.0f} GFLOP/s")
    log("scoring throughput ...")
    sc = scoring(peak)
    log("metrics vs ranx ...")
    mx = metrics_vs_ranx()
    log("end-to-end ml-100k (cold, warm) ...")
    e2e = end_to_end(log)
    lines = ["# Benchmarks", "",
             f"Generated by `make bench` on {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}. Ratios are measured side by side in one run.",
             "", "## End-to-end ml-100k run, by stage (seconds)", "",
             "Cold: empty vector and tuning caches (dataset copied in, no network). Warm: caches kept, run recomputed.", "",
             "| stage | cold | warm |", "|---|---:|---:|"]
    order = ["load", "split", "semantic vectors", "semantic recommenders", "collaborative", "rank and evaluate",
             "fusion", "complementarity", "bootstrap", "item geometry", "global similarity",
             "shared/private structure", "alignment probes", "fusion models", "projection", "assemble",
             "total (process)"]
    for stage in sorted(e2e["cold"], key=lambda s: order.index(s) if s in order else len(order) - 1):
        lines.append(f"| {stage} | {e2e['cold'][stage]:.2f} | {e2e['warm'].get(stage, float('nan')):.2f} |")
    lines += ["", "## Full-ranking top-K throughput vs float32 GEMM peak", "",
              f"GEMM peak measured in this run (2048², best of 5): numpy {peak['numpy']:.0f} GFLOP/s, "
              f"torch {peak['torch']:.0f} GFLOP/s. Training items masked (3 % density).", "",
              "| case | backend | seconds | users/s | effective GFLOP/s | ratio to GEMM peak |",
              "|---|---|---:|---:|---:|---:|"]
    for r in sc:
        lines.append(f"| {r['case']} | {r['backend']} | {r['seconds']:.4f} | {r['users/s']:,.0f} | "
                     f"{r['effective GFLOP/s']:.1f} | {r['ratio to GEMM peak']:.3f} |")
    lines += ["", "## Recall@20 / NDCG@20 computation vs ranx (943 users, same rankings)", "",
              "| ours (s) | ranx (s) | ranx time / ours | identical values |", "|---:|---:|---:|---|",
              f"| {mx['ours_s']:.4f} | {mx['ranx_s']:.4f} | {mx['speed-up']:.1f}× | {mx['identical']} |", ""]
    out = ROOT / "benchmarks" / "results.md"
    out.write_text("\n".join(lines))
    log(f"written {out}")


if __name__ == "__main__":
    main()
