"""Entry point of the dashboard: ``streamlit run app/main.py [-- --run PATH]``.

Registers the pages (``PAGES``), draws the shared sidebar and runs the chosen page. Runs are
looked for under ``$SEMCOLLAB_RUNS`` (default ``./runs``); ``--run PATH`` adds one and selects it.
To add a page: create ``app/views/<name>.py`` with ``render(ctx)`` and list it in ``PAGES``
(conventions: the docstring of app/state.py).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from analysis.errors import RunError  # noqa: E402
from app.state import discover_runs, runs_root, show_run_error, sidebar  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"
#: (file in app/views, title, icon, url path); the first one is the default page
PAGES = [
    ("overview.py", "Overview", ":material/dashboard:", "overview"),
    ("maps.py", "Maps", ":material/scatter_plot:", "maps"),
    ("items.py", "Items", ":material/list:", "items"),
    ("hits.py", "Hits", ":material/target:", "hits"),
    ("fusion.py", "Fusion", ":material/merge:", "fusion"),
    ("users.py", "Users", ":material/person:", "users"),
    ("regimes.py", "Regimes", ":material/stacked_line_chart:", "regimes"),
    ("alignment.py", "Alignment", ":material/compare_arrows:", "alignment"),
    ("structure.py", "Structure", ":material/hub:", "structure"),
    ("compute.py", "Compute", ":material/play_circle:", "compute"),
]


#: set by ``make app``: compute the default regime sweep in the background when it is missing
AUTO_SWEEP_ENV = "SEMCOLLAB_AUTO_SWEEP"


@st.cache_resource(show_spinner=False)
def _auto_sweep(root: str) -> str:
    """Start the default sweep once per server process (:func:`app.jobs.start_sweep`); what happened."""
    from app.jobs import start_sweep

    try:
        return "started" if start_sweep(Path(root)) else "present or running"
    except Exception as exc:  # a busy runs folder must not stop the dashboard
        return f"not started: {exc}"


def main() -> None:
    st.set_page_config(page_title="semcollab", page_icon="🔀", layout="wide")
    if os.environ.get(AUTO_SWEEP_ENV) == "1":
        _auto_sweep(str(runs_root()))
    pages = [st.Page(str(VIEWS / f), title=t, icon=i, url_path=u) for f, t, i, u in PAGES if (VIEWS / f).exists()]
    # Every page keeps its own url path, the first one included, so /overview is a deep link like /maps:
    # the default page is a hidden one that forwards to the Overview; the sidebar lists the pages itself.
    home = st.Page(lambda: st.switch_page(pages[0]), title=PAGES[0][1], url_path="home", default=True)
    page = st.navigation([home, *pages], position="hidden")
    for p in pages:
        st.sidebar.page_link(p)
    if page.url_path == "compute" and not discover_runs():
        # a fresh install has no run yet: the Compute page is how to make the first one
        st.sidebar.info("No saved run yet: start one on this page.")
        page.run()
        return
    sidebar()
    try:
        page.run()
    except RunError as exc:
        show_run_error(exc)


main()
