"""`make bench-ui` (also part of `make bench`): how fast the dashboard answers, in a real browser.

A real ``streamlit run`` over the ml-100k run (``runs/ml-100k``, made by ``make run``) on 127.0.0.1, driven
by Playwright with Debian's Chromium (``/usr/bin/chromium``). Measured, each as the median of a few tries:

- a fresh browser load of every page (new browser context: websocket, first script run, drawing);
- in-app navigation to every page (a sidebar link, until the page's own content is drawn), after a first
  visit: "every page ≤ 1 s after the first load";
- widget interactions: a step of the Users page's α slider (until the fused list shows the new α), a colour
  change on the Maps page (until the maps are redrawn), a Fusion-page metric change;
- the server's CPU seconds per page view (``/proc/<pid>/stat`` of the Streamlit process, user + system),
  alone and with ten concurrent browser sessions walking the pages; on two cores headless Chromium's
  software WebGL dominates the browser side, so server time is what tells whether ten people can use it.

Writes benchmarks/ui.md. A benchmark, never a test: nothing here asserts a time.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

#: (url path, text that only the drawn page shows)
PAGES = [("overview", "Every system"), ("maps", "Selection"), ("items", "Neighbours"), ("hits", "What each view finds"),
         ("fusion", "Paired-bootstrap differences"), ("users", "Training history"), ("regimes", "Regimes"),
         ("alignment", "Alignment"), ("structure", "Global similarity"), ("compute", "Compute")]
TIMEOUT = 120_000


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(page) -> None:
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
                           "!document.querySelector('[data-testid^=\"stSkeleton\"]')", timeout=TIMEOUT)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fresh_loads(browser, url: str, tries: int = 3) -> dict[str, float]:
    out = {}
    for path, text in PAGES:
        ts = []
        for _ in range(tries):
            ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
            page = ctx.new_page()
            ts.append(_timed(lambda: (page.goto(f"{url}/{path}"),
                                      page.get_by_text(text).first.wait_for(timeout=TIMEOUT), _settle(page))))
            ctx.close()
        out[path] = statistics.median(ts)
    return out


def navigation(browser, url: str, tries: int = 3) -> dict[str, float]:
    """Sidebar link -> the page's content, after each page was visited once in this session."""
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = ctx.new_page()
    page.goto(f"{url}/overview")
    page.get_by_text("Every system").first.wait_for(timeout=TIMEOUT)
    out: dict[str, list[float]] = {p: [] for p, _ in PAGES}
    for attempt in range(tries + 1):
        for path, text in PAGES:
            link = page.locator(f"[data-testid='stSidebar'] a[href='{path}']").first
            t = _timed(lambda: (link.click(), page.wait_for_url(f"**/{path}*", timeout=TIMEOUT),
                                page.get_by_text(text).first.wait_for(timeout=TIMEOUT), _settle(page)))
            if attempt:  # the first round is the first visit of each page
                out[path].append(t)
    ctx.close()
    return {p: statistics.median(v) for p, v in out.items()}


def _open(page, url: str, text: str) -> None:
    """Go to ``url`` and wait until ``text`` is drawn and the script run is over."""
    page.goto(url)
    page.get_by_text(text).first.wait_for(timeout=TIMEOUT)
    _settle(page)


def _choose(page, box: str, option: str, done_js: str) -> float:
    """Seconds from picking ``option`` in the select box ``box`` until ``done_js(option)`` holds and the run is over."""
    def act():
        page.get_by_role("combobox", name=box).click()
        page.get_by_role("option", name=option, exact=True).click()
        page.wait_for_function(done_js, arg=option, timeout=TIMEOUT)
        _settle(page)
    return _timed(act)


def interactions(browser, url: str, tries: int = 5) -> dict[str, float]:
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = ctx.new_page()
    res: dict[str, list[float]] = {"Users: α slider step": [], "Maps: colour change": [], "Fusion: metric change": []}
    _open(page, f"{url}/users", "Training history")
    box = page.locator("[data-testid='stSlider']", has_text="Fusion weight α")
    slider = box.get_by_role("slider").first
    for _ in range(tries):
        slider.focus()
        now = float(box.locator("[data-testid='stSliderThumbValue']").first.inner_text())
        key = "ArrowLeft" if now >= 0.95 else "ArrowRight"
        want = round(now + (-0.05 if key == "ArrowLeft" else 0.05), 2)
        res["Users: α slider step"].append(_timed(lambda: (page.keyboard.press(key), page.get_by_text(
            f"Fusion at α = {want:.2f}").first.wait_for(timeout=TIMEOUT), _settle(page))))
    _open(page, f"{url}/maps", "Selection")
    legend_is = ("(c) => Array.from(document.querySelectorAll('.js-plotly-plot')).some(g => g.layout && "
                 "g.layout.legend && g.layout.legend.title && String(g.layout.legend.title.text) === c)")
    for choice in ("popularity bucket", "primary genre", "popularity bucket", "primary genre", "popularity bucket"):
        res["Maps: colour change"].append(_choose(page, "Colour by", choice, legend_is))
    _open(page, f"{url}/fusion", "Paired-bootstrap differences")
    axis_is = ("(m) => Array.from(document.querySelectorAll('.js-plotly-plot')).some(g => g.layout && g.layout.yaxis "
               "&& String(g.layout.yaxis.title.text).startsWith(m))")
    for metric in ("Recall", "NDCG", "Recall", "NDCG", "Recall"):
        res["Fusion: metric change"].append(_choose(page, "Metric", metric, axis_is))
    ctx.close()
    return {k: statistics.median(v) for k, v in res.items()}


