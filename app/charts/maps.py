"""Charts of the Maps page (also the Structure page's map): the 2-D item map, and the histogram of
disagreement@k with its chance level."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.text import safe_label

from .style import CATEGORY_CYCLE, FOCUS_COLOR, OKABE_ITO, SELECT_COLOR, SEQUENTIAL, VIEW_COLORS, style


def _hover(df: pd.DataFrame, color_label: str, color_values: pd.Series) -> tuple[np.ndarray, str]:
    """customdata [item_idx, item_id, popularity, disagreement, colour value] (strings escaped) + template."""
    vals = color_values.astype(object).where(color_values.notna(), "n/a")
    dis = df["disagreement"].round(3).astype(object).where(df["disagreement"].notna(), "n/a")
    custom = np.c_[df["item_idx"].to_numpy(), df["item_id"].map(safe_label).to_numpy(), df["popularity"].to_numpy(),
                   dis.to_numpy(), vals.map(safe_label).to_numpy()]
    tmpl = ("<b>%{hovertext}</b><br>id %{customdata[1]} · popularity %{customdata[2]} (train interactions)<br>"
            "disagreement %{customdata[3]}<br>" + safe_label(color_label) + ": %{customdata[4]}<extra></extra>")
    return custom, tmpl


def _points(d: pd.DataFrame, x: str, y: str, name: str, color_label: str, color_values: pd.Series,
            marker: dict, trace: type) -> go.Scatter | go.Scattergl:
    """One marker trace of the map: ``trace`` is go.Scatter (SVG) or go.Scattergl (WebGL)."""
    custom, tmpl = _hover(d, color_label, color_values)
    return trace(x=d[x], y=d[y], mode="markers", name=name, customdata=custom, hovertext=d["label"],
                        hovertemplate=tmpl, marker=marker)


def _category_traces(fig: go.Figure, d: pd.DataFrame, x: str, y: str, color: str, color_label: str,
                     category_colors: dict | None, marker: dict, trace: type) -> None:
    cats = d[color].astype(str).fillna("n/a")
    order = list(category_colors) if category_colors else []
    levels = [c for c in order if c in set(cats)] + sorted(set(cats) - set(order))
    for i, lev in enumerate(levels):
        sub = d[cats == lev]
        col = (category_colors or {}).get(lev, CATEGORY_CYCLE[i % len(CATEGORY_CYCLE)])
        tr = _points(sub, x, y, f"{safe_label(lev)} ({len(sub):,})", color_label, sub[color], {**marker, "color": col},
                     trace)
        tr.legendgroup = str(lev)
        fig.add_trace(tr)


#: colour columns drawn on a quantile scale (most items share a few high values: a linear scale is one colour)
QUANTILE_COLORS = {"disagreement"}


def _quantile_colors(vals: pd.Series) -> tuple[np.ndarray, dict]:
    """Each value's quantile (mean rank / n, ties shared) and a colour bar labelled with the values at
    the 0, 25, 50, 75 and 100 % quantiles."""
    q = vals.rank(pct=True, method="average").to_numpy(float)
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    at = np.nanquantile(vals.to_numpy(float), ticks) if vals.notna().any() else np.full(5, np.nan)
    return q, {"tickvals": ticks, "ticktext": [f"{v:.2f}" for v in at]}


def _value_trace(fig: go.Figure, d: pd.DataFrame, x: str, y: str, color: str, color_label: str, log_color: bool,
                 marker: dict, trace: type) -> None:
    vals = d[color].astype(float)
    bar: dict = {"thickness": 12, "len": 0.75}
    if color in QUANTILE_COLORS:
        c, ticks = _quantile_colors(vals)
        bar.update(ticks, title={"text": f"{color_label} (quantile scale)"})
    else:
        c = np.log10(1 + vals.clip(lower=0)) if log_color else vals
        bar["title"] = {"text": ("log10(1 + " + color_label + ")") if log_color else color_label}
    fig.add_trace(_points(d, x, y, f"items ({len(d):,})", color_label, vals.round(4), {
        **marker, "color": c, "colorscale": SEQUENTIAL, "colorbar": bar, "showscale": True}, trace))


def _focus(fig: go.Figure, d: pd.DataFrame, x: str, y: str, color: str, color_label: str, focus: int,
           trace: type) -> None:
    """The found item as a yellow star, the view zoomed onto it."""
    f = d[d["item_idx"] == focus]
    if f.empty:
        return
    fig.add_trace(_points(f, x, y, "found item", color_label, f[color] if color in f else f["item_idx"],
                          {"symbol": "star", "size": 20, "color": FOCUS_COLOR, "line": {"color": "#000000", "width": 1.5}}, trace))
    fx, fy = float(f[x].iloc[0]), float(f[y].iloc[0])
    fig.add_annotation(x=fx, y=fy, text=safe_label(str(f["title"].iloc[0])[:60]), showarrow=True, arrowhead=0, ax=0,
                       ay=-28, font={"size": 12, "color": "#000000"}, bgcolor="rgba(255,255,255,0.85)")
    sx = (d[x].max() - d[x].min()) * 0.12 or 1.0
    sy = (d[y].max() - d[y].min()) * 0.12 or 1.0
    fig.update_xaxes(range=[fx - sx, fx + sx])
    fig.update_yaxes(range=[fy - sy, fy + sy])


#: up to this many points a map is drawn as SVG, above it with WebGL: without a GPU (headless or remote
#: browsers render WebGL in software) a WebGL redraw of two maps costs more than their SVG at this size
SVG_MAX_POINTS = 4000


#: legend entries per row under a map (150 px each in a half-page column) and the height of a row
LEGEND_PER_ROW, LEGEND_ROW_PX = 4, 24


def item_map(df: pd.DataFrame, x: str, y: str, view: str, color: str, color_label: str, categorical: bool,
             selected: Sequence[int] = (), focus: int | None = None, category_colors: dict | None = None,
             log_color: bool = False, height: int = 520, source: str = "UMAP") -> go.Figure:
    """Scatter of a 2-D item map (SVG up to :data:`SVG_MAX_POINTS` points, WebGL above). Each point
    carries ``item_idx`` as ``customdata[0]`` (point indices are per trace), the escaped title as hover text; selected items get a black ring, the
    focus item a yellow star and the view zooms onto it. ``source`` ("UMAP" / "PCA") names the axes."""
    d = df[df[x].notna() & df[y].notna()]
    fig = go.Figure()
    trace = go.Scatter if len(d) <= SVG_MAX_POINTS else go.Scattergl
    size = 5 if len(d) > 5000 else 7
    marker = {"size": size, "opacity": 0.35 if len(selected) else 0.8, "line": {"width": 0}}
    if categorical:
        _category_traces(fig, d, x, y, color, color_label, category_colors, marker, trace)
    else:
        _value_trace(fig, d, x, y, color, color_label, log_color, {k: v for k, v in marker.items() if k != "line"},
                     trace)
    if len(selected):
        s = d[d["item_idx"].isin(list(selected))]
        few = len(s) <= 50
        fig.add_trace(_points(s, x, y, f"selected ({len(s):,})", color_label, s[color] if color in s else s["item_idx"],
                              {"color": "rgba(0,0,0,0)", "size": size + (6 if few else 3),
                               "line": {"color": SELECT_COLOR, "width": 1.6 if few else 1.0}}, trace))
    if focus is not None:
        _focus(fig, d, x, y, color, color_label, focus, trace)
    axis = "UMAP-" if source == "UMAP" else "PC "
    style(fig, f"{view.capitalize()} map", f"{view} {axis}1 (arbitrary units)", f"{view} {axis}2 (arbitrary units)",
          color_label, height=height)
    # no dragmode / clickmode here: Streamlit then starts in "pan" with click-to-select, and the
    # toolbar's box / lasso buttons switch to area selection
    # a long categorical legend (e.g. genres) below the plot grows the figure, never squashes the plot area
    rows = -(-len(fig.data) // LEGEND_PER_ROW) if categorical else 0
    fig.update_layout(height=height + LEGEND_ROW_PX * rows, margin={"b": 70 + LEGEND_ROW_PX * rows},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.14, "itemsizing": "constant",
                              "entrywidth": 150, "entrywidthmode": "pixels",
                              "title": {"text": safe_label(color_label), "side": "top"}})
    return fig


def disagreement_hist(values: pd.Series, lo: float, hi: float, k: int, chance: float) -> go.Figure:
    """Histogram of disagreement@k with the chosen range shaded and the chance level marked."""
    v = values.dropna()
    step = 1.0 / max(k, 1) if k <= 50 else 0.02  # disagreement takes the values 0, 1/k, ..., 1: one bar each
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
