"""Run safety (issue 8): nothing lost, nothing silently wrong.

* ``--out`` may only be absent, an empty folder or a run: a folder of other files, a plain
  file, the current folder (or a parent), a symbolic link or an unwritable place is refused
  with a ``RunError`` naming the path, before any computing, and nothing is touched.
* ``write_run`` killed at every file-system operation leaves the old or the new run whole
  at ``out``, or recoverable: after the next ``prepare_out`` the run is whole and no
  ``.NAME.tmp-*`` / ``.NAME.old-*`` leftovers remain. Kills are simulated in process (from
  the n-th operation on every operation raises, so nothing more happens, as after SIGKILL)
  and, at the decisive points, with a real SIGKILL of a child process.
* Every file of a run carries its SHA-256 in the manifest: an edited manifest, a rewritten,
  truncated, missing or extra file is refused by ``open_run`` naming the file, and the
  cache-hit check (``cached_run``) then recomputes instead of keeping the broken run.
* SIGTERM is handled like Ctrl-C, so temporary folders are removed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import runstore as rs
from analysis.cli import main
from analysis.errors import RunError, SemcollabError
from conftest import ROOT

SEEDS = {"old": 1, "new": 2}


def _tables(marker: str) -> dict[str, pd.DataFrame]:
    s = SEEDS[marker]
    return {t: pd.DataFrame({"x": np.arange(6) + s, "name": [f"{t}-{i}" for i in range(6)]}) for t in rs.TABLES}


def _vectors(marker: str) -> dict[str, np.ndarray]:
    return {v: np.full((4, 3), SEEDS[marker], np.float32) for v in rs.VECTORS}


def _manifest(marker: str) -> dict:
    return {"marker": marker, "config_hash": "cfg", "schema_version": rs.SCHEMA_VERSION,
            "dataset": {"checksum": "data"}, "summary": {"collab_recall@10": {"mean": 0.2, "lo": 0.1, "hi": 0.3}}}


def make_run(out: Path, marker: str) -> Path:
    return rs.write_run(out, _tables(marker), _vectors(marker), _manifest(marker))


def state(out: Path) -> str:
    """What ``out`` holds: absent, empty (folder), the marker of a whole run, or broken."""
    if not os.path.lexists(out):
        return "absent"
    if out.is_dir() and not any(out.iterdir()):
        return "empty"
    try:
        return rs.verify_run(out)["marker"]
    except RunError:
        return "broken"


def siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    """The id of a process that has ended (and was reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ----------------------------------------------------------------------------- refused targets
@pytest.fixture
def victim(tmp_path) -> Path:
    """A folder of the user's own files, not a run."""
    d = tmp_path / "thesis"
    (d / "data").mkdir(parents=True)
    (d / "chapter1.tex").write_text("months of work")
    (d / "data" / "x.csv").write_text("1,2\n")
    return d


def test_prepare_out_refuses_a_folder_that_is_not_a_run(victim):
    before = files_of(victim)
    with pytest.raises(RunError, match="is a folder that is not a run") as e:
        rs.prepare_out(victim)
    assert str(victim) in str(e.value) and "chapter1.tex" in str(e.value)
    assert files_of(victim) == before


def test_write_run_never_replaces_a_folder_that_is_not_a_run(victim):
    before = files_of(victim)
    with pytest.raises(RunError, match="is a folder that is not a run") as e:
        make_run(victim, "new")
    assert str(victim) in str(e.value)
    assert files_of(victim) == before
    assert siblings(victim) == []


def test_cli_refuses_the_victim_folder_before_computing(victim, monkeypatch, capsys):
    computed = []

    def fake_run(*a, **k):
        computed.append(k.get("out"))
        raise SemcollabError("computed")

    monkeypatch.setattr(analysis, "run", fake_run)
    before = files_of(victim)
    rc = main(["run", "--dataset", "synthetic", "--synthetic", "n_users=50", "--out", str(victim)])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"semcollab: error: {victim} is a folder that is not a run" in err and "Traceback" not in err
    assert computed == []
    assert files_of(victim) == before and siblings(victim) == []


def test_a_plain_file_is_never_replaced(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    with pytest.raises(RunError, match="is a file, not a run folder") as e:
        rs.prepare_out(f)
    assert str(f) in str(e.value)
    with pytest.raises(RunError, match="is a file, not a run folder"):
        make_run(f, "new")
    assert f.read_text() == "keep me"
    assert siblings(f) == []


@pytest.mark.parametrize("out", [".", "..", "sub/.."])
def test_the_current_folder_and_its_parents_are_refused(tmp_path, monkeypatch, out):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    with pytest.raises(RunError, match="is the current folder or one of its parents"):
        rs.prepare_out(out)
    assert (work / "keep.txt").read_text() == "x"


def test_write_run_to_the_current_folder_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(RunError, match="current folder"):
        make_run(Path("."), "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_symbolic_link_is_refused(tmp_path):
    real = make_run(tmp_path / "real", "old")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(RunError, match="symbolic link") as e:
        rs.prepare_out(link)
    assert str(link) in str(e.value)
    with pytest.raises(RunError, match="symbolic link"):
        make_run(link, "new")
    assert link.is_symlink() and state(real) == "old"
    assert siblings(real) == ["link"]


def test_a_parent_that_is_a_file_or_not_writable_is_refused(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunError, match=f"{f} is a file, not a folder"):
        rs.prepare_out(f / "deeper" / "run")
    ro = tmp_path / "ro"
    ro.mkdir()
    # permission bits do not stop root, so the check's own call says "not writable"
    monkeypatch.setattr(os, "access", lambda p, mode, **k: Path(p) != ro)
    with pytest.raises(RunError, match=f"the folder {ro} is not writable"):
        rs.prepare_out(ro / "run")


def test_absent_empty_and_run_folders_are_accepted(tmp_path):
    assert rs.prepare_out(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    empty = tmp_path / "empty"
    empty.mkdir()
    assert rs.prepare_out(empty) == empty
    make_run(empty, "old")
    make_run(empty, "new")  # a run is replaced
    assert state(empty) == "new"
    (empty / "manifest.json").write_text("{ damaged")  # a damaged run is still a run: it may be replaced
    make_run(empty, "old")
    assert state(empty) == "old" and siblings(empty) == []


# ----------------------------------------------------------------------------- start-up recovery
def test_an_orphaned_old_run_is_restored_and_stale_temp_folders_removed(tmp_path):
    """What a kill between the two renames of the old write_run left: no run at out, the old
    run aside, the new complete one and a half-written one in temporary folders."""
    out, pid = tmp_path / "run", dead_pid()
    make_run(tmp_path / "a", "old").rename(tmp_path / f".run.old-{pid}")
    make_run(tmp_path / "b", "new").rename(tmp_path / f".run.tmp-{pid}-b0b0b0b0")
    half = make_run(tmp_path / "c", "new")
    (half / "manifest.json").unlink()
    half.rename(tmp_path / f".run.tmp-{pid}-c0c0c0c0")
    logs = []
    assert rs.prepare_out(out, log=logs.append) == out
    assert state(out) == "old"
    assert siblings(out) == []
    assert any(f".run.old-{pid}" in m and "restored" in m for m in logs)


def test_stale_copies_go_but_live_writers_and_foreign_folders_stay(tmp_path):
    out, pid = make_run(tmp_path / "run", "new"), dead_pid()
    make_run(tmp_path / "x", "old").rename(tmp_path / f".run.old-{pid}-1a2b3c4d")
    live = tmp_path / f".run.tmp-{os.getpid()}-live0000"  # a writer that is still running
    live.mkdir()
    (live / "items.parquet").write_bytes(b"being written")
    foreign = tmp_path / f".run.tmp-{pid}-mine0000"  # named like ours, but holds the user's file
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    rs.prepare_out(out)
    assert state(out) == "new"
    assert siblings(out) == sorted([live.name, foreign.name])
    assert (live / "items.parquet").read_bytes() == b"being written"
    assert (foreign / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- kill at every point
class Killed(BaseException):
    """A simulated SIGKILL (not an Exception, so no ``except Exception`` catches it)."""


class KillSwitch:
    """Counts write_run's file-system operations; from the ``at``-th on each one raises Killed
    instead of running, so nothing more changes on disk, ``finally`` blocks included."""

    OPS = [(os, "mkdir"), (os, "rename"), (os, "replace"), (os, "unlink"), (os, "rmdir"), (os, "fsync"),
           (rs, "_renameat2"), (pd.DataFrame, "to_parquet"), (np, "save")]

    def __init__(self, at: int | None):
        self.at, self.count = at, 0

    def wrap(self, fn):
        def op(*a, **k):
            self.count += 1
            if self.at is not None and self.count >= self.at:
                raise Killed(self.count)
            return fn(*a, **k)
        return op

    def write(self, out: Path, writer_pid: int) -> None:
        """write_run of the "new" run as process ``writer_pid``, with the switch on."""
        with pytest.MonkeyPatch.context() as mp:
            for obj, name in self.OPS:
                mp.setattr(obj, name, self.wrap(getattr(obj, name)))
            mp.setattr(os, "getpid", lambda: writer_pid)
            make_run(out, "new")


def _set_up(out: Path, before: str) -> None:
    out.parent.mkdir(parents=True)
    if before == "empty":
        out.mkdir()
    if before == "old":
        make_run(out, "old")


@pytest.mark.parametrize("swap", ["exchange", "renames"])
@pytest.mark.parametrize("before", ["absent", "empty", "old"])
def test_write_run_killed_at_every_point_leaves_a_whole_run(tmp_path, monkeypatch, swap, before):
    # few files, so that every point is a quick case (write_run treats every file alike)
    monkeypatch.setattr(rs, "TABLES", ["items", "users"])
    monkeypatch.setattr(rs, "VECTORS", ["collab_items"])
    if swap == "renames":  # the platforms without renameat2
        monkeypatch.setattr(rs, "_RENAMEAT2", None)
    writer = dead_pid()
    full = KillSwitch(None)
    _set_up(tmp_path / "all" / "run", before)
    full.write(tmp_path / "all" / "run", writer)
    assert state(tmp_path / "all" / "run") == "new" and siblings(tmp_path / "all" / "run") == []
    assert full.count >= 10  # every write, flush, rename and removal is a point
    seen = set()
    for n in range(1, full.count + 1):
        out = tmp_path / str(n) / "run"
        _set_up(out, before)
        with pytest.raises(Killed):
            KillSwitch(n).write(out, writer)
        rs.prepare_out(out)  # the next start
        seen.add(state(out))
        assert state(out) in {before, "new"}, f"killed before operation {n}"
        assert siblings(out) == [], f"killed before operation {n}"
    assert seen == {before, "new"}


KILL_CHILD = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import numpy as np, pandas as pd
from analysis import runstore as rs
out, op, nth, swap = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
if swap == "renames":
    rs._RENAMEAT2 = None
owner = {"to_parquet": pd.DataFrame, "rename": os, "unlink": os}[op]
real, calls = getattr(owner, op), [0]
def op_then_maybe_die(*a, **k):
    calls[0] += 1
    if calls[0] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
setattr(owner, op, op_then_maybe_die)
tables = {t: pd.DataFrame({"x": np.arange(6) + 2}) for t in rs.TABLES}
vectors = {v: np.full((4, 3), 2, np.float32) for v in rs.VECTORS}
rs.write_run(out, tables, vectors, {"marker": "new"})
"""


@pytest.mark.parametrize("op, nth, swap, after", [
    ("to_parquet", 3, "exchange", "old"),  # half-written temporary folder
    ("rename", 2, "renames", "old"),       # between the two renames: no run at out
    ("unlink", 1, "exchange", "new"),      # swapped; the old run waits at the temporary name
    ("unlink", 3, "renames", "new"),       # the old run half removed
])
def test_sigkill_of_a_writer_is_recovered_on_the_next_start(tmp_path, op, nth, swap, after):
    out = make_run(tmp_path / "run", "old")
    r = subprocess.run([sys.executable, "-c", KILL_CHILD, str(ROOT), str(out), op, str(nth), swap],
                       capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert siblings(out) != []  # the kill left something to recover
    rs.prepare_out(out)
    assert state(out) == after
    assert siblings(out) == []


# ----------------------------------------------------------------------------- integrity
@pytest.fixture
def saved(tmp_path) -> Path:
    return make_run(tmp_path / "run", "old")


def _edit_manifest(p: Path) -> None:
    m = json.loads((p / "manifest.json").read_text())
    m["summary"]["collab_recall@10"]["mean"] = 0.9999  # outside its own interval
    (p / "manifest.json").write_text(json.dumps(m, indent=1, sort_keys=True))


def _rewrite_items(p: Path) -> None:
    pd.DataFrame({"x": np.arange(6) * 7, "name": [f"other-{i}" for i in range(6)]}).to_parquet(p / "items.parquet",
                                                                                             index=False)


def _truncate_items(p: Path) -> None:
    data = (p / "items.parquet").read_bytes()
    (p / "items.parquet").write_bytes(data[: len(data) // 2])


def _flip_a_vector_byte(p: Path) -> None:
    f = p / "vectors" / "collab_items.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))


def _drop_vectors(p: Path) -> None:
    (p / "vectors" / "collab_users.npy").unlink()


def _add_a_table(p: Path) -> None:
    pd.DataFrame({"x": [1]}).to_parquet(p / "sneaked.parquet")


TAMPERED = [(_edit_manifest, "manifest.json"), (_rewrite_items, "items.parquet"), (_truncate_items, "items.parquet"),
            (_flip_a_vector_byte, "vectors/collab_items.npy"), (_drop_vectors, "vectors/collab_users.npy"),
            (_add_a_table, "sneaked.parquet")]


@pytest.mark.parametrize("tamper, name", TAMPERED, ids=[t.__name__.strip("_") for t, _ in TAMPERED])
def test_a_tampered_run_is_refused_naming_the_file(saved, tamper, name):
    tamper(saved)
    with pytest.raises(RunError) as e:
        rs.open_run(saved)
    msg = str(e.value)
    assert f"run {saved} " in msg and name in msg and "--force" in msg


@pytest.mark.parametrize("tamper, name", TAMPERED, ids=[t.__name__.strip("_") for t, _ in TAMPERED])
def test_the_cache_check_recomputes_a_tampered_run(saved, tamper, name):
    tamper(saved)
    logs = []
    assert rs.cached_run(saved, "cfg", "data", rs.SCHEMA_VERSION, log=logs.append) is None
    assert len(logs) == 1 and name in logs[0] and "computing it again" in logs[0]


def test_the_cache_check_reuses_a_whole_run_and_skips_another_config(saved):
    logs = []
    hit = rs.cached_run(saved, "cfg", "data", rs.SCHEMA_VERSION, log=logs.append)
    assert hit.manifest["marker"] == "old" and hit.path == saved
    assert logs == [f"cache hit: {saved} already holds this run (use --force to recompute)"]
    assert rs.cached_run(saved, "other-config", "data", log=logs.append) is None
    assert rs.cached_run(saved, "cfg", "other-data", log=logs.append) is None
    assert rs.cached_run(saved.parent / "nothing", "cfg", "data", log=logs.append) is None
    assert len(logs) == 1


def test_the_manifest_records_every_file(saved):
    m = rs.read_manifest(saved)
    expected = sorted([f"{t}.parquet" for t in rs.TABLES] + [f"vectors/{v}.npy" for v in rs.VECTORS])
    assert sorted(m["files"]) == expected
    items = m["files"]["items.parquet"]
    assert items["bytes"] == (saved / "items.parquet").stat().st_size and len(items["sha256"]) == 64
    assert rs.verify_run(saved) == m


def test_a_run_without_checksums_asks_for_a_recompute(saved):
    m = json.loads((saved / "manifest.json").read_text())
    del m["files"], m["manifest_sha256"]
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(RunError, match=r"no file checksums .* recompute it with `semcollab run \.\.\. --force`"):
        rs.open_run(saved)
    assert rs.cached_run(saved, "cfg", "data", log=lambda m: None) is None


def test_read_errors_become_run_errors_naming_the_file(saved):
    run = rs.open_run(saved)
    (saved / "items.parquet").write_bytes(b"not a parquet file")
    vec = saved / "vectors" / "collab_items.npy"
    vec.write_bytes(vec.read_bytes()[:40])
    with pytest.raises(RunError, match=rf"run {saved} could not be read: items\.parquet \(.*--force"):
        run.table("items")
    with pytest.raises(RunError, match=rf"run {saved} could not be read: vectors/collab_items\.npy \("):
        run.vectors("collab_items")


# ----------------------------------------------------------------------------- SIGTERM
def test_sigterm_is_handled_like_ctrl_c_and_leaves_no_temporary_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    received = []

    def fake_run(cfg, out, force):
        real_save = np.save

        def save_after_sigterm(*a, **k):
            os.kill(os.getpid(), signal.SIGTERM)
            return real_save(*a, **k)

        monkeypatch.setattr(np, "save", save_after_sigterm)
        make_run(Path(out), "new")

    def recorder(signum, frame):
        received.append(signum)

    monkeypatch.setattr(analysis, "run", fake_run)
    previous = signal.signal(signal.SIGTERM, recorder)
    try:
        rc = main(["run", "--dataset", "synthetic", "--out", str(out)])
        after = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert rc == 143 and "semcollab: interrupted" in capsys.readouterr().err
    assert received == [] and after is recorder  # main's handler took it, then the caller's came back
    assert list(tmp_path.iterdir()) == []


def test_seal_run_accepts_a_run_changed_on_purpose(saved):
    _rewrite_items(saved)
    _drop_vectors(saved)
    m = rs.seal_run(saved)
    assert "vectors/collab_users.npy" not in m["files"] and m["marker"] == "old"
    assert rs.verify_run(saved) == m
    assert rs.open_run(saved).table("items")["name"].iloc[0] == "other-0"
    assert sorted(p.name for p in saved.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("extra", ["background.js", "figures/plot.png", "notes.txt"])
def test_a_folder_with_a_manifest_and_foreign_files_is_not_replaced(tmp_path, extra):
    """A web app / browser extension holds a manifest.json too; a run with the user's own files added
    is no longer only a run: neither is replaced, and every file survives."""
    victim = tmp_path / "victim"
    (victim / Path(extra).parent).mkdir(parents=True, exist_ok=True)
    (victim / "manifest.json").write_text('{"name": "my extension"}')
    (victim / extra).write_text("precious")
    with pytest.raises(RunError, match=rf"{victim}.*not a run.*{Path(extra).parts[0]}"):
        rs.prepare_out(victim)
    with pytest.raises(RunError, match="not a run"):
        rs.write_run(victim, _tables("old"), _vectors("old"), _manifest("old"))
    assert (victim / extra).read_text() == "precious" and (victim / "manifest.json").is_file()
