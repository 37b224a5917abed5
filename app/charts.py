"""Plotly figure builders and the colour conventions of the dashboard.

Colours are the Okabe-Ito colour-blind-safe palette, one fixed colour per view / hit kind, so a
colour means the same thing on every page: semantic = blue, collaborative = vermillion,
fusion = bluish green, shared = reddish purple; grey for controls and misses. Continuous
scales are ``cividis`` / ``viridis`` (perceptually uniform, colour-blind safe).

Every builder sets axis titles (with units), a legend or colour bar, and hover text in which
data strings (item titles) are escaped with :func:`app.common.safe_label`. Draw figures with
:func:`show`, which turns on the toolbar's PNG download.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from .common import safe_label

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}
GREY = "#999999"
LIGHT_GREY = "#CFCFCF"

#: colour of each view / system role (same keys as :data:`app.derive.ROLE_LABELS`)
VIEW_COLORS = {
    "semantic": OKABE_ITO["blue"],
    "semantic_trained": OKABE_ITO["blue"],
    "semantic_zeroshot": OKABE_ITO["sky"],
    "collaborative": OKABE_ITO["vermillion"],
    "ease": OKABE_ITO["orange"],
    "mostpop": GREY,
    "fusion": OKABE_ITO["green"],
    "oracle": OKABE_ITO["black"],
    "shared": OKABE_ITO["purple"],
    "control": GREY,
}
#: colour of each hit kind / item hit type
HIT_COLORS = {
    "shared": VIEW_COLORS["shared"],
    "semantic-only": VIEW_COLORS["semantic"],
    "collaborative-only": VIEW_COLORS["collaborative"],
    "missed by both": GREY,
    "not in test": LIGHT_GREY,
}
#: categorical cycle for anything else (genres, buckets): Okabe-Ito, then Tol's muted scheme
CATEGORY_CYCLE = [OKABE_ITO[c] for c in ("blue", "orange", "green", "vermillion", "purple", "sky", "yellow", "black")] + [
    "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499", "#DDDDDD"]
POP_BUCKET_COLORS = {"head": OKABE_ITO["vermillion"], "torso": OKABE_ITO["orange"], "tail": OKABE_ITO["sky"]}
SEQUENTIAL = "Cividis"
SELECT_COLOR = OKABE_ITO["black"]
FOCUS_COLOR = OKABE_ITO["yellow"]


def plotly_config(filename: str) -> dict[str, Any]:
    """Toolbar config: PNG download (2× scale) named after the chart, no Plotly logo."""
    return {
        "displaylogo": False,
        "displayModeBar": True,
        "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2},
        "modeBarButtonsToRemove": ["autoScale2d"],
    }


def style(fig: go.Figure, title: str, x_title: str, y_title: str, legend_title: str | None = None,
          height: int = 380, subtitle: str | None = None) -> go.Figure:
    """White template, title (+ subtitle), axis titles, legend title, compact margins.

    Keep ``title`` short (the toolbar sits at the top right); details go in ``subtitle``.
    """
    t: dict[str, Any] = {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 15}}
    if subtitle:
        t["subtitle"] = {"text": subtitle, "font": {"size": 11, "color": "#555555"}}
    fig.update_layout(
        template="plotly_white",
        title=t,
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend_title_text=legend_title or "",
        showlegend=True,
        height=height,
        margin={"l": 60, "r": 20, "t": 70 if subtitle else 50, "b": 50},
        font={"family": "Source Sans Pro, Arial, sans-serif", "size": 12},
        hoverlabel={"namelength": -1},
    )
    return fig


def show(fig: go.Figure, key: str, filename: str | None = None, on_select: str | Callable | None = None,
         selection_mode: Sequence[str] = ("points", "box", "lasso")) -> Any:
    """Draw ``fig`` full width with the PNG-download toolbar; with ``on_select`` the chart is a widget."""
    kwargs: dict[str, Any] = {"key": key, "config": plotly_config(filename or key), "theme": None, "width": "stretch"}
    if on_select is not None:
        kwargs.update(on_select=on_select, selection_mode=tuple(selection_mode))
    return st.plotly_chart(fig, **kwargs)


# ----------------------------------------------------------------------------- overview
def metric_forest(head: pd.DataFrame, metric: str, K: int) -> go.Figure:
    """Point estimate and 95 % interval of every headline system for one metric."""
    d = head[head["metric"] == metric]
    fig = go.Figure()
    for _, r in d.iterrows():
        fig.add_trace(go.Scatter(
            x=[r["mean"]], y=[r["label"]], mode="markers", name=str(r["label"]),
            marker={"color": VIEW_COLORS.get(r["role"], GREY), "size": 11, "symbol": "diamond"},
            error_x={"type": "data", "symmetric": False, "array": [r["hi"] - r["mean"]],
                     "arrayminus": [r["mean"] - r["lo"]], "color": VIEW_COLORS.get(r["role"], GREY), "thickness": 2},
            hovertemplate=(f"{r['label']}<br>{metric.upper()}@{K} = %{{x:.4f}}<br>95% CI "
                           f"{r['lo']:.4f} – {r['hi']:.4f}<br>{int(r['n_users']):,} users<extra></extra>")))
    name = {"recall": "Recall", "ndcg": "NDCG"}[metric]
    style(fig, f"{name}@{K}", f"{name}@{K} (fraction, 0–1)", "system", "system",
          height=90 + 38 * max(len(d), 1) + 60, subtitle="test users, 95 % bootstrap intervals")
    fig.update_yaxes(autorange="reversed")
    return fig


def hit_share_bar(rows: pd.DataFrame, K: int) -> go.Figure:
    """Stacked 100 % bars: shares of shared / only-A / only-B distinct hits for each view pair.

    ``rows``: pair, kind (shared / semantic-only / collaborative-only or a label), count, share.
    """
    fig = go.Figure()
    for kind in rows["kind"].drop_duplicates():
        d = rows[rows["kind"] == kind]
        fig.add_trace(go.Bar(
            y=d["pair"], x=d["share"], name=str(kind), orientation="h",
            marker_color=d["color"].iloc[0] if "color" in d else HIT_COLORS.get(kind, GREY),
            customdata=np.c_[d["count"].to_numpy()],
            hovertemplate="%{y}<br>" + str(kind) + ": %{x:.1%} of distinct hits (%{customdata[0]:,} hits)<extra></extra>"))
    style(fig, f"Who finds the hits (K={K})", "share of distinct hits (%)", "view pair", "found by", height=320,
          subtitle="share of the pair's distinct test hits")
    fig.update_layout(barmode="stack", legend={"orientation": "h", "y": -0.35, "traceorder": "normal"})
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    return fig


def oracle_gain_bar(gains: pd.DataFrame, K: int) -> go.Figure:
    """Oracle gain over the best single view: compared pair vs the control floor, per metric and oracle."""
    fig = go.Figure()
    colors = {"semantic + collaborative": VIEW_COLORS["shared"]}
    for pair, d in gains.groupby("pair", sort=False):
        x = [f"{'Recall' if m == 'recall' else 'NDCG'}@{K}<br>{o}" for m, o in zip(d["metric"], d["oracle"])]
        fig.add_trace(go.Bar(
            x=x, y=d["gain"], name=str(pair), marker_color=colors.get(pair, VIEW_COLORS["control"]),
            customdata=np.c_[d["best_single"], d["oracle_value"]],
            hovertemplate=(f"{pair}<br>%{{x}}<br>gain %{{y:+.4f}}<br>best single %{{customdata[0]:.4f}}"
                           "<br>oracle %{customdata[1]:.4f}<extra></extra>")))
    style(fig, "Oracle gain vs control floor", "metric and oracle", "gain (metric points, 0–1 scale)", "view pair",
          height=380, subtitle="oracle − best single view of each pair")
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.3})
    return fig


# ----------------------------------------------------------------------------- maps
def _hover(df: pd.DataFrame, color_label: str, color_values: pd.Series) -> tuple[np.ndarray, str]:
    """customdata [item_idx, item_id, popularity, disagreement, colour value] (strings escaped) + template."""
    vals = color_values.astype(object).where(color_values.notna(), "n/a")
    dis = df["disagreement"].round(3).astype(object).where(df["disagreement"].notna(), "n/a")
    custom = np.c_[df["item_idx"].to_numpy(), df["item_id"].map(safe_label).to_numpy(), df["popularity"].to_numpy(),
                   dis.to_numpy(), vals.map(safe_label).to_numpy()]
    tmpl = ("<b>%{hovertext}</b><br>id %{customdata[1]} · popularity %{customdata[2]} (train interactions)<br>"
            "disagreement %{customdata[3]}<br>" + safe_label(color_label) + ": %{customdata[4]}<extra></extra>")
    return custom, tmpl


def item_map(df: pd.DataFrame, x: str, y: str, view: str, color: str, color_label: str, categorical: bool,
             selected: Sequence[int] = (), focus: int | None = None, category_colors: dict | None = None,
             log_color: bool = False, height: int = 520, source: str = "UMAP") -> go.Figure:
    """WebGL scatter of a 2-D item map. Each point carries ``item_idx`` as ``customdata[0]`` (point
    indices are per trace), the escaped title as hover text; selected items get a black ring, the
    focus item a yellow star and the view zooms onto it. ``source`` ("UMAP" / "PCA") names the axes."""
    d = df[df[x].notna() & df[y].notna()]
    fig = go.Figure()
    has_sel = len(selected) > 0
    base_opacity = 0.35 if has_sel else 0.8
    marker_size = 5 if len(d) > 5000 else 7
    if categorical:
        cats = d[color].astype(str).fillna("n/a")
        order = list(category_colors) if category_colors else []
        levels = [c for c in order if c in set(cats)] + sorted(set(cats) - set(order))
        for i, lev in enumerate(levels):
            sub = d[cats == lev]
            custom, tmpl = _hover(sub, color_label, sub[color])
            col = (category_colors or {}).get(lev, CATEGORY_CYCLE[i % len(CATEGORY_CYCLE)])
            fig.add_trace(go.Scattergl(
                x=sub[x], y=sub[y], mode="markers", name=f"{safe_label(lev)} ({len(sub):,})", customdata=custom,
                hovertext=sub["label"], hovertemplate=tmpl, legendgroup=str(lev),
                marker={"color": col, "size": marker_size, "opacity": base_opacity, "line": {"width": 0}}))
    else:
        vals = d[color].astype(float)
        cvals = np.log10(1 + vals.clip(lower=0)) if log_color else vals
        custom, tmpl = _hover(d, color_label, vals.round(4))
        fig.add_trace(go.Scattergl(
            x=d[x], y=d[y], mode="markers", name=f"items ({len(d):,})", customdata=custom, hovertext=d["label"],
            hovertemplate=tmpl,
            marker={"color": cvals, "colorscale": SEQUENTIAL, "size": marker_size, "opacity": base_opacity,
                    "colorbar": {"title": {"text": ("log10(1 + " + color_label + ")") if log_color else color_label},
                                 "thickness": 12, "len": 0.75}, "showscale": True}))
    if has_sel:
        s = d[d["item_idx"].isin(list(selected))]
        custom, tmpl = _hover(s, color_label, s[color] if color in s else s["item_idx"])
        fig.add_trace(go.Scattergl(
            x=s[x], y=s[y], mode="markers", name=f"selected ({len(s):,})", customdata=custom, hovertext=s["label"],
            hovertemplate=tmpl, marker={"color": "rgba(0,0,0,0)", "size": marker_size + (6 if len(s) <= 50 else 3),
                                        "line": {"color": SELECT_COLOR, "width": 1.6 if len(s) <= 50 else 1.0}}))
    if focus is not None:
        f = d[d["item_idx"] == focus]
        if not f.empty:
            custom, tmpl = _hover(f, color_label, f[color] if color in f else f["item_idx"])
            fig.add_trace(go.Scattergl(
                x=f[x], y=f[y], mode="markers", name="found item", customdata=custom, hovertext=f["label"],
                hovertemplate=tmpl, marker={"symbol": "star", "size": 20, "color": FOCUS_COLOR,
                                            "line": {"color": "#000000", "width": 1.5}}))
            fx, fy = float(f[x].iloc[0]), float(f[y].iloc[0])
            sx = (d[x].max() - d[x].min()) * 0.12 or 1.0
            sy = (d[y].max() - d[y].min()) * 0.12 or 1.0
            fig.update_xaxes(range=[fx - sx, fx + sx])
            fig.update_yaxes(range=[fy - sy, fy + sy])
    axis = "UMAP-" if source == "UMAP" else "PC "
    style(fig, f"{view.capitalize()} map", f"{view} {axis}1 (arbitrary units)", f"{view} {axis}2 (arbitrary units)",
          color_label, height=height)
    # no dragmode / clickmode here: Streamlit then starts in "pan" with click-to-select, and the
    # toolbar's box / lasso buttons switch to area selection
    fig.update_layout(legend={"orientation": "h", "y": -0.16, "itemsizing": "constant", "entrywidth": 150,
                              "entrywidthmode": "pixels", "title": {"text": safe_label(color_label), "side": "top"}})
    return fig


def disagreement_hist(values: pd.Series, lo: float, hi: float, k: int, chance: float) -> go.Figure:
    """Histogram of disagreement@k with the chosen range shaded and the chance level marked."""
    v = values.dropna()
    # disagreement takes the values 0, 1/k, ..., 1: one bar centred on each
    step = 1.0 / max(k, 1) if k <= 50 else 0.02
    fig = go.Figure(go.Histogram(x=v, xbins={"start": -step / 2, "end": 1.0 + step / 2, "size": step},
                                 marker_color=VIEW_COLORS["shared"], name=f"items ({len(v):,})",
                                 hovertemplate="disagreement %{x}<br>%{y:,} items<extra></extra>"))
    fig.add_vrect(x0=lo - step / 2, x1=hi + step / 2, fillcolor=OKABE_ITO["yellow"], opacity=0.25, line_width=0,
                  annotation_text="shown on the maps", annotation_position="top left")
    if np.isfinite(chance):
        fig.add_vline(x=1 - chance, line_dash="dash", line_color="#000000",
                      annotation_text="chance", annotation_position="top right")
    style(fig, f"Disagreement@{k} of the items", f"disagreement@{k} (fraction, 0–1)", "items (count)", "",
          height=280, subtitle=f"1 − overlap@{k} of the item's neighbourhoods in the two views; dashed: chance")
    fig.update_xaxes(range=[-step, 1 + step])
    return fig


# ----------------------------------------------------------------------------- hits
def share_bars(df: pd.DataFrame, x: str, x_title: str, title: str, kinds: Sequence[str],
               subtitle: str | None = None) -> go.Figure:
    """Stacked 100 % bars of hit kinds per segment; ``df`` has x, kind, count, share."""
    fig = go.Figure()
    for kind in kinds:
        d = df[df["kind"] == kind]
        fig.add_trace(go.Bar(x=d[x].astype(str).map(safe_label), y=d["share"], name=kind,
                             marker_color=HIT_COLORS.get(kind, GREY),
                             customdata=np.c_[d["count"].to_numpy()],
                             hovertemplate=f"{kind}<br>%{{x}}: %{{y:.1%}} (%{{customdata[0]:,}} test pairs)<extra></extra>"))
    style(fig, title, x_title, "share of test pairs (%)", "found by", height=380, subtitle=subtitle)
    fig.update_layout(barmode="stack", legend={"traceorder": "normal"})
    fig.update_yaxes(tickformat=".0%")
    return fig


def grouped_share(df: pd.DataFrame, x: str, x_title: str, title: str, kinds: Sequence[str], y_title: str,
                  subtitle: str | None = None) -> go.Figure:
    """Grouped bars (one group per x value, one bar per hit kind); ``df`` has x, kind, share, count."""
    fig = go.Figure()
    for kind in kinds:
        d = df[df["kind"] == kind]
        fig.add_trace(go.Bar(x=d[x].astype(str).map(safe_label), y=d["share"], name=kind,
                             marker_color=HIT_COLORS.get(kind, GREY),
                             customdata=np.c_[d["count"].to_numpy()],
                             hovertemplate=f"{kind}<br>%{{x}}: %{{y:.1%}} of its hits (%{{customdata[0]:,}})<extra></extra>"))
    style(fig, title, x_title, y_title, "hit kind", height=400, subtitle=subtitle)
    fig.update_layout(barmode="group")
    fig.update_yaxes(tickformat=".0%")
    return fig
