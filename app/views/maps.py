"""Maps page: the semantic and collaborative 2-D item maps side by side, linked.

A clicked point, box or lasso selection in one map highlights the same items (by ``item_idx``,
carried in each point's ``customdata``) in the other map and lists them in a table with CSV
download. Items can be coloured by disagreement, popularity, genre, hit type or any item column,
searched by title / id (highlight + zoom), and filtered by a disagreement range. Above
``MAX_POINTS`` items the maps draw a stratified sample and say so.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import maps as charts
from app.charts.style import HIT_COLORS, OKABE_ITO, POP_BUCKET_COLORS, show
from app.data import maps as data
from app.state import Ctx, current_ctx, md_escape

#: above this many items the maps draw a stratified sample (``$SEMCOLLAB_MAX_MAP_POINTS`` overrides)
MAX_POINTS = int(os.environ.get("SEMCOLLAB_MAX_MAP_POINTS") or data.MAX_POINTS)
SEL, SRC, FOCUS = "maps_sel", "maps_sel_src", "maps_focus"
#: (query, item) last jumped to from a single search match (so a later click elsewhere is not undone)
SINGLE = "maps_single_match"
MAP_KEYS = {"semantic": "maps_sem", "collaborative": "maps_col"}
_SKIP = {"item_idx", "item_id", "title", "description", "text", "label", "genres", "sem_x", "sem_y", "col_x", "col_y",
         "hit_type", "primary_genre", "pop_bucket", "cold", "disagreement", "popularity"}


def color_options(df: pd.DataFrame, k: int, K: int) -> dict[str, tuple[str, bool, dict | None, bool]]:
    """label -> (column, categorical, category colours, log scale)."""
    opts: dict[str, tuple[str, bool, dict | None, bool]] = {
        f"disagreement@{k}": ("disagreement", False, None, False),
        "popularity (train interactions, log scale)": ("popularity", False, None, True),
        "primary genre": ("primary_genre", True, None, False),
        f"hit type at K={K}": ("hit_type", True, HIT_COLORS, False),
        "popularity bucket": ("pop_bucket", True, POP_BUCKET_COLORS, False),
        "cold (no training interactions)": ("cold", True, {"False": OKABE_ITO["blue"], "True": OKABE_ITO["vermillion"]},
                                            False),
    }
    for c in df.columns:
        if c in _SKIP:
            continue
        s = df[c]
        if pd.api.types.is_bool_dtype(s) or (not pd.api.types.is_numeric_dtype(s) and s.nunique(dropna=True) <= 20):
            opts[f"column: {c}"] = (c, True, None, False)
        elif pd.api.types.is_numeric_dtype(s):
            opts[f"column: {c}"] = (c, False, None, False)
    return opts


def _selection_callback(view: str):
    def cb() -> None:
        event = st.session_state.get(MAP_KEYS[view]) or {}
        points = (event.get("selection") or {}).get("points") or []
        ids = sorted({int(p["customdata"][0]) for p in points if p.get("customdata") is not None})
        st.session_state[SEL] = ids
        st.session_state[SRC] = view
    return cb


def _clear() -> None:
    st.session_state[SEL] = []
    st.session_state[FOCUS] = None


def _set_focus(key: str) -> None:
    st.session_state[FOCUS] = st.session_state.get(key)


def controls(df: pd.DataFrame, opts: dict) -> str:
    """Colour, search (with the matches to jump to) and clear; returns the chosen colour option."""
    c1, c2, c3, c4 = st.columns([2, 2, 3, 1], vertical_alignment="bottom")
    color_label = c1.selectbox("Colour by", list(opts), key="maps_color")
    query = c2.text_input("Find an item (title or id)", key="maps_query", placeholder="e.g. a word of the title")
    if query:
        matches = data.search(df, query)
        pick_key = f"maps_pick::{query.strip()}"
        titles = dict(zip(matches["item_idx"].astype(int), matches["title"].astype(str)))
        ids = dict(zip(matches["item_idx"].astype(int), matches["item_id"].astype(str)))
        if len(matches) == 1:  # one match: straight to it
            only = int(matches["item_idx"].iloc[0])
            if st.session_state.get(SINGLE) != (query.strip(), only):
                st.session_state[SINGLE], st.session_state[FOCUS] = (query.strip(), only), only
            c3.caption(f"1 match: {md_escape(titles[only])} — {md_escape(ids[only])}")
        elif len(matches):
            c3.selectbox(f"{len(matches)} match(es){' (first 50)' if len(matches) == 50 else ''}", list(titles),
                         index=None, key=pick_key, placeholder="pick one to jump to it",
                         format_func=lambda i: f"{titles[i]} — {ids[i]}", on_change=_set_focus, args=(pick_key,))
        else:
            c3.caption("no match")
    c4.button("Clear", key="maps_clear", on_click=_clear, help="Clear the selection and the found item")
    return color_label


def visible_items(ctx: Ctx, df: pd.DataFrame) -> np.ndarray:
    """The disagreement-range slider and its histogram; returns the mask of items in the filter and range."""
    k, dis = ctx.k, df["disagreement"]
    lo, hi = st.slider(f"Disagreement@{k} range shown on the maps", 0.0, 1.0, (0.0, 1.0), step=0.05,
                       key="maps_range", help="Items without a disagreement (cold items) are shown only for the full range")
    in_range = dis.between(lo, hi).to_numpy() | ((lo <= 0.0 and hi >= 1.0) & dis.isna().to_numpy())
    show(charts.disagreement_hist(dis[ctx.item_mask(df)], lo, hi, k, df.attrs.get("chance", np.nan)),
         key="maps_hist", filename="disagreement_histogram")
    return ctx.item_mask(df) & in_range


def _sample_note(ps, n_drawn: int, n_vis: int) -> str:
    """What the maps draw above the point budget, in the numbers of :func:`analysis.projection.plot_sample`."""
    per = " · ".join(f"{b} {c['drawn']:,} of {c['items']:,}" for b, c in ps.strata.items() if c["items"])
    if ps.mode == "tail_cold_whole":
        how = ("a sample that keeps every tail and cold item and a stratified sample of the head and torso "
               "(each popularity decile at the same rate)")
    else:
        how = "a stratified sample: head, torso, tail and cold kept in proportion (within popularity deciles)"
    return (f"Showing {n_drawn:,} of {n_vis:,} items: above {ps.budget:,} items the maps draw {how}; selected and "
            f"found items are always drawn. Sample per popularity bucket (before the filters above): {per}.")


def _fit_note(key) -> str | None:
    """How the run's UMAP was fitted, when it used a sample (``manifest["maps"]``)."""
    rep = data.fit_report(key) or {}
    views = [(v, rep[v]) for v in ("semantic", "collaborative") if isinstance(rep.get(v), dict)]
    sampled = [f"{v}: fitted on {r['n_fit']:,} of {r['n_valid']:,} items, {r['n_transformed']:,} placed by transform"
               for v, r in views if r.get("method") == "umap_sample_transform"]
    if not sampled:
        return None
    return ("UMAP was fitted on a seeded stratified sample (head / torso / tail / cold in proportion) and the other "
            "items were placed by UMAP's transform — " + "; ".join(sampled) + ".")


