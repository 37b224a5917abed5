"""Plotly figures of the Fusion and Regimes pages (conventions and colours of :mod:`app.charts`).

The fusion-gain chart draws M(α) for each score-fusion method with the single views, RRF,
the oracle bounds and the control floor as labelled horizontal reference lines (each line is
also a legend entry carrying its value), the fused system at the α chosen on validation as a
star, and that α as a vertical line. The regimes chart puts the sparsity regimes (descending
fraction of training data kept) and the item cold-start regimes side by side in separate panels.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .charts import CATEGORY_CYCLE, GREY, OKABE_ITO, POP_BUCKET_COLORS, VIEW_COLORS, style
from .common import safe_label
from .derive_more import METHOD_LABELS, metric_label

#: style of each reference line: (colour, dash, short label)
REF_STYLE = {
    "semantic": (VIEW_COLORS["semantic"], "dot", "semantic"),
    "collaborative": (VIEW_COLORS["collaborative"], "dot", "collaborative"),
    "rrf": (OKABE_ITO["purple"], "dashdot", "RRF"),
    "oracle_select": (VIEW_COLORS["oracle"], "dash", "oracle: selection"),
    "oracle_union": (VIEW_COLORS["oracle"], "longdash", "oracle: union"),
    "control_oracle_select": (VIEW_COLORS["control"], "dash", "control floor"),
}
METHOD_DASH = {"cold_aware": "solid", "score": "dash"}
SEGMENT_COLORS = {**POP_BUCKET_COLORS, "cold": OKABE_ITO["black"], "heavy": OKABE_ITO["blue"],
                  "medium": OKABE_ITO["green"], "light": OKABE_ITO["orange"]}


def _spread(values: Sequence[float], gap: float) -> list[float]:
    """Label positions near ``values`` with at least ``gap`` between neighbours (order kept)."""
    order = np.argsort(values, kind="stable")
    pos = np.asarray(values, float)[order].copy()
    for i in range(1, len(pos)):
        pos[i] = max(pos[i], pos[i - 1] + gap)
    out = np.empty_like(pos)
    out[order] = pos
    return out.tolist()


def fusion_gain(curves: pd.DataFrame, refs: pd.DataFrame, part: str, metric: str, k: int, alpha_valid: float,
                method: str, fused_value: float | None, height: int = 520) -> go.Figure:
    """Fusion-gain curve M(α) of one part with labelled reference lines and the validation α."""
    name = metric_label(metric, k)
    fig = go.Figure()
    c = curves[(curves["part"] == part) & (curves["segment_type"] == "all")]
    ys: list[float] = []
    for meth in [m for m in ("cold_aware", "score") if m in set(c["method"])]:
        d = c[c["method"] == meth].sort_values("alpha")
        chosen = meth == method
        fig.add_trace(go.Scatter(
            x=d["alpha"], y=d["value"], mode="lines+markers",
            name=f"M(α), {METHOD_LABELS[meth]}" + (" (chosen)" if chosen else ""),
            line={"color": VIEW_COLORS["fusion"], "dash": METHOD_DASH[meth], "width": 3 if chosen else 1.8},
            marker={"size": 6 if chosen else 4, "color": VIEW_COLORS["fusion"]}, legendgroup="curve",
            hovertemplate=f"{METHOD_LABELS[meth]}<br>α = %{{x:.2f}}<br>{name} = %{{y:.4f}}<extra></extra>"))
        ys += d["value"].dropna().tolist()
    r = refs[refs["part"] == part]
    r = r[r["key"] != "fusion"]
    labels = []
    for _, row in r.iterrows():
        color, dash, short = REF_STYLE.get(row["key"], (GREY, "dot", row["key"]))
        v = float(row["value"])
        src = "" if row["source"] == "metrics table" else " (recomputed)"
        ci = f"<br>95% CI {row['lo']:.4f} – {row['hi']:.4f}" if np.isfinite(row["lo"]) else ""
        fig.add_trace(go.Scatter(
            x=[0.0, 1.0], y=[v, v], mode="lines", name=f"{row['label']}: {v:.4f}{src}",
            line={"color": color, "dash": dash, "width": 1.6}, legendgroup="refs",
            hovertemplate=f"{safe_label(row['label'])}<br>{name} = {v:.4f}{ci}<br>source: {row['source']}<extra></extra>"))
        labels.append((v, f"{short} {v:.3f}", color))
        ys.append(v)
    if fused_value is not None and np.isfinite(fused_value) and np.isfinite(alpha_valid):
        fig.add_trace(go.Scatter(
            x=[alpha_valid], y=[fused_value], mode="markers", name=f"fused system at α = {alpha_valid:.2f}: {fused_value:.4f}",
            marker={"symbol": "star", "size": 15, "color": VIEW_COLORS["fusion"], "line": {"color": "#000000", "width": 1}},
            hovertemplate=f"fused system (metrics table)<br>α = {alpha_valid:.2f}<br>{name} = {fused_value:.4f}<extra></extra>"))
        ys.append(fused_value)
    if np.isfinite(alpha_valid):
        fig.add_vline(x=alpha_valid, line_dash="dash", line_color=VIEW_COLORS["fusion"], line_width=1,
                      annotation_text=f"α chosen on validation = {alpha_valid:.2f}", annotation_position="top",
                      annotation_font_size=11)
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    span = max(hi - lo, 1e-3)
    y_range = (lo - 0.08 * span, hi + 0.12 * span)
    plot_px = max(height - 260, 120)  # plot area below the title, above axis title + legend
    gap = (y_range[1] - y_range[0]) * 13 / plot_px
    for y, (v, text, color) in zip(_spread([v for v, _, _ in labels], gap), labels):
        fig.add_annotation(x=1.0, y=y, xref="paper", yref="y", text=text, showarrow=False, xanchor="left", xshift=6,
                           font={"size": 10, "color": color})
    part_name = {"valid": "validation", "test": "test"}[part]
    style(fig, f"Fusion-gain curve · {part_name}",
          "α = weight of the semantic view (0 = collaborative only, 1 = semantic only)",
          f"{name} (fraction, 0–1)" if metric != "hit" else f"{name} (share of users, 0–1)", "",
          height=height, subtitle=f"{part_name} users · dotted / dashed: reference lines"
                                  + (" (oracle bounds and control floor: test only)" if part == "test" else
                                     " (the engine stores the oracle bounds for test only)"))
    fig.update_xaxes(range=[-0.02, 1.02])
    fig.update_yaxes(range=list(y_range))
    fig.update_layout(margin={"r": 130, "b": 40}, legend={"orientation": "h", "yanchor": "top", "y": -0.16, "x": 0})
    return fig


def segment_curves(curves: pd.DataFrame, segment_type: str, metric: str, k: int, alpha_valid: float, method: str,
                   height: int = 400) -> go.Figure:
    """Test fusion-gain curves per segment (one line per segment) for one fusion method."""
    name = metric_label(metric, k)
    d = curves[(curves["part"] == "test") & (curves["segment_type"] == segment_type) & (curves["method"] == method)]
    fig = go.Figure()
    order = ["head", "torso", "tail", "cold", "heavy", "medium", "light"]
    segs = sorted(d["segment"].unique(), key=lambda s: (order.index(s) if s in order else len(order), s))
    for i, seg in enumerate(segs):
        s = d[d["segment"] == seg].sort_values("alpha")
        n = s["n"].dropna()
        users = f" ({int(n.max()):,} users)" if len(n) else ""
        fig.add_trace(go.Scatter(
            x=s["alpha"], y=s["value"], mode="lines+markers", name=f"{seg}{users}",
            line={"color": SEGMENT_COLORS.get(seg, CATEGORY_CYCLE[i % len(CATEGORY_CYCLE)]), "width": 2},
            marker={"size": 5},
            hovertemplate=f"{safe_label(seg)}<br>α = %{{x:.2f}}<br>{name} = %{{y:.4f}}<extra></extra>"))
    if np.isfinite(alpha_valid):
        fig.add_vline(x=alpha_valid, line_dash="dash", line_color=VIEW_COLORS["fusion"], line_width=1,
                      annotation_text=f"α = {alpha_valid:.2f}", annotation_position="top")
    what = {"item_pop": "item popularity bucket", "user_activity": "user activity bucket"}.get(segment_type, segment_type)
    sub = ("metric against each user's test items in the bucket" if segment_type == "item_pop"
           else "users grouped by training activity")
    style(fig, f"By {what}", "α = weight of the semantic view (0 = collaborative, 1 = semantic)",
          f"{name} (fraction, 0–1)", what, height=height, subtitle=f"test, {METHOD_LABELS[method]}; {sub}")
    fig.update_xaxes(range=[-0.03, 1.03])
    return fig


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


def regimes(table: pd.DataFrame, K: int, height: int = 860) -> go.Figure:
    """Complementarity across regimes: sparsity (left, kept fraction descending) and cold start (right)."""
    warm = table[~table["is_cold"]]
    cold = table[table["is_cold"]]
    has_cold = len(cold) > 0
    titles = [f"Recall@{K} of each view", "cold-start regimes",
              "Unique-hit share (of distinct hits)", "cold-start regimes",
              f"Gain over the best single view (NDCG@{K})", "cold-start regimes"]
    fig = make_subplots(rows=3, cols=2 if has_cold else 1, shared_yaxes=True, horizontal_spacing=0.03,
                        vertical_spacing=0.09, column_widths=[0.72, 0.28] if has_cold else None,
                        subplot_titles=titles if has_cold else titles[::2])
    for row, col_name, label, color, dash in REGIME_SERIES:
        if col_name not in table.columns:
            continue
        for ci, part, mode, sym in ((1, warm, "lines+markers", "circle"), (2, cold, "markers", "diamond")):
            if part.empty or (ci == 2 and not has_cold):
                continue
            fig.add_trace(go.Scatter(
                x=part["x_label"], y=part[col_name], mode=mode, name=label, legendgroup=label,
                showlegend=(ci == 1) or warm.empty, line={"color": color, "dash": dash, "width": 2},
                marker={"color": color, "size": 8 if ci == 1 else 11, "symbol": sym},
                hovertemplate=f"{safe_label(label)}<br>%{{x}}: %{{y:.4f}}<extra></extra>"), row=row, col=ci)
    if has_cold:
        for col_name, label, color, sym in COLD_SERIES:
            if col_name not in cold.columns or not cold[col_name].notna().any():
                continue
            fig.add_trace(go.Scatter(
                x=cold["x_label"], y=cold[col_name], mode="markers", name=label, legendgroup=label,
                marker={"color": color, "size": 10, "symbol": sym, "line": {"color": "#000000", "width": 0.5}},
                hovertemplate=f"{safe_label(label)}<br>%{{x}}: Recall@{K} on cold items = %{{y:.4f}}<extra></extra>"),
                row=1, col=2)
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


def fmt(x: float, nd: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


#: line dash and marker of each part of the collaborative vectors in the shared / private R² chart
SHARED_PRIVATE_STYLE = {"r2_shared": ("solid", "circle", "shared part"),
                        "r2_private": ("dot", "circle-open", "private part")}


def probe_shared_private(curves: pd.DataFrame, x_order: Sequence[str], colors: dict[str, str],
                         names: dict[str, str], shared_dims: dict[str, int] | None = None,
                         height: int = 460) -> go.Figure:
    """Headline of the Alignment page: R² of each probe on the *shared* and on the *private* part of
    the held-out collaborative vectors, against capacity (categories ``x_order``).

    ``curves``: the probes table with the capacity category ``x``; one solid line (shared part)
    and one dotted line (private part) per regime, coloured by ``colors[regime]`` and named
    ``names[regime]``. The ridge row repeats the reduced-rank full-rank map and is left out
    when that row is there. ``shared_dims``: the shared-subspace dimension per regime (legend).
    """
    fig = go.Figure()
    pos = {x: i for i, x in enumerate(x_order)}
    for regime, g in curves.groupby("regime", sort=False):
        if "reduced_rank" in set(g["probe"]):
            g = g[g["probe"] != "ridge"]
        g = g.assign(_o=g["x"].map(lambda x: pos.get(x, len(pos)))).sort_values("_o", kind="stable")
        color = colors.get(str(regime), GREY)
        dim = (shared_dims or {}).get(str(regime))
        for col, (dash, symbol, part) in SHARED_PRIVATE_STYLE.items():
            label = f"{names.get(str(regime), regime)} · {part}"
            if col == "r2_shared" and dim is not None:
                label += f" ({dim}-dim. subspace)"
            fig.add_trace(go.Scatter(
                x=g["x"], y=g[col], mode="lines+markers", name=label, legendgroup=str(regime),
                line={"color": color, "dash": dash, "width": 2.4 if col == "r2_shared" else 1.8},
                marker={"color": color, "symbol": symbol, "size": 9},
                customdata=np.c_[g["n_train"].to_numpy(), g["n_eval"].to_numpy()],
                hovertemplate=(f"{safe_label(label)}<br>%{{x}}<br>R² = %{{y:.4f}}<br>fitted on %{{customdata[0]:,}} "
                               "items, judged on %{customdata[1]:,} held-out items<extra></extra>")))
    if len(x_order):
        fig.add_trace(go.Scatter(
            x=[x_order[0], x_order[-1]], y=[0.0, 0.0], mode="lines", name="0: no better than the fitted items' mean",
            line={"color": GREY, "dash": "dash", "width": 1.2}, legendgroup="refs", hoverinfo="skip"))
    style(fig, "R² of the map on the shared and on the private part",
          "probe capacity (reduced-rank rank → full-rank linear map → MLP hidden width)", "R² on held-out items",
          "regime · part of the collaborative vectors", height=height,
          subtitle="solid: R² on the component in the shared subspace (CCA on the fit items) · dotted: on the "
                   "private remainder")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(x_order))
    fig.update_layout(legend={"orientation": "v", "x": 1.02, "y": 1.0, "xanchor": "left", "font": {"size": 11}})
    return fig
