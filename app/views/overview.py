"""Overview page: headline metrics with intervals, who finds the hits, oracle gain vs control floor,
and a plain-language reading of this run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import charts
from app.common import Ctx, current_ctx, md_escape
from app.derive import reading

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
        cols = st.columns(len(d))
        for col, (_, r) in zip(cols, d.iterrows()):
            with col:
                st.metric(r["short"], _fmt(r["mean"]), help=f"{METRIC_NAMES[metric]}@{K} of {r['label']} "
                          f"(system `{r['system']}`) · {int(r['n_users']):,} users · {r['source']}")
                st.caption(f"95% CI {_fmt(r['lo'])} – {_fmt(r['hi'])}")
                if metric == "ndcg" and r["role"] not in ("oracle", "fusion"):
                    st.caption(budgets.get(str(r["system"]), "no hyper-parameters tuned"))


def render(ctx: Ctx) -> None:
    run, K, k = ctx.run, ctx.K, ctx.k
    ds = run.manifest.get("dataset", {}) or {}
    st.title("Overview")
    st.caption(f"Run {md_escape(run.name)} · dataset {md_escape(ds.get('name', '?'))} · compared views: "
               f"{md_escape(ctx.sem)} (semantic) vs {md_escape(ctx.col)} (collaborative) · K={K}, k={k} · "
               f"{md_escape(ctx.segment_note())}")
    head = ctx.derived("headline", K)
    if head.empty:
        st.warning(f"The run has no test metrics at K={K}.")
        return
    cards(head, K, ctx.derived("tuning_budgets"))

    with st.expander("All headline systems with their intervals (chart)", expanded=False):
        c1, c2 = st.columns(2)
        with c1:
            charts.show(charts.metric_forest(head, "recall", K), key="ov_forest_recall", filename="recall_forest")
        with c2:
            charts.show(charts.metric_forest(head, "ndcg", K), key="ov_forest_ndcg", filename="ndcg_forest")

    shares = ctx.derived("hit_shares", K, ctx.sem, ctx.col)
    gains = ctx.derived("oracle_gains", K)
    overlap = ctx.derived("mean_overlap", k)

    left, right = st.columns(2)
    with left:
        rows = [{"pair": "semantic vs collaborative", "kind": kind, "count": shares[c], "share": shares[f"share_{c}"],
                 "color": charts.HIT_COLORS[kind]}
                for kind, c in (("shared", "shared"), ("semantic-only", "only_a"), ("collaborative-only", "only_b"))]
        roles = ctx.derived("system_roles")
        if "mostpop" in roles:
            ctrl = ctx.derived("hit_shares", K, roles["mostpop"], ctx.col)
            rows += [{"pair": "most-popular vs collaborative (control)", "kind": kind, "count": ctrl[c],
                      "share": ctrl[f"share_{c}"], "color": color}
                     for kind, c, color in (("shared", "shared", charts.HIT_COLORS["shared"]),
                                            ("most-popular-only", "only_a", charts.VIEW_COLORS["mostpop"]),
                                            ("collaborative-only", "only_b", charts.HIT_COLORS["collaborative-only"]))]
        df = pd.DataFrame(rows)
        charts.show(charts.hit_share_bar(df, K), key="ov_shares", filename="hit_shares")
        st.caption(f"{shares['distinct_hits']:,} distinct hits among {shares['test_pairs']:,} test pairs; "
                   f"{shares['missed']:,} test pairs are missed by both views.")
        lists = ctx.derived("list_overlap", K, ctx.sem, ctx.col)
        m1, m2 = st.columns(2)
        m3, m4 = st.columns(2)
        m1.metric("Unique-hit share · semantic", f"{shares['share_only_a']:.1%}" if shares["distinct_hits"] else "n/a",
                  help="semantic-only hits / all distinct hits of the two views")
        m2.metric("Unique-hit share · collaborative",
                  f"{shares['share_only_b']:.1%}" if shares["distinct_hits"] else "n/a",
                  help="collaborative-only hits / all distinct hits of the two views")
        m3.metric(f"List Jaccard@{K}", f"{lists['jaccard']:.3f}",
                  help="mean over users of |T_sem ∩ T_col| / |T_sem ∪ T_col| of the two top-K lists")
        m4.metric("List RBO (p = 0.9)", f"{lists['rbo']:.3f}",
                  help="mean over users of the extrapolated rank-biased overlap of the two top-K lists")
    with right:
        if gains.empty:
            st.info("No oracle gains: the run lacks per-user metrics of the compared views.")
        else:
            charts.show(charts.oracle_gain_bar(gains, K), key="ov_gains", filename="oracle_gain_vs_control")
            g = gains.pivot_table(index=["metric", "oracle"], columns="pair", values="gain", sort=False)
            g.columns = ["sem + col" if c.startswith("semantic") else "control" for c in g.columns]
            if g.shape[1] == 2:
                g["excess"] = g["sem + col"] - g["control"]
            st.caption("Gain = oracle − best single view of the pair; the union pool's NDCG gain is read against "
                       "the better view's own hits placed first (the rest is re-ordering). Only the excess over the "
                       "control floor (most-popular + collaborative) is complementarity.")
            st.dataframe(g.reset_index(), hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%+.4f") for c in g.columns})
        m1, m2 = st.columns(2)
        m1.metric(f"Mean neighbourhood overlap@{k}",
                  f"{overlap['mean']:.3f}" if np.isfinite(overlap["mean"]) else "n/a",
                  help=f"over {overlap['n']:,} items with neighbours in both views")
        m2.metric(f"Chance overlap@{k}", f"{overlap['chance']:.4f}", help="k / (N − 1)")
        j1, j2 = st.columns(2)
        j1.metric(f"Mean neighbourhood Jaccard@{k}",
                  f"{overlap['jaccard']:.3f}" if np.isfinite(overlap["jaccard"]) else "n/a",
                  help="m / (2k − m) with m shared neighbours, over the same items")
        j2.metric(f"Chance Jaccard@{k}", f"{overlap['chance_jaccard']:.4f}",
                  help="E[m / (2k − m)] for unrelated neighbourhoods (hypergeometric m), ≈ k / (2(N − 1))")

    st.subheader("Reading")
    sentences = reading(K, k, head, shares, gains, overlap) + ctx.derived("structure_lines")
    st.markdown("\n".join(f"- {md_escape(s)}" for s in sentences))


render(current_ctx())
