"""Alignment page: does a simple map from the semantic to the collaborative item vectors recover
the collaborative geometry, and does a fusion built on complementarity beat one built on alignment?

DIAGNOSTICS.md, "Alignment probes" and "Shared + private structure". The headline chart puts
capacity (reduced-rank linear rank 1, 2, 4, …, full rank — the ridge map — then the MLP widths)
against each map's R² on the *shared* part of the held-out collaborative vectors (their
component in the shared subspace, estimated by CCA on the fit items only) and on the *private*
remainder, one colour per regime (in-distribution, popularity shift, time shift). Three tabs
follow, one line per regime and probe family: pooled R², neighbourhood overlap (neighbours of the
mapped vector among the true vectors of the other items, leave one out) and Recall@K ranking the
held-out items only, with the true vectors as ceiling and random vectors as floor. A regime whose
Recall cannot be read (ceiling too small or indistinguishable from the floor, too few users)
gets its reason instead of a curve. Below: the items the best probe explains worst (any of them
opens the Items drill-down), and the complementarity-aware fusion against the best single view,
score fusion and the alignment baseline, read from the paired-bootstrap intervals. Runs made
before the probes stage (or before the shared / private split) say so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import charts
from app.charts import GREY, OKABE_ITO, style
from app.charts_more import probe_shared_private
from app.common import Ctx, current_ctx, md_escape, safe_label
from app.derive_more import NO_PROBES, PROBE_LABELS, PROBE_REGIMES, PROBE_SHORT, metric_label, probe_name

ITEMS_PAGE = "views/items.py"
#: colour of each probe regime (not a view colour: the regimes are the lines of one chart)
REGIME_COLORS = {"in_distribution": OKABE_ITO["black"], "shift_popularity": OKABE_ITO["orange"],
                 "shift_time": OKABE_ITO["sky"]}
#: (line dash, marker symbol) of each probe family; ridge is one point at full rank
PROBE_STYLE = {"reduced_rank": ("solid", "circle"), "mlp": ("dash", "square"), "ridge": ("solid", "diamond-open")}


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
                customdata=np.c_[d["n_train"].to_numpy(), d["n_eval"].to_numpy()],
                hovertemplate=(f"{safe_label(PROBE_REGIMES.get(regime, regime))}<br>{PROBE_LABELS.get(probe, probe)}, "
                               f"%{{x}}<br>{title} = %{{y:.4f}}<br>fitted on %{{customdata[0]:,}} items, "
                               "judged on %{customdata[1]:,} held-out items<extra></extra>")))
    for name, value, color, dash in refs:
        if np.isfinite(value):
            fig.add_trace(go.Scatter(
                x=[order[0], order[-1]], y=[value, value], mode="lines", name=f"{name}: {value:.3f}",
                line={"color": color, "dash": dash, "width": 1.4}, legendgroup="refs",
                hovertemplate=f"{safe_label(name)}<br>{value:.4f}<extra></extra>"))
    style(fig, title, "probe capacity (reduced-rank rank → full-rank linear map → MLP hidden width)", y_title,
          "regime · probe", height=460, subtitle=subtitle)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order)
    fig.update_layout(legend={"orientation": "v", "x": 1.02, "y": 1.0, "xanchor": "left", "font": {"size": 11}})
    return fig


def _open_item(ctx: Ctx, item_idx: int) -> None:
    """Make ``item_idx`` the Items page's drill-down item (its session state + ``?item=``) and go there."""
    ids = ctx.run.items.set_index("item_idx")["item_id"].astype(str)
    st.session_state["items_item"] = int(item_idx)
    st.switch_page(ITEMS_PAGE, query_params={"item": ids.loc[int(item_idx)]})


def _table_pick(table_key: str, pick_key: str, ids: list[int]) -> None:
    """on_select of the worst-items table: copy the clicked row's item into the picker."""
    rows = ((st.session_state.get(table_key) or {}).get("selection") or {}).get("rows") or []
    if rows and rows[0] < len(ids):
        st.session_state[pick_key] = int(ids[rows[0]])