def drawn_frame(ctx: Ctx, df: pd.DataFrame, visible: np.ndarray, selected: list[int], focus: int | None) -> pd.DataFrame:
    """The items drawn (a stratified sample of large catalogues, plus the selected and found items), with a note."""
    keep = tuple(sorted(set(selected) | ({int(focus)} if focus is not None else set())))
    ps = data.map_plot_sample(ctx.key, MAX_POINTS, keep)
    plot_df, n_vis = df[visible & df["item_idx"].isin(ps.items).to_numpy()], int(visible.sum())
    if ps.mode != "all":
        st.info(_sample_note(ps, len(plot_df), n_vis))
    else:
        st.caption(f"{n_vis:,} of {len(df):,} items shown; {int(df['col_x'].isna().sum()):,} items have no "
                   "collaborative position (cold items).")
    fit = _fit_note(ctx.key)
    if fit:
        st.caption(fit)
    pca = [v for v, src in df.attrs.get("map_source", {}).items() if src == "PCA"]
    if pca:
        st.info(f"This run has no UMAP layout for the {' and '.join(pca)} view (made with UMAP off): "
                "those maps show the first two principal components of the view's item vectors instead.")
    return plot_df


def draw_maps(df: pd.DataFrame, plot_df: pd.DataFrame, option: tuple, color_label: str, selected: list[int],
              focus: int | None) -> None:
    column, categorical, cat_colors, log_color = option
    short = color_label.replace("column: ", "")
    left, right = st.columns(2)
    for holder, view, xc, yc in ((left, "semantic", "sem_x", "sem_y"), (right, "collaborative", "col_x", "col_y")):
        fig = charts.item_map(plot_df, xc, yc, view, column, short, categorical, selected=selected, focus=focus,
                              category_colors=cat_colors, log_color=log_color,
                              source=df.attrs.get("map_source", {}).get(view, "UMAP"))
        with holder:
            show(fig, key=MAP_KEYS[view], filename=f"{view}_map", on_select=_selection_callback(view))
    if focus is not None and focus in set(df["item_idx"]):
        f = df[df["item_idx"] == focus].iloc[0]
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.caption(f"Found item: {md_escape(f['title'])} ({md_escape(f['item_id'])}) — starred, labelled and zoomed in "
                   "both maps.")
        c2.page_link("views/items.py", label="Open in Items", icon=":material/open_in_new:",
                     query_params={"item": str(f["item_id"])})


