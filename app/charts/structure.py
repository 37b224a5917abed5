"""Charts of the Structure page: held-out canonical correlations against their null, the AJIVE
joint rank against its bounds, and each view's shared / private variance."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import GREY, LIGHT_GREY, OKABE_ITO, VIEW_COLORS, style

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
    bounds = [float(t[c].iloc[0]) for c in ("wedin_bound", "random_bound")]
    fig.update_yaxes(range=[min(0.9, float(t["sigma2"].min()) - 0.05, *(b - 0.05 for b in bounds)), 2.02])
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
