"""Charts of the Alignment page: R² of the maps on the shared and on the private part of the held-out
collaborative vectors, and capacity curves (R², overlap, Recall@K) per regime and probe family."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.data.alignment import PROBE_LABELS, PROBE_REGIMES, PROBE_SHORT
from app.text import safe_label

from .style import GREY, OKABE_ITO, style

#: colour of each probe regime (not a view colour: the regimes are the lines of one chart)
REGIME_COLORS = {"in_distribution": OKABE_ITO["black"], "shift_popularity": OKABE_ITO["orange"],
                 "shift_time": OKABE_ITO["sky"]}
#: (line dash, marker symbol) of each probe family; ridge is one point at full rank
PROBE_STYLE = {"reduced_rank": ("solid", "circle"), "mlp": ("dash", "square"), "ridge": ("solid", "diamond-open")}
#: line dash and marker of each part of the collaborative vectors in the shared / private R² chart
SHARED_PRIVATE_STYLE = {"r2_shared": ("solid", "circle", "shared part"),
                        "r2_private": ("dot", "circle-open", "private part")}
CAPACITY_AXIS = "probe capacity (reduced-rank rank → full-rank linear map → MLP hidden width)"


def _fit_sizes(g: pd.DataFrame) -> np.ndarray:
    return np.c_[g["n_train"].to_numpy(), g["n_eval"].to_numpy()]


def probe_shared_private(curves: pd.DataFrame, x_order: Sequence[str], shared_dims: dict[str, int] | None = None,
                         height: int = 460) -> go.Figure:
    """R² of each probe on the *shared* (solid) and on the *private* (dotted) part of the held-out
    collaborative vectors against capacity (categories ``x_order``), one colour per regime. The ridge
    row repeats the reduced-rank full-rank map and is left out when that row is there.
    ``shared_dims``: the shared-subspace dimension per regime (legend)."""
    fig = go.Figure()
    pos = {x: i for i, x in enumerate(x_order)}
    for regime, g in curves.groupby("regime", sort=False):
        if "reduced_rank" in set(g["probe"]):
            g = g[g["probe"] != "ridge"]
        g = g.assign(_o=g["x"].map(lambda x: pos.get(x, len(pos)))).sort_values("_o", kind="stable")
        color, dim = REGIME_COLORS.get(str(regime), GREY), (shared_dims or {}).get(str(regime))
        for col, (dash, symbol, part) in SHARED_PRIVATE_STYLE.items():
            label = f"{PROBE_SHORT.get(str(regime), regime)} · {part}"
            if col == "r2_shared" and dim is not None:
                label += f" ({dim}-dim. subspace)"
            fig.add_trace(go.Scatter(
                x=g["x"], y=g[col], mode="lines+markers", name=label, legendgroup=str(regime),
                line={"color": color, "dash": dash, "width": 2.4 if col == "r2_shared" else 1.8},
                marker={"color": color, "symbol": symbol, "size": 9}, customdata=_fit_sizes(g),
                hovertemplate=(f"{safe_label(label)}<br>%{{x}}<br>R² = %{{y:.4f}}<br>fitted on %{{customdata[0]:,}} "
                               "items, judged on %{customdata[1]:,} held-out items<extra></extra>")))
    if len(x_order):
        fig.add_trace(go.Scatter(
            x=[x_order[0], x_order[-1]], y=[0.0, 0.0], mode="lines", name="0: no better than the fitted items' mean",
            line={"color": GREY, "dash": "dash", "width": 1.2}, legendgroup="refs", hoverinfo="skip"))
    style(fig, "R² of the map on the shared and on the private part", CAPACITY_AXIS, "R² on held-out items",
          "regime · part of the collaborative vectors", height=height,
          subtitle="solid: R² on the component in the shared subspace (CCA on the fit items) · dotted: on the "
                   "private remainder")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(x_order))
    fig.update_layout(legend={"orientation": "v", "x": 1.02, "y": 1.0, "xanchor": "left", "font": {"size": 11}})
    return fig


def curve_chart(curves: pd.DataFrame, metric: str, title: str, y_title: str,
                refs: list[tuple[str, float, str, str]], subtitle: str) -> go.Figure:
    """Capacity (ordered categories ``curves.attrs["x_order"]``) vs ``metric``, one line per regime
    and probe family; ``refs`` = horizontal reference lines (name, value, colour, dash)."""
    order = list(curves.attrs.get("x_order") or curves["x"].drop_duplicates())
    fig = go.Figure()
    for regime, g in curves.groupby("regime", sort=False):
        color = REGIME_COLORS.get(str(regime), GREY)
        for probe in ("reduced_rank", "ridge", "mlp"):
            d = g[g["probe"] == probe]
            if d.empty:
                continue
            dash, symbol = PROBE_STYLE[probe]
            fig.add_trace(go.Scatter(
                x=d["x"], y=d[metric], mode="markers" if probe == "ridge" else "lines+markers",
                name=f"{PROBE_SHORT.get(regime, regime)} · {PROBE_LABELS.get(probe, probe)}", legendgroup=str(regime),
                line={"color": color, "dash": dash, "width": 2}, marker={"color": color, "symbol": symbol, "size": 9},
                customdata=_fit_sizes(d),
                hovertemplate=(f"{safe_label(PROBE_REGIMES.get(regime, regime))}<br>{PROBE_LABELS.get(probe, probe)}, "
                               f"%{{x}}<br>{title} = %{{y:.4f}}<br>fitted on %{{customdata[0]:,}} items, "
                               "judged on %{customdata[1]:,} held-out items<extra></extra>")))
    for name, value, color, dash in refs:
        if np.isfinite(value):
            fig.add_trace(go.Scatter(
                x=[order[0], order[-1]], y=[value, value], mode="lines", name=f"{name}: {value:.3f}",
                line={"color": color, "dash": dash, "width": 1.4}, legendgroup="refs",
                hovertemplate=f"{safe_label(name)}<br>{value:.4f}<extra></extra>"))
    style(fig, title, CAPACITY_AXIS, y_title, "regime · probe", height=460, subtitle=subtitle)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order)
    fig.update_layout(legend={"orientation": "v", "x": 1.02, "y": 1.0, "xanchor": "left", "font": {"size": 11}})
    return fig
