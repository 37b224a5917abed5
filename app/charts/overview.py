"""Charts of the Overview page: headline estimates with intervals, who finds the hits, oracle gain
against the control floor."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import GREY, HIT_COLORS, OKABE_ITO, VIEW_COLORS, style


def metric_forest(head: pd.DataFrame, metric: str, K: int) -> go.Figure:
    """Point estimate and 95 % interval of every headline system for one metric."""
    d = head[head["metric"] == metric]
    fig = go.Figure()
    for _, r in d.iterrows():
        color = VIEW_COLORS.get(r["role"], GREY)
        fig.add_trace(go.Scatter(
            x=[r["mean"]], y=[r["label"]], mode="markers", name=str(r["label"]),
            marker={"color": color, "size": 11, "symbol": "diamond"},
            error_x={"type": "data", "symmetric": False, "array": [r["hi"] - r["mean"]],
                     "arrayminus": [r["mean"] - r["lo"]], "color": color, "thickness": 2},
            hovertemplate=(f"{r['label']}<br>{metric.upper()}@{K} = %{{x:.4f}}<br>95% CI "
                           f"{r['lo']:.4f} – {r['hi']:.4f}<br>{int(r['n_users']):,} users<extra></extra>")))
    name = {"recall": "Recall", "ndcg": "NDCG"}[metric]
    style(fig, f"{name}@{K}", f"{name}@{K} (fraction, 0–1)", "system", "system",
          height=90 + 38 * max(len(d), 1) + 60, subtitle="test users, 95 % bootstrap intervals")
    fig.update_yaxes(autorange="reversed")
    return fig


#: colour of each bar of the "who finds the hits" chart (the control's own hits in grey)
SHARE_COLORS = {**HIT_COLORS, "most-popular-only": VIEW_COLORS["mostpop"]}


def hit_share_bar(rows: pd.DataFrame, K: int) -> go.Figure:
    """Stacked 100 % bars: shares of shared / only-A / only-B distinct hits for each view pair.

    ``rows``: pair, kind (shared / semantic-only / collaborative-only / most-popular-only), count, share.
    """
    fig = go.Figure()
    for kind in rows["kind"].drop_duplicates():
        d = rows[rows["kind"] == kind]
        fig.add_trace(go.Bar(
            y=d["pair"], x=d["share"], name=str(kind), orientation="h", marker_color=SHARE_COLORS.get(kind, GREY),
            customdata=np.c_[d["count"].to_numpy()],
            hovertemplate="%{y}<br>" + str(kind) + ": %{x:.1%} of distinct hits (%{customdata[0]:,} hits)<extra></extra>"))
    style(fig, f"Who finds the hits (K={K})", "share of distinct hits (%)", "view pair", "found by", height=320,
          subtitle="share of the pair's distinct test hits")
    fig.update_layout(barmode="stack", legend={"orientation": "h", "y": -0.35, "traceorder": "normal"})
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    return fig


def oracle_gain_bar(gains: pd.DataFrame, K: int, main_pair: str) -> go.Figure:
    """Oracle gain over the better view of each pair: the compared pair (``main_pair``) against the
    control floor, per metric and oracle."""
    fig = go.Figure()
    for pair, d in gains.groupby("pair", sort=False):
        x = [f"{'Recall' if m == 'recall' else 'NDCG'}@{K}<br>{o}" for m, o in zip(d["metric"], d["oracle"])]
        fig.add_trace(go.Bar(
            x=x, y=d["gain"], name=str(pair),
            marker_color=VIEW_COLORS["shared"] if pair == main_pair else VIEW_COLORS["control"],
            customdata=np.c_[d["best_single"], d["oracle_value"]],
            hovertemplate=(f"{pair}<br>%{{x}}<br>gain %{{y:+.4f}}<br>best single %{{customdata[0]:.4f}}"
                           "<br>oracle %{customdata[1]:.4f}<extra></extra>")))
    style(fig, "Oracle gain vs control floor", "metric and oracle", "gain (metric points, 0–1 scale)", "view pair",
          height=380, subtitle="oracle − best single view of each pair")
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.3})
    return fig


def regime_headline(story: pd.DataFrame, K: int) -> go.Figure:
    """Per regime: the compared pair's oracle gain beside the control floor's, the excess with its 95 %
    interval, and what score fusion realised (``story``: :func:`analysis.verdict.regime_story`)."""
    x = story["label"].tolist()
    fig = go.Figure()
    fig.add_trace(go.Bar(x=x, y=story["gain"], name="oracle gain: semantic + collaborative",
                         marker_color=VIEW_COLORS["shared"],
                         hovertemplate="%{x}<br>oracle gain %{y:+.4f}<extra></extra>"))
    fig.add_trace(go.Bar(x=x, y=story["control_gain"], name="control floor: most-popular + collaborative",
                         marker_color=VIEW_COLORS["control"],
                         hovertemplate="%{x}<br>control floor %{y:+.4f}<extra></extra>"))
    err = {"type": "data", "symmetric": False, "array": (story["hi"] - story["excess"]).fillna(0),
           "arrayminus": (story["excess"] - story["lo"]).fillna(0), "color": OKABE_ITO["black"], "thickness": 2}
    fig.add_trace(go.Scatter(x=x, y=story["excess"], name="excess over the floor (95 % CI)", mode="markers",
                             marker={"color": OKABE_ITO["black"], "size": 11, "symbol": "diamond"}, error_y=err,
                             customdata=np.c_[story["lo"], story["hi"]],
                             hovertemplate="%{x}<br>excess %{y:+.4f}<br>95% CI %{customdata[0]:+.4f} – "
                                           "%{customdata[1]:+.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=story["fusion_gain"], name="score fusion realised", mode="markers+lines",
                             marker={"color": VIEW_COLORS["fusion"], "size": 10, "symbol": "circle"},
                             line={"color": VIEW_COLORS["fusion"], "dash": "dot"},
                             hovertemplate="%{x}<br>fusion − best single %{y:+.4f}<extra></extra>"))
    fig.add_hline(y=0, line_color=GREY, line_width=1)
    style(fig, "Complementarity by regime", "regime", f"NDCG@{K} gain over the best single view", "series",
          height=420, subtitle="oracle = per-user selection of the better view; only the excess is complementarity")
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.28})
    return fig
