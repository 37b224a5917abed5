"""Items page: items ranked by disagreement, and a drill-down of one item.

The drill-down lists the item's neighbours in each view (from the run's ``neighbors`` table),
split into shared / semantic-only / collaborative-only, and the test users for whom it was a hit
and by which system. Clicking a row of any table (or picking a neighbour) pivots to that item;
the chosen item is kept in ``st.session_state["items_item"]`` and in the URL (``?item=<item_id>``)
so a drill-down is linkable.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.data import items as data
from app.data.alignment import probe_name
from app.data.common import item_frame, run_genres
from app.state import Ctx, current_ctx, md_escape

ITEM_KEY = "items_item"
QP = "item"
RANK_IDS = "items_rank_ids"
KIND_LABELS = {"shared": "Shared neighbours", "semantic-only": "Semantic-only neighbours",
               "collaborative-only": "Collaborative-only neighbours"}


HISTORY = "items_history"


def set_item(item_idx: int, item_id: str) -> None:
    """Make ``item_idx`` the drill-down item (session state + URL), remembering the previous one for "back"."""
    prev = st.session_state.get(ITEM_KEY)
    if prev is not None and int(prev) != int(item_idx):
        st.session_state[HISTORY] = (st.session_state.get(HISTORY) or [])[-49:] + [int(prev)]
    st.session_state[ITEM_KEY] = int(item_idx)
    st.query_params[QP] = str(item_id)


def _back(ctx: Ctx) -> None:
    """Button callback: return to the previous drill-down item."""
    hist = st.session_state.get(HISTORY) or []
    if hist:
        idx = hist.pop()
        st.session_state[ITEM_KEY] = idx
        st.query_params[QP] = str(_ids(ctx).loc[idx])
        st.session_state[HISTORY] = hist


def _ids(ctx: Ctx) -> pd.Series:
    return ctx.run.items.set_index("item_idx")["item_id"].astype(str)


def _table_pick(table_key: str, ids_key: str, ctx: Ctx) -> None:
    """on_select callback of a dataframe: pivot to the clicked row's item."""
    event = st.session_state.get(table_key) or {}
    rows = (event.get("selection") or {}).get("rows") or []
    ids = st.session_state.get(ids_key) or []
    if rows and rows[0] < len(ids):
        idx = int(ids[rows[0]])
        set_item(idx, _ids(ctx).loc[idx])


def _pick_neighbour(key: str, ctx: Ctx) -> None:
    idx = st.session_state.get(key)
    if idx is not None:
        set_item(int(idx), _ids(ctx).loc[int(idx)])


def current_item(ctx: Ctx, default: int) -> int:
    """The drill-down item: ``?item=`` if valid, else session state, else ``default``."""
    ids = _ids(ctx)
    wanted = st.query_params.get(QP)
    if wanted is not None:
        match = ids.index[ids.to_numpy() == wanted]
        if len(match):
            return int(match[0])
    idx = st.session_state.get(ITEM_KEY)
    if idx is not None and 0 <= int(idx) < len(ids):
        return int(idx)
    return int(default)


