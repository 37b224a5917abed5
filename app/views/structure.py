"""Structure page: how many factors the two views share, how much of each view they carry, and
how similar the two spaces are globally — each against its null.

DIAGNOSTICS.md, "Global similarity of the two spaces" and "Shared + private structure":
held-out canonical correlations against their permutation null (with the in-sample ones drawn
faintly, because in-sample CCA looks convincing even for independent views), the AJIVE joint
rank (σ² of the stacked score bases against the Wedin and random-direction bounds), the shared /
private share of each view's variance, the global similarity scores (CKA, debiased CKA,
Procrustes distance) with their permutation nulls in plain words, and the semantic (or
collaborative) map coloured by each item's shared energy.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import charts
from app.charts import GREY, LIGHT_GREY, OKABE_ITO, VIEW_COLORS, style
from app.common import Ctx, current_ctx, md_escape

SHARED = VIEW_COLORS["shared"]


def cca_chart(t: pd.DataFrame) -> go.Figure:
    """Held-out canonical correlation per component (bars: shared colour where it beats the null),
    the null's 95th percentile as a shaded band, and the in-sample correlation drawn faintly."""
    x = t["component"].astype(int).to_numpy()
    sig = t["significant"].astype(bool).to_numpy()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=t["null_q95"], mode="lines", name="null: 95th percentile (permuted pairing)",
                             line={"color": GREY, "width": 1, "shape": "hvh"}, fill="tozeroy",
                             fillcolor="rgba(153,153,153,0.18)",
                             hovertemplate="component %{x}<br>null 95th percentile %{y:.3f}<extra></extra>"))
    for flag, name, color in ((True, "held-out correlation, beats the null", SHARED),
                              (False, "held-out correlation, within the null", GREY)):
        m = sig == flag
        fig.add_trace(go.Bar(x=x[m], y=t["heldout_corr"].to_numpy()[m], name=f"{name} ({int(m.sum())})",
                             marker_color=color, opacity=0.9,
                             hovertemplate="component %{x}<br>held-out correlation %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=t["train_corr"], mode="lines+markers", name="in-sample correlation (misleading)",
                             line={"color": LIGHT_GREY, "dash": "dot", "width": 1.5},
                             marker={"color": LIGHT_GREY, "size": 5},
                             hovertemplate="component %{x}<br>in-sample correlation %{y:.3f}<extra></extra>"))
    style(fig, "Held-out canonical correlations", "canonical component (1 = strongest)",
          "canonical correlation (−1 to 1)", "", height=420,
          subtitle="fitted on training items, scored on held-out items, against a permutation null")
    fig.update_layout(barmode="overlay", legend={"orientation": "h", "y": -0.25})
    return fig


def ajive_chart(t: pd.DataFrame) -> go.Figure:
    """σ² of each stacked-basis direction against the Wedin and random-direction bounds."""
    x = t["component"].astype(int).to_numpy()
    joint = t["joint"].astype(bool).to_numpy()
    fig = go.Figure()
    for flag, name, color in ((True, "joint (above both bounds)", SHARED), (False, "not joint", GREY)):
        m = joint == flag
        fig.add_trace(go.Scatter(x=x[m], y=t["sigma2"].to_numpy()[m], mode="markers", name=f"σ², {name} ({int(m.sum())})",
                                 marker={"color": color, "size": 9, "symbol": "circle"},
                                 hovertemplate="direction %{x}<br>σ² = %{y:.3f}<extra></extra>"))
    for col, name, color, dash in (("wedin_bound", "Wedin bound", OKABE_ITO["vermillion"], "dash"),
                                   ("random_bound", "random-direction bound", OKABE_ITO["blue"], "dot")):
        v = float(t[col].iloc[0])
        fig.add_trace(go.Scatter(x=[x.min() - 0.5, x.max() + 0.5], y=[v, v], mode="lines", name=f"{name}: {v:.3f}",
                                 line={"color": color, "dash": dash, "width": 1.6},
                                 hovertemplate=f"{name} {v:.4f}<extra></extra>"))
    style(fig, "AJIVE joint rank", "direction of the stacked score bases (1 = strongest)",
          "σ² = 1 + cos(principal angle) (0–2)", "", height=420,
          subtitle="directions above both bounds are shared by the two views")
    fig.update_yaxes(range=[min(0.9, float(t["sigma2"].min()) - 0.05), 2.02])
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return fig


def variance_chart(v: pd.DataFrame) -> go.Figure:
    """Stacked 100 % bars: share of each view's variance in the joint subspace and in the rest."""
    fig = go.Figure()
    fig.add_trace(go.Bar(y=v["view"], x=v["shared"], orientation="h", name="shared (joint subspace)",
                         marker_color=SHARED, hovertemplate="%{y}: %{x:.1%} shared<extra></extra>"))
    for view, row in v.set_index("view").iterrows():
        fig.add_trace(go.Bar(y=[view], x=[row["private"]], orientation="h", name=f"private to the {view} view",
                             marker_color=VIEW_COLORS.get(str(view), GREY),
                             hovertemplate="%{y}: %{x:.1%} private (rest, incl. noise)<extra></extra>"))
    style(fig, "Shared and private variance", "share of the view's variance (%)", "view", "part", height=260,
          subtitle=f"AJIVE joint rank {int(v['joint_rank'].iloc[0])}; private part includes noise")
    fig.update_layout(barmode="stack", legend={"orientation": "h", "y": -0.45})
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    return fig