def probe_section(ctx: Ctx) -> None:
    run, K = ctx.run, int(ctx.run.manifest.get("K", ctx.K))
    curves = ctx.derived("probe_curves")
    best = ctx.derived("probe_best")
    psum = ((run.manifest.get("summary") or {}).get("probes") or {})
    cols = st.columns(max(len(best), 1))
    for col, (regime, b) in zip(cols, best.items()):
        col.metric(f"Best map · R² · {PROBE_SHORT.get(regime, regime)}", f"{b['r2']:.3f}",
                   help=f"{PROBE_REGIMES.get(regime, regime)}: {PROBE_LABELS.get(b['probe'], b['probe'])} at {b['x']}, "
                        f"chosen by {b['selected_by']}; judged on {b['n_eval']:,} held-out items")
    skipped = psum.get("skipped_regimes") or {}
    for regime, why in skipped.items():
        st.caption(f"Regime {md_escape(PROBE_SHORT.get(regime, regime))} was skipped: {md_escape(why)}.")

    shared_private_section(curves, psum)
    chance = psum.get("chance_overlap", run.manifest.get("chance_overlap", np.nan))
    k = int(psum.get("k_neighbors", run.manifest.get("k_neighbors", ctx.k)))
    tabs = st.tabs(["R²", f"Neighbourhood overlap@{k}", f"Recall@{K}"])
    with tabs[0]:
        charts.show(curve_chart(curves, "r2", "R² of the mapped vectors", "R² on held-out items",
                                [("predicting the fitted items' mean", 0.0, GREY, "dot")],
                                "share of the collaborative vectors' variance the map explains"),
                    key="alignment_r2", filename="probe_r2")
    with tabs[1]:
        charts.show(curve_chart(curves, "overlap", f"Overlap@{k} of mapped vs true neighbours",
                                f"overlap@{k} (fraction, 0–1)", [("chance", float(chance), GREY, "dot")],
                                "neighbours of each mapped item among the true vectors of the other items"),
                    key="alignment_overlap", filename="probe_overlap")
        st.caption(f"For each held-out item: its {k} nearest items in the true collaborative space against the {k} "
                   "true collaborative vectors nearest to its mapped vector (itself left out). Mapped vectors never "
                   "compete with each other.")
    with tabs[2]:
        recall_tab(curves, K)
    worst_items_section(ctx)


