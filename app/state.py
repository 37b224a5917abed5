"""The dashboard's shared state: which runs exist, the sidebar, and the page context (:class:`Ctx`).

Conventions (read this before adding a page)
============================================

Layout
    ``app/main.py``           entry point: registers the pages (``PAGES``), draws the sidebar
                              (:func:`sidebar`) and runs the chosen page; a :class:`RunError`
                              escaping a page is shown as an ``st.error``, never a stack trace.
    ``app/views/<page>.py``   one file per page, render only: ``render(ctx)`` then
                              ``render(current_ctx())``. Long pages split into section functions.
    ``app/data/<page>.py``    the page's data: typed functions ``fn(key: RunKey, ...)`` cached per
                              process (:func:`app.data.common.cached`); every number comes from the
                              run or from an :mod:`analysis` function (run-level reads:
                              :mod:`analysis.run_queries`). ``app/data/common.py``: the run, its
                              system vocabulary (roles and labels from the manifest) and the item frame.
    ``app/charts/<page>.py``  Plotly figure builders; ``app/charts/style.py`` the colours, ``style``
                              and ``show`` (PNG download toolbar).
    ``app/text.py``           safe text: :func:`md_escape` for Markdown, :func:`safe_label` for Plotly.

Getting data in a page
    ``ctx.key`` (a :class:`RunKey`) is the first argument of every data function; ``ctx.run`` the
    opened run; ``ctx.K`` / ``ctx.k`` the sidebar's top-K cut-off and neighbourhood size;
    ``ctx.users_sel`` / ``ctx.items_sel`` the segment filter (tuples of indices, None = all);
    ``ctx.sem`` / ``ctx.col`` the compared systems. Data functions return copies (``st.cache_data``):
    a page may modify what it gets.

Widgets and state
    Widget keys are prefixed with the page name (``maps_…``); sidebar keys start with ``sb_``.
    Cross-page state lives in ``st.session_state`` under a page prefix listed in ``PAGE_PREFIXES``
    (reset when another run is picked); linkable state also goes to ``st.query_params``
    (``?item=<item_id>``, ``?run=``). Callbacks only copy a selection into the session state.

Safe text
    Item titles and other data strings may contain HTML or Markdown: show them through
    ``st.dataframe`` / ``st.text``, Plotly hover via :func:`safe_label`, or Markdown via
    :func:`md_escape`. Never pass data to ``unsafe_allow_html``.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from analysis.errors import RunError
from analysis.runstore import HOW_TO_MAKE, Run, find_runs
from analysis.systems import compared

from .data.common import RunKey, Sel, manifest_stamp, neighbour_depth
from .text import md_escape, safe_label  # noqa: F401  (re-exported for pages)

RUNS_ENV = "SEMCOLLAB_RUNS"
CTX_KEY = "_semcollab_ctx"
POP_ORDER = ("head", "torso", "tail", "cold")
ACTIVITY_ORDER = ("heavy", "high", "medium", "mid", "light", "low")
#: session-state prefixes of page state that refers to one run (item indices, selections)
PAGE_PREFIXES = ("maps_", "items_", "alignment_", "structure_")


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


@st.fragment(run_every=2.0)
def follow_sweep(what: str) -> None:
    """The background regime sweep's progress bar, polled every 2 s; when the sweep stops (done or failed)
    the whole page reruns once, so it fills in (or says why not) without a reload. Call it only while
    the sweep runs."""
    from .jobs import sweep_progress

    p = sweep_progress(runs_root())
    if p is None or not p.running:
        st.rerun(scope="app")
    st.progress(p.fraction, text=f"{what}: {p.text}")


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


# ----------------------------------------------------------------------------- context
@dataclass(frozen=True)
class Ctx:
    """What every page needs: the run's cache key, the sidebar's choices and the segment filter."""

    key: RunKey
    K: int
    k: int
    depth: int
    pop_buckets: tuple[str, ...] | None = None  # None = all buckets
    activity_buckets: tuple[str, ...] | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def run(self) -> Run:
        return self.key.run

    @property
    def path(self) -> str:
        return self.key.path

    @property
    def manifest(self) -> dict[str, Any]:
        return self.run.manifest

    @property
    def sem(self) -> str:
        return compared(self.manifest)[0]

    @property
    def col(self) -> str:
        return compared(self.manifest)[1]

    def _members(self, name: str, table: pd.DataFrame, column: str, idx: str, chosen: tuple[str, ...]) -> Sel:
        if name not in self._cache:
            self._cache[name] = tuple(int(x) for x in table.loc[table[column].astype(str).isin(chosen), idx])
        return self._cache[name]

    @property
    def users_sel(self) -> Sel:
        """user_idx of the users in the activity filter (None = all users)."""
        if self.activity_buckets is None:
            return None
        return self._members("users", self.run.users, "activity_bucket", "user_idx", self.activity_buckets)

    @property
    def items_sel(self) -> Sel:
        """item_idx of the items in the popularity-bucket filter (None = all items)."""
        if self.pop_buckets is None:
            return None
        return self._members("items", self.run.items, "pop_bucket", "item_idx", self.pop_buckets)

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


def reset_page_state() -> None:
    """Forget page state and widgets under ``PAGE_PREFIXES`` (called when another run is picked)."""
    for key in list(st.session_state.keys()):
        if str(key).startswith(PAGE_PREFIXES):
            del st.session_state[key]
    st.query_params.pop("item", None)


# ----------------------------------------------------------------------------- sidebar
def _ordered(values: list[str], order: tuple[str, ...]) -> list[str]:
    rank = {v: i for i, v in enumerate(order)}
    return sorted(values, key=lambda v: (rank.get(v.lower(), len(order)), v))


def _segment_select(label: str, options: list[str], key: str, help_: str) -> tuple[str, ...] | None:
    chosen = st.sidebar.multiselect(label, options, default=options, key=key, help=help_)
    if not chosen or set(chosen) == set(options):
        return None
    return tuple(chosen)


def _stop(exc: RunError) -> None:
    show_run_error(exc)
    st.stop()


def _pick_run() -> tuple[str, RunKey]:
    """The run picker: its label and the key of the opened run (stops with an error when there is none)."""
    runs = discover_runs()
    if not runs:
        _stop(RunError(f"no saved run found under {runs_root().resolve()}; {HOW_TO_MAKE}, "
                       "or open the Compute page to start one"))
    labels = list(runs)
    wanted = st.query_params.get("run")
    if "sb_run" not in st.session_state or st.session_state["sb_run"] not in labels:
        st.session_state["sb_run"] = wanted if wanted in labels else labels[0]
    label = st.sidebar.selectbox("Run", labels, key="sb_run", help=f"Runs under ${RUNS_ENV} (now {runs_root()}) "
                                 "or given with `-- --run PATH`")
    st.query_params["run"] = label
    if st.session_state.get("_semcollab_run") not in (None, label):
        reset_page_state()
    st.session_state["_semcollab_run"] = label
    key = RunKey(str(runs[label]), manifest_stamp(runs[label]))
    try:
        key.run  # noqa: B018  (opens and checks the run)
    except RunError as exc:
        _stop(exc)
    return label, key


def _pick_cutoffs(label: str, key: RunKey) -> tuple[int, int, int]:
    """K (one of the run's ks), k (≤ the stored neighbour depth) and that depth."""
    m = key.manifest
    ks = sorted({int(k) for k in (m.get("ks") or [m.get("K", 20)])})
    K_run = int(m.get("K", max(ks)))
    K = st.sidebar.selectbox("Top-K cut-off K", ks, index=ks.index(K_run) if K_run in ks else len(ks) - 1,
                             key=f"sb_K::{label}", help="Length of the recommendation lists (the run's ks)")
    try:
        depth = neighbour_depth(key)
    except RunError as exc:
        _stop(exc)
    if depth < 1:
        _stop(RunError(f"run {key.path}: the neighbors table is empty; recompute it with --force"))
    k = min(int(m.get("k_neighbors", depth) or depth), depth)
    if depth > 1:
        k = st.sidebar.slider("Neighbourhood size k", 1, depth, k, key=f"sb_k::{label}",
                              help=f"Nearest neighbours per item in each view (≤ {depth}, the depth stored in the run)")
    return int(K), int(k), depth


def _caption(label: str, m: dict[str, Any]) -> None:
    ds = m.get("dataset", {}) or {}
    st.sidebar.caption(
        f"Dataset {md_escape(ds.get('name', '?'))}: {ds.get('n_users', '?'):,} users, {ds.get('n_items', '?'):,} items, "
        f"{ds.get('n_interactions', '?'):,} interactions. Regime {md_escape(_regime_text(m.get('regime')))}. "
        f"Created {md_escape(m.get('created', '?'))}." if isinstance(ds.get("n_users"), int) else f"Run {md_escape(label)}")


def sidebar() -> Ctx:
    """Draw the shared sidebar (run, K, k, segment filter); store and return the :class:`Ctx`.

    Stops the script with a clear ``st.error`` when there is no usable run.
    """
    st.session_state.pop(CTX_KEY, None)
    label, key = _pick_run()
    K, k, depth = _pick_cutoffs(label, key)
    items, users = key.run.items, key.run.users
    st.sidebar.markdown("**Segment filter**")
    pop = _segment_select("Item popularity bucket", _ordered(list(items["pop_bucket"].astype(str).unique()), POP_ORDER),
                          f"sb_pop::{label}", "Training popularity of the items (head = most popular)")
    act = _segment_select("User activity bucket",
                          _ordered(list(users["activity_bucket"].astype(str).unique()), ACTIVITY_ORDER),
                          f"sb_act::{label}", "Number of training interactions of the users")
    _caption(label, key.manifest)
    ctx = Ctx(key=key, K=K, k=k, depth=depth, pop_buckets=pop, activity_buckets=act)
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
