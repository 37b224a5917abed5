"""`make gpu-check`: the GPU path against the CPU path, side by side, on the tier-M synthetic shape.

One short script for a machine with a CUDA device (a few minutes): generate tier M (100,000 users x
20,000 items, 5M interactions, the scale issue's tier), split it, train the collaborative view
(BPR-MF, torch) on the device, then rank the evaluated users (top-20, training + validation items
masked) twice: on the host's fused path and on the device path (``rank(..., device="cuda")``: vectors
kept on the device, scores, masks and top-K there, only the indices come back). Prints per-stage
seconds, the GPU / CPU ratio of the top-K stage measured in this process, and the metrics of both.

Exits non-zero on any difference in results beyond float tolerance: a list may differ from the host's
only where the two items' host scores are within ``TOL`` of each other (GPU and CPU ``mm`` round the
last bits differently; ties are broken the same way), and Recall / NDCG@20 must agree within 1e-4.

Without a CUDA device it is a dry run: prints "no CUDA device" and exits 0. ``--device cpu`` runs the
same comparison through the device code on torch's CPU device (how the test suite checks this script);
``--users N --items M --per-user P`` shrink the shape; ``--write`` saves the table to benchmarks/gpu.md.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: relative score tolerance under which GPU and CPU may order two items differently
TOL = 1e-5


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="torch device of the device path (default cuda)")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--per-user", type=int, default=50)
    p.add_argument("--eval-users", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=6, help="BPR epochs (the comparison needs vectors, not a tuned model)")
    p.add_argument("--write", action="store_true", help="write the table to benchmarks/gpu.md")
    return p.parse_args(argv)


def _tolerated(model, users: np.ndarray, host: np.ndarray, dev: np.ndarray) -> tuple[int, int]:
    """(rows that differ, rows whose difference exceeds the float tolerance): at every list position
    the two items' host scores must agree within ``TOL`` (relative to the row's largest score)."""
    rows = np.flatnonzero((host != dev).any(1))
    bad = 0
    for r in rows:
        s = model.score(users[r : r + 1])[0]
        a, b = host[r], dev[r]
        if ((a < 0) != (b < 0)).any():
            bad += 1
            continue
        scale = np.abs(s[np.isfinite(s)]).max()
        bad += not np.allclose(s[a[a >= 0]], s[b[b >= 0]], rtol=0, atol=TOL * scale)
    return len(rows), bad


def check(args: argparse.Namespace, log=print) -> tuple[int, list[str]]:
    """Run the comparison; (exit code, table lines)."""
    from analysis.data import index
    from analysis.metrics import evaluate
    from analysis.models.collaborative import train_bpr
    from analysis.ranking import rank
    from analysis.split import evaluation_users, split
    from analysis.synthetic import generate

    times = {}
    t = time.perf_counter()
    ds = generate(n_users=args.users, n_items=args.items, mean_per_user=args.per_user, seed=0)
    times["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    sp_ = split(index(ds))
    users = evaluation_users(sp_.n_users, args.eval_users)
    times["split"] = time.perf_counter() - t
    t = time.perf_counter()
    model = train_bpr(sp_, epochs=args.epochs, patience=args.epochs, eval_every=args.epochs, device=args.device)
    times[f"BPR training ({args.epochs} epochs, {args.device})"] = time.perf_counter() - t
    seen, target = sp_.seen_for("test"), sp_.target("test")
    rank(model, users[:64], seen, 20, device=args.device)  # warm-up: kernels, allocator
    t = time.perf_counter()
    host = rank(model, users, seen, 20)
    t_host = time.perf_counter() - t
    t = time.perf_counter()
    dev = rank(model, users, seen, 20, device=args.device)
    t_dev = time.perf_counter() - t
    differ, bad = _tolerated(model, users, host, dev)
    mh, md = evaluate(host, target, users, (20,)), evaluate(dev, target, users, (20,))
    gap = max(abs(float(np.nanmean(mh[k])) - float(np.nanmean(md[k]))) for k in mh)
    lines = [f"# GPU path check (`make gpu-check`, {time.strftime('%Y-%m-%d')}, {platform.node()})", "",
             f"{args.users:,} users x {args.items:,} items, {sp_.train.nnz:,} training pairs; top-20 of "
             f"{len(users):,} evaluated users, training + validation items masked.", "",
             "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in times.items()]
    lines += [f"| top-K, host fused path (CPU) | {t_host:.2f} |", f"| top-K, device path ({args.device}) | {t_dev:.2f} |",
              "", f"top-K device / host: {t_dev / t_host:.3f} (host / device: {t_host / t_dev:.1f}x)", "",
              f"lists differing: {differ} of {len(users):,} users, beyond float tolerance: {bad}; "
              f"largest metric gap {gap:.2e} (recall@20 {np.nanmean(mh['recall@20']):.4f} host, "
              f"{np.nanmean(md['recall@20']):.4f} device)"]
    failed = bad > 0 or gap > 1e-4
    lines.append("RESULT: " + ("DIFFERENT" if failed else "same results within float tolerance"))
    for line in lines:
        log(line)
    return int(failed), lines


def main(argv: list[str]) -> int:
    args = _parse(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA device (torch.cuda.is_available() is False): dry run, nothing measured. "
              "Run `make gpu-check` on a machine with a GPU.")
        return 0
    code, lines = check(args)
    if args.write:
        (ROOT / "benchmarks" / "gpu.md").write_text("\n".join(lines) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
