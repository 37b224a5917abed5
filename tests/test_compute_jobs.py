"""The Compute page's server must survive its users: upload checks, job claims, process groups, uploads.

Real subprocesses throughout (no mocks): a decompression bomb is refused by the limited checking
process while the test process (standing in for the dashboard's server) does not grow; a run name
is claimed with a lock file that another process respects; cancelling a job and stopping its server
kill the job's whole process group (a ``sleep`` grandchild included); a job whose server was killed
is listed after the "restart" from its lock and log files; uploads are kept apart by role and
deleted when their job ends; "replace an existing run" never replaces a folder that is not a run.
"""
from __future__ import annotations

import gzip
import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from app_fixtures import (  # noqa: F401  (fixtures)
    APP_MAIN, ROOT, TIMEOUT, app_browser, app_chromium, app_env, app_make_data, app_run_path, app_serve, app_test, plain,
)
from test_app_pages import COMPUTE, _wait_done, compute_env, fake_launch  # noqa: F401  (fixtures)

from analysis.errors import ConfigError, RunError
from app import jobs
from app.upload_check import UploadLimitError

#: how much the test process (the dashboard's stand-in) may grow while a bomb is checked
SERVER_GROWTH_LIMIT_MB = 48
#: the checking process's own peak while it refuses the bomb (it stops reading at the cap)
CHECKER_PEAK_LIMIT_MB = 512
BOMB_MB = 100

#: a job: a ``sleep`` grandchild, two stage lines, then waits until the file argv[1] exists
JOB = textwrap.dedent("""
    import os, subprocess, sys, time
    child = subprocess.Popen(["sleep", "600"])
    print("[load] ...", flush=True)
    print("[load] done in 0.0s", flush=True)
    print(f"child {child.pid}", flush=True)
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.05)
    child.kill()
    print("run written to somewhere", flush=True)
""")
#: a dashboard server stand-in: claims argv[2] under argv[1], starts the job argv[3] (JSON; "" = claim
#: only) with an upload, prints the job's pid and waits for its stdin to close
SERVER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from app import jobs
    root, name = Path(sys.argv[1]), sys.argv[2]
    out = root / name
    jobs.claim(root, name, out, jobs.log_path_for(out), jobs.upload_folder(root, name))
    jobs.save_upload(jobs.upload_folder(root, name), "inter", "ratings.csv", b"user_id,item_id\\n")
    pid = jobs.begin(root, name, json.loads(sys.argv[3]), out, jobs.log_path_for(out)).pid if sys.argv[3] else 0
    print(pid, flush=True)
    sys.stdin.read()
""").format(root=str(ROOT))


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def _keep_signal_handlers():
    """jobs.attach chains SIGTERM / SIGHUP in the main thread: give pytest its own back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    jobs._HANDLERS.clear()


def wait_for(pred, what: str, limit: float = 60.0):
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not (got := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.05)
    return got


def grandchild(log: Path) -> int:
    """The pid of the job's ``sleep`` grandchild, from the job's log."""
    m = wait_for(lambda: re.search(r"^child (\d+)$", jobs.read_log(log), re.M), f"the job's child pid in {log}")
    return int(m.group(1))


def job_cmd(go: Path) -> list[str]:
    return [sys.executable, "-c", JOB, str(go)]


