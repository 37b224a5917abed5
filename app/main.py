"""Entry point of the dashboard: ``streamlit run app/main.py [-- --run PATH]``.

Registers the pages (``PAGES``), draws the shared sidebar and runs the chosen page. Runs are
looked for under ``$SEMCOLLAB_RUNS`` (default ``./runs``); ``--run PATH`` adds one and selects it.
To add a page: create ``app/views/<name>.py`` with ``render(ctx)`` and list it in ``PAGES``
(conventions: the docstring of app/state.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from analysis.errors import RunError  # noqa: E402
from app.state import discover_runs, show_run_error, sidebar  # noqa: E402

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


def main() -> None:
    st.set_page_config(page_title="semcollab", page_icon="🔀", layout="wide")
    pages = [st.Page(str(VIEWS / f), title=t, icon=i, url_path=u, default=(n == 0))
             for n, (f, t, i, u) in enumerate(PAGES) if (VIEWS / f).exists()]
    page = st.navigation(pages, position="sidebar")
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