def readable_regimes(curves: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The probe rows of regimes whose Recall@K can be read, and {regime: reason} for the others
    (runs made before the readability flag: every regime is readable)."""
    if "readable" not in curves.columns:
        return curves, {}
    ok = curves["readable"].fillna(True).astype(bool)
    bad = curves[~ok].drop_duplicates("regime")
    why = bad["reason"].fillna("").astype(str) if "reason" in bad.columns else [""] * len(bad)
    return curves[ok].copy(), dict(zip(bad["regime"].astype(str), why))


def recall_tab(curves: pd.DataFrame, K: int) -> None:
    """Recall@K within the held-out items; unreadable regimes get their reason instead of a curve."""
    shown, reasons = readable_regimes(curves)
    for regime, why in reasons.items():
        st.info(f"Recall@{K} is not drawn for **{md_escape(PROBE_SHORT.get(regime, regime))}**: "
                f"{md_escape(why or 'the ceiling is too small to read')}.", icon=":material/block:")
    if shown.empty:
        return
    refs = []
    for r, g in shown.groupby("regime", sort=False):
        color = REGIME_COLORS.get(str(r), GREY)
        name = PROBE_SHORT.get(r, r)
        refs.append((f"ceiling ({name}): true collaborative vectors", float(g["ceiling_recall"].iloc[0]), color, "dot"))
        if "floor_recall" in g.columns:
            refs.append((f"floor ({name}): random vectors", float(g["floor_recall"].iloc[0]), color, "dashdot"))
    shown.attrs["x_order"] = curves.attrs.get("x_order")
    charts.show(curve_chart(shown, "recall", f"Recall@{K} with mapped vectors", f"Recall@{K} (fraction, 0–1)", refs,
                            "held-out items ranked among themselves, by mapped, true (ceiling) or random (floor) "
                            "vectors"), key="alignment_recall", filename="probe_recall")
    st.caption("Each point is one map fitted on the fit items and judged on held-out items. Candidates are the "
               "held-out items only, for the users with a test interaction on one of them (their known history "
               "masked); the mapped, the true (dotted ceiling) and random (dash-dotted floor) vectors of those items "
               "are ranked the same way, so a map that only shrinks the vectors loses nothing. Where the mapped "
               "vectors sit between floor and ceiling is what the map keeps for recommendation.")


def shared_private_section(curves: pd.DataFrame, psum: dict) -> None:
    """The headline: R² on the shared and on the private part of the held-out collaborative vectors."""
    if not {"r2_shared", "r2_private"} <= set(curves.columns) or not curves["r2_shared"].notna().any():
        st.info("This run does not split the probes' R² into the shared and private parts; recompute it with "
                "`semcollab run ... --force`.", icon=":material/info:")
        return
    regs = psum.get("regimes") or {}
    dims = {r: int(d["shared_dim"]) for r, d in regs.items() if isinstance(d, dict) and "shared_dim" in d}
    x_order = list(curves.attrs.get("x_order") or curves["x"].drop_duplicates())
    charts.show(probe_shared_private(curves, x_order, REGIME_COLORS, PROBE_SHORT, dims), key="alignment_shared_private",
                filename="probe_shared_private")
    held = [f"{PROBE_SHORT.get(r, r)} {d['shared_var_eval']:.0%}" for r, d in regs.items()
            if isinstance(d, dict) and np.isfinite(d.get("shared_var_eval", np.nan))]
    st.caption("Each held-out item's collaborative vector is split into its component in the shared subspace (the "
               "collaborative directions of the canonical correlations that beat their null on held-out fit items; "
               "fitted on the probe's fit items only) and the private remainder. A map that captures only what the "
               "two views share scores clearly above 0 on the shared part (solid) and about 0 on the private part "
               "(dotted), whatever its capacity: that private part is what fusion can add. R² is measured against "
               "the fitted items' mean, so under shift it can fall below 0."
               + (f" Share of the held-out variance in the shared subspace: {md_escape(', '.join(held))}."
                  if held else ""))


def worst_items_section(ctx: Ctx) -> None:
    """The items the best probe explains worst; any of them opens the Items drill-down."""
    st.subheader("Items the best map explains worst")
    worst = ctx.derived("probe_worst_items", 20)
    if worst.empty:
        st.info("No item has a probe residual (every item in the filter is cold).")
        return
    probe = md_escape(probe_name(worst["probe_best"].iloc[0]) if "probe_best" in worst else "the best probe")
    st.caption(f"Top {len(worst)} by probe residual ‖y − f(x)‖² / ‖y − ȳ‖² of {probe} (cross-fitted, so every warm item "
               f"is held out once; 1 = no better than the mean vector). Click a row or pick an item, then open it. "
               f"{md_escape(ctx.segment_note())}.")
    ids = worst["item_idx"].astype(int).tolist()
    pick_key, table_key = f"alignment_item::{ctx.path}", "alignment_worst"
    st.dataframe(worst.drop(columns=["item_idx", "probe_best"], errors="ignore"), hide_index=True, width="stretch",
                 key=table_key, selection_mode="single-row", on_select=lambda: _table_pick(table_key, pick_key, ids),
                 column_config={"probe_residual": st.column_config.NumberColumn("probe residual", format="%.3f"),
                                "col_private": st.column_config.NumberColumn("col. private energy", format="%.2f"),
                                "sem_private": st.column_config.NumberColumn("sem. private energy", format="%.2f"),
                                "disagreement": st.column_config.NumberColumn("disagreement", format="%.2f"),
                                "popularity": st.column_config.NumberColumn("pop.", help="training interactions")})
    titles = dict(zip(ids, worst["title"].astype(str)))
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    pick = c1.selectbox("Item to open", ids, index=None, key=pick_key, format_func=lambda i: titles.get(i, str(i)),
                        placeholder="pick one of these items")
    if c2.button("Open in Items", key="alignment_open", disabled=pick is None, icon=":material/open_in_new:"):
        _open_item(ctx, int(pick))


def fusion_section(ctx: Ctx) -> None:
    st.subheader("Complementarity-aware fusion against its baselines (test)")
    res = ctx.derived("fusion_model_results")
    K = res["K"]
    st.caption("A gated score fusion: the mix of the two views is set per item and user from the item's popularity "
               "and its shared / private energy and the user's activity, fitted on validation interactions. It is "
               "evaluated with the same protocol as every other system against the best single view (chosen on "
               "validation), score fusion at the validation α, and the alignment baseline (the collaborative view "
               "fused with the best probe's mapped semantic vectors). Intervals: 95 % bootstrap over test users; "
               "differences: paired bootstrap.")
    verdicts = res["verdicts"]
    if verdicts:
        lines = [v["text"] for m in ("ndcg", "recall") for v in verdicts.get(m, [])]
        st.markdown("\n".join(f"- {md_escape(t)}" for t in lines))
        st.markdown("**In short:** " + md_escape(res["summary"]))
    else:
        st.info("The run stores no paired differences for the fusion models.")
    t = res["table"]
    wide = t[t["k"] == K].pivot_table(index="label", columns="metric", values=["mean", "lo", "hi"], sort=False)
    show = pd.DataFrame(index=wide.index)
    for m in ("recall", "ndcg"):
        if ("mean", m) in wide.columns:
            name = metric_label(m, K)
            show[name] = wide[("mean", m)]
            show[f"{name} 95% CI"] = [f"{lo:.4f} – {hi:.4f}" for lo, hi in zip(wide[("lo", m)], wide[("hi", m)])]
    st.dataframe(show.reset_index().rename(columns={"label": "system"}), hide_index=True, width="stretch",
                 key="alignment_fusion_table",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in show.columns if "CI" not in c})
    d = res["differences"]
    if len(d):
        with st.expander("Paired differences, every cut-off", expanded=False):
            st.dataframe(d.drop(columns=["system_a", "system_b"]).rename(columns={
                "difference": "difference (A − B)", "lo": "95% CI low", "hi": "95% CI high", "p_value": "p-value",
                "significant": "CI excludes 0"}), hide_index=True, width="stretch", key="alignment_fusion_diffs",
                column_config={c: st.column_config.NumberColumn(format="%+.4f")
                               for c in ("difference (A − B)", "95% CI low", "95% CI high")})


def render(ctx: Ctx) -> None:
    st.title("Alignment")
    st.caption("Maps from the semantic to the collaborative item vectors with increasing capacity (reduced-rank linear, "
               "ridge, a one-hidden-layer MLP), fitted on some items and judged on held-out items, in distribution and "
               "under shift. The sidebar's K and segment filter do not change the probes (computed by the engine at "
               f"the run's K = {ctx.run.manifest.get('K', ctx.K)}); the segment filter applies to the item list.")
    if not ctx.derived("has_probes"):
        st.warning(NO_PROBES, icon=":material/info:")
    else:
        probe_section(ctx)
    if ctx.derived("has_fusion_models"):
        fusion_section(ctx)
    elif ctx.derived("has_probes"):
        st.info("This run has no complementarity-aware fusion results; recompute it with `semcollab run ... --force`.")


render(current_ctx())
