"""Overview page: headline metrics with intervals, who finds the hits, oracle gain vs control floor,
and a plain-language reading of this run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import overview as charts
from app.charts.style import show
from app.data import overview as data
from app.data.structure import structure_lines
from app.data.regimes import sweep_for_run, sweep_stamp
from app.jobs import DEFAULT_SWEEP, sweep_progress
from app.report import report_html
from app.state import Ctx, current_ctx, follow_sweep, md_escape, runs_root

METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG"}


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.4f}"


def cards(head: pd.DataFrame, K: int, budgets: dict[str, str]) -> None:
    """One row of st.metric cards per metric (label = short system name, value = mean, caption = 95 % CI);
    under the NDCG row, each system's tuning budget."""
    for metric in ("recall", "ndcg"):
        d = head[head["metric"] == metric]
        if d.empty:
            continue
        st.markdown(f"**{METRIC_NAMES[metric]}@{K}** · test users · 95 % bootstrap interval")
        for col, (_, r) in zip(st.columns(len(d)), d.iterrows()):
            with col:
                st.metric(r["short"], _fmt(r["mean"]), help=f"{METRIC_NAMES[metric]}@{K} of {r['label']} "
                          f"(system `{r['system']}`) · {int(r['n_users']):,} users · {r['source']}")
                st.caption(f"95% CI {_fmt(r['lo'])} – {_fmt(r['hi'])}")
                if metric == "ndcg" and r["role"] not in ("oracle", "fusion"):
                    st.caption(budgets.get(str(r["system"]), "no hyper-parameters tuned"))


def shares_section(ctx: Ctx, shares: dict[str, float]) -> None:
    """Who finds the hits (compared pair and control), unique-hit shares and list agreement."""
    K = ctx.K
    show(charts.hit_share_bar(data.share_rows(ctx.key, K, ctx.users_sel, ctx.items_sel), K), key="ov_shares",
         filename="hit_shares")
    st.caption(f"{shares['distinct_hits']:,} distinct hits among {shares['test_pairs']:,} test pairs; "
               f"{shares['missed']:,} test pairs are missed by both views.")
    lists = data.list_overlap(ctx.key, K, ctx.users_sel)
    m1, m2 = st.columns(2)
    m3, m4 = st.columns(2)
    has = bool(shares["distinct_hits"])
    m1.metric("Unique-hit share · semantic", f"{shares['share_only_a']:.1%}" if has else "n/a",
              help="semantic-only hits / all distinct hits of the two views")
    m2.metric("Unique-hit share · collaborative", f"{shares['share_only_b']:.1%}" if has else "n/a",
              help="collaborative-only hits / all distinct hits of the two views")
    m3.metric(f"List Jaccard@{K}", f"{lists['jaccard']:.3f}",
              help="mean over users of |T_sem ∩ T_col| / |T_sem ∪ T_col| of the two top-K lists")
    m4.metric("List RBO (p = 0.9)", f"{lists['rbo']:.3f}",
              help="mean over users of the extrapolated rank-biased overlap of the two top-K lists")


