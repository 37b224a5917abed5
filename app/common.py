"""Shared parts of the semcollab dashboard: run picker, sidebar context, caching, safe text.

Conventions (read this before adding a page)
============================================

Layout
    ``app/main.py``      entry point: ``streamlit run app/main.py [-- --run PATH]``. It registers the
                         pages with ``st.navigation``, draws the shared sidebar (:func:`sidebar`) and
                         runs the chosen page. Any :class:`RunError` escaping a page is shown as an
                         ``st.error`` with how to make a run — never a stack trace.
    ``app/views/*.py``   one file per page. A page file defines ``render(ctx: Ctx) -> None`` and ends
                         with ``render(current_ctx())``. Register it in ``PAGES`` in ``app/main.py``
                         (title, icon, file); nothing else needs to change.
    ``app/derive.py``    pure pandas / numpy functions ``fn(run, *args, [users=], [items=])`` that derive
                         per-run frames. No Streamlit there, so they are unit-testable.
    ``app/charts.py``    Plotly figure builders, the Okabe-Ito palette and :func:`charts.show`.

Getting data in a page
    ``ctx.run``                       the opened :class:`analysis.runstore.Run` (``ctx.run.table(name)``,
                                      ``ctx.run.manifest``); tables are read once per process.
    ``ctx.derived("fn_name", *args)`` calls ``derive.fn_name(run, *args)`` once per process and caches
                                      it (``st.cache_resource``: results are shared, **never mutate them**;
                                      ``.copy()`` first). If the function declares keyword parameters
                                      ``users`` / ``items``, they are filled from the sidebar's segment
                                      filter (tuple of user_idx / item_idx, or None for "all").
    ``ctx.K``, ``ctx.k``               the chosen top-K cut-off (one of the run's ``ks``) and neighbourhood
                                      size (≤ the depth of the ``neighbors`` table).
    ``ctx.item_frame()``              the items table joined with overlap / disagreement at ``ctx.k``
                                      and hit counts / hit type at ``ctx.K`` over the filtered users,
                                      plus ``primary_genre`` and ``label`` (safe hover text); map
                                      positions are the run's UMAP, or PCA when the run has none
                                      (``.attrs["map_source"]``).
    ``ctx.item_mask(df)``             boolean mask of rows in the popularity-bucket filter.
    ``ctx.sem`` / ``ctx.col``         names of the compared semantic / collaborative systems.

Widgets and state
    Widget keys are prefixed with the page name (``maps_…``, ``items_…``); sidebar keys start with
    ``sb_``. Cross-page state lives in ``st.session_state`` under a page prefix; add a new page's
    prefix to ``PAGE_PREFIXES`` so its state is reset when another run is picked. Linkable state
    also goes to ``st.query_params`` (the Items page keeps ``?item=<item_id>``, the sidebar ``?run=``).
    Heavy work belongs in ``derive`` functions called through ``ctx.derived`` — never inside widget
    callbacks; callbacks only copy a selection into ``st.session_state``.

Charts
    Build figures with ``charts.*`` helpers and draw them with ``charts.show(fig, key=..., filename=...)``:
    it enables the toolbar's PNG download and a consistent white template. Always set axis titles with
    units, keep a legend (or a colour bar) and put the item title in hover text through
    :func:`safe_label`. Colours come from ``charts.VIEW_COLORS`` / ``charts.HIT_COLORS`` (Okabe-Ito),
    so semantic / collaborative / fusion / shared look the same on every page.

Safe text
    Item titles and other data strings may contain HTML or Markdown. Show them only through
    ``st.dataframe`` / ``st.text`` / Plotly hover via :func:`safe_label`, or in Markdown via
    :func:`md_escape`. Never pass data to ``unsafe_allow_html``.
"""
from __future__ import annotations

import argparse
import html
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from analysis.errors import RunError
from analysis.runstore import HOW_TO_MAKE, Run, find_runs, open_run

from . import derive

RUNS_ENV = "SEMCOLLAB_RUNS"
CTX_KEY = "_semcollab_ctx"
POP_ORDER = ("head", "torso", "tail", "cold")
ACTIVITY_ORDER = ("heavy", "high", "medium", "mid", "light", "low")