def render(ctx: Ctx) -> None:
    k, K = ctx.k, ctx.K
    st.title("Items")
    st.caption(f"Items ranked by disagreement@{k} = 1 − overlap of their {k} nearest neighbours in the two views. "
               f"Click a row to drill down. {md_escape(ctx.segment_note())}.")
    all_genres = sorted(set(run_genres(ctx.key)["genre"]))
    c1, c2 = st.columns(2)
    genres = c1.multiselect("Genre", all_genres, key="items_genres", placeholder="all genres")
    query = c2.text_input("Find an item (title or id)", key="items_query", placeholder="e.g. a word of the title")
    ranked = data.ranked_items(ctx.key, K, k, ctx.users_sel, ctx.pop_buckets, tuple(genres))
    if query.strip():
        hit = ranked["title"].astype(str).str.contains(query.strip(), case=False, regex=False) | (
            ranked["item_id"].astype(str) == query.strip())
        ranked = ranked[hit.to_numpy()]
        if len(ranked) == 1 and st.session_state.get("items_query_done") != query.strip():
            st.session_state["items_query_done"] = query.strip()  # one match: open it (once per query)
            set_item(int(ranked["item_idx"].iloc[0]), str(ranked["item_id"].iloc[0]))
    cols = ["item_id", "title", "popularity", "pop_bucket", "genres", "overlap", "disagreement", "procrustes_cos",
            "hit_type", "n_test"]
    shown = ranked[[c for c in cols if c in ranked.columns]]
    st.caption(f"{len(shown):,} items (cold items have no collaborative neighbours and are left out).")
    st.session_state[RANK_IDS] = ranked["item_idx"].astype(int).tolist()
    st.dataframe(shown, hide_index=True, width="stretch", height=300, key="items_rank", on_select=lambda: _table_pick(
        "items_rank", RANK_IDS, ctx), selection_mode="single-row",
        column_config={"overlap": st.column_config.NumberColumn(f"overlap@{k}", format="%.2f"),
                       "disagreement": st.column_config.NumberColumn(f"disagreement@{k}", format="%.2f"),
                       "procrustes_cos": st.column_config.NumberColumn("Procrustes cos", format="%.3f")})

    default = int(ranked["item_idx"].iloc[0]) if len(ranked) else 0
    item = current_item(ctx, default)
    df = item_frame(ctx.key, K, k, ctx.users_sel)
    row = df[df["item_idx"] == item].iloc[0]
    set_item(item, row["item_id"])
    pos = np.flatnonzero(ranked["item_idx"].to_numpy() == item)
    st.caption(f"Drilled down: {md_escape(row['title'])} — " + (f"row {int(pos[0]) + 1:,} of this table."
                                                                 if len(pos) else "not in this table's filter."))
    drill_down(ctx, row)


def _share(v) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{float(v):.0%}"


def structure_facts(row: pd.Series) -> None:
    """The item's alignment-probe residual and its shared / private energy per view."""
    m = st.columns(3)
    res = row["probe_residual"]
    m[0].metric("Probe residual", "n/a (cold)" if pd.isna(res) else f"{float(res):.3f}",
                help="‖y − f(x)‖² / ‖y − ȳ‖²: share of the item's collaborative vector that the best map from its "
                     f"semantic vector ({probe_name(row['probe_best'] or '')}, cross-fitted) cannot explain; 1 = no "
                     "better than the mean vector")
    for holder, tag, view in ((m[1], "sem", "semantic"), (m[2], "col", "collaborative")):
        holder.metric(f"{view.capitalize()} energy · shared / private",
                      f"{_share(row.get(f'{tag}_shared'))} / {_share(row.get(f'{tag}_private'))}",
                      help=f"share of the item's centred {view} vector in the AJIVE joint subspace / in the rest "
                           "(n/a for cold items)")


def drill_down(ctx: Ctx, row: pd.Series) -> None:
    k, K = ctx.k, ctx.K
    st.divider()
    b1, b2, b3 = st.columns([1, 1, 4])
    hist = st.session_state.get(HISTORY) or []
    b1.button("← Back", key="items_back", on_click=_back, args=(ctx,), disabled=not hist,
              help="the item you came from" + (f": {ctx.run.items.set_index('item_idx').loc[hist[-1], 'title']}"
                                               if hist else ""))
    b2.page_link("views/maps.py", label="Show on Maps", icon=":material/scatter_plot:",
                 query_params={"item": str(row["item_id"])})
    st.subheader(md_escape(row["title"]))
    facts = [f"id {md_escape(row['item_id'])}", f"popularity {int(row['popularity']):,} ({md_escape(row['pop_bucket'])})",
             f"genres {md_escape(row['genres'] or '—')}"]
    if "year" in row and pd.notna(row["year"]):
        facts.append(f"year {int(row['year'])}")
    if bool(row["cold"]):
        facts.append("cold: no training interactions, no collaborative vector")
    st.caption(" · ".join(facts))
    m = st.columns(4)
    m[0].metric(f"overlap@{k}", "n/a" if pd.isna(row["overlap"]) else f"{row['overlap']:.2f}")
    m[1].metric(f"disagreement@{k}", "n/a" if pd.isna(row["disagreement"]) else f"{row['disagreement']:.2f}")
    pc = row.get("procrustes_cos", np.nan)
    m[2].metric("Procrustes cos", "n/a" if pd.isna(pc) else f"{pc:.3f}")
    m[3].metric(f"test hits at K={K} (sem / col / both)",
                f"{int(row['hits_sem_only'])} / {int(row['hits_col_only'])} / {int(row['hits_shared'])}")
    structure_facts(row)
    neighbours_section(ctx, int(row["item_idx"]))
    hit_users_section(ctx, int(row["item_idx"]))


