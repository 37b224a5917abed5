"""Colours and styling shared by every chart of the dashboard.

Colours are the Okabe-Ito colour-blind-safe palette, one fixed colour per view / hit kind, so a
colour means the same thing on every page: semantic = blue, collaborative = vermillion,
fusion = bluish green, shared = reddish purple; grey for controls and misses. Continuous
scales are ``cividis`` (perceptually uniform, colour-blind safe). Every builder in ``app/charts``
sets axis titles (with units), a legend or colour bar, and hover text in which data strings are
escaped with :func:`app.text.safe_label`; draw figures with :func:`show` (PNG download toolbar).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}
GREY = "#999999"
LIGHT_GREY = "#CFCFCF"

#: colour of each view and of each system role (roles: :mod:`analysis.systems`)
VIEW_COLORS = {
    "semantic": OKABE_ITO["blue"],
    "semantic_trained": OKABE_ITO["blue"],
    "semantic_zeroshot": OKABE_ITO["sky"],
    "collaborative": OKABE_ITO["vermillion"],
    "ease": OKABE_ITO["orange"],
    "mostpop": GREY,
    "fusion": OKABE_ITO["green"],
    "rrf": OKABE_ITO["green"],
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
        template="plotly_white", title=t, xaxis_title=x_title, yaxis_title=y_title,
        legend_title_text=legend_title or "", showlegend=True, height=height,
        margin={"l": 60, "r": 20, "t": 70 if subtitle else 50, "b": 50},
        font={"family": "Source Sans Pro, Arial, sans-serif", "size": 12}, hoverlabel={"namelength": -1},
    )
    return fig


def show(fig: go.Figure, key: str, filename: str | None = None, on_select: str | Callable | None = None,
         selection_mode: Sequence[str] = ("points", "box", "lasso")) -> Any:
    """Draw ``fig`` full width with the PNG-download toolbar; with ``on_select`` the chart is a widget."""
    kwargs: dict[str, Any] = {"key": key, "config": plotly_config(filename or key), "theme": None, "width": "stretch"}
    if on_select is not None:
        kwargs.update(on_select=on_select, selection_mode=tuple(selection_mode))
    return st.plotly_chart(fig, **kwargs)


def spread(values: Sequence[float], gap: float) -> list[float]:
    """Label positions near ``values`` with at least ``gap`` between neighbours (order kept)."""
    order = np.argsort(values, kind="stable")
    pos = np.asarray(values, float)[order].copy()
    for i in range(1, len(pos)):
        pos[i] = max(pos[i], pos[i - 1] + gap)
    out = np.empty_like(pos)
    out[order] = pos
    return out.tolist()


def fmt(x: float | None, nd: int = 4) -> str:
    """A number with ``nd`` decimals, "n/a" when missing."""
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"
