"""Users page: one user's training history and held-out items, and the top-K lists of the semantic
view, the collaborative view and their score fusion at an α of your choice. The fused list is
recomputed on the fly from the run's saved vectors (analysis.fusion.fuse_topk), so moving the
slider shows how the blend trades one view's items for the other's."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import users as charts
from app.charts.style import show
from app.data import users as data
from app.data.fusion import METHOD_LABELS, fusion_info
from app.state import Ctx, current_ctx, md_escape

COUNTER = "users_random_counter"


SESSION_SEED = "users_random_seed"


def pick_random(pool: tuple[int, ...], counter: int, session_seed: int = 0) -> int:
    """The user drawn by the "random user" button: seeded by the session's own seed and the click counter
    (each browser session draws its own sequence; a given session and click always give the same user)."""
    rng = np.random.default_rng([session_seed, counter])
    return int(pool[int(rng.integers(len(pool)))])


def _random_user(pool: tuple[int, ...]) -> None:
    """Button callback: bump the counter and put the drawn user into the selectbox."""
    st.session_state[COUNTER] = int(st.session_state.get(COUNTER, 0)) + 1
    seed = st.session_state.setdefault(SESSION_SEED, int(np.random.SeedSequence().entropy % (1 << 63)))
    st.session_state["users_user"] = pick_random(pool, st.session_state[COUNTER], seed)


#: background of a hit row by who finds it (light tints of the dashboard's colours: shared = reddish purple,
#: semantic-only = blue, collaborative-only = vermillion, in neither view's list = bluish green)
HIT_BG = {"shared": "background-color: #F2DCE9", "semantic-only": "background-color: #CCE3F0",
          "collaborative-only": "background-color: #F6D9C7", "fusion-only": "background-color: #D5EFE6"}


def hit_kinds(df: pd.DataFrame, sem: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Per row of a list: "" (no hit) or which compared view's list holds the hit (shared / semantic-only /
    collaborative-only / fusion-only)."""
    in_s, in_c = np.isin(df["item_idx"], sem), np.isin(df["item_idx"], col)
    kind = np.select([in_s & in_c, in_s, in_c], ["shared", "semantic-only", "collaborative-only"], "fusion-only")
    return np.where(df["hit"].to_numpy(bool), kind, "")


def _list_table(df: pd.DataFrame, key: str, other: str, show_cold: bool) -> None:
    cols = ["rank", "hit", "title", f"in {other}"] + (["cold"] if show_cold else []) + ["item_id"]
    shown = df[cols].copy()
    kinds = df["kind"].to_numpy()
    shown["hit"] = np.where(kinds != "", "✓ " + kinds, "")
    styled = shown.style.apply(lambda r: [HIT_BG.get(kinds[r.name], "")] * len(r), axis=1)
    st.dataframe(styled, hide_index=True, width="stretch", key=key, height=min(38 + 35 * len(shown), 740),
                 column_config={"hit": st.column_config.TextColumn("hit", width=110,
                                                                  help="a test item of the user, and which compared "
                                                                       "view's list holds it"),
                                "rank": st.column_config.NumberColumn("#", width=36),
                                "title": st.column_config.TextColumn("title", width="medium"),
                                "cold": st.column_config.CheckboxColumn("cold", width=44,
                                                                        help="no training interactions"),
                                "item_id": st.column_config.TextColumn("id", width=56),
                                f"in {other}": st.column_config.CheckboxColumn(f"in {other}", width=70)})


def pick_user(ctx: Ctx, users: pd.DataFrame) -> int | None:
    """The user selectbox (restricted to the activity filter, and optionally to the users with a semantic-only
    hit) and the "random user with unique hits" button."""
    sel = ctx.users_sel
    options = sorted(users.index.tolist()) if sel is None else sorted(sel)
    if st.checkbox("Only users with semantic-only hits", key="users_sem_only",
                   help=f"Users with a test hit at K={ctx.manifest.get('K')} that the semantic list has and the "
                        "collaborative list has not"):
        options = [u for u in options if users.loc[u, "only_sem"] > 0]
    if not options:
        st.warning("No user is in the sidebar's activity filter.")
        return None
    pool = tuple(int(u) for u in data.unique_hit_users(ctx.key) if sel is None or u in set(sel))
    wanted = st.query_params.get("user")  # a link from another page (?user=<user_id>), once
    if wanted is not None and st.session_state.get("users_linked") != wanted:
        match = users.index[users["user_id"].astype(str).to_numpy() == wanted]
        st.session_state["users_linked"] = wanted
        if len(match) and int(match[0]) in set(options):
            st.session_state["users_user"] = int(match[0])
    if st.session_state.get("users_user") not in set(options):
        st.session_state["users_user"] = pool[0] if pool else options[0]
    labels = dict(zip(users.index.tolist(), (users["user_id"].astype(str) + " · " + users["activity_bucket"].astype(str)
                                             + " · " + users["n_train"].astype(int).astype(str) + " training items")))
    c1, c2 = st.columns([3, 2])
    user = c1.selectbox("User", options, key="users_user", format_func=labels.__getitem__)
    c2.button("Random user with unique hits", key="users_random", on_click=_random_user, args=(pool,),
              disabled=not pool, help=f"{len(pool):,} users with a semantic-only or collaborative-only test hit at "
                                      f"K={ctx.manifest.get('K')}")
    return int(user)