def selection_table(ctx: Ctx, df: pd.DataFrame, selected: list[int]) -> None:
    st.subheader("Selection")
    if not selected:
        st.caption("Nothing selected yet: click a point or draw a box / lasso on either map.")
        return
    k, K = ctx.k, ctx.K
    src = st.session_state.get(SRC) or "?"
    table = df[df["item_idx"].isin(selected)]
    cols = ["item_id", "title", "popularity", "pop_bucket", "genres", "cold", "overlap", "disagreement", "hit_type",
            "hits_shared", "hits_sem_only", "hits_col_only", "hits_missed_by_both"]
    table = table[[c for c in cols if c in table.columns]].sort_values("disagreement", ascending=False)
    st.caption(f"{len(table):,} item(s) selected in the {md_escape(src)} map; overlap / disagreement at k={k}, "
               f"hits at K={K}.")
    top = table.iloc[0]  # the most disagreeing selected item
    st.page_link("views/items.py", label=f"Open {md_escape(str(top['title']))} in Items (the most disagreeing selected item)",
                 icon=":material/open_in_new:", query_params={"item": str(top["item_id"])})
    st.dataframe(table, hide_index=True, width="stretch", key="maps_table",
                 column_config={"overlap": st.column_config.NumberColumn(f"overlap@{k}", format="%.2f"),
                                "disagreement": st.column_config.NumberColumn(f"disagreement@{k}", format="%.2f")})
    st.download_button("Download the selection (CSV)", table.to_csv(index=False).encode("utf-8"),
                       file_name="semcollab_selection.csv", mime="text/csv", key="maps_download")


def render(ctx: Ctx) -> None:
    st.title("Maps")
    st.caption("Each point is an item, placed by a 2-D layout (UMAP) of the view's item vectors (positions are for looking, not "
               "measuring: neighbourhoods and disagreement are computed in the original vectors). Click a point or "
               "draw a box / lasso in either map: the same items are ringed in the other map and listed below. "
               f"{md_escape(ctx.segment_note())}.")
    df = data.item_frame(ctx.key, ctx.K, ctx.k, ctx.users_sel)
    st.session_state.setdefault(SEL, [])
    st.session_state.setdefault(FOCUS, None)
    wanted = st.query_params.get("item")  # a link from another page (?item=<item_id>): found once
    if wanted is not None and st.session_state.get("maps_linked") != wanted:
        st.session_state["maps_linked"] = wanted
        match = df.loc[df["item_id"].astype(str) == wanted, "item_idx"]
        if len(match):
            st.session_state[FOCUS] = int(match.iloc[0])
    opts = color_options(df, ctx.k, ctx.K)
    color_label = controls(df, opts)
    visible = visible_items(ctx, df)
    selected = [int(i) for i in st.session_state[SEL]]
    focus = st.session_state[FOCUS]
    plot_df = drawn_frame(ctx, df, visible, selected, focus)
    draw_maps(df, plot_df, opts[color_label], color_label, selected, focus)
    selection_table(ctx, df, selected)


render(current_ctx())
