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
import streamlit as st

from app.charts import alignment as charts
from app.charts.style import GREY, show
from app.data import alignment as data
from app.data.alignment import PROBE_LABELS, PROBE_REGIMES, PROBE_SHORT
from app.data.common import metric_label
from app.state import Ctx, current_ctx, md_escape

ITEMS_PAGE = "views/items.py"


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
    K = int(ctx.manifest.get("K", ctx.K))
    curves = data.probe_curves(ctx.key)
    best = data.probe_best(ctx.key)
    psum = data.probe_summary(ctx.key)
    for col, (regime, b) in zip(st.columns(max(len(best), 1)), best.items()):
        col.metric(f"Map chosen on validation · R² · {PROBE_SHORT.get(regime, regime)}", f"{b['r2']:.3f}",
                   help=f"{PROBE_REGIMES.get(regime, regime)}: {PROBE_LABELS.get(b['probe'], b['probe'])} at {b['x']}, "
                        f"chosen by {b['selected_by']}; judged on {b['n_eval']:,} held-out items")
        g = curves[curves["regime"] == regime]
        if len(g) and g["r2"].notna().any():
            top = g.loc[g["r2"].idxmax()]
            col.caption(f"chosen: {md_escape(PROBE_LABELS.get(b['probe'], b['probe']))} at {md_escape(str(b['x']))}; "
                        f"best on held-out items: {md_escape(PROBE_LABELS.get(top['probe'], top['probe']))} at "
                        f"{md_escape(str(top['x']))} (R² {top['r2']:.3f})")
    for regime, why in (psum.get("skipped_regimes") or {}).items():
        st.caption(f"Regime {md_escape(PROBE_SHORT.get(regime, regime))} was skipped: {md_escape(why)}.")
    shared_private_section(curves, psum)
    chance = psum.get("chance_overlap", ctx.manifest.get("chance_overlap", np.nan))
    k = int(psum.get("k_neighbors", ctx.manifest.get("k_neighbors", ctx.k)))
    tabs = st.tabs(["R²", f"Neighbourhood overlap@{k}", f"Recall@{K}"])
    with tabs[0]:
        show(charts.curve_chart(curves, "r2", "R² of the mapped vectors", "R² on held-out items",
                                [("predicting the fitted items' mean", 0.0, GREY, "dot")],
                                "share of the collaborative vectors' variance the map explains"),
             key="alignment_r2", filename="probe_r2")
        st.caption("R² = 1 − ‖Y − f(X)‖² / ‖Y − Ȳ‖² over the held-out items' collaborative vectors: the share of their "
                   "variance each map (semantic → collaborative) explains; 0 = no better than the fitted items' mean.")
    with tabs[1]:
        show(charts.curve_chart(curves, "overlap", f"Overlap@{k} of mapped vs true neighbours",
                                f"overlap@{k} (fraction, 0–1)", [("chance", float(chance), GREY, "dot")],
                                "neighbours of each mapped item among the true vectors of the other items"),
             key="alignment_overlap", filename="probe_overlap")
        st.caption(f"For each held-out item: its {k} nearest items in the true collaborative space against the {k} "
                   "true collaborative vectors nearest to its mapped vector (itself left out). Mapped vectors never "
                   "compete with each other.")
    with tabs[2]:
        recall_tab(curves, K)
    worst_items_section(ctx)


def recall_tab(curves: pd.DataFrame, K: int) -> None:
    """Recall@K within the held-out items; unreadable regimes get their reason instead of a curve."""
    shown, reasons = data.readable_regimes(curves)
    for regime, why in reasons.items():
        st.info(f"Recall@{K} is not drawn for **{md_escape(PROBE_SHORT.get(regime, regime))}**: "
                f"{md_escape(why or 'the ceiling is too small to read')}.", icon=":material/block:")
    if shown.empty:
        return
    refs = []
    for r, g in shown.groupby("regime", sort=False):
        color, name = charts.REGIME_COLORS.get(str(r), GREY), PROBE_SHORT.get(r, r)
        refs.append((f"ceiling ({name}): true collaborative vectors", float(g["ceiling_recall"].iloc[0]), color, "dot"))
        refs.append((f"floor ({name}): random vectors", float(g["floor_recall"].iloc[0]), color, "dashdot"))
    show(charts.curve_chart(shown, "recall", f"Recall@{K} with mapped vectors", f"Recall@{K} (fraction, 0–1)", refs,
                            "held-out items ranked among themselves, by mapped, true (ceiling) or random (floor) "
                            "vectors"), key="alignment_recall", filename="probe_recall")
    st.caption("Each point is one map fitted on the fit items and judged on held-out items. Candidates are the "
               "held-out items only, for the users with a test interaction on one of them (their known history "
               "masked); the mapped, the true (dotted ceiling) and random (dash-dotted floor) vectors of those items "
               "are ranked the same way, so a map that only shrinks the vectors loses nothing. Where the mapped "
               "vectors sit between floor and ceiling is what the map keeps for recommendation.")


