"""Fusion page: the fusion-gain curve M(α) on validation and test against the single views, RRF,
the oracle bounds and their control floor; the α chosen on validation; the share of the oracle
headroom the fusion realises; per-segment curves; and the paired-bootstrap differences."""
from __future__ import annotations

import numpy as np
import streamlit as st

from app import charts, charts_more
from app.common import Ctx, current_ctx, md_escape
from app.derive_more import METHOD_LABELS, METRIC_LABELS, metric_label

fmt = charts_more.fmt


def render(ctx: Ctx) -> None:
    run = ctx.run
    st.title("Fusion")
    info = ctx.derived("fusion_info")
    alpha, method = info["alpha_valid"], info["method"]
    ks = sorted({int(k) for k in (run.manifest.get("ks") or [ctx.K])})
    c1, c2, c3 = st.columns([1, 1, 2])
    metric = c1.selectbox("Metric", ["ndcg", "recall", "hit"], format_func=lambda m: METRIC_LABELS[m], key="fusion_metric",
                          help="Metric of the fusion-gain curve (the engine chose α on validation NDCG@K)")
    k = c2.selectbox("Cut-off K", ks, index=ks.index(ctx.K) if ctx.K in ks else len(ks) - 1, key="fusion_k")
    c3.caption(f"Score fusion s = α·norm(s_sem) + (1 − α)·norm(s_col), per-user min-max over the catalogue. "
               f"Compared views: {md_escape(ctx.sem)} (semantic, α = 1) and {md_escape(ctx.col)} (collaborative, α = 0). "
               "Cold-aware fusion ranks items one view cannot score by the other view alone. "
               "The sidebar's segment filter does not apply here: the curves are the engine's, over all users.")
    name = metric_label(metric, k)
    curves = ctx.derived("fusion_curves", metric, k)
    refs = ctx.derived("fusion_references", metric, k)
    hr = ctx.derived("fusion_headroom", metric, k)
    if curves.empty:
        st.warning(f"The run's fusion table has no {name} curve.")
        return

    m1, m2, m3, m4 = st.columns(4)
    m1.metric("α chosen on validation", f"{alpha:.2f}",
              help=f"Best validation {info['metric'] or 'NDCG@K'}; α = weight of the semantic view")
    m2.metric("Fusion method", {"cold_aware": "cold-aware", "score": "plain"}.get(method, method),
              help=f"{METHOD_LABELS.get(method, method)}: plain vs cold-aware blending, also chosen on validation")
    m3.metric(f"Headroom · {name}", "n/a" if not np.isfinite(hr["headroom"]) else f"{hr['headroom']:.1%}",
              help="Share of the oracle headroom realised on test: (M_fusion − M_best single) / "
                   "(M_oracle − M_best single), oracle = per-user view selection")
    m4.metric(f"Headroom · NDCG@{run.manifest.get('K', ctx.K)} (run)",
              "n/a" if not np.isfinite(hr["stored_ndcg"]) else f"{hr['stored_ndcg']:.1%}",
              help="As the engine recorded it in the run summary (best single system chosen on validation: "
                   f"{hr['stored_best_single']})")
    if hr["best_single"]:
        st.caption(f"Test {name}: fusion {fmt(hr['fused'])}, best compared view {md_escape(hr['best_single'])} "
                   f"{fmt(hr['best_value'])}, per-user selection oracle {fmt(hr['oracle'])} → headroom realised "
                   f"{'n/a (no headroom)' if not np.isfinite(hr['headroom']) else format(hr['headroom'], '.1%')}.")

    ug = ctx.derived("union_oracle_gain")
    K_run = run.manifest.get("K", ctx.K)
    st.caption(f"Union pool (every hit of both lists placed first), NDCG@{K_run}: {fmt(ug['union_ndcg'])}. "
               f"The better view ({md_escape(ug['better_view'])}) with its own hits placed first already reaches "
               f"{fmt(ug['best_hits_first_ndcg'])}, so the other view adds **{ug['gain_other_view']:+.4f}** "
               f"(95 % interval {ug['lo']:+.4f} to {ug['hi']:+.4f}); the raw gain over the ranked list, "
               f"{ug['gain_raw']:+.4f}, is mostly re-ordering.")

    tabs = st.tabs(["Test", "Validation"])
    for holder, part in ((tabs[0], "test"), (tabs[1], "valid")):
        r = refs[(refs["part"] == part) & (refs["key"] == "fusion")]
        fused = float(r["value"].iloc[0]) if len(r) else None
        with holder:
            charts.show(charts_more.fusion_gain(curves, refs, part, metric, k, alpha, method, fused),
                        key=f"fusion_curve_{part}", filename=f"fusion_gain_{part}_{metric}{k}")
    with st.expander("Reference values", expanded=False):
        st.dataframe(refs[["part", "label", "system", "value", "lo", "hi", "source"]], hide_index=True, width="stretch",
                     key="fusion_refs_table",
                     column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("value", "lo", "hi")})
    st.caption("Endpoints of the plain curve equal the single views exactly. Read the oracle gain against the control "
               "floor (most-popular + collaborative): only the excess is complementarity.")

    st.subheader("Per-segment curves (test)")
    seg_methods = [m for m in ("cold_aware", "score")
                   if ((curves["method"] == m) & (curves["segment_type"] != "all")).any()]
    if not seg_methods:
        st.info("The run's fusion table has no per-segment curves.")
    else:
        default = seg_methods.index(method) if method in seg_methods else 0
        seg_method = st.radio("Fusion method of the segment curves", seg_methods, index=default, horizontal=True,
                              format_func=lambda m: METHOD_LABELS[m], key="fusion_seg_method")
        s1, s2 = st.columns(2)
        for holder, seg_type in ((s1, "item_pop"), (s2, "user_activity")):
            with holder:
                if ((curves["segment_type"] == seg_type) & (curves["method"] == seg_method)).any():
                    charts.show(charts_more.segment_curves(curves, seg_type, metric, k, alpha, seg_method),
                                key=f"fusion_seg_{seg_type}", filename=f"fusion_by_{seg_type}_{metric}{k}")
                else:
                    st.info(f"No {seg_type} segments for this method.")

    st.subheader("Paired-bootstrap differences (test)")
    diffs = ctx.derived("fusion_differences", k)
    if diffs.empty:
        st.info(f"The run stores no paired differences at K={k}.")
        return
    head = diffs[diffs["fusion_vs_best"] & (diffs["metric"] == name)]
    if len(head):
        h = head.iloc[0]
        verdict = "significant at the 5 % level" if h["significant"] else "not significant at the 5 % level"
        st.markdown(f"**{md_escape(h['comparison'])}**, {md_escape(name)}: {h['difference']:+.4f} "
                    f"(95 % interval {h['lo']:+.4f} to {h['hi']:+.4f}, p = {h['p_value']:.3g}) — {verdict}.")
    show = diffs.drop(columns=["system_a", "system_b"]).rename(columns={
        "difference": "difference (A − B)", "lo": "95% CI low", "hi": "95% CI high", "p_value": "p-value",
        "n_users": "users", "significant": "CI excludes 0", "fusion_vs_best": "fusion vs best single"})
    st.dataframe(show, hide_index=True, width="stretch", key="fusion_diffs",
                 column_config={"difference (A − B)": st.column_config.NumberColumn(format="%+.4f"),
                                "95% CI low": st.column_config.NumberColumn(format="%+.4f"),
                                "95% CI high": st.column_config.NumberColumn(format="%+.4f"),
                                "p-value": st.column_config.NumberColumn(format="%.4f")})
    st.caption("Paired bootstrap over test users; the best single system is the one chosen on validation.")


render(current_ctx())
