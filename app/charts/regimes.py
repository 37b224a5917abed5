"""Chart of the Regimes page: complementarity across the regimes of a sweep, the sparsity regimes
(descending fraction of training data kept) and the item cold-start regimes in separate panels."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.text import safe_label

from .style import VIEW_COLORS, style

#: series of the regimes chart: (row, column of the sweep table, legend name, colour, dash)
REGIME_SERIES = [
    (1, "semantic_recall", "semantic (trained)", VIEW_COLORS["semantic"], "solid"),
    (1, "semantic_zs_recall", "semantic (zero-shot)", VIEW_COLORS["semantic_zeroshot"], "dot"),
    (1, "collab_recall", "collaborative", VIEW_COLORS["collaborative"], "solid"),
    (1, "ease_recall", "EASE (reference)", VIEW_COLORS["ease"], "dot"),
    (1, "fusion_recall", "best fusion", VIEW_COLORS["fusion"], "solid"),
    (2, "semantic_unique_share", "unique-hit share: semantic", VIEW_COLORS["semantic"], "solid"),
    (2, "collab_unique_share", "unique-hit share: collaborative", VIEW_COLORS["collaborative"], "solid"),
    (2, "control_pop_unique_share", "unique-hit share: most-popular (control)", VIEW_COLORS["control"], "dash"),
    (3, "oracle_gain_ndcg", "oracle gain (semantic + collaborative)", VIEW_COLORS["oracle"], "solid"),
    (3, "control_oracle_gain_ndcg", "control floor (most-popular + collaborative)", VIEW_COLORS["control"], "dash"),
    (3, "fusion_gain_ndcg", "best fusion gain", VIEW_COLORS["fusion"], "solid"),
]
COLD_SERIES = [
    ("cold_semantic_recall", "cold items only: semantic", VIEW_COLORS["semantic"], "triangle-up"),
    ("cold_collab_recall", "cold items only: collaborative (cannot score them)", VIEW_COLORS["collaborative"],
     "triangle-down"),
    ("cold_fusion_recall", "cold items only: fusion", VIEW_COLORS["fusion"], "star"),
]


def _series(fig: go.Figure, warm: pd.DataFrame, cold: pd.DataFrame, columns: list[str]) -> None:
    for row, col_name, label, color, dash in REGIME_SERIES:
        if col_name not in columns:
            continue
        for ci, part, mode, sym in ((1, warm, "lines+markers", "circle"), (2, cold, "markers", "diamond")):
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part["x_label"], y=part[col_name], mode=mode, name=label, legendgroup=label,
                showlegend=(ci == 1) or warm.empty, line={"color": color, "dash": dash, "width": 2},
                marker={"color": color, "size": 8 if ci == 1 else 11, "symbol": sym},
                hovertemplate=f"{safe_label(label)}<br>%{{x}}: %{{y:.4f}}<extra></extra>"), row=row, col=ci)


def _cold_points(fig: go.Figure, cold: pd.DataFrame, K: int) -> None:
    for col_name, label, color, sym in COLD_SERIES:
        if col_name not in cold.columns or not cold[col_name].notna().any():
            continue
        fig.add_trace(go.Scatter(
            x=cold["x_label"], y=cold[col_name], mode="markers", name=label, legendgroup=label,
            marker={"color": color, "size": 10, "symbol": sym, "line": {"color": "#000000", "width": 0.5}},
            hovertemplate=f"{safe_label(label)}<br>%{{x}}: Recall@{K} on cold items = %{{y:.4f}}<extra></extra>"),
            row=1, col=2)


def regimes(table: pd.DataFrame, K: int, height: int = 860) -> go.Figure:
    """Complementarity across regimes: sparsity (left, kept fraction descending) and cold start (right)."""
    warm, cold = table[~table["is_cold"]], table[table["is_cold"]]
    has_cold = len(cold) > 0
    titles = [f"Recall@{K} of each view", "cold-start regimes",
              "Unique-hit share (of distinct hits)", "cold-start regimes",
              f"Gain over the best single view (NDCG@{K})", "cold-start regimes"]
    fig = make_subplots(rows=3, cols=2 if has_cold else 1, shared_yaxes=True, horizontal_spacing=0.03,
                        vertical_spacing=0.09, column_widths=[0.72, 0.28] if has_cold else None,
                        subplot_titles=titles if has_cold else titles[::2])
    _series(fig, warm, cold if has_cold else cold.iloc[0:0], list(table.columns))
    if has_cold:
        _cold_points(fig, cold, K)
    style(fig, "Complementarity across data regimes", "", "", "series", height=height,
          subtitle="left: fraction of each user's training data kept (descending); right: item cold-start regimes")
    for ci in (1, 2) if has_cold else (1,):
        fig.update_xaxes(type="category", row=3, col=ci,
                         title_text="training data kept (fraction)" if ci == 1 else "share of items made cold")
    fig.update_yaxes(title_text=f"Recall@{K} (fraction, 0–1)", row=1, col=1)
    fig.update_yaxes(title_text="share of distinct hits (%)", tickformat=".0%", row=2, col=1)
    fig.update_yaxes(title_text=f"NDCG@{K} gain (points, 0–1 scale)", row=3, col=1)
    fig.update_layout(legend={"orientation": "v", "x": 1.02, "y": 1}, margin={"r": 20, "t": 105})
    return fig