NEIGHBOUR_COLUMNS = {
    "title": st.column_config.TextColumn("title", width="medium"),
    "sem_sim": st.column_config.NumberColumn("sem. cos", format="%.3f", width="small", help="cosine in the semantic view"),
    "col_sim": st.column_config.NumberColumn("col. cos", format="%.3f", width="small",
                                             help="cosine in the collaborative view"),
    "sem_rank": st.column_config.NumberColumn("sem. rank", format="%d", width="small"),
    "col_rank": st.column_config.NumberColumn("col. rank", format="%d", width="small"),
    "popularity": st.column_config.NumberColumn("pop.", width="small", help="training interactions")}
KIND_SIMS = {"shared": ["sem_sim", "col_sim"], "semantic-only": ["sem_sim", "sem_rank"],
             "collaborative-only": ["col_sim", "col_rank"]}


def neighbours_section(ctx: Ctx, item: int) -> None:
    """The item's neighbours by kind (a row click pivots to it), the cold ones apart, and a pivot picker."""
    k = ctx.k
    nb = data.item_neighbours(ctx.key, item, k)
    st.markdown(f"**Neighbours** (k={k}, cosine in each view's original vectors)")
    pivot_opts: dict[int, str] = {}
    for holder, kind in zip(st.columns(3), ("shared", "semantic-only", "collaborative-only")):
        d = nb[nb["kind"] == kind]
        with holder:
            st.markdown(f"**{KIND_LABELS[kind]}** ({len(d)})")
            ids_key, tkey = f"items_nb_ids::{kind}", f"items_nb::{kind}::{item}"
            st.session_state[ids_key] = d["neighbor_idx"].astype(int).tolist()
            st.dataframe(d[["title", *KIND_SIMS[kind], "popularity", "item_id"]], hide_index=True, width="stretch",
                         key=tkey, selection_mode="single-row", on_select=lambda t=tkey, i=ids_key: _table_pick(t, i, ctx),
                         column_config=NEIGHBOUR_COLUMNS)
        for j, t in zip(d["neighbor_idx"].astype(int), d["title"].astype(str)):
            pivot_opts[j] = f"{t} ({kind})"
    cold = nb[nb["kind"] == "cold"]
    if not cold.empty:
        st.caption(f"Also near in the semantic view, but cold (no training interactions, so the collaborative view "
                   f"cannot place them and overlap@{k} leaves them out): "
                   + "; ".join(f"{md_escape(t)} (cos {c:.3f})" for t, c in zip(cold["title"], cold["sem_sim"])))
    if pivot_opts:
        pk = f"items_pivot::{item}"
        st.selectbox("Open a neighbour", list(pivot_opts), index=None, key=pk, placeholder="pick a neighbour to pivot",
                     format_func=lambda j: pivot_opts[j], on_change=_pick_neighbour, args=(pk, ctx))


def hit_users_section(ctx: Ctx, item: int) -> None:
    """The test users for whom the item was a hit, with the rank each system gave it."""
    K = ctx.K
    st.markdown(f"**Test users for whom it was a hit** (top-{K})")
    users = data.item_hit_users(ctx.key, item, K)
    if ctx.users_sel is not None and len(users):
        users = users[users["user_idx"].isin(ctx.users_sel)]
    if users.empty:
        st.caption("No system had this item in the top-K of a user who holds it in the test set.")
        return
    counts = users["kind"].value_counts()
    st.caption(" · ".join(f"{md_escape(kd)}: {int(n)}" for kd, n in counts.items()) +
               f" — values are the rank at which each system recommended it (blank = not in its top-{K}).")
    shown = users.drop(columns=["user_idx"])
    for c in shown.columns[3:]:  # one column per system: the rank at which it recommended the item
        shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"#{int(v)}")
    event = st.dataframe(shown, hide_index=True, width="stretch", key="items_users", on_select="rerun",
                         selection_mode="single-row")
    rows = (event.get("selection") or {}).get("rows") or [] if event else []
    if rows:
        uid = str(users["user_id"].iloc[rows[0]])
        st.page_link("views/users.py", label=f"Open user {md_escape(uid)} on Users", icon=":material/person:",
                     query_params={"user": uid})
    else:
        st.caption("Click a user's row to open that user on the Users page.")


render(current_ctx())
