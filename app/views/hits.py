"""Hits page: shared and unique test hits of the compared views, overall and by segment, and
which kinds of items (popularity, genres) each view finds on its own."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.complementarity import HIT_KINDS
from app.charts import hits as charts
from app.charts.style import show
from app.data import hits as data
from app.state import Ctx, current_ctx, md_escape


def render(ctx: Ctx) -> None:
    K = ctx.K
    st.title("Hits")
    st.caption(f"A test pair (user, item) is a hit of a view when the item is in the view's top-{K} for that user. "
               f"Compared views: {md_escape(ctx.sem)} (semantic) and {md_escape(ctx.col)} (collaborative). "
               f"{md_escape(ctx.segment_note())}.")
    seg = data.hits_by_segment(ctx.key, K, ctx.users_sel, ctx.items_sel)
    overall = seg[seg["segment_type"] == "all"].set_index("kind").reindex(list(HIT_KINDS))
    if overall["count"].fillna(0).sum() == 0:
        st.info("No test pairs in this segment: widen the segment filter in the sidebar.")
        return
    n_hits = int(overall.loc[list(HIT_KINDS[:3]), "count"].sum())
    cols = st.columns(5)
    cols[0].metric("Test pairs", f"{int(overall['count'].sum()):,}")
    for col, kind in zip(cols[1:], HIT_KINDS):
        share = overall.loc[kind, "hit_share"] if kind != HIT_KINDS[3] else overall.loc[kind, "share"]
        what = "of distinct hits" if kind != HIT_KINDS[3] else "of test pairs"
        col.metric(kind.capitalize(), f"{int(overall.loc[kind, 'count']):,}",
                   help=f"{share:.1%} {what}" if pd.notna(share) else None)
        col.caption(f"{share:.1%} {what}" if pd.notna(share) else "—")
    st.caption(f"{n_hits:,} distinct hits. Unique-hit share of a view = its only-hits / all distinct hits.")

    left, right = st.columns(2)
    for holder, seg_type, x_title in ((left, "item popularity", "item popularity bucket (training interactions)"),
                                      (right, "user activity", "user activity bucket (training interactions)")):
        d = seg[seg["segment_type"] == seg_type].copy()
        d["kind"] = d["kind"].astype(str)
        with holder:
            show(charts.share_bars(d, "segment", x_title, f"Hits by {seg_type}", list(HIT_KINDS),
                                   subtitle=f"who finds each test pair at K={K}"),
                 key=f"hits_by_{seg_type.split()[1]}", filename=f"hits_by_{seg_type.replace(' ', '_')}")
            table = d.pivot_table(index="segment", columns="kind", values="count", aggfunc="sum", observed=False)
            table = table.reindex(index=list(dict.fromkeys(d["segment"])), columns=list(HIT_KINDS))
            st.dataframe(table, width="stretch", key=f"hits_table_{seg_type.split()[1]}")

    unique_finds_section(ctx)


def unique_finds_section(ctx: Ctx) -> None:
    """Which kinds of items (popularity, genres, titles) each view finds on its own."""
    K = ctx.K
    st.subheader("What each view finds on its own")
    uf = data.unique_finds(ctx.key, K, ctx.users_sel, ctx.items_sel)
    kinds = list(HIT_KINDS[:3])
    dec = uf["decile"].copy()
    show(charts.grouped_share(dec, "decile", "item popularity decile (1 = least popular, 10 = most)",
                              "Popularity of the hits", kinds, "share of the kind's hits (%)",
                              subtitle=f"share of each kind's hits per popularity decile (K={K})"),
         key="hits_deciles", filename="hits_by_decile")
    gen = uf["genre"].copy()
    order = gen.groupby("genre")["count"].sum().sort_values(ascending=False).index
    gen["genre"] = pd.Categorical(gen["genre"], categories=list(order))
    gen = gen.sort_values("genre")
    show(charts.grouped_share(gen, "genre", "genre (an item counts once per genre)", "Genres of the hits", kinds,
                              "share of the kind's hits (%)", subtitle=f"share of each kind's hits per genre (K={K})"),
         key="hits_genres", filename="hits_by_genre")
    top = uf["top"]
    items = ctx.run.items.set_index("item_idx")
    c1, c2 = st.columns(2)
    for holder, kind in ((c1, "semantic-only"), (c2, "collaborative-only")):
        d = top[top["kind"] == kind].copy()
        d["title"] = d["item_idx"].map(items["title"])
        d["item_id"] = d["item_idx"].map(items["item_id"])
        d["popularity"] = d["item_idx"].map(items["popularity"])
        with holder:
            st.markdown(f"**Items most often found {kind}**")
            st.dataframe(d[["title", "item_id", "popularity", "count"]].rename(columns={"count": f"{kind} hits"}),
                         hide_index=True, width="stretch", key=f"hits_top_{kind}")


render(current_ctx())
