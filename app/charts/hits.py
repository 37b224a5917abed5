"""Charts of the Hits page: hit kinds per segment (stacked) and per decile / genre (grouped)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.text import safe_label

from .style import GREY, HIT_COLORS, style


def _kind_bars(df: pd.DataFrame, x: str, kinds: Sequence[str], what: str) -> go.Figure:
    fig = go.Figure()
    for kind in kinds:
        d = df[df["kind"] == kind]
        fig.add_trace(go.Bar(x=d[x].astype(str).map(safe_label), y=d["share"], name=kind,
                             marker_color=HIT_COLORS.get(kind, GREY), customdata=np.c_[d["count"].to_numpy()],
                             hovertemplate=f"{kind}<br>%{{x}}: %{{y:.1%}} {what}<extra></extra>"))
    return fig


def share_bars(df: pd.DataFrame, x: str, x_title: str, title: str, kinds: Sequence[str],
               subtitle: str | None = None) -> go.Figure:
    """Stacked 100 % bars of hit kinds per segment; ``df`` has x, kind, count, share."""
    fig = _kind_bars(df, x, kinds, "(%{customdata[0]:,} test pairs)")
    style(fig, title, x_title, "share of test pairs (%)", "found by", height=380, subtitle=subtitle)
    fig.update_layout(barmode="stack", legend={"traceorder": "normal"})
    fig.update_yaxes(tickformat=".0%")
    return fig


def grouped_share(df: pd.DataFrame, x: str, x_title: str, title: str, kinds: Sequence[str], y_title: str,
                  subtitle: str | None = None) -> go.Figure:
    """Grouped bars (one group per x value, one bar per hit kind); ``df`` has x, kind, share, count."""
    fig = _kind_bars(df, x, kinds, "of its hits (%{customdata[0]:,})")
    style(fig, title, x_title, y_title, "hit kind", height=400, subtitle=subtitle)
    fig.update_layout(barmode="group")
    fig.update_yaxes(tickformat=".0%")
    return fig