def start_server(root: Path, name: str, cmd: list[str] | None) -> tuple[subprocess.Popen, int]:
    """A server stand-in holding the claim of ``name`` (and the job ``cmd``); (its process, the job's pid)."""
    srv = subprocess.Popen([sys.executable, "-c", SERVER, str(root), name, json.dumps(cmd) if cmd else ""],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return srv, int(srv.stdout.readline().strip())


def vm_kb(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def write_bomb(path: Path, mb: int) -> None:
    """A valid interaction table that gzip shrinks about 700 times."""
    rows = b"u1,i1\n" * (1 << 17)
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"user_id,item_id\n")
        for _ in range(mb * (1 << 20) // len(rows)):
            fh.write(rows)


# ----------------------------------------------------------------------------- 1. upload checks
def test_decompression_bomb_is_refused_without_growing_the_server(tmp_path, monkeypatch):
    bomb = tmp_path / "ratings.csv.gz"
    write_bomb(bomb, BOMB_MB)
    assert bomb.stat().st_size < BOMB_MB * (1 << 20) / 100
    monkeypatch.setenv("SEMCOLLAB_UPLOAD_MAX_EXPANDED_MB", "32")
    Path("/proc/self/clear_refs").write_text("5")  # restart this process's peak-memory count (VmHWM)
    rss_before = vm_kb("VmRSS")
    with pytest.raises(UploadLimitError, match=r"^the interaction file ratings\.csv\.gz expands to more than 32 MB "
                                               r"when decompressed.*SEMCOLLAB_UPLOAD_MAX_EXPANDED_MB") as err:
        jobs.validate_files(bomb)
    assert (vm_kb("VmHWM") - rss_before) / 1024 < SERVER_GROWTH_LIMIT_MB
    assert err.value.peak_rss / (1 << 20) < CHECKER_PEAK_LIMIT_MB


@pytest.mark.parametrize("env,message", [
    ({"SEMCOLLAB_VALIDATE_MEMORY_MB": "600"}, r"needed more than 600 MB of memory, the limit \(SEMCOLLAB_VALIDATE_MEMORY_MB\)"),
    ({"SEMCOLLAB_VALIDATE_CPU_S": "2"}, r"used more than 2 s of CPU time, the limit \(SEMCOLLAB_VALIDATE_CPU_S\)"),
])
def test_the_checker_stops_at_its_memory_and_cpu_limits(tmp_path, monkeypatch, env, message):
    """Under the size cap but too big to parse within the checker's limits: refused, naming file and limit."""
    bomb = tmp_path / "ratings.csv.gz"
    write_bomb(bomb, BOMB_MB)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(UploadLimitError, match=r"^checking the interaction file ratings\.csv\.gz " + message):
        jobs.validate_files(bomb)


def test_a_zip_bomb_of_vectors_is_refused_from_its_declared_size(tmp_path, monkeypatch):
    import numpy as np

    data = app_make_data(tmp_path / "d")
    np.savez_compressed(tmp_path / "vectors.npz", ids=np.array(["i0"]), vectors=np.zeros((1, 3 << 20), np.float32))
    monkeypatch.setenv("SEMCOLLAB_UPLOAD_MAX_EXPANDED_MB", "8")
    with pytest.raises(UploadLimitError, match=r"^the vector file v\.npz expands to more than 8 MB"):
        jobs.validate_files(data / "interactions.parquet", None, "auto", tmp_path / "vectors.npz",
                            names={"vectors": "v.npz"})


# ----------------------------------------------------------------------------- 2. jobs
def test_a_lock_file_claims_a_name_across_processes(tmp_path):
    root = tmp_path / "runs"
    srv, _ = start_server(root, "taken", None)
    try:
        with pytest.raises(ConfigError, match="being computed right now"):
            jobs.claim(root, "taken", root / "taken", root / "taken.log")
        with pytest.raises(ConfigError, match="being computed right now"):
            jobs.check_name("taken", root)
    finally:
        srv.stdin.close()
        srv.wait(timeout=60)
    # its server is gone: the claim is stale, the name free again, the upload folder deleted
    assert jobs.claim(root, "taken", root / "taken", root / "taken.log") == jobs.lock_path(root, "taken")
    assert not jobs.upload_folder(root, "taken").exists()
    jobs.release(root, "taken")
    assert not jobs.lock_path(root, "taken").exists()


def test_concurrent_jobs_are_capped(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("SEMCOLLAB_MAX_JOBS", "1")
    jobs.claim(root, "first", root / "first", root / "first.log")
    with pytest.raises(ConfigError, match=r"at most 1 run at once \(SEMCOLLAB_MAX_JOBS\): wait for one to finish"):
        jobs.claim(root, "second", root / "second", root / "second.log")
    jobs.release(root, "first")
    jobs.claim(root, "second", root / "second", root / "second.log")
    jobs.release(root, "second")


@pytest.mark.parametrize("ignores_sigterm", [False, True])
def test_cancel_kills_the_whole_process_group(tmp_path, ignores_sigterm):
    root, go = tmp_path / "runs", tmp_path / "never"
    cmd = job_cmd(go)
    if ignores_sigterm:  # the job ignores SIGTERM: SIGKILL after the grace period
        cmd = [sys.executable, "-c", "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + JOB, str(go)]
    out = root / "victim"
    jobs.claim(root, "victim", out, jobs.log_path_for(out))
    proc = jobs.begin(root, "victim", cmd, out, jobs.log_path_for(out))
    child = grandchild(jobs.log_path_for(out))
    assert jobs.alive(proc.pid) and jobs.alive(child)
    assert jobs.cancel(root, "victim", grace=1.0, wait=True)
    proc.wait(timeout=30)
    wait_for(lambda: not jobs.alive(child), "the job's grandchild to go")
    jobs.finish(root, "victim", proc)
    rec = json.loads(jobs.record_path(root, "victim").read_text())
    assert rec["state"] == "cancelled" and not jobs.lock_path(root, "victim").exists()
    assert proc.returncode == -(signal.SIGKILL if ignores_sigterm else signal.SIGTERM)


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_stopping_the_server_kills_its_jobs(tmp_path, how):
    root = tmp_path / "runs"
    srv, pid = start_server(root, "orphan", job_cmd(tmp_path / "never"))
    child = grandchild(jobs.log_path_for(root / "orphan"))
    assert jobs.alive(pid) and jobs.alive(child)
    if how == "exit":
        srv.stdin.close()
    else:
        srv.send_signal(signal.SIGTERM)
    srv.wait(timeout=60)
    wait_for(lambda: not jobs.alive(pid) and not jobs.alive(child), "the job's process group to go")
    rec = json.loads(jobs.record_path(root, "orphan").read_text())
    assert (rec["state"], rec["error"]) == ("cancelled", "the server stopped")
    assert not jobs.upload_folder(root, "orphan").exists()


def test_jobs_of_a_killed_server_are_listed_after_a_restart(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root, go = tmp_path / "runs", tmp_path / "go"
    srv, pid = start_server(root, "survivor", job_cmd(go))
    child = grandchild(jobs.log_path_for(root / "survivor"))
    srv.kill()  # no chance to stop its job: the job runs on
    srv.wait(timeout=60)
    (row,) = jobs.list_jobs(root)
    assert (row["name"], row["state"], row["orphan"], row["pid"]) == ("survivor", "running", True, pid)
    assert row["fraction"] == pytest.approx(1 / len(jobs.STAGES))
    monkeypatch.setenv("SEMCOLLAB_RUNS", str(root))
    at = AppTest.from_file(APP_MAIN, default_timeout=120).run()
    at.switch_page(COMPUTE).run()
    table = at.dataframe[0].value
    assert table.loc[0, "run"] == "survivor" and table.loc[0, "state"] == "running (started by an earlier server)"
    go.touch()  # the job finishes by itself; nobody is watching it
    wait_for(lambda: not jobs.alive(pid) and not jobs.alive(child), "the job to end")
    (row,) = jobs.list_jobs(root)
    assert (row["state"], row["fraction"]) == ("done", 1.0)
    assert not jobs.lock_path(root, "survivor").exists() and not jobs.upload_folder(root, "survivor").exists()


def test_a_job_of_a_killed_server_can_be_stopped_from_the_page(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "runs"
    srv, pid = start_server(root, "runaway", job_cmd(tmp_path / "never"))
    child = grandchild(jobs.log_path_for(root / "runaway"))
    srv.kill()
    srv.wait(timeout=60)
    monkeypatch.setenv("SEMCOLLAB_RUNS", str(root))
    at = AppTest.from_file(APP_MAIN, default_timeout=120).run()
    at.switch_page(COMPUTE).run()
    at.button(key="compute_stop_runaway").click().run()
    wait_for(lambda: not jobs.alive(pid) and not jobs.alive(child), "the job's process group to go")
    (row,) = jobs.list_jobs(root)
    assert (row["state"], row["error"]) == ("cancelled", "stopped from the Compute page after a server restart")


# ----------------------------------------------------------------------------- 3. uploads and the run folder
def test_uploads_are_saved_by_role(tmp_path):
    folder = tmp_path / "up"
    a = jobs.save_upload(folder, "inter", "ratings.csv", b"interactions")
    b = jobs.save_upload(folder, "items", "ratings.csv", b"items")
    c = jobs.save_upload(folder, "vectors", "../../ratings.csv", b"vectors")
    assert (a.read_bytes(), b.read_bytes(), c.read_bytes()) == (b"interactions", b"items", b"vectors")
    assert {p.parent for p in (a, b, c)} == {folder / "inter", folder / "items", folder / "vectors"}
    with pytest.raises(ConfigError, match="unknown upload role"):
        jobs.save_upload(folder, "../x", "ratings.csv", b"")


@pytest.mark.parametrize("code,state", [(0, "done"), (3, "failed")])
def test_the_upload_folder_is_deleted_when_the_job_ends(tmp_path, code, state):
    root = tmp_path / "runs"
    up = jobs.upload_folder(root, "job")
    out = root / "job"
    jobs.claim(root, "job", out, jobs.log_path_for(out), up)
    jobs.save_upload(up, "inter", "ratings.csv", b"user_id,item_id\n")
    proc = jobs.begin(root, "job", [sys.executable, "-c", f"raise SystemExit({code})"], out, jobs.log_path_for(out))
    proc.wait(timeout=60)
    jobs.finish(root, "job", proc)
    assert not up.exists() and up.parent.is_dir()
    rec = json.loads(jobs.record_path(root, "job").read_text())
    assert (rec["state"], rec["rc"]) == (state, code)


def test_an_items_upload_named_like_the_interactions_does_not_overwrite_them(app_test, compute_env, fake_launch,
                                                                            tmp_path):
    data = app_make_data(tmp_path / "up")
    inter, items = (data / "interactions.parquet").read_bytes(), (data / "items.parquet").read_bytes()
    at = app_test(COMPUTE)
    at.radio(key="compute_source").set_value("files").run()
    at.file_uploader(key="compute_inter").set_value(("ratings.parquet", inter, "application/octet-stream"))
    at.file_uploader(key="compute_items").set_value(("ratings.parquet", items, "application/octet-stream"))
    at.text_input(key="compute_name").input("same-names").run()
    at.button(key="compute_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    cmd = fake_launch[0]
    data_path, item_path = Path(cmd[cmd.index("--data") + 1]), Path(cmd[cmd.index("--items") + 1])
    assert data_path != item_path
    assert (data_path.read_bytes(), item_path.read_bytes()) == (inter, items)
    n = len(pd.read_parquet(data / "interactions.parquet"))
    assert any(f"{n:,} interactions" in plain(i.value) for i in at.info)
    _wait_done(at)
    assert not (compute_env / ".uploads" / "same-names").exists()


def test_replace_never_replaces_a_folder_that_is_not_a_run(app_test, compute_env, fake_launch):
    victim = compute_env / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    with pytest.raises(RunError, match=r"victim is a folder that is not a run"):
        jobs.check_name("victim", compute_env, force=True)
    at = app_test(COMPUTE)
    at.text_input(key="compute_name").input("victim").run()
    at.checkbox(key="compute_force").check().run()
    at.button(key="compute_start").click().run()
    assert not at.exception and not fake_launch
    assert "victim is a folder that is not a run" in plain(at.error[0].value)
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert not jobs.lock_path(compute_env, "victim").exists()  # the claim was never taken


@pytest.mark.browser
@pytest.mark.skipif(app_chromium() is None, reason="Debian chromium (/usr/bin/chromium) is not installed")
def test_a_real_dashboard_server_kills_its_job_when_it_stops(app_browser, tmp_path):
    """``streamlit run`` stopped by SIGTERM (its own handler, then ``atexit``) takes its engine job with it."""
    root = tmp_path / "runs"
    root.mkdir()
    with app_serve(root) as url:
        page = app_browser.new_page()
        page.goto(f"{url}/compute", timeout=TIMEOUT)
        page.get_by_role("button", name="Start the run").click(timeout=TIMEOUT)
        lock = jobs.lock_path(root, "synthetic-new")
        rec = wait_for(lambda: (r := jobs._read(lock)) is not None and r.get("pid") and r, "the job's pid in its lock")
        page.close()
        assert jobs.alive(rec["pid"], rec["pid_start"]) and rec["pgid"] == rec["pid"]
    wait_for(lambda: not jobs.alive(rec["pid"], rec["pid_start"]), "the job to go with its server")
    done = json.loads(jobs.record_path(root, "synthetic-new").read_text())
    assert (done["state"], done["error"]) == ("cancelled", "the server stopped")
    assert not lock.exists() and not (root / "synthetic-new").exists()


def test_the_running_steps_tqdm_line_gives_its_bar_and_eta():
    from app.jobs import parse_step, progress

    s = parse_step("tune ials:  50%|█████     | 9/18 [00:09<00:12,  1.00s/it]")
    assert (s.desc, s.n, s.total, s.elapsed, s.eta, s.fraction) == ("tune ials", 9, 18, "00:09", "00:12", 0.5)
    assert parse_step("[split] done in 0.7s") is None and parse_step("") is None
    log = "[load] ...\n[load] done in 1.0s\n[rank and evaluate] ...\rrank:  25%|##5       | 2/8 [01:02<03:06,  31.0s/it]"
    pr = progress(log)
    assert pr.stage == "rank and evaluate" and pr.step.desc == "rank" and pr.step.eta == "03:06"
    assert progress(log + "\n[rank and evaluate] done in 250.0s").step is None  # a finished stage has no step
