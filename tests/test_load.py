"""A bounded, loopback-only load test: ten concurrent sessions on the Maps page of one server.

One real ``streamlit run app/main.py`` on 127.0.0.1 (the ``app_server`` fixture, over the small
UMAP run) and ten headless Chromium pages (each its own browser context, so its own Streamlit
session) opened at once on the Maps page. Every session must draw both maps without an exception,
and the server's own CPU time (utime + stime of its process, from /proc) per page view must stay
under a generous stated bound: a resource bound, not a wall-clock one (on a small machine the
browsers' software WebGL, not the server, takes most of the wall time). The test is bounded by its
count (``N_SESSIONS``) and by one overall time budget (``BUDGET_S``) shared by every wait; past it,
each wait fails within a second. Skipped cleanly when Chromium is not installed.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from app_fixtures import (  # noqa: F401  (fixtures)
    TIMEOUT,
    app_browser,
    app_chromium,
    app_server,
    app_umap_run_path,
)
from test_browser import JS_MAPS_READY

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(app_chromium() is None, reason="Debian chromium (/usr/bin/chromium) is not installed")]

N_SESSIONS = 10
#: the server's CPU-seconds per Maps page view must stay below this (measured: about 0.35 on two cores;
#: the first, uncounted view loads and caches the run)
CPU_S_PER_VIEW = 3.0
#: the whole test (warm-up view, ten concurrent views) must be over within this many seconds
BUDGET_S = 360
JS_IDLE = ("() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
           "!document.querySelector('[data-testid^=\"stSkeleton\"]')")


def server_pid(url: str) -> int:
    """The pid of the ``streamlit run`` child of this process that listens on ``url``'s port."""
    port = str(urlparse(url).port).encode()
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == os.getpid() and any(b"streamlit" in c for c in cmd) and port in cmd:
            return int(d.name)
    raise AssertionError(f"no streamlit server child of this process listens on {url}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def test_ten_concurrent_maps_sessions_render_within_a_cpu_budget(app_browser, app_server):
    deadline = time.monotonic() + BUDGET_S

    def left() -> int:  # milliseconds of the budget left for the next wait (at least one second)
        return max(1_000, min(TIMEOUT * 2, int((deadline - time.monotonic()) * 1000)))

    pid = server_pid(app_server)
    warm = app_browser.new_page()  # the first view loads and caches the run: not counted
    warm.goto(f"{app_server}/maps", timeout=left())
    warm.wait_for_function(JS_MAPS_READY, timeout=left())
    warm.close()
    before = cpu_seconds(pid)
    pages = [app_browser.new_page(viewport={"width": 1500, "height": 1150}) for _ in range(N_SESSIONS)]
    try:
        for page in pages:  # all ten sessions start before any is awaited
            page.goto(f"{app_server}/maps", wait_until="commit", timeout=left())
        for page in pages:
            page.wait_for_function(JS_MAPS_READY, timeout=left())
            page.wait_for_function(JS_IDLE, timeout=left())
        used = cpu_seconds(pid) - before
        exceptions = [page.locator("[data-testid='stException']").count() for page in pages]
        maps = [page.evaluate("() => document.querySelectorAll('.js-plotly-plot').length >= 2") for page in pages]
    finally:
        for page in pages:
            page.close()
    assert exceptions == [0] * N_SESSIONS
    assert maps == [True] * N_SESSIONS
    assert used / N_SESSIONS < CPU_S_PER_VIEW, f"{used:.1f} CPU-s for {N_SESSIONS} views"