def shared_private_section(curves: pd.DataFrame, psum: dict) -> None:
    """The headline: R² on the shared and on the private part of the held-out collaborative vectors."""
    regs = psum.get("regimes") or {}
    dims = {r: int(d["shared_dim"]) for r, d in regs.items() if isinstance(d, dict) and "shared_dim" in d}
    x_order = list(curves.attrs.get("x_order") or curves["x"].drop_duplicates())
    show(charts.probe_shared_private(curves, x_order, dims), key="alignment_shared_private",
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


WORST_COLUMNS = {"probe_residual": st.column_config.NumberColumn("probe residual", format="%.3f"),
                 "col_private": st.column_config.NumberColumn("col. private energy", format="%.2f"),
                 "sem_private": st.column_config.NumberColumn("sem. private energy", format="%.2f"),
                 "disagreement": st.column_config.NumberColumn("disagreement", format="%.2f"),
                 "popularity": st.column_config.NumberColumn("pop.", help="training interactions")}


def worst_items_section(ctx: Ctx) -> None:
    """The items the best probe explains worst; any of them opens the Items drill-down."""
    st.subheader("Items the best map explains worst")
    worst = data.probe_worst_items(ctx.key, 20, ctx.items_sel)
    if worst.empty:
        st.info("No item has a probe residual (every item in the filter is cold).")
        return
    st.caption(f"Top {len(worst)} by probe residual ‖y − f(x)‖² / ‖y − ȳ‖² of "
               f"{md_escape(data.probe_name(worst['probe_best'].iloc[0]))} (cross-fitted, so every warm item "
               f"is held out once; 1 = no better than the mean vector). Click a row or pick an item, then open it. "
               f"{md_escape(ctx.segment_note())}.")
    ids = worst["item_idx"].astype(int).tolist()
    pick_key, table_key = f"alignment_item::{ctx.path}", "alignment_worst"
    st.dataframe(worst.drop(columns=["item_idx", "probe_best"]), hide_index=True, width="stretch", key=table_key,
                 selection_mode="single-row", on_select=lambda: _table_pick(table_key, pick_key, ids),
                 column_config=WORST_COLUMNS)
    titles = dict(zip(ids, worst["title"].astype(str)))
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    pick = c1.selectbox("Item to open", ids, index=None, key=pick_key, format_func=lambda i: titles.get(i, str(i)),
                        placeholder="pick one of these items")
    if c2.button("Open in Items", key="alignment_open", disabled=pick is None, icon=":material/open_in_new:"):
        _open_item(ctx, int(pick))


def _fusion_model_table(res: dict) -> pd.DataFrame:
    """One row per system at K: mean and 95 % interval of Recall@K and NDCG@K."""
    K, t = res["K"], res["table"]
    wide = t[t["k"] == K].pivot_table(index="label", columns="metric", values=["mean", "lo", "hi"], sort=False)
    out = pd.DataFrame(index=wide.index)
    for m in ("recall", "ndcg"):
        if ("mean", m) in wide.columns:
            name = metric_label(m, K)
            out[name] = wide[("mean", m)]
            out[f"{name} 95% CI"] = [f"{lo:.4f} – {hi:.4f}" for lo, hi in zip(wide[("lo", m)], wide[("hi", m)])]
    return out.reset_index().rename(columns={"label": "system"})


def fusion_section(ctx: Ctx) -> None:
    st.subheader("Complementarity-aware fusion against its baselines (test)")
    res = data.fusion_model_results(ctx.key)
    best = res["best_single"]
    st.caption("A gated score fusion: the mix of the two views is set per item and user from the item's popularity "
               "and its shared / private energy and the user's activity, fitted on validation interactions. It is "
               "evaluated with the same protocol as every other system against the best single view (chosen on "
               f"validation: {md_escape(res['labels'].get(best, best))}), score fusion at the validation α, and the "
               "alignment baseline (the collaborative view fused with the best probe's mapped semantic vectors). "
               "Intervals: 95 % bootstrap over test users; differences: paired bootstrap.")
    lines = [v["text"] for m in ("ndcg", "recall") for v in res["verdicts"].get(m, [])]
    if lines:
        st.markdown("\n".join(f"- {md_escape(t)}" for t in lines))
        st.markdown("**In short:** " + md_escape(res["summary"]))
    else:
        st.info("The run stores no paired differences for the fusion models.")
    show_t = _fusion_model_table(res)
    st.dataframe(show_t, hide_index=True, width="stretch", key="alignment_fusion_table",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in show_t.columns
                                if c != "system" and "CI" not in c})
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
               f"the run's K = {ctx.manifest.get('K', ctx.K)}); the segment filter applies to the item list.")
    probe_section(ctx)
    fusion_section(ctx)


render(current_ctx())
