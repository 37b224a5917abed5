"""Charts of the Users page: the user's hits in the fused top-K list as α moves (a small sparkline)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import VIEW_COLORS, style


def hits_sparkline(curve: pd.DataFrame, alpha: float, K: int) -> go.Figure:
    """Test hits in the fused top-``K`` list against α (``curve``: alpha, hits), the chosen α marked."""
    fig = go.Figure(go.Scatter(x=curve["alpha"], y=curve["hits"], mode="lines+markers", name=f"hits@{K}",
                               line={"color": VIEW_COLORS["fusion"], "width": 2}, marker={"size": 5},
                               hovertemplate="α = %{x:.2f}<br>%{y} test hits<extra></extra>"))
    fig.add_vline(x=alpha, line_dash="dash", line_color="#000000", line_width=1)
    style(fig, f"This user's hits@{K} as α moves", "α (0 = collaborative only, 1 = semantic only)", "test hits",
          "", height=190)
    fig.update_layout(showlegend=False, margin={"t": 36, "b": 40})
    fig.update_xaxes(range=[-0.03, 1.03])
    fig.update_yaxes(rangemode="tozero", dtick=1)
    return fig
