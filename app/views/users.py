"""Users page: one user's training history and held-out items, and the top-K lists of the semantic
view, the collaborative view and their score fusion at an α of your choice. The fused list is
recomputed on the fly from the run's saved vectors (analysis.fusion.fuse_topk), so moving the
slider shows how the blend trades one view's items for the other's."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.common import Ctx, current_ctx, md_escape
from app.derive_more import METHOD_LABELS, fused_list

COUNTER = "users_random_counter"


def pick_random(pool: tuple[int, ...], counter: int) -> int:
    """The user drawn by the "random user" button: seeded by the click counter (deterministic)."""
    rng = np.random.default_rng(counter)
    return int(pool[int(rng.integers(len(pool)))])


def _random_user(pool: tuple[int, ...]) -> None:
    """Button callback: bump the counter and put the drawn user into the selectbox."""
    st.session_state[COUNTER] = int(st.session_state.get(COUNTER, 0)) + 1
    st.session_state["users_user"] = pick_random(pool, st.session_state[COUNTER])


HIT_BG = "background-color: #D5EFE6"  # light Okabe-Ito bluish green


def _list_table(df: pd.DataFrame, key: str, other: str, show_cold: bool) -> None:
    cols = ["rank", "hit", "title", f"in {other}"] + (["cold"] if show_cold else []) + ["item_id"]
    show = df[cols].copy()
    show["hit"] = np.where(show["hit"], "✓", "")
    styled = show.style.apply(lambda r: [HIT_BG if r["hit"] else ""] * len(r), axis=1)
    st.dataframe(styled, hide_index=True, width="stretch", key=key, height=min(38 + 35 * len(show), 740),
                 column_config={"hit": st.column_config.TextColumn("hit", width=36, help="a test item of the user"),
                                "rank": st.column_config.NumberColumn("#", width=36),
                                "title": st.column_config.TextColumn("title", width="medium"),
                                "cold": st.column_config.CheckboxColumn("cold", width=44,
                                                                        help="no training interactions"),
                                "item_id": st.column_config.TextColumn("id", width=56),
                                f"in {other}": st.column_config.CheckboxColumn(f"in {other}", width=70)})


def render(ctx: Ctx) -> None:
    run, K = ctx.run, ctx.K
    st.title("Users")
    users = run.users.set_index("user_idx")
    pool_all = ctx.derived("unique_hit_users")
    sel = ctx.users_sel
    options = sorted(users.index.tolist()) if sel is None else sorted(sel)
    if not options:
        st.warning("No user is in the sidebar's activity filter.")
        return
    pool = tuple(int(u) for u in pool_all if sel is None or u in set(sel))
    if st.session_state.get("users_user") not in set(options):
        st.session_state["users_user"] = pool[0] if pool else options[0]
    labels = dict(zip(users.index.tolist(), (users["user_id"].astype(str) + " · " + users["activity_bucket"].astype(str)
                                             + " · " + users["n_train"].astype(int).astype(str) + " training items")))
    c1, c2 = st.columns([3, 2])
    user = c1.selectbox("User", options, key="users_user", format_func=labels.__getitem__)
    c2.button("Random user with unique hits", key="users_random", on_click=_random_user, args=(pool,),
              disabled=not pool, help=f"{len(pool):,} users with a semantic-only or collaborative-only test hit at "
                                      f"K={run.manifest.get('K')}")
    info = ctx.derived("fusion_info")
    alpha_valid = info["alpha_valid"] if np.isfinite(info["alpha_valid"]) else 0.5
    s1, s2 = st.columns([3, 2])
    alpha = s1.slider("Fusion weight α (weight of the semantic view)", 0.0, 1.0, float(alpha_valid), 0.05,
                      key="users_alpha", help=f"Default: α chosen on validation ({alpha_valid:.2f}); "
                                             "0 = collaborative only, 1 = semantic only")
    methods = ["cold_aware", "score"]
    method = s2.radio("Fusion method", methods, index=methods.index(info["method"]) if info["method"] in methods else 1,
                      format_func=lambda m: METHOD_LABELS[m] + (" (run's choice)" if m == info["method"] else ""),
                      key="users_method", horizontal=True)

    u = users.loc[user]
    hist = ctx.derived("user_history", int(user))
    sem_items = ctx.derived("saved_list", int(user), ctx.sem, K)
    col_items = ctx.derived("saved_list", int(user), ctx.col, K)
    fused = fused_list(run, int(user), float(alpha), K, method == "cold_aware")
    lists = {"semantic": sem_items, "collaborative": col_items, "fusion": fused}
    hits = {n: int(np.isin(v, hist["test"]["item_idx"].to_numpy()).sum()) for n, v in lists.items()}
    st.caption(f"User {md_escape(u['user_id'])}: {int(u['n_train'])} training, {int(u['n_valid'])} validation and "
               f"{int(u['n_test'])} test items; activity {md_escape(u['activity_bucket'])}. Lists are test-time "
               f"top-{K} lists (training and validation items masked); a hit is a test item.")
    m = st.columns(4)
    m[0].metric(f"Semantic hits @{K}", hits["semantic"])
    m[1].metric(f"Collaborative hits @{K}", hits["collaborative"])
    m[2].metric(f"Fusion hits @{K} (α = {alpha:.2f})", hits["fusion"])
    m[3].metric("Unique hits (sem / col)", f"{int(u.get('only_sem', 0))} / {int(u.get('only_col', 0))}",
                help=f"Test hits at K={run.manifest.get('K')} found by only one compared view")

    cols = st.columns(3)
    frames = {
        "semantic": ctx.derived("list_frame", int(user), tuple(sem_items.tolist()), None),
        "collaborative": ctx.derived("list_frame", int(user), tuple(col_items.tolist()), None),
    }
    frames["fusion"] = ctx.derived("list_frame", int(user), tuple(fused.tolist()), None)
    for holder, (name, title) in zip(cols, (("semantic", f"Semantic view · {ctx.sem}"),
                                            ("collaborative", f"Collaborative view · {ctx.col}"),
                                            ("fusion", f"Fusion at α = {alpha:.2f}"))):
        other = "fusion" if name != "fusion" else "a view"
        df = frames[name].copy()
        if name == "fusion":
            df[f"in {other}"] = np.isin(df["item_idx"], np.union1d(sem_items, col_items))
            df["from"] = np.select([np.isin(df["item_idx"], sem_items) & np.isin(df["item_idx"], col_items),
                                    np.isin(df["item_idx"], sem_items), np.isin(df["item_idx"], col_items)],
                                   ["both", "semantic", "collaborative"], "neither")
        else:
            df[f"in {other}"] = np.isin(df["item_idx"], fused)
        with holder:
            st.markdown(f"**{md_escape(title)}**")
            _list_table(df, f"users_list_{name}", other, bool(run.items["cold"].any()))
            if name == "fusion":
                st.caption(f"{METHOD_LABELS[method]}, recomputed from the saved vectors. From the semantic list: "
                           f"{int(np.isin(fused, sem_items).sum())}, from the collaborative list: "
                           f"{int(np.isin(fused, col_items).sum())}.")

    h1, h2 = st.columns([3, 2])
    with h1:
        st.markdown(f"**Training history** ({len(hist['train'])} items)")
        st.dataframe(hist["train"][["title", "item_id", "genres", "popularity", "pop_bucket"]], hide_index=True,
                     width="stretch", key="users_train", height=320)
    with h2:
        held = pd.concat([hist["valid"].assign(part="validation"), hist["test"].assign(part="test")], ignore_index=True)
        held["found by"] = [", ".join(n for n, v in lists.items() if i in set(v.tolist())) if p == "test" else "—"
                            for i, p in zip(held["item_idx"], held["part"])]
        st.markdown(f"**Held-out items** ({len(hist['valid'])} validation, {len(hist['test'])} test)")
        st.dataframe(held[["part", "title", "item_id", "found by", "popularity", "cold"]], hide_index=True,
                     width="stretch", key="users_heldout", height=320)


render(current_ctx())
