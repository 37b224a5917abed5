"""Structure page: how many factors the two views share, how much of each view they carry, and
how similar the two spaces are globally — each against its null.

DIAGNOSTICS.md, "Global similarity of the two spaces" and "Shared + private structure":
held-out canonical correlations against their permutation null (with the in-sample ones drawn
faintly, because in-sample CCA looks convincing even for independent views), the AJIVE joint
rank (σ² of the stacked score bases against the Wedin and random-direction bounds), the shared /
private share of each view's variance, the global similarity scores (CKA, debiased CKA,
Procrustes distance) with their permutation nulls in plain words, and the semantic (or
collaborative) map coloured by each item's shared energy.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app.charts import structure as charts
from app.charts.maps import item_map
from app.charts.style import show
from app.data import structure as data
from app.data.common import item_frame
from app.data.maps import map_sample
from app.state import Ctx, current_ctx, md_escape


def cards(cca: dict[str, Any], aj: dict[str, Any], var: pd.DataFrame, sim: pd.DataFrame) -> None:
    vv = var.set_index("view")
    dc = sim[(sim["statistic"] == "debiased_cka") & (sim["variant"] == "raw")]
    m = st.columns(5)
    m[0].metric("Shared dim. · CCA", f"{cca['shared_dim']}",
                help="leading canonical components whose held-out correlation beats the permutation null's 95th "
                     f"percentile ({cca['n_significant']} components beat it in all)")
    m[1].metric("Joint rank · AJIVE", f"{aj['joint_rank']}",
                help="directions of the stacked score bases with σ² above the Wedin and random-direction bounds")
    for col, view in zip(m[2:4], ("semantic", "collaborative")):
        col.metric(f"Shared var. · {view[:3]}.", f"{vv.loc[view, 'shared']:.1%}" if view in vv.index else "n/a",
                   help=f"share of the {view} view's variance in the AJIVE joint subspace")
    if len(dc):
        r = dc.iloc[0]
        m[4].metric("Debiased CKA", f"{r['raw']:.3f}", help=f"null mean {r['null_mean']:.3f}, p = {r['p_value']:.2g}")


def cca_ajive_charts(cca: dict[str, Any], aj: dict[str, Any]) -> None:
    left, right = st.columns(2)
    with left:
        t = cca["table"]
        show(charts.cca_chart(t), key="structure_cca", filename="heldout_cca")
        n_tr, n_te = cca.get("n_train"), cca.get("n_test")
        sizes = f" (fitted on {n_tr:,} items, scored on {n_te:,})" if isinstance(n_tr, int) and isinstance(n_te, int) else ""
        faint = t[~t["significant"].astype(bool)]
        example = ""
        if len(faint):
            f = faint.iloc[0]
            example = (f" Component {int(f['component'])}, for instance, correlates {f['train_corr']:.2f} in sample but "
                       f"{f['heldout_corr']:.2f} held out.")
        st.caption(f"{cca['n_significant']} of {len(t)} components beat the null held out{sizes}; the first "
                   f"{cca['shared_dim']} in a row do, which is the shared dimension. The faint line is the in-sample "
                   f"correlation: it stays high where nothing is shared.{example}")
    with right:
        show(charts.ajive_chart(aj["table"]), key="structure_ajive", filename="ajive_joint_rank")
        sr = ""
        if aj.get("signal_rank_sem") is not None and aj.get("signal_rank_col") is not None:
            sr = (f" Signal ranks kept per view: semantic {aj['signal_rank_sem']}, collaborative "
                  f"{aj['signal_rank_col']}.")
        st.caption(f"Joint rank {aj['joint_rank']}: directions with σ² above both the Wedin bound "
                   f"({aj['wedin_bound']:.3f}) and the random-direction bound ({aj['random_bound']:.3f}).{sr}")


def similarity_section(sim: pd.DataFrame) -> None:
    st.subheader("Global similarity of the two spaces")
    st.markdown("\n".join(f"- {md_escape(s)}" for s in sim["reading"]))
    table = sim[["measure", "variant_label", "raw", "null_mean", "null_lo", "null_hi", "p_value", "verdict", "n_items",
                 "n_perm"]]
    st.dataframe(table.rename(columns={"variant_label": "variant", "raw": "value", "null_mean": "null mean",
                                       "null_lo": "null 2.5 %", "null_hi": "null 97.5 %", "p_value": "p-value",
                                       "n_items": "items", "n_perm": "shuffles"}),
                 hide_index=True, width="stretch", key="structure_similarity", height=38 + 35 * len(table),
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in ("value", "null mean", "null 2.5 %", "null 97.5 %", "p-value")})
    st.caption("CKA: 0 = unrelated, 1 = identical up to rotation and scale; Procrustes distance: 0 = identical up to "
               "rotation and scale, 2 = maximally different. The null is the same statistic with the item pairing "
               "shuffled; p = (1 + shuffles at least as extreme) / (1 + shuffles). Debiased CKA is the one to read: "
               "biased CKA is inflated when the dimension is large next to the number of items. Removing each view's "
               "top principal component (often popularity) checks that one shared heavy-tailed factor is not the "
               "whole story.")


def energy_map(ctx: Ctx) -> None:
    st.subheader("Where the shared part lives")
    view = st.radio("Map", ["semantic", "collaborative"], horizontal=True, key="structure_view",
                    format_func=lambda v: f"{v} map, coloured by the item's {v} shared energy")
    tag = "sem" if view == "semantic" else "col"
    df = item_frame(ctx.key, ctx.K, ctx.k, ctx.users_sel)
    col = f"{tag}_shared"
    keep = ctx.item_mask(df) & df[col].notna().to_numpy() & df["item_idx"].isin(map_sample(ctx.key)).to_numpy()
    plot_df = df[keep]
    fig = item_map(plot_df, f"{tag}_x", f"{tag}_y", view, col, f"shared energy, {view} view (0–1)", categorical=False,
                   source=df.attrs.get("map_source", {}).get(view, "UMAP"))
    show(fig, key="structure_map", filename=f"{view}_map_shared_energy")
    st.caption(f"Shared energy of an item = share of its centred {view} vector in the AJIVE joint subspace (the rest "
               f"is private to the view). Showing {len(plot_df):,} items; {int(df[col].isna().sum()):,} items (cold) "
               f"have no energy. {md_escape(ctx.segment_note())}.")


def render(ctx: Ctx) -> None:
    st.title("Structure")
    st.caption("Do the two views share factors, how many, and how much of each view do they carry? Every number is "
               "read against a null: what the same statistic gives when the pairing of items across the views is "
               "shuffled. Computed by the engine over the items both views can place (cold items are left out); the "
               "sidebar's K and segment filter do not change them, except on the map.")
    cca, aj = data.cca_summary(ctx.key), data.ajive_summary(ctx.key)
    var, sim = data.variance_frame(ctx.key), data.similarity_frame(ctx.key)
    cards(cca, aj, var, sim)
    cca_ajive_charts(cca, aj)
    show(charts.variance_chart(var), key="structure_variance", filename="shared_private_variance")
    similarity_section(sim)
    energy_map(ctx)


render(current_ctx())