def render(ctx: Ctx) -> None:
    st.title("Structure")
    st.caption("Do the two views share factors, how many, and how much of each view do they carry? Every number is "
               "read against a null: what the same statistic gives when the pairing of items across the views is "
               "shuffled. Computed by the engine over the items both views can place (cold items are left out); the "
               "sidebar's K and segment filter do not change them, except on the map.")
    cca, aj = ctx.derived("cca_summary"), ctx.derived("ajive_summary")
    var = ctx.derived("variance_frame")
    sim = ctx.derived("similarity_frame")
    vv = var.set_index("view")
    dc = sim[(sim["statistic"] == "debiased_cka") & (sim["variant"] == "raw")]
    m = st.columns(5)
    m[0].metric("Shared dim. · CCA", f"{cca['shared_dim']}",
                help="leading canonical components whose held-out correlation beats the permutation null's 95th "
                     f"percentile ({cca['n_significant']} components beat it in all)")
    m[1].metric("Joint rank · AJIVE", f"{aj['joint_rank']}",
                help="directions of the stacked score bases with σ² above the Wedin and random-direction bounds")
    for col, view in zip(m[2:4], ("semantic", "collaborative")):
        col.metric(f"Shared var. · {view[:3]}.", f"{vv.loc[view, 'shared']:.1%}" if view in vv.index else "n/a",
                   help=f"share of the {view} view's variance in the AJIVE joint subspace")
    if len(dc):
        r = dc.iloc[0]
        m[4].metric("Debiased CKA", f"{r['raw']:.3f}", help=f"null mean {r['null_mean']:.3f}, p = {r['p_value']:.2g}")

    left, right = st.columns(2)
    with left:
        t = cca["table"]
        charts.show(cca_chart(t), key="structure_cca", filename="heldout_cca")
        n_tr, n_te = cca.get("n_train"), cca.get("n_test")
        sizes = f" (fitted on {n_tr:,} items, scored on {n_te:,})" if isinstance(n_tr, int) and isinstance(n_te, int) else ""
        faint = t[~t["significant"].astype(bool)]
        example = ""
        if len(faint):
            f = faint.iloc[0]
            example = (f" Component {int(f['component'])}, for instance, correlates {f['train_corr']:.2f} in sample but "
                       f"{f['heldout_corr']:.2f} held out.")
        st.caption(f"{cca['n_significant']} of {len(t)} components beat the null held out{sizes}; the first "
                   f"{cca['shared_dim']} in a row do, which is the shared dimension. The faint line is the in-sample "
                   f"correlation: it stays high where nothing is shared.{example}")
    with right:
        charts.show(ajive_chart(aj["table"]), key="structure_ajive", filename="ajive_joint_rank")
        sr = ""
        if aj.get("signal_rank_sem") is not None and aj.get("signal_rank_col") is not None:
            sr = (f" Signal ranks kept per view: semantic {aj['signal_rank_sem']}, collaborative "
                  f"{aj['signal_rank_col']}.")
        st.caption(f"Joint rank {aj['joint_rank']}: directions with σ² above both the Wedin bound "
                   f"({aj['wedin_bound']:.3f}) and the random-direction bound ({aj['random_bound']:.3f}).{sr}")

    charts.show(variance_chart(var), key="structure_variance", filename="shared_private_variance")

    st.subheader("Global similarity of the two spaces")
    st.markdown("\n".join(f"- {md_escape(s)}" for s in sim["reading"]))
    table = sim[["measure", "variant_label", "raw", "null_mean", "null_lo", "null_hi", "p_value", "verdict", "n_items",
                 "n_perm"]]
    st.dataframe(table.rename(columns={"variant_label": "variant", "raw": "value", "null_mean": "null mean",
                                       "null_lo": "null 2.5 %", "null_hi": "null 97.5 %", "p_value": "p-value",
                                       "n_items": "items", "n_perm": "shuffles"}),
                 hide_index=True, width="stretch", key="structure_similarity",
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in ("value", "null mean", "null 2.5 %", "null 97.5 %", "p-value")})
    st.caption("CKA: 0 = unrelated, 1 = identical up to rotation and scale; Procrustes distance: 0 = identical up to "
               "rotation and scale, 2 = maximally different. The null is the same statistic with the item pairing "
               "shuffled; p = (1 + shuffles at least as extreme) / (1 + shuffles). Debiased CKA is the one to read: "
               "biased CKA is inflated when the dimension is large next to the number of items. Removing each view's "
               "top principal component (often popularity) checks that one shared heavy-tailed factor is not the "
               "whole story.")

    st.subheader("Where the shared part lives")
    view = st.radio("Map", ["semantic", "collaborative"], horizontal=True, key="structure_view",
                    format_func=lambda v: f"{v} map, coloured by the item's {v} shared energy")
    tag = "sem" if view == "semantic" else "col"
    df = ctx.item_frame()
    col = f"{tag}_shared"
    if col not in df.columns:
        st.info("This run has no per-item energies; recompute it with `semcollab run ... --force`.")
        return
    sample = ctx.derived("map_sample", 30_000)
    keep = ctx.item_mask(df) & df[col].notna().to_numpy() & df["item_idx"].isin(sample).to_numpy()
    plot_df = df[keep]
    n_cold = int(df[col].isna().sum())
    label = f"shared energy, {view} view (0–1)"
    fig = charts.item_map(plot_df, f"{tag}_x", f"{tag}_y", view, col, label, categorical=False,
                          source=df.attrs.get("map_source", {}).get(view, "UMAP"))
    charts.show(fig, key="structure_map", filename=f"{view}_map_shared_energy")
    st.caption(f"Shared energy of an item = share of its centred {view} vector in the AJIVE joint subspace (the rest "
               f"is private to the view). Showing {len(plot_df):,} items; {n_cold:,} items (cold) have no energy. "
               f"{md_escape(ctx.segment_note())}.")


render(current_ctx())
