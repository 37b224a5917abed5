"""Regimes page: complementarity across the data regimes of a sweep (sibling runs with one
comparison table, ``sweep.parquet``): each view's Recall@K, unique-hit shares, the oracle gain
against its control floor and the best fusion gain as training data get sparser, with the
item cold-start regimes (and their cold-item segment) in a separate panel."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.charts import regimes as charts
from app.charts.style import show
from app.data import regimes as data
from app.jobs import sweep_progress
from app.state import Ctx, current_ctx, discover_runs, follow_sweep, md_escape, run_label, runs_root

SWEEP_CMD = "semcollab sweep --dataset ml-100k --out runs/ml-100k-sweep"


def _open_regime(label: str) -> None:
    """Button callback: select a regime's run in the sidebar."""
    st.session_state["sb_run"] = label


def render(ctx: Ctx) -> None:
    st.title("Regimes")
    st.caption("Complementarity is not a constant of a dataset: it grows as collaborative data get sparser and peaks on "
               "items without interactions. A sweep runs one dataset in several regimes, each tuned on its own "
               "validation data.")
    own = data.sweep_folder_of(ctx.path)
    found = data.sweep_folders(runs_root())
    choices = list(dict.fromkeys(([own] if own else []) + found))
    if not choices:
        root = str(runs_root()).replace("`", "'")
        p = sweep_progress(runs_root())
        if p is not None and p.running:
            follow_sweep("Computing the default regime sweep in the background")
            st.caption("This page fills in when it is done.")
            return
        st.info(f"No sweep found: neither the current run's folder nor any folder under `{root}` holds a "
                "`sweep.parquet`.")
        st.markdown("Make one (ml-100k, regimes keep 100 / 50 / 20 / 10 % and 20 % cold items) with")
        st.code(SWEEP_CMD, language="bash")
        st.markdown("or `make sweep`; then reload this page.")
        return
    root = runs_root()
    folder = st.selectbox("Sweep", choices, key="regimes_folder",
                          format_func=lambda p: run_label(Path(p), root) + (" (current run's sweep)" if p == own else ""))
    table = data.sweep_table(folder, data.sweep_stamp(folder))
    if table.empty:
        st.warning(f"The sweep at {md_escape(folder)} has no regimes.")
        return
    K = int(table["K"].iloc[0])
    show(charts.regimes(table, K), key="regimes_chart", filename="regimes")
    st.caption("Oracle gain = per-user selection oracle − the better view of the pair; control floor = "
               "the same for most-popular + collaborative; only the excess over the floor is complementarity. Fusion gain = "
               "fusion − the best single view chosen on validation. "
               "Cold start follows the standard protocol: the cold items are held out entirely (all their pairs are "
               "test pairs; validation never sees them). Cold-item points (right, top) rank the cold items only "
               f"(Recall@{K} on their test pairs); the table also gives the warm-only ranking.")
    cols = ["regime", "keep_fraction", "cold_item_share", "n_cold_items", "cold_test_share", "best_single",
            "semantic_recall", "semantic_zs_recall", "collab_recall", "fusion_recall", "semantic_unique_share",
            "collab_unique_share", "control_pop_unique_share", "oracle_gain_ndcg", "control_oracle_gain_ndcg",
            "fusion_gain_ndcg", "union_gain_ndcg_other_view", "union_gain_ndcg_raw", "alpha_valid",
            "warm_semantic_recall", "warm_collab_recall", "warm_fusion_recall",
            "cold_semantic_recall", "cold_collab_recall", "cold_fusion_recall"]
    shown = table[[c for c in cols if c in table.columns]]
    st.dataframe(shown, hide_index=True, width="stretch", key="regimes_table",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in shown.columns
                                if c not in ("regime", "n_cold_items", "best_single")})
    runs = discover_runs()
    by_path = {str(p.resolve()): label for label, p in runs.items()}
    openable = {r: by_path[str(Path(p).resolve())] for r, p in zip(table["regime"], table.get("path", table["regime"]))
                if str(Path(p).resolve()) in by_path}
    if openable:
        c1, c2 = st.columns([2, 1])
        pick = c1.selectbox("Open a regime's run", list(openable), key="regimes_pick")
        c2.button("Open in the sidebar", key="regimes_open", on_click=_open_regime, args=(openable[pick],),
                  help="Selects that run in the sidebar's run picker")


render(current_ctx())
