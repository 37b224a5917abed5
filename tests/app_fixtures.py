"""Fixtures of the dashboard tests (all named ``app_*``): one small *real* run made by the pipeline.

The run is computed once per test session into a temporary folder, with ``SEMCOLLAB_CACHE``
pointed at a temporary folder too. It goes through the ordinary file loader (``dataset="files"``)
so that one item can carry an HTML title (``APP_HTML_TITLE``): the data are the seeded
synthetic catalogue written to Parquet with item 0 renamed, and its planted semantic vectors
as an ``.npz`` file; the small tuning grids of conftest keep it quick, and UMAP is off (the Maps
page then draws each view's first two principal components; a ``slow`` test covers UMAP runs).
Import the fixtures by name from this module.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import QUICK_TUNING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

APP_MAIN = str(ROOT / "app" / "main.py")
APP_HTML_TITLE = "<script>alert(1)</script><b>x</b>"
APP_HTML_ITEM = "i0"
#: small enough for a quick pipeline run, large enough for cold items and every bucket
APP_SYNTHETIC = {"n_users": 300, "n_items": 400, "mean_per_user": 30.0, "seed": 0}


def app_make_data(folder: Path) -> Path:
    """Write the synthetic catalogue (item 0 with an HTML title) as Parquet + semantic .npz."""
    from analysis.synthetic import generate

    folder.mkdir(parents=True, exist_ok=True)
    ds = generate(**APP_SYNTHETIC)
    items = ds.items.copy()
    items.loc[items["item_id"] == APP_HTML_ITEM, "title"] = APP_HTML_TITLE
    ds.interactions.to_parquet(folder / "interactions.parquet", index=False)
    items.to_parquet(folder / "items.parquet", index=False)
    ids, vecs = ds.vectors["semantic"]
    np.savez(folder / "semantic.npz", ids=np.asarray(ids, dtype=str), vectors=np.asarray(vecs, np.float32))
    return folder


def _make_run(base: Path, name: str, umap: bool) -> Path:
    import analysis

    mp = pytest.MonkeyPatch()
    mp.setenv("SEMCOLLAB_CACHE", str(base / "cache"))
    try:
        data = app_make_data(base / "data")
        cfg = analysis.RunConfig(dataset="files", data_path=str(data), semantic=str(data / "semantic.npz"),
                                 ks=(10, 20), k_neighbors=10, n_boot=200, n_alphas=6, cold_item_share=0.1, seed=0,
                                 umap=umap, tuning=QUICK_TUNING)
        out = base / "runs" / name
        analysis.run(cfg, out=out, log=lambda _msg: None)
        return out
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def app_run_path(tmp_path_factory) -> Path:
    """Path of a small real run (synthetic data through the file loader, 10 % cold items, no UMAP)."""
    return _make_run(tmp_path_factory.mktemp("app"), "small", umap=False)


@pytest.fixture(scope="session")
def app_umap_run_path(tmp_path_factory) -> Path:
    """The same small run with its UMAP layouts (slower: for the browser tests and one ``slow`` test)."""
    return _make_run(tmp_path_factory.mktemp("app_umap"), "small-umap", umap=True)


@pytest.fixture(scope="session")
def app_run(app_run_path):
    """The small run, opened with :func:`analysis.open_run`."""
    from analysis import open_run

    return open_run(app_run_path)


@pytest.fixture
def app_env(app_run_path, monkeypatch) -> Path:
    """Point the dashboard at the folder holding the small run; returns that folder."""
    root = app_run_path.parent
    monkeypatch.setenv("SEMCOLLAB_RUNS", str(root))
    monkeypatch.setattr(sys, "argv", ["app/main.py"])
    return root


@pytest.fixture
def app_test(app_env):
    """Factory: ``app_test(page=None, **query_params)`` -> an AppTest of the dashboard, already run
    (on ``page`` — a file under app/, e.g. ``"views/maps.py"`` — when given)."""
    from streamlit.testing.v1 import AppTest

    def make(page: str | None = None, **query):
        at = AppTest.from_file(APP_MAIN, default_timeout=120)
        at.query_params.update(query)
        at.run()
        if page is not None:
            at.switch_page(page)
            at.query_params.update(query)
            at.run()
        return at

    return make


def app_chromium() -> str | None:
    """Debian's Chromium, or None when it is not installed."""
    p = "/usr/bin/chromium"
    return p if os.path.exists(p) and os.access(p, os.X_OK) else None


@pytest.fixture(scope="session")
def app_umap_run(app_umap_run_path):
    """The small UMAP run, opened."""
    from analysis import open_run

    return open_run(app_umap_run_path)


@contextlib.contextmanager
def app_serve(runs_root: Path, *args: str, env: dict[str, str] | None = None):
    """``streamlit run app/main.py`` over ``runs_root`` on a free port (extra environment ``env``); yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = runs_root.parent / f"streamlit-{port}.log"
    cmd = [sys.executable, "-m", "streamlit", "run", APP_MAIN, "--server.address", "127.0.0.1", "--server.port",
           str(port), "--server.headless", "true", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false", "--", *args]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "SEMCOLLAB_RUNS": str(runs_root), **(env or {})}, stdout=fh,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()



@pytest.fixture(scope="module")
def app_server(app_umap_run_path):
    """A real ``streamlit run app/main.py`` on a free 127.0.0.1 port over the small UMAP run; yields its URL."""
    with app_serve(app_umap_run_path.parent) as url:
        yield url


@pytest.fixture(scope="module")
def app_browser():
    """Headless Debian Chromium driven by Playwright (skips cleanly when Chromium is absent)."""
    exe = app_chromium()
    if exe is None:
        pytest.skip("Debian chromium (/usr/bin/chromium) is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            yield browser
        finally:
            browser.close()


# ----------------------------------------------------------------------------- page-test helpers
def assert_clean(at) -> None:
    """No exception and no st.error on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def plain(md: str) -> str:
    """Markdown with the backslash escapes of app.text.md_escape removed."""
    return md.replace("\\", "")


def arr(v) -> np.ndarray:
    """A Plotly JSON array: a plain list, or Plotly's typed-array form {"dtype", "bdata"[, "shape"]}."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            a = a.reshape([int(x) for x in str(v["shape"]).split(",")])
        return a
    return np.asarray(v, dtype=object)


def figure(at, key: str) -> dict:
    """The Plotly figure (as JSON) of the chart drawn with ``key``."""
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))
    return json.loads(chart.proto.spec)


#: browser-test constants
SHOTS = ROOT / "tests" / "output" / "screenshots"
TIMEOUT = 90_000