# ----------------------------------------------------------------------------- safe text
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def md_escape(text: Any) -> str:
    """Escape a data string for ``st.markdown`` so it shows literally (no HTML, links or formatting)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def safe_label(text: Any) -> str:
    """Escape a data string for Plotly text / hover (Plotly renders a subset of HTML tags)."""
    return html.escape(str(text), quote=True)


# ----------------------------------------------------------------------------- runs
def cli_run_arg(argv: list[str] | None = None) -> str | None:
    """``--run PATH`` from ``streamlit run app/main.py -- --run PATH`` (unknown arguments ignored)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--run", default=None)
    try:
        ns, _ = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    except SystemExit:
        return None
    return ns.run


def runs_root() -> Path:
    """Where runs are looked for: ``$SEMCOLLAB_RUNS`` or ``./runs``."""
    return Path(os.environ.get(RUNS_ENV) or "runs")


def run_label(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
        return str(rel) if str(rel) != "." else path.name
    except ValueError:
        return str(path)


def discover_runs() -> dict[str, Path]:
    """label -> path of the runs under :func:`runs_root`, plus the ``--run`` path (first)."""
    root = runs_root()
    found: dict[str, Path] = {}
    cli = cli_run_arg()
    if cli:
        found[str(Path(cli))] = Path(cli)
    for p in find_runs(root):
        if cli and Path(cli).resolve() == p.resolve():
            continue
        found[run_label(p, root)] = p
    return found


def _stamp(path: Path) -> int:
    try:
        return (path / "manifest.json").stat().st_mtime_ns
    except OSError:
        return 0


def _as_run_error(path: str, exc: Exception) -> RunError:
    return RunError(f"run {path} could not be read ({type(exc).__name__}: {exc}); "
                    f"recompute it with `semcollab run ... --force`, or {HOW_TO_MAKE}")


@st.cache_resource(show_spinner="Reading the run…", max_entries=8)
def load_run(path: str, stamp: int) -> Run:
    """Open a run once per process (``stamp`` = manifest mtime, so a recomputed run reloads)."""
    run = open_run(path)
    try:
        for t in ("items", "users", "metrics"):
            run.table(t)
        _ = run.items, run.users
        derive.compared_systems(run)
    except RunError:
        raise
    except Exception as exc:  # a corrupt parquet file or a wrong column type
        raise _as_run_error(path, exc) from exc
    return run


def derive_fn(fn_name: str) -> Any:
    """The derive function ``fn_name``: from :mod:`app.derive`, else from :mod:`app.derive_more`."""
    fn = getattr(derive, fn_name, None)
    if fn is None:
        from . import derive_more

        fn = getattr(derive_more, fn_name)
    return fn


@st.cache_resource(show_spinner=False, max_entries=1024)
def _derived(path: str, stamp: int, fn_name: str, args: tuple, kwargs: tuple) -> Any:
    run = load_run(path, stamp)
    try:
        return derive_fn(fn_name)(run, *args, **dict(kwargs))
    except RunError:
        raise
    except (OSError, KeyError) as exc:
        raise _as_run_error(path, exc) from exc


@st.cache_resource(show_spinner=False, max_entries=256)
def _item_frame(path: str, stamp: int, K: int, k: int, users: tuple | None) -> pd.DataFrame:
    run = load_run(path, stamp)
    items = run.items
    derive.require_columns(items, ["item_idx", "item_id", "title", "genres", "popularity", "pop_decile",
                                   "pop_bucket", "cold", "sem_x", "sem_y", "col_x", "col_y"], "items", run)
    df = items.drop(columns=[c for c in ("overlap", "jaccard", "disagreement", "hits_shared", "hits_sem_only",
                                         "hits_col_only", "hits_missed_by_both", "n_test") if c in items.columns])
    xy = _derived(path, stamp, "map_coords", (), ())
    df = df.drop(columns=["sem_x", "sem_y", "col_x", "col_y"]).join(xy, on="item_idx")
    ov = _derived(path, stamp, "overlap_at_k", (k,), ())
    hits = _derived(path, stamp, "item_hit_counts", (K,), (("users", users),))
    df = df.join(ov, on="item_idx").join(hits, on="item_idx")
    df["primary_genre"] = derive.primary_genre(df["genres"])
    df["label"] = [safe_label(t) for t in df["title"]]
    df.attrs.update(ov.attrs)
    df.attrs["map_source"] = xy.attrs["source"]
    return df


# ----------------------------------------------------------------------------- context
@dataclass(frozen=True)
class Ctx:
    """What every page needs: the run, the sidebar choices, and cached derivations."""

    run: Run
    path: str
    stamp: int
    K: int
    k: int
    depth: int
    pop_buckets: tuple[str, ...] | None = None  # None = all buckets
    activity_buckets: tuple[str, ...] | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # --- segments
    @property
    def users_sel(self) -> tuple[int, ...] | None:
        """user_idx of the users in the activity filter (None = all users)."""
        if self.activity_buckets is None:
            return None
        if "users" not in self._cache:
            u = self.run.users
            self._cache["users"] = tuple(int(x) for x in u.loc[u["activity_bucket"].astype(str).isin(
                self.activity_buckets), "user_idx"])
        return self._cache["users"]

    @property
    def items_sel(self) -> tuple[int, ...] | None:
        """item_idx of the items in the popularity-bucket filter (None = all items)."""
        if self.pop_buckets is None:
            return None
        if "items" not in self._cache:
            it = self.run.items
            self._cache["items"] = tuple(int(x) for x in it.loc[it["pop_bucket"].astype(str).isin(
                self.pop_buckets), "item_idx"])
        return self._cache["items"]

    def item_mask(self, df: pd.DataFrame) -> np.ndarray:
        if self.pop_buckets is None:
            return np.ones(len(df), dtype=bool)
        return df["pop_bucket"].astype(str).isin(self.pop_buckets).to_numpy()

    def segment_note(self) -> str:
        parts = []
        if self.pop_buckets is not None:
            parts.append("items: " + ", ".join(self.pop_buckets))
        if self.activity_buckets is not None:
            parts.append("users: " + ", ".join(self.activity_buckets))
        return "Segment filter — " + "; ".join(parts) if parts else "All items and users"

    # --- data
    def derived(self, fn_name: str, *args: Any) -> Any:
        """``derive.<fn_name>(run, *args)`` cached per process; fills ``users=`` / ``items=`` from the filter."""
        fn = derive_fn(fn_name)
        params = inspect.signature(fn).parameters
        kw = []
        if "users" in params:
            kw.append(("users", self.users_sel))
        if "items" in params:
            kw.append(("items", self.items_sel))
        return _derived(self.path, self.stamp, fn_name, tuple(args), tuple(kw))

    def item_frame(self) -> pd.DataFrame:
        """Items + overlap@k + hit counts at K over the filtered users + primary_genre + label (read-only)."""
        return _item_frame(self.path, self.stamp, self.K, self.k, self.users_sel)

    @property
    def sem(self) -> str:
        return derive.compared_systems(self.run)[0]

    @property
    def col(self) -> str:
        return derive.compared_systems(self.run)[1]

    @property
    def manifest(self) -> dict[str, Any]:
        return self.run.manifest


def current_ctx() -> Ctx:
    """The context :func:`sidebar` built for this script run (pages call this first)."""
    ctx = st.session_state.get(CTX_KEY)
    if ctx is None:
        st.error("This page needs a run: open the dashboard with `streamlit run app/main.py`.")
        st.stop()
    return ctx


def show_run_error(exc: BaseException) -> None:
    st.error(str(exc), icon="🚫")
    st.info(f"To make a run: `semcollab run --dataset synthetic --out runs/synthetic` "
            f"(or `--dataset ml-100k`), then open it with `streamlit run app/main.py -- --run runs/synthetic` "
            f"or put it under `${RUNS_ENV}` (now `{runs_root()}`).")


#: session-state prefixes of page state that refers to one run (item indices, selections)
PAGE_PREFIXES = ("maps_", "items_", "alignment_", "structure_")


def reset_page_state() -> None:
    """Forget page state and widgets under ``PAGE_PREFIXES`` (called when another run is picked)."""
    for key in list(st.session_state.keys()):
        if str(key).startswith(PAGE_PREFIXES):
            del st.session_state[key]
    st.query_params.pop("item", None)


def _ordered(values: list[str], order: tuple[str, ...]) -> list[str]:
    rank = {v: i for i, v in enumerate(order)}
    return sorted(values, key=lambda v: (rank.get(v.lower(), len(order)), v))


def _segment_select(label: str, options: list[str], key: str, help_: str) -> tuple[str, ...] | None:
    chosen = st.sidebar.multiselect(label, options, default=options, key=key, help=help_)
    if not chosen or set(chosen) == set(options):
        return None
    return tuple(chosen)


def sidebar() -> Ctx:
    """Draw the shared sidebar (run, K, k, segment filter); store and return the :class:`Ctx`.

    Stops the script with a clear ``st.error`` when there is no usable run.
    """
    st.session_state.pop(CTX_KEY, None)
    runs = discover_runs()
    sb = st.sidebar
    if not runs:
        show_run_error(RunError(f"no saved run found under {runs_root().resolve()}; {HOW_TO_MAKE}, "
                                "or open the Compute page to start one"))
        st.stop()
    labels = list(runs)
    wanted = st.query_params.get("run")
    if "sb_run" not in st.session_state or st.session_state["sb_run"] not in labels:
        st.session_state["sb_run"] = wanted if wanted in labels else labels[0]
    label = sb.selectbox("Run", labels, key="sb_run", help=f"Runs under ${RUNS_ENV} (now {runs_root()}) "
                         "or given with `-- --run PATH`")
    st.query_params["run"] = label
    if st.session_state.get("_semcollab_run") not in (None, label):
        reset_page_state()
    st.session_state["_semcollab_run"] = label
    path = runs[label]
    stamp = _stamp(path)
    try:
        run = load_run(str(path), stamp)
    except RunError as exc:
        show_run_error(exc)
        st.stop()
    m = run.manifest
    ks = sorted({int(k) for k in (m.get("ks") or [m.get("K", 20)])})
    K = sb.selectbox("Top-K cut-off K", ks, index=ks.index(int(m.get("K", max(ks)))) if int(m.get("K", max(ks))) in ks
                     else len(ks) - 1, key=f"sb_K::{label}", help="Length of the recommendation lists (the run's ks)")
    try:
        depth = int(_derived(str(path), stamp, "neighbor_arrays", (), ())["depth"])
    except RunError as exc:
        show_run_error(exc)
        st.stop()
    if depth < 1:
        show_run_error(RunError(f"run {path}: the neighbors table is empty; recompute it with --force"))
        st.stop()
    k_default = min(int(m.get("k_neighbors", depth) or depth), depth)
    if depth > 1:
        k = sb.slider("Neighbourhood size k", 1, depth, k_default, key=f"sb_k::{label}",
                      help=f"Nearest neighbours per item in each view (≤ {depth}, the depth stored in the run)")
    else:
        k = 1
    items, users = run.items, run.users
    pop_opts = _ordered(list(items["pop_bucket"].astype(str).unique()), POP_ORDER)
    act_opts = _ordered(list(users["activity_bucket"].astype(str).unique()), ACTIVITY_ORDER)
    sb.markdown("**Segment filter**")
    pop = _segment_select("Item popularity bucket", pop_opts, f"sb_pop::{label}",
                          "Training popularity of the items (head = most popular)")
    act = _segment_select("User activity bucket", act_opts, f"sb_act::{label}",
                          "Number of training interactions of the users")
    ds = m.get("dataset", {}) or {}
    sb.caption(f"Dataset {md_escape(ds.get('name', '?'))}: {ds.get('n_users', '?'):,} users, "
               f"{ds.get('n_items', '?'):,} items, {ds.get('n_interactions', '?'):,} interactions. "
               f"Regime {md_escape(_regime_text(m.get('regime')))}. Created {md_escape(m.get('created', '?'))}."
               if isinstance(ds.get("n_users"), int) else f"Run {md_escape(label)}")
    ctx = Ctx(run=run, path=str(path), stamp=stamp, K=int(K), k=int(k), depth=depth, pop_buckets=pop,
              activity_buckets=act)
    st.session_state[CTX_KEY] = ctx
    return ctx


def _regime_text(regime: Any) -> str:
    """The run's regime in words: split, training data kept, held-out items, cold test share."""
    if not isinstance(regime, dict):
        return str(regime if regime is not None else "default")
    parts = [f"{regime.get('split', '?')} split (seed {regime.get('seed', '?')})",
             f"{float(regime.get('keep_fraction', 1.0)):.0%} of training data kept"]
    if regime.get("n_held_out_items"):
        parts.append(f"{regime['n_held_out_items']:,} items held out (cold start)")
    parts.append(f"{int(regime.get('n_cold_items', 0)):,} cold items")
    if regime.get("n_test_pairs"):
        parts.append(f"{float(regime.get('cold_test_share', 0.0)):.1%} of {int(regime['n_test_pairs']):,} test pairs "
                     "on cold items")
    return ", ".join(parts)
