"""`make bench`: speed of the engine, written to benchmarks/results.md.

1. End-to-end wall time of the ml-100k run by stage, cold (empty vector / tuning caches;
   the dataset itself is copied in so no network time is counted) and warm (caches kept,
   run recomputed with --force).
2. Full-ranking top-K (``rank``) side by side with the bare matrix product of the same
   shape (one call, and in the ranking's blocks), plus the ratio to the float32 GEMM peak,
   all measured in this same process.
3. Recall/NDCG computation time as a ratio to ranx on the same rankings (and a check
   that the numbers agree).
4. The Ray executor's overhead against the local one: warm runs of ml-100k and tier S.
Ratios measured side by side in one run are what to compare; absolute times drift
±10-15 % on shared machines (PERFORMANCE.md).
"""
from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def fresh_cache(log):
    """A temporary folder holding an empty engine cache with ml-100k copied in (no network time is measured):
    yields (folder, environment pointing ``SEMCOLLAB_CACHE`` at it)."""
    from analysis.fetch import fetch_ml100k

    src = fetch_ml100k(log=log)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        shutil.copytree(src, cache / "datasets" / "ml-100k")
        yield tmp, {**os.environ, "SEMCOLLAB_CACHE": str(cache)}


def end_to_end(log) -> dict[str, dict[str, float]]:
    out = {}
    with fresh_cache(log) as (tmp, env):
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


#: the executor comparison's cases: (label, dataset arguments of `semcollab run`)
EXECUTOR_CASES = [("ml-100k", ["--dataset", "ml-100k"]),
                  ("tier S (6,040 x 3,706, 1M)", ["--dataset", "synthetic", "--synthetic", "n_users=6040",
                                                  "--synthetic", "n_items=3706", "--synthetic", "mean_per_user=165"])]


def executor_overhead(log, cases=EXECUTOR_CASES) -> list[dict]:
    """Warm run time with ``--executor local`` and ``--executor ray`` (a local Ray cluster the run
    starts itself), side by side: one run first fills the vector / tuning caches, then local and
    Ray alternate twice each; the best of each is kept."""
    rows = []
    with fresh_cache(log) as (tmp, env):
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        for label, args in cases:
            def run(executor: str) -> float:
                t = time.perf_counter()
                subprocess.run([sys.executable, "-m", "analysis", "run", *args, "--out", str(Path(tmp) / "run"),
                                "--force", "--executor", executor], check=True, env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                return time.perf_counter() - t

            run("local")  # caches
            times = {"local": [], "ray": []}
            for _ in range(2):
                for ex in ("local", "ray"):
                    times[ex].append(run(ex))
            local, ray_ = min(times["local"]), min(times["ray"])
            rows.append({"case": label, "local_s": local, "ray_s": ray_, "overhead_s": ray_ - local,
                         "ratio": ray_ / local})
            log(f"  {label}: local {local:.1f}s, ray {ray_:.1f}s ({ray_ / local:.2f}x)")
    return rows


def sweep_time(log) -> dict[str, float]:
    """Wall time of the default ml-100k regime sweep (`make sweep`, what `make app` computes in the background):
    cold (empty vector / tuning caches, dataset copied in) and warm (caches kept, --force)."""
    out = {}
    with fresh_cache(log) as (tmp, env):
        for label in ("cold", "warm"):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "analysis", "sweep", "--dataset", "ml-100k", "--out",
                            str(Path(tmp) / "sweep"), "--force"], check=True, env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out[label] = time.perf_counter() - t
            log(f"  sweep {label}: {out[label]:.0f}s")
    return out


class _Generic:
    """The same model through rank()'s generic path (score per block, mask, Backend.topk)."""

    def __init__(self, m):
        self.m, self.name, self.scorable = m, m.name, m.scorable

    def score(self, users):
        return self.m.score(users)


#: (label, users, items, d, seen density); 20k x 20k at 0.3 % is the 1.2M-interaction tier
SCORING_CASES = (("ml-100k size", 943, 1682, 64, 0.03), ("ml-1m size", 6040, 3706, 64, 0.03),
                 ("ml-1m size", 6040, 3706, 128, 0.03), ("20k x 20k", 20000, 20000, 64, 0.003))


