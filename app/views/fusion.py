"""Fusion page: the fusion-gain curve M(α) on validation and test against the single views, RRF,
the oracle bounds and their control floor; the α chosen on validation; the share of the oracle
headroom the fusion realises (against the run's best single view, chosen on validation);
per-segment curves; and the paired-bootstrap differences."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import fusion as charts
from app.charts.style import fmt, show
from app.data import fusion as data
from app.data.common import METRIC_NAMES, metric_label
from app.state import Ctx, current_ctx, md_escape


def controls(ctx: Ctx) -> tuple[str, int]:
    """Metric and cut-off of the curves."""
    ks = sorted({int(k) for k in (ctx.manifest.get("ks") or [ctx.K])})
    c1, c2, c3 = st.columns([1, 1, 2])
    metric = c1.selectbox("Metric", ["ndcg", "recall", "hit"], format_func=lambda m: METRIC_NAMES[m], key="fusion_metric",
                          help="Metric of the fusion-gain curve (the engine chose α on validation NDCG@K)")
    k = c2.selectbox("Cut-off K", ks, index=ks.index(ctx.K) if ctx.K in ks else len(ks) - 1, key="fusion_k")
    c3.caption(f"Score fusion s = α·norm(s_sem) + (1 − α)·norm(s_col), per-user min-max over the catalogue. "
               f"Compared views: {md_escape(ctx.sem)} (semantic, α = 1) and {md_escape(ctx.col)} (collaborative, α = 0). "
               "Cold-aware fusion ranks items one view cannot score by the other view alone. "
               "The sidebar's segment filter does not apply here: the curves are the engine's, over all users.")
    return metric, int(k)


def headline_cards(info: dict[str, Any], hr: dict[str, Any], name: str, ex: dict[str, Any] | None, K: int) -> None:
    """α and method chosen on validation, the oracle's excess over the control floor, and the headroom
    the fusion realises (against the best single view chosen on validation)."""
    m1, m2, m3 = st.columns(3)
    m1.metric("α chosen on validation", f"{info['alpha_valid']:.2f}",
              help=f"Best validation {info['metric'] or 'NDCG@K'}; α = weight of the semantic view")
    m2.metric("Fusion method", {"cold_aware": "cold-aware", "score": "plain"}.get(info["method"], info["method"]),
              help=f"{data.METHOD_LABELS.get(info['method'], info['method'])}: plain vs cold-aware blending, also "
                   "chosen on validation")
    h = hr["headroom"]
    if ex is not None:
        word = "evidence" if ex["lo"] > 0 else "no evidence (interval includes 0)" if ex["hi"] >= 0 else "below the floor"
        m3.metric(f"Oracle excess over the floor · NDCG@{K}", f"{ex['value']:+.3f}",
                  help="Per-user-selection oracle gain of semantic + collaborative minus the same gain of the control "
                       "pair (most-popular + collaborative); 95 % bootstrap interval over test users")
        m3.caption(f"oracle gain {ex['gain']:.3f} vs floor {ex['control_gain']:.3f} → excess {ex['value']:+.3f} "
                   f"[{ex['lo']:+.3f}, {ex['hi']:+.3f}]: {word}")
    st.caption(f"Test {name}: fusion {fmt(hr['fused'])}, best single view (chosen on validation) "
               f"{md_escape(hr['best_label'])} {fmt(hr['best_value'])}, per-user selection oracle {fmt(hr['oracle'])} "
               f"→ headroom realised {'n/a (no headroom)' if not np.isfinite(h) else format(h, '.1%')}.")


def union_caption(ctx: Ctx) -> None:
    ug = data.union_oracle_gain(ctx.key)
    st.caption(f"Union pool (every hit of both lists placed first), NDCG@{ctx.manifest.get('K', ctx.K)}: "
               f"{fmt(ug['union_ndcg'])}. The better view ({md_escape(ug['better_view'])}) with its own hits placed "
               f"first already reaches {fmt(ug['best_hits_first_ndcg'])}, so the other view adds "
               f"**{ug['gain_other_view']:+.4f}** (95 % interval {ug['lo']:+.4f} to {ug['hi']:+.4f}); the raw gain over "
               f"the ranked list, {ug['gain_raw']:+.4f}, is mostly re-ordering.")


def curves_section(curves: pd.DataFrame, refs: pd.DataFrame, info: dict[str, Any], metric: str, k: int) -> None:
    tabs = st.tabs(["Test", "Validation"])
    for holder, part in ((tabs[0], "test"), (tabs[1], "valid")):
        r = refs[(refs["part"] == part) & (refs["key"] == "fusion")]
        fused = float(r["value"].iloc[0]) if len(r) else None
        with holder:
            show(charts.fusion_gain(curves, refs, part, metric, k, info["alpha_valid"], info["method"], fused),
                 key=f"fusion_curve_{part}", filename=f"fusion_gain_{part}_{metric}{k}")
    with st.expander("Reference values", expanded=False):
        st.dataframe(refs[["part", "label", "system", "value", "lo", "hi", "source"]], hide_index=True, width="stretch",
                     key="fusion_refs_table",
                     column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("value", "lo", "hi")})
    st.caption("Endpoints of the plain curve equal the single views exactly. Read the oracle gain against the control "
               "floor (most-popular + collaborative): only the excess is complementarity.")


def segments_section(curves: pd.DataFrame, info: dict[str, Any], metric: str, k: int) -> None:
    st.subheader("Per-segment curves (test)")
    seg_methods = [m for m in ("cold_aware", "score") if ((curves["method"] == m) & (curves["segment_type"] != "all")).any()]
    if not seg_methods:
        st.info("The run's fusion table has no per-segment curves.")
        return
    method = info["method"]
    seg_method = st.radio("Fusion method of the segment curves", seg_methods,
                          index=seg_methods.index(method) if method in seg_methods else 0, horizontal=True,
                          format_func=lambda m: data.METHOD_LABELS[m], key="fusion_seg_method")
    for holder, seg_type in zip(st.columns(2), ("item_pop", "user_activity")):
        with holder:
            if ((curves["segment_type"] == seg_type) & (curves["method"] == seg_method)).any():
                show(charts.segment_curves(curves, seg_type, metric, k, info["alpha_valid"], seg_method),
                     key=f"fusion_seg_{seg_type}", filename=f"fusion_by_{seg_type}_{metric}{k}")
            else:
                st.info(f"No {seg_type} segments for this method.")


def differences_section(ctx: Ctx, k: int, name: str) -> None:
    st.subheader("Paired-bootstrap differences (test)")
    diffs = data.fusion_differences(ctx.key, k)
    if diffs.empty:
        st.info(f"The run stores no paired differences at K={k}.")
        return
    head = diffs[diffs["fusion_vs_best"] & (diffs["metric"] == name)]
    if len(head):
        h = head.iloc[0]
        verdict = "significant at the 5 % level" if h["significant"] else "not significant at the 5 % level"
        st.markdown(f"**{md_escape(h['comparison'])}**, {md_escape(name)}: {h['difference']:+.4f} "
                    f"(95 % interval {h['lo']:+.4f} to {h['hi']:+.4f}, p = {h['p_value']:.3g}) — {verdict}.")
    table = diffs.drop(columns=["system_a", "system_b"]).rename(columns={
        "difference": "difference (A − B)", "lo": "95% CI low", "hi": "95% CI high", "p_value": "p-value",
        "n_users": "users", "significant": "CI excludes 0", "fusion_vs_best": "fusion vs best single"})
    st.dataframe(table, hide_index=True, width="stretch", key="fusion_diffs",
                 column_config={"difference (A − B)": st.column_config.NumberColumn(format="%+.4f"),
                                "95% CI low": st.column_config.NumberColumn(format="%+.4f"),
                                "95% CI high": st.column_config.NumberColumn(format="%+.4f"),
                                "p-value": st.column_config.NumberColumn(format="%.4f")})
    st.caption("Paired bootstrap over test users; the best single system is the one chosen on validation.")


def render(ctx: Ctx) -> None:
    st.title("Fusion")
    info = data.fusion_info(ctx.key)
    metric, k = controls(ctx)
    name = metric_label(metric, k)
    curves = data.fusion_curves(ctx.key, metric, k)
    if curves.empty:
        st.warning(f"The run's fusion table has no {name} curve.")
        return
    refs = data.fusion_references(ctx.key, metric, k)
    headline_cards(info, data.fusion_headroom(ctx.key, metric, k), name, data.oracle_excess(ctx.key), ctx.K)
    union_caption(ctx)
    curves_section(curves, refs, info, metric, k)
    segments_section(curves, info, metric, k)
    differences_section(ctx, k, name)


render(current_ctx())
