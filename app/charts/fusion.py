"""Charts of the Fusion page: the fusion-gain curve M(α) of one part with the single views, RRF,
the oracle bounds and the control floor as labelled reference lines (each also a legend entry
carrying its value), the fused system at the α chosen on validation as a star and that α as a
vertical line; and the test curves per segment."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.data.common import metric_label
from app.data.fusion import METHOD_LABELS
from app.text import safe_label

from .style import CATEGORY_CYCLE, GREY, OKABE_ITO, POP_BUCKET_COLORS, VIEW_COLORS, spread, style

#: style of each reference line (keys of :func:`app.data.fusion.fusion_references`): colour, dash, short label
REF_STYLE = {
    "semantic": (VIEW_COLORS["semantic"], "dot", "semantic"),
    "collaborative": (VIEW_COLORS["collaborative"], "dot", "collaborative"),
    "rrf": (OKABE_ITO["purple"], "dashdot", "RRF"),
    "oracle_select": (VIEW_COLORS["oracle"], "dash", "oracle: selection"),
    "oracle_union": (VIEW_COLORS["oracle"], "longdash", "oracle: union"),
    "control_oracle_select": (VIEW_COLORS["control"], "dash", "control floor"),
}
#: end-label text colours where the line's own colour is too light to read on white
LABEL_COLORS = {"control_oracle_select": "#595959"}
#: reference lines that may lie far above the rest (the union pool): drawn, but the y-axis zooms on the others
OFF_ZOOM = {"oracle_union"}
METHOD_DASH = {"cold_aware": "solid", "score": "dash"}
SEGMENT_COLORS = {**POP_BUCKET_COLORS, "cold": OKABE_ITO["black"], "heavy": OKABE_ITO["blue"],
                  "medium": OKABE_ITO["green"], "light": OKABE_ITO["orange"]}
SEGMENT_ORDER = ["head", "torso", "tail", "cold", "heavy", "medium", "light"]


def _curves(fig: go.Figure, c: pd.DataFrame, method: str, name: str) -> list[float]:
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
    return ys


def _reference_lines(fig: go.Figure, refs: pd.DataFrame, name: str) -> list[tuple[float, str, str]]:
    labels = []
    for _, row in refs[refs["key"] != "fusion"].iterrows():
        color, dash, short = REF_STYLE.get(row["key"], (GREY, "dot", row["key"]))
        v = float(row["value"])
        src = "" if row["source"] == "metrics table" else " (recomputed)"
        ci = f"<br>95% CI {row['lo']:.4f} – {row['hi']:.4f}" if np.isfinite(row["lo"]) else ""
        fig.add_trace(go.Scatter(
            x=[0.0, 1.0], y=[v, v], mode="lines", name=f"{row['label']}: {v:.4f}{src}",
            line={"color": color, "dash": dash, "width": 1.6}, legendgroup="refs",
            hovertemplate=f"{safe_label(row['label'])}<br>{name} = {v:.4f}{ci}<br>source: {row['source']}<extra></extra>"))
        labels.append((v, f"{short} {v:.3f}", LABEL_COLORS.get(row["key"], color)))
    return labels


def _chosen_alpha(fig: go.Figure, alpha_valid: float, fused_value: float | None, name: str) -> list[float]:
    ys = []
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
    return ys


def _end_labels(fig: go.Figure, labels: list[tuple[float, str, str]], y_range: tuple[float, float], height: int) -> None:
    plot_px = max(height - 260, 120)  # plot area below the title, above axis title + legend
    gap = (y_range[1] - y_range[0]) * 13 / plot_px
    for y, (v, text, color) in zip(spread([v for v, _, _ in labels], gap), labels):
        fig.add_annotation(x=1.0, y=y, xref="paper", yref="y", text=text, showarrow=False, xanchor="left", xshift=6,
                           font={"size": 10, "color": color})


def fusion_gain(curves: pd.DataFrame, refs: pd.DataFrame, part: str, metric: str, k: int, alpha_valid: float,
                method: str, fused_value: float | None, height: int = 520) -> go.Figure:
    """Fusion-gain curve M(α) of one part with labelled reference lines and the validation α."""
    name = metric_label(metric, k)
    fig = go.Figure()
    ys = _curves(fig, curves[(curves["part"] == part) & (curves["segment_type"] == "all")], method, name)
    r = refs[refs["part"] == part]
    labels = _reference_lines(fig, r, name)
    zoom = [v for (v, _, _), key in zip(labels, r.loc[r["key"] != "fusion", "key"]) if key not in OFF_ZOOM]
    ys += zoom + _chosen_alpha(fig, alpha_valid, fused_value, name)
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    span = max(hi - lo, 1e-3)
    y_range = (lo - 0.08 * span, hi + 0.12 * span)
    above = [(v, t, c) for v, t, c in labels if v > y_range[1]]  # e.g. the union pool: named at the top edge
    _end_labels(fig, [x for x in labels if x not in above], y_range, height)
    for v, text, color in above:
        fig.add_annotation(x=1.0, y=1.0, xref="paper", yref="paper", text=f"↑ {text} (above)", showarrow=False,
                           xanchor="left", yanchor="top", xshift=6, font={"size": 10, "color": color})
    part_name = {"valid": "validation", "test": "test"}[part]
    style(fig, f"Fusion-gain curve · {part_name}",
          "α = weight of the semantic view (0 = collaborative only, 1 = semantic only)",
          f"{name} (fraction, 0–1)" if metric != "hit" else f"{name} (share of users, 0–1)", "",
          height=height, subtitle=f"{part_name} users · dotted / dashed: reference lines"
                                  + (" (oracle bounds and control floor: test only)" if part == "test" else
                                     " (the engine stores the oracle bounds for test only)"))
    fig.update_xaxes(range=[-0.02, 1.02])
    fig.update_yaxes(range=list(y_range))
    fig.update_layout(margin={"r": 150, "b": 110}, legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0})
    return fig


def segment_curves(curves: pd.DataFrame, segment_type: str, metric: str, k: int, alpha_valid: float, method: str,
                   height: int = 400) -> go.Figure:
    """Test fusion-gain curves per segment (one line per segment) for one fusion method."""
    name = metric_label(metric, k)
    d = curves[(curves["part"] == "test") & (curves["segment_type"] == segment_type) & (curves["method"] == method)]
    fig = go.Figure()
    segs = sorted(d["segment"].unique(), key=lambda s: (SEGMENT_ORDER.index(s) if s in SEGMENT_ORDER
                                                        else len(SEGMENT_ORDER), s))
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