def gains_section(gains: pd.DataFrame, K: int) -> None:
    """Oracle gain of the compared pair against the control floor, chart and table."""
    if gains.empty:
        st.info("No oracle gains: the run lacks per-user metrics of the compared views.")
        return
    show(charts.oracle_gain_bar(gains, K, data.PAIR_MAIN), key="ov_gains", filename="oracle_gain_vs_control")
    g = gains.pivot_table(index=["metric", "oracle"], columns="pair", values="gain", sort=False)
    g.columns = ["sem + col" if c == data.PAIR_MAIN else "control" for c in g.columns]
    if g.shape[1] == 2:
        g["excess"] = g["sem + col"] - g["control"]
    st.caption("Gain = oracle − best single view of the pair; the union pool's NDCG gain is read against "
               "the better view's own hits placed first (the rest is re-ordering). Only the excess over the "
               "control floor (most-popular + collaborative) is complementarity.")
    st.dataframe(g.reset_index(), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%+.4f") for c in g.columns})


def overlap_cards(overlap: dict[str, float], k: int) -> None:
    """Mean neighbourhood overlap@k and Jaccard@k, each beside its own chance level."""
    m1, m2 = st.columns(2)
    m1.metric(f"Mean neighbourhood overlap@{k}", f"{overlap['mean']:.3f}" if np.isfinite(overlap["mean"]) else "n/a",
              help=f"over {overlap['n']:,} items with neighbours in both views")
    m2.metric(f"Chance overlap@{k}", f"{overlap['chance']:.4f}", help="k / (N − 1)")
    j1, j2 = st.columns(2)
    j1.metric(f"Mean neighbourhood Jaccard@{k}", f"{overlap['jaccard']:.3f}" if np.isfinite(overlap["jaccard"]) else "n/a",
              help="m / (2k − m) with m shared neighbours, over the same items")
    j2.metric(f"Chance Jaccard@{k}", f"{overlap['chance_jaccard']:.4f}",
              help="E[m / (2k − m)] for unrelated neighbourhoods (hypergeometric m), ≈ k / (2(N − 1))")


def verdict_section(ctx: Ctx, ds: dict) -> None:
    """The verdict, the four headline tiles and the regime chart (:mod:`analysis.verdict`)."""
    sweep = sweep_for_run(ctx.run.path, str(ds.get("name", "")), runs_root())
    story = data.story(ctx.key, sweep, sweep_stamp(sweep) if sweep else 0)
    with st.container(border=True):
        st.markdown("**Verdict.** " + md_escape(" ".join(story["verdict"])))
        if story["regimes"] is None:
            sweep_pending_note(str(ds.get("name", "")))
    for col, t in zip(st.columns(len(story["tiles"])), story["tiles"]):
        col.metric(t["label"], f"{t['mean']:.3f}", help=f"test NDCG@{ctx.K} of `{t['system']}`, all evaluated users")
        col.caption(f"NDCG@{ctx.K} · 95% CI {t['lo']:.3f} – {t['hi']:.3f}")
    st.download_button("Download the report (one HTML file)", data=lambda: report_html(ctx.run, sweep),
                       file_name=f"semcollab-{ctx.run.name}.html", mime="text/html", key="ov_report", on_click="ignore",
                       help="The verdict, these charts (interactive), the key tables, the config and versions; "
                            "opens without a network (also: semcollab report RUN --sweep DIR --out report.html)")
    if story["regimes"] is not None:
        show(charts.regime_headline(story["regimes"], ctx.K), key="ov_regimes", filename="complementarity_by_regime")
        st.caption(f"From the sweep in {md_escape(sweep)} (the Regimes page has every column). Excess = oracle gain "
                   "− control floor; it counts as evidence only where its interval lies above 0.")


def sweep_pending_note(dataset: str) -> None:
    """Where the regime story will come from: the background sweep's progress (when it is over this run's
    dataset), or how to start one."""
    p = sweep_progress(runs_root()) if dataset == DEFAULT_SWEEP[1] else None
    if p is not None and p.running:
        follow_sweep("Computing the regime sweep in the background")
        st.caption("The regime chart appears here when it is done.")
    elif p is not None and p.error:
        st.caption(f"The background regime sweep failed: {md_escape(p.error)}. Start one on the Compute page.")
    else:
        st.caption("Start the regime sweep on the Compute page (or `make sweep`).")


def render(ctx: Ctx) -> None:
    key, K, k = ctx.key, ctx.K, ctx.k
    ds = ctx.manifest.get("dataset", {}) or {}
    st.title("Overview")
    st.caption(f"Run {md_escape(ctx.run.name)} · dataset {md_escape(ds.get('name', '?'))} · compared views: "
               f"{md_escape(ctx.sem)} (semantic) vs {md_escape(ctx.col)} (collaborative) · K={K}, k={k} · "
               f"{md_escape(ctx.segment_note())} · {md_escape(data.evaluation_note(ctx.manifest))}")
    verdict_section(ctx, ds)
    head = data.headline(key, K, ctx.users_sel)
    if head.empty:
        st.warning(f"The run has no test metrics at K={K}.")
        return
    st.subheader("Every system")
    cards(head, K, data.tuning_budgets(key))
    with st.expander("All headline systems with their intervals (chart)", expanded=False):
        c1, c2 = st.columns(2)
        with c1:
            show(charts.metric_forest(head, "recall", K), key="ov_forest_recall", filename="recall_forest")
        with c2:
            show(charts.metric_forest(head, "ndcg", K), key="ov_forest_ndcg", filename="ndcg_forest")
    shares = data.hit_shares(key, K, ctx.sem, ctx.col, ctx.users_sel, ctx.items_sel)
    gains = data.oracle_gains(key, K, ctx.users_sel)
    overlap = data.mean_overlap(key, k, ctx.items_sel)
    left, right = st.columns(2)
    with left:
        shares_section(ctx, shares)
    with right:
        gains_section(gains, K)
        overlap_cards(overlap, k)
    st.subheader("Reading")
    sentences = data.reading(key, K, k, head, shares, gains, overlap) + structure_lines(key)
    st.markdown("\n".join(f"- {md_escape(s)}" for s in sentences))


render(current_ctx())