def _walk(walls: list[float]) -> None:
    """One browser session (its own Playwright and Chromium: the sync API is per thread) loading every page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        page = b.new_context(viewport={"width": 1500, "height": 1100}).new_page()
        for path, text in PAGES:
            t = time.perf_counter()
            page.goto(f"{URL[0]}/{path}")
            page.get_by_text(text).first.wait_for(timeout=TIMEOUT * 3)
            walls.append(time.perf_counter() - t)
        b.close()


#: the server's URL, for the session threads
URL: list[str] = []


def server_cpu(pid: int, sessions: int) -> tuple[float, float]:
    """(server CPU seconds per page view, median browser wall seconds per page view) while ``sessions``
    browser sessions each load every page once, all at the same time."""
    walls: list[float] = []
    threads = [threading.Thread(target=_walk, args=(walls,)) for _ in range(sessions)]
    c0 = _cpu_s(pid)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (_cpu_s(pid) - c0) / max(len(walls), 1), statistics.median(walls) if walls else float("nan")


def main() -> int:
    from playwright.sync_api import sync_playwright

    from app_fixtures import app_serve

    run = ROOT / "runs" / "ml-100k"
    if not (run / "manifest.json").is_file():
        print("bench-ui: no runs/ml-100k: make it first with `make run`", file=sys.stderr)
        return 2
    if not Path("/usr/bin/chromium").exists():
        print("bench-ui: needs Debian's Chromium (/usr/bin/chromium): `make chromium`", file=sys.stderr)
        return 2
    with app_serve(run.parent, "--run", str(run)) as url, sync_playwright() as p:
        pid = _server_pid(url)
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        warm = browser.new_context().new_page()
        for path, text in PAGES:  # warm the server's caches once (what a first visitor pays is measured below)
            warm.goto(f"{url}/{path}")
            warm.get_by_text(text).first.wait_for(timeout=TIMEOUT)
        print("fresh loads ...", flush=True)
        loads = fresh_loads(browser, url)
        print("navigation ...", flush=True)
        nav = navigation(browser, url)
        print("interactions ...", flush=True)
        act = interactions(browser, url)
        browser.close()
        print("server CPU per view ...", flush=True)
        URL[:] = [url]
        one = server_cpu(pid, 1)
        ten = server_cpu(pid, 10)
    _write(loads, nav, act, one, ten)
    return 0


def _server_pid(url: str) -> int:
    """The pid of the Streamlit server listening on ``url``'s port (from /proc/net/tcp)."""
    port = int(url.rsplit(":", 1)[1])
    inodes = {line.split()[9] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
              if int(line.split()[1].split(":")[1], 16) == port and line.split()[3] == "0A"}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd).strip("socket:[]") in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


def _write(loads, nav, act, one, ten) -> None:
    lines = ["# Dashboard speed (`make bench-ui`)", "",
             f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, {os.cpu_count()} "
             "cores: a real `streamlit run` over runs/ml-100k, headless Chromium (software WebGL) on the same box. "
             "Medians of 3–5 tries. Targets (issue 12): every interaction ≤ 0.5 s, every page ≤ 1 s after the first "
             "load, ten sessions each ≤ 2 s of server time per page.", "",
             "| page | fresh browser load (s) | in-app navigation (s) |", "|---|---:|---:|"]
    lines += [f"| {p} | {loads[p]:.2f} | {nav[p]:.2f} |" for p, _ in PAGES]
    lines += ["", "| interaction | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in act.items()]
    lines += ["", "| sessions at once | server CPU s per page view | browser wall s per page view (median) |",
              "|---:|---:|---:|", f"| 1 | {one[0]:.2f} | {one[1]:.2f} |", f"| 10 | {ten[0]:.2f} | {ten[1]:.2f} |", ""]
    (ROOT / "benchmarks" / "ui.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
