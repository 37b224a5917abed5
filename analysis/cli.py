"""Command line: ``semcollab datasets | fetch | run | sweep | summary`` (also ``python -m analysis``)."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .config import BUILTIN_DATASETS, RunConfig
from .errors import SemcollabError
from .summary import RunSummary
from .systems import RANKED
from .systems import label as systems_label


def _floats(s: str) -> list[float]:
    return [float(x) / (100 if float(x) > 1 else 1) for x in s.split(",") if x.strip()]


def _synthetic_params(pairs: list[str] | None) -> dict:
    """``--synthetic KEY=VALUE`` pairs -> generator overrides (names of analysis.synthetic.SyntheticConfig)."""
    from dataclasses import fields

    from .errors import ConfigError
    from .synthetic import SyntheticConfig

    types = {f.name: f.type for f in fields(SyntheticConfig) if f.name != "seed"}
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise ConfigError(f"--synthetic {pair!r}: expected KEY=VALUE with KEY one of {sorted(types)}")
        try:
            out[key] = int(value) if types[key] in (int, "int") else float(value)
        except ValueError:
            raise ConfigError(f"--synthetic {pair!r}: {value!r} is not a number") from None
    return out


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="synthetic", help=f"built-in dataset: {', '.join(BUILTIN_DATASETS)}")
    p.add_argument("--data", help="your own data: a file or folder (RecBole atomic, MovieLens, Amazon JSONL, CSV/Parquet)")
    p.add_argument("--items", help="item metadata file for --data (when not found beside it)")
    p.add_argument("--format", default="auto", help="format of --data: auto|recbole|movielens|amazon|table")
    p.add_argument("--out", help="run directory (default runs/<dataset>)")
    p.add_argument("--k", type=int, action="append", help="cut-off K (repeatable; default 10 and 20)")
    p.add_argument("--k-neighbors", type=int, default=10, help="neighbourhood size k for item agreement")
    p.add_argument("--semantic", default="auto", help="minilm | a sentence-transformers model | vectors file | auto")
    p.add_argument("--semantic-ids", help="id list for a .npy of semantic vectors")
    p.add_argument("--collab", default="ials", help="ials | bpr | a vectors file of collaborative item vectors")
    p.add_argument("--collab-ids", help="id list for a .npy of collaborative vectors")
    p.add_argument("--compare", default="trained", choices=["trained", "zeroshot"],
                   help="which semantic recommender the diagnostics compare with the collaborative view")
    p.add_argument("--split", default="random", choices=["random", "loo"])
    p.add_argument("--keep", type=float, default=1.0, help="fraction of each user's training data kept (sparsity)")
    p.add_argument("--cold-items", type=float, default=0.0, help="share of items made cold (no training data)")
    p.add_argument("--threshold", type=float, help="implicit feedback: keep ratings >= this")
    p.add_argument("--kcore", type=int, default=0, help="k-core filtering")
    p.add_argument("--strict", action="store_true",
                   help="refuse interactions whose item id is missing from the item file (default: warn, keep them "
                        "with empty metadata)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="torch device for encoding, training and ranking (auto: CUDA when torch sees one)")
    p.add_argument("--backend", help="top-K backend on the host: numpy | torch (default $SEMCOLLAB_BACKEND or "
                                     "numpy); the GPU is --device cuda")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="where the heavy stages' jobs (and a sweep's regimes) run: in this process, or on Ray")
    p.add_argument("--ray-address", help="Ray cluster: auto | HOST:PORT (default $SEMCOLLAB_RAY_ADDRESS, else a "
                                         "local cluster started for the command)")
    p.add_argument("--eval-users", type=int, default=50_000,
                   help="evaluate every user up to this many, else a seeded sample of this size (0: always every "
                        "user); training always uses every user")
    p.add_argument("--curve-users", type=int, default=10_000,
                   help="users of the fusion curves and alignment probes (a seeded sample of the evaluated users above "
                        "this; 0: all)")
    p.add_argument("--no-umap", action="store_true", help="skip the 2-D maps")
    p.add_argument("--force", action="store_true", help="recompute even when the run is cached")
    p.add_argument("--synthetic", action="append", metavar="KEY=VALUE",
                   help="synthetic generator parameter, e.g. n_users=300 (repeatable; --dataset synthetic only)")


def config_from_args(a: argparse.Namespace) -> RunConfig:
    synthetic = _synthetic_params(getattr(a, "synthetic", None))
    if synthetic and (a.data or a.dataset != "synthetic"):
        from .errors import ConfigError

        raise ConfigError("--synthetic applies to --dataset synthetic only")
    return RunConfig(synthetic=synthetic,
        dataset="files" if a.data else a.dataset, data_path=a.data, data_format=a.format, item_path=a.items,
        strict=getattr(a, "strict", False),
        ks=tuple(a.k or (10, 20)), k_neighbors=a.k_neighbors, semantic=a.semantic, semantic_ids=a.semantic_ids,
        collab=a.collab, collab_ids=a.collab_ids, compare_semantic=a.compare, split=a.split,
        keep_fraction=a.keep, cold_item_share=a.cold_items, rating_threshold=a.threshold, kcore=a.kcore,
        seed=a.seed, device=a.device, backend=a.backend, n_boot=a.bootstrap, umap=not a.no_umap,
        eval_users=a.eval_users, curve_users=a.curve_users, executor=a.executor, ray_address=a.ray_address,
    )


def _fmt(e) -> str:
    return f"{e.mean:.4f} [{e.lo:.4f},{e.hi:.4f}]"


def _headline_lines(run, s: RunSummary) -> list[str]:
    """One line per system (labels from the run's vocabulary) with Recall@K and NDCG@K, then the oracles."""
    m = run.manifest
    lines = [f"{'system':<44}{'Recall@' + str(s.K):>24}{'NDCG@' + str(s.K):>24}"]
    extra = {"collab": f" ({m['config']['collab']})", "fusion": f" (alpha={m['fusion']['alpha_valid']:.2f} from valid)"}
    for key in (*RANKED, "oracle_select", "oracle_union", "control_oracle_select"):
        if key not in m["systems"]:
            lines.append(f"{key:<44}{'skipped: ' + m.get('skipped', {}).get(key, '?')[:60]}")
            continue
        label = systems_label(m, key) + extra.get(key, "")
        lines.append(f"{label:<44}{_fmt(s.estimate(key, 'recall')):>24}{_fmt(s.estimate(key, 'ndcg')):>24}")
    ug = s.raw["union_oracle_gain"]
    lines.append(f"union pool NDCG gain from the other view: {ug['gain_other_view']:+.4f} [{ug['lo']:+.4f},"
                 f"{ug['hi']:+.4f}] (vs the {ug['better_view']} view's own hits first, {ug['best_hits_first_ndcg']:.4f}; "
                 f"raw gain {ug['gain_raw']:+.4f} is mostly re-ordering)")
    for seg in ("warm", "cold"):
        if s.has_segment(seg):
            lines.append(f"{seg} items only (own ranking), Recall@{s.K}: " + ", ".join(
                f"{systems_label(m, k)} {s.mean(k, 'recall', seg):.4f}" for k in (m["compared"]["semantic"], "collab",
                                                                                   "fusion")))
    return lines


def _agreement_lines(run, s: RunSummary) -> list[str]:
    c, raw = s.raw["complementarity"], s.raw
    sim, st = raw["similarity"], raw["structure"]

    def g(key):
        return f"{sim[key]['raw']:.3f} (null {sim[key]['null_mean']:.3f}, p={sim[key]['p_value']:.3f})"

    return [f"top-{s.K} list overlap (Jaccard): {c['list_jaccard']:.3f}   RBO: {c['rbo']:.3f}",
            f"hits: shared {c['hits_shared']}, semantic-only {c['hits_only_a']}, collaborative-only {c['hits_only_b']}"
            f"  -> unique-hit share semantic {c['unique_hit_share_a']:.1%}, collaborative {c['unique_hit_share_b']:.1%}"
            f"  (control: most-popular {raw['control']['unique_hit_share_a']:.1%})",
            f"item neighbourhood overlap@{run.manifest['k_neighbors']}: {raw['mean_overlap']:.3f} "
            f"(chance {raw['chance_overlap']:.4f}); Jaccard {raw['mean_jaccard']:.3f} (chance {raw['chance_jaccard']:.4f})",
            f"fusion headroom realised: {raw['fusion_headroom_ndcg']:.1%} of the oracle gain over the best single view "
            f"({s.best_single}, chosen on validation)",
            f"global similarity: CKA {g('cka/raw')}, debiased CKA {g('debiased_cka/raw')}, "
            f"without top PC {g('debiased_cka/top_pc_removed')}",
            f"shared dimension: held-out CCA {st['shared_dim_cca']}, AJIVE joint rank {st['joint_rank_ajive']}; "
            f"variance in the shared subspace: semantic {st['shared_var_sem']:.1%}, collaborative {st['shared_var_col']:.1%}"]


def _probe_lines(run, s: RunSummary) -> list[str]:
    p = s.raw["probes"]
    parts = [f"{name.replace('_', ' ')} R2 {d['r2']:.3f} (shared part {d['r2_shared']:.3f}, private part "
             f"{d['r2_private']:.3f}; Recall@{s.K} within the held-out items {d['recall']:.3f}, true vectors "
             f"{d['ceiling_recall']:.3f}, random {d['floor_recall']:.3f}{'' if d['readable'] else ', unreadable'})"
             for name, d in p["regimes"].items()]
    fm = run.table("fusion_models")
    fm = fm[(fm.metric == "ndcg") & (fm.k == s.K)].set_index("system")["mean"]
    models = [f"{systems_label(run.manifest, n)} {fm[n]:.4f}" for n in ("best_single", "fusion", "alignment",
                                                                        "complementarity_fusion") if n in fm.index]
    return [f"alignment probe (best: {p['best_probe']} {p['best_capacity']}): " + "; ".join(parts),
            f"fusion models, NDCG@{s.K} on test: " + ", ".join(models)]


def summary_text(run) -> str:
    """The end-of-run table: each view, fusion, oracles, overlap, unique-hit shares, structure, probes."""
    s = RunSummary(run.manifest)
    reg = run.manifest["regime"]
    head = [f"run: {run.path}  ({run.manifest['dataset']['name']}, {run.manifest['dataset']['source']})",
            f"regime: keep {reg['keep_fraction']:.0%} of training data, {reg['n_cold_items']} cold items "
            f"({reg['n_held_out_items']} held out entirely; {reg['cold_test_share']:.1%} of test pairs are on cold items)",
            ""]
    return "\n".join(head + _headline_lines(run, s) + [""] + _agreement_lines(run, s) + _probe_lines(run, s))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that ``finally`` blocks remove temporary folders."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """The command line; SIGTERM is handled like Ctrl-C while it runs (exit status 143)."""
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="semcollab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("datasets", help="list the built-in datasets")
    f = sub.add_parser("fetch", help="fetch a built-in dataset into the cache")
    f.add_argument("name", choices=["ml-100k"])
    f.add_argument("--force", action="store_true")
    r = sub.add_parser("run", help="compute a run")
    _add_run_args(r)
    sw = sub.add_parser("sweep", help="run several data regimes into sibling runs with one comparison table")
    _add_run_args(sw)
    sw.add_argument("--keeps", default="1,0.5,0.2,0.1", help="fractions of training data kept, e.g. 1,0.5,0.2,0.1")
    sw.add_argument("--colds", default="0.2", help="item cold-start shares, e.g. 0.2 (empty for none)")
    s = sub.add_parser("summary", help="print the summary of a saved run (or a sweep's table)")
    s.add_argument("path")
    rp = sub.add_parser("report", help="write one self-contained HTML report of a run (and its regime sweep)")
    rp.add_argument("run", help="the run folder")
    rp.add_argument("--sweep", help="a sweep folder (holds sweep.parquet) for the regime story")
    rp.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    rp.add_argument("--force", action="store_true", help="replace an existing --out file")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "datasets":
            for name, desc in BUILTIN_DATASETS.items():
                print(f"{name:<12}{desc}")
            print("\nYour own data: semcollab run --data PATH [--format recbole|movielens|amazon|table]")
            return 0
        if a.cmd == "fetch":
            from .fetch import fetch_ml100k, ml100k_source

            d = fetch_ml100k(force=a.force)
            print(f"ml-100k is in {d}\nsource: {ml100k_source(d)}")
            return 0
        if a.cmd == "run":
            import analysis

            cfg = config_from_args(a)
            from .runstore import prepare_out

            out = a.out or str(Path("runs") / (Path(a.data).stem if a.data else a.dataset))
            prepare_out(out, log=print)  # refuse a bad --out before computing anything
            run = analysis.run(cfg, out=out, force=a.force)
            print()
            print(summary_text(run))
            return 0
        if a.cmd == "sweep":
            import analysis

            cfg = config_from_args(a)
            out = a.out or str(Path("runs") / f"{Path(a.data).stem if a.data else a.dataset}-sweep")
            table = analysis.sweep(cfg, out, keep=_floats(a.keeps), cold=_floats(a.colds), force=a.force)
            print()
            print(table.drop(columns=["path"]).to_string(index=False, float_format=lambda x: f"{x:.4f}"))
            print(f"\ncomparison table: {out}/sweep.md")
            return 0
        if a.cmd == "report":
            from app.report import write_report  # the dashboard's chart builders (needs the app's packages)

            print(f"report written to {write_report(a.run, a.out, sweep=a.sweep, force=a.force)}")
            return 0
        if a.cmd == "summary":
            import pandas as pd

            from .runstore import open_run

            p = Path(a.path)
            if (p / "sweep.parquet").exists():
                print(pd.read_parquet(p / "sweep.parquet").drop(columns=["path"]).to_string(index=False))
                return 0
            print(summary_text(open_run(p)))
            return 0
    except SemcollabError as e:
        print(f"semcollab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("semcollab: interrupted; nothing was written", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    return 1