def fusion_controls(ctx: Ctx) -> tuple[float, str]:
    """α (default: the run's validation α) and the fusion method (default: the run's)."""
    info = fusion_info(ctx.key)
    alpha_valid = info["alpha_valid"] if np.isfinite(info["alpha_valid"]) else 0.5
    s1, s2 = st.columns([3, 2])
    alpha = s1.slider("Fusion weight α (weight of the semantic view)", 0.0, 1.0, float(alpha_valid), 0.05,
                      key="users_alpha", help=f"Default: α chosen on validation ({alpha_valid:.2f}); "
                                             "0 = collaborative only, 1 = semantic only")
    methods = ["cold_aware", "score"]
    method = s2.radio("Fusion method", methods, index=methods.index(info["method"]) if info["method"] in methods else 1,
                      format_func=lambda m: METHOD_LABELS[m] + (" (run's choice)" if m == info["method"] else ""),
                      key="users_method", horizontal=True)
    return float(alpha), method


def list_columns(ctx: Ctx, user: int, lists: dict[str, np.ndarray], alpha: float, method: str) -> None:
    """The semantic, collaborative and fused top-K lists side by side, hits marked."""
    sem_items, col_items, fused = lists["semantic"], lists["collaborative"], lists["fusion"]
    titles = {"semantic": f"Semantic view · {ctx.sem}", "collaborative": f"Collaborative view · {ctx.col}",
              "fusion": f"Fusion at α = {alpha:.2f}"}
    show_cold = bool(ctx.run.items["cold"].any())
    for holder, name in zip(st.columns(3), ("semantic", "collaborative", "fusion")):
        df = data.list_frame(ctx.key, user, tuple(lists[name].tolist()))
        df["kind"] = hit_kinds(df, sem_items, col_items)
        other = "fusion" if name != "fusion" else "a view"
        if name == "fusion":
            df[f"in {other}"] = np.isin(df["item_idx"], np.union1d(sem_items, col_items))
        else:
            df[f"in {other}"] = np.isin(df["item_idx"], fused)
        with holder:
            st.markdown(f"**{md_escape(titles[name])}**")
            _list_table(df, f"users_list_{name}", other, show_cold)
            if name == "fusion":
                st.caption(f"{METHOD_LABELS[method]}, recomputed from the saved vectors. From the semantic list: "
                           f"{int(np.isin(fused, sem_items).sum())}, from the collaborative list: "
                           f"{int(np.isin(fused, col_items).sum())}.")


def history_tables(hist: dict[str, pd.DataFrame], lists: dict[str, np.ndarray]) -> None:
    h1, h2 = st.columns([3, 2])
    with h1:
        st.markdown(f"**Training history** ({len(hist['train'])} items)")
        st.dataframe(hist["train"][["title", "item_id", "genres", "popularity", "pop_bucket"]], hide_index=True,
                     width="stretch", key="users_train", height=320)
    with h2:
        held = pd.concat([hist["test"].assign(part="test"), hist["valid"].assign(part="validation")], ignore_index=True)
        held["found by"] = [", ".join(n for n, v in lists.items() if i in set(v.tolist())) if p == "test" else "—"
                            for i, p in zip(held["item_idx"], held["part"])]
        st.markdown(f"**Held-out items** ({len(hist['valid'])} validation, {len(hist['test'])} test)")
        st.dataframe(held[["part", "title", "item_id", "found by", "popularity", "cold"]], hide_index=True,
                     width="stretch", key="users_heldout", height=320)


def render(ctx: Ctx) -> None:
    K = ctx.K
    st.title("Users")
    users = ctx.run.users.set_index("user_idx")
    user = pick_user(ctx, users)
    if user is None:
        return
    alpha, method = fusion_controls(ctx)
    u = users.loc[user]
    hist = data.user_history(ctx.key, user)
    lists = {"semantic": data.saved_list(ctx.key, user, ctx.sem, K),
             "collaborative": data.saved_list(ctx.key, user, ctx.col, K),
             "fusion": data.fused_list(ctx.key, user, alpha, K, method == "cold_aware")}
    hits = {n: int(np.isin(v, hist["test"]["item_idx"].to_numpy()).sum()) for n, v in lists.items()}
    st.caption(f"User {md_escape(u['user_id'])}: {int(u['n_train'])} training, {int(u['n_valid'])} validation and "
               f"{int(u['n_test'])} test items; activity {md_escape(u['activity_bucket'])}. Lists are test-time "
               f"top-{K} lists (training and validation items masked); a hit is a test item.")
    m = st.columns(4)
    m[0].metric(f"Semantic hits @{K}", hits["semantic"])
    m[1].metric(f"Collaborative hits @{K}", hits["collaborative"])
    m[2].metric(f"Fusion hits @{K} (α = {alpha:.2f})", hits["fusion"])
    m[3].metric("Unique hits (sem / col)", f"{int(u.get('only_sem', 0))} / {int(u.get('only_col', 0))}",
                help=f"Test hits at K={ctx.manifest.get('K')} found by only one compared view")
    curve = data.hits_by_alpha(ctx.key, user, K, method == "cold_aware")
    show(charts.hits_sparkline(curve, alpha, K), key="users_sparkline", filename="hits_by_alpha")
    list_columns(ctx, user, lists, alpha, method)
    history_tables(hist, lists)


render(current_ctx())