def scoring(peak: dict[str, float], cases=SCORING_CASES, log=print) -> list[dict]:
    """Full-ranking top-20 (``rank``, fused path) side by side with the bare product of the
    same shape, interleaved in one loop (best of n): the product as one call (``U @ V.T``
    into a new matrix) and in the ranking's own user blocks into one reused buffer (the
    arithmetic floor: same kernel, no selection). Also the generic path (score, mask,
    numpy top-K), which every recommender took before."""
    import torch

    from analysis.backend import EmbeddingScorer
    from analysis.ranking import choose_block

    rows = []
    rng = np.random.default_rng(0)
    for label, n_u, n_i, d, density in cases:
        U = rng.standard_normal((n_u, d), dtype=np.float32)
        V = rng.standard_normal((n_i, d), dtype=np.float32)
        m = EmbeddingRecommender("bench", U, V, np.ones(n_i, bool))
        seen = sp.random(n_u, n_i, density=density, format="csr", random_state=0, dtype=np.float32)
        users = np.arange(n_u)
        Ut, Vt = torch.from_numpy(U), torch.from_numpy(V)
        scorer, block = EmbeddingScorer(U, V), choose_block(n_i, d)
        buf = torch.empty((block, scorer.n_cols), dtype=torch.float32)

        def blocked():
            for s in range(0, n_u, block):
                scorer.block(users[s : s + block], buf)

        fns = {"one call": lambda: torch.mm(Ut, Vt.T), "blocked": blocked,
               "rank": lambda: rank(m, users, seen, 20),
               "generic": lambda: rank(_Generic(m), users, seen, 20, backend=get_backend("numpy"))}
        rank(m, users[:64], seen, 20)  # warm
        best = {k: float("inf") for k in fns}
        for _ in range(7 if n_u * n_i < 1e8 else 3):
            for k, f in fns.items():
                t = time.perf_counter()
                f()
                best[k] = min(best[k], time.perf_counter() - t)
        t = best["rank"]
        gflops = 2 * n_u * n_i * d / t / 1e9
        rows.append({"case": f"{label} ({n_u}x{n_i}, d={d}), top-20", "block": block, "seconds": t,
                     "product, one call (s)": best["one call"], "product, blocked (s)": best["blocked"],
                     "ratio to product, one call": t / best["one call"],
                     "ratio to product, blocked": t / best["blocked"],
                     "generic path (s)": best["generic"], "users/s": n_u / t, "effective GFLOP/s": gflops,
                     "ratio to GEMM peak": gflops / peak["torch"]})
        r = rows[-1]
        log(f"  {r['case']}: rank {t * 1e3:.1f} ms, product {best['one call'] * 1e3:.1f} ms (one call) / "
            f"{best['blocked'] * 1e3:.1f} ms (blocked) -> {r['ratio to product, one call']:.2f}x / "
            f"{r['ratio to product, blocked']:.2f}x; generic path {best['generic'] * 1e3:.1f} ms")
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
    log("full-ranking top-K vs the bare product ...")
    sc = scoring(peak, log=log)
    log("metrics vs ranx ...")
    mx = metrics_vs_ranx()
    log("end-to-end ml-100k (cold, warm) ...")
    e2e = end_to_end(log)
    log("executor overhead: local vs Ray ...")
    exo = executor_overhead(log)
    log("default regime sweep (cold, warm) ...")
    swt = sweep_time(log)
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
    lines += ["", "## Full-ranking top-K vs the bare matrix product", "",
              "`rank` (fused torch path: scores per user block into one buffer, CSR mask in place, chunk-maximum "
              "selection) beside the bare product of the same shape, measured interleaved in this run: as one call "
              "(`U @ V.T` into a new matrix) and in the ranking's own blocks into a reused buffer (no selection: the "
              f"floor). GEMM peak (2048², best of 5): numpy {peak['numpy']:.0f} GFLOP/s, torch {peak['torch']:.0f} "
              "GFLOP/s. Training items masked. Generic path: score, mask, numpy top-K (every other recommender).", "",
              "| case | block | rank (s) | product, one call (s) | product, blocked (s) | rank / product (one call) | "
              "rank / product (blocked) | generic path (s) | users/s | ratio to GEMM peak |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sc:
        lines.append(f"| {r['case']} | {r['block']} | {r['seconds']:.4f} | {r['product, one call (s)']:.4f} | "
                     f"{r['product, blocked (s)']:.4f} | {r['ratio to product, one call']:.2f}× | "
                     f"{r['ratio to product, blocked']:.2f}× | {r['generic path (s)']:.4f} | {r['users/s']:,.0f} | "
                     f"{r['ratio to GEMM peak']:.3f} |")
    lines += ["", "## Recall@20 / NDCG@20 computation vs ranx (943 users, same rankings)", "",
              "| ours (s) | ranx (s) | ranx time / ours | identical values |", "|---:|---:|---:|---|",
              f"| {mx['ours_s']:.4f} | {mx['ranx_s']:.4f} | {mx['speed-up']:.1f}× | {mx['identical']} |", ""]
    lines += ["## Executor overhead: local vs Ray (warm runs, seconds)", "",
              "The same warm run (`--force`, vector and tuning caches filled by a first run) in one process "
              "(`--executor local`) and with its heavy stages' jobs as tasks on a local Ray cluster that the run "
              "starts (`--executor ray`, cluster start included), alternated, best of two each.", "",
              "| case | local | ray | overhead | ray / local |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['case']} | {r['local_s']:.1f} | {r['ray_s']:.1f} | {r['overhead_s']:+.1f} | {r['ratio']:.2f}× |"
              for r in exo]
    lines += ["", "## Default regime sweep (ml-100k: 100 / 50 / 20 / 10 % kept, 20 % items cold; seconds)", "",
              "What `make app` computes in the background when it is missing (target: ≤ 3 min warm).", "",
              "| cold | warm |", "|---:|---:|", f"| {swt['cold']:.0f} | {swt['warm']:.0f} |", ""]
    out = ROOT / "benchmarks" / "results.md"
    out.write_text("\n".join(lines))
    log(f"written {out}")


if __name__ == "__main__":
    main()
