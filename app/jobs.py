"""Background runs for the Compute page: build the CLI command, check uploads, claim, launch, follow, stop.

A run is computed by ``python -m analysis run ... --out <runs>/<name>`` in a subprocess of its own
(``PYTHONUNBUFFERED=1``, stdout and stderr to ``<runs>/<name>.log``, its own session and process
group), so a long computation never blocks the dashboard or other sessions; the page polls the log
once a second and maps the engine's stage lines (``[stage] ...`` / ``[stage] done in 1.2s``) to a
progress bar. Uploads are saved by role (``.uploads/<name>/inter/``, ``items/``, ``vectors/``) and
checked in a limited child process (:mod:`app.upload_check`) that raises the engine's own
:class:`~analysis.errors.SemcollabError` (file, row, id) shown to the user.

Jobs are recorded on disk under ``<runs>/.jobs/``, so that they survive a restart of the server
and are shared by every server over the same runs folder:

* ``<name>.lock`` claims the run name (created with ``O_CREAT | O_EXCL``) while the job is being
  prepared or runs; it holds the server's and the job's process ids (with their start times, so a
  reused pid is not mistaken for the job), the log and the upload folder;
* ``<name>.json`` is the record of a finished job (done, failed, cancelled or ended while no
  server watched it), written when the lock is released; the upload folder is deleted then.

At most ``$SEMCOLLAB_MAX_JOBS`` (default 2) jobs run at once over one runs folder. Cancelling a
job, and stopping the server (``atexit``; SIGTERM / SIGHUP when this module runs in the main
thread), sends SIGTERM to the job's whole process group and SIGKILL after a grace period. No
Streamlit here.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from analysis.errors import ConfigError
from analysis.runstore import prepare_out, read_manifest
from analysis.stages import STAGE_NAMES

ROOT = Path(__file__).resolve().parent.parent
#: the engine's stages, in order (analysis.pipeline.run)
#: the engine's stage names, in order ("load" ... "write"): one definition, in analysis.stages
STAGES = STAGE_NAMES
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
UPLOAD_DIR = ".uploads"
JOBS_DIR = ".jobs"
MAX_JOBS_ENV = "SEMCOLLAB_MAX_JOBS"
DEFAULT_MAX_JOBS = 2
#: seconds between SIGTERM and SIGKILL when a job is stopped
GRACE_S = 10.0
#: finished-job records kept per runs folder
KEEP_RECORDS = 30
ROLES = ("inter", "items", "vectors")
INTERACTION_TYPES = ["csv", "tsv", "txt", "parquet", "inter", "data", "dat", "json", "jsonl", "gz"]
ITEM_TYPES = ["csv", "tsv", "txt", "parquet", "item", "dat", "json", "jsonl", "gz"]
VECTOR_TYPES = ["npz", "parquet", "npy"]
_STAGE_LINE = re.compile(r"^\[(?P<stage>[^\]]+)\] (?P<what>\.\.\.|done in .*)$")

#: jobs started by this server process: lock path -> (runs root, name, process)
_MINE: dict[str, tuple[Path, str, subprocess.Popen]] = {}
_LOCK = threading.RLock()
_HANDLERS: dict[int, Any] = {}
_HAVE_PROC = Path("/proc/self/stat").exists()


@dataclass
class JobSpec:
    """What to compute; ``source`` is "synthetic", "ml-100k" or "files"."""

    source: str
    name: str
    synthetic: dict[str, Any] = field(default_factory=dict)
    data_path: str | None = None
    item_path: str | None = None
    data_format: str = "auto"
    semantic: str | None = None  # a vectors file; None = the engine's default ("auto")
    keep: float = 1.0
    cold_items: float = 0.0
    ks: tuple[int, ...] = (10, 20)
    k_neighbors: int = 10
    bootstrap: int = 1000
    umap: bool = True
    seed: int = 0
    force: bool = False
    #: the configured executor (``SEMCOLLAB_EXECUTOR``: local or ray; ``SEMCOLLAB_RAY_ADDRESS`` names the cluster)
    executor: str = field(default_factory=lambda: configured_executor())


def configured_executor() -> str:
    """The executor the Compute page starts runs on: ``$SEMCOLLAB_EXECUTOR`` (local or ray), default local."""
    name = (os.environ.get("SEMCOLLAB_EXECUTOR") or "local").strip().lower()
    if name not in ("local", "ray"):
        raise ConfigError(f"SEMCOLLAB_EXECUTOR={name!r}: use local or ray")
    return name


def check_name(name: str, root: Path, force: bool = False) -> Path:
    """The run folder ``root/name``, checked before anything is started.

    ConfigError for a bad name, a name being computed (by any server over ``root``) or, without
    ``force``, an existing folder; RunError (from :func:`analysis.runstore.prepare_out`) when
    ``root/name`` may not receive a run at all: a folder that is not a run, a file, a link.
    """
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise ConfigError(f"run name {name!r} is not allowed: use 1–64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    out = Path(root) / name
    if is_running(out):
        raise ConfigError(f"{out} is being computed right now (started from another session); pick another name")
    if os.path.lexists(out) and not force:
        what = "a run" if read_manifest(out) is not None else "a folder"
        raise ConfigError(f"{out} already holds {what}; pick another name or tick 'replace an existing run'")
    prepare_out(out)  # never replace what is not a run
    return out


def build_command(spec: JobSpec, out: Path) -> list[str]:
    """The ``python -m analysis run`` command line of ``spec`` writing to ``out``."""
    cmd = [sys.executable, "-m", "analysis", "run"]
    if spec.source == "files":
        if not spec.data_path:
            raise ConfigError("no interaction file was given")
        cmd += ["--data", str(spec.data_path), "--format", spec.data_format]
        if spec.item_path:
            cmd += ["--items", str(spec.item_path)]
    elif spec.source in ("synthetic", "ml-100k"):
        cmd += ["--dataset", spec.source]
        if spec.source == "synthetic":
            for k, v in sorted(spec.synthetic.items()):
                cmd += ["--synthetic", f"{k}={v}"]
    else:
        raise ConfigError(f"unknown data source {spec.source!r}")
    if spec.semantic:
        cmd += ["--semantic", str(spec.semantic)]
    for k in sorted(set(int(k) for k in spec.ks)):
        cmd += ["--k", str(k)]
    cmd += ["--k-neighbors", str(int(spec.k_neighbors)), "--keep", repr(float(spec.keep)),
            "--cold-items", repr(float(spec.cold_items)), "--bootstrap", str(int(spec.bootstrap)),
            "--seed", str(int(spec.seed)), "--out", str(out)]
    if not spec.umap:
        cmd.append("--no-umap")
    if spec.force:
        cmd.append("--force")
    if spec.executor != "local":
        cmd += ["--executor", spec.executor]
    return cmd


# ----------------------------------------------------------------------------- uploads
def _safe_filename(name: str) -> str:
    base = Path(str(name)).name
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return base or "upload"


def save_upload(folder: Path, role: str, filename: str, data: bytes) -> Path:
    """Write one uploaded file as ``folder/<role>/<sanitised name>``: each role has a folder of its own, so
    an item file named like the interaction file cannot overwrite it, and the name (which tells the
    loaders the format: ``u.data``, ``*.inter``, ...) is kept."""
    if role not in ROLES:
        raise ConfigError(f"unknown upload role {role!r}; expected one of {', '.join(ROLES)}")
    sub = Path(folder) / role
    sub.mkdir(parents=True, exist_ok=True)
    p = sub / _safe_filename(filename)
    p.write_bytes(data)
    return p


def upload_folder(root: Path, name: str) -> Path:
    """Where the uploads of run ``name`` are kept: ``root/.uploads/name`` (not listed as a run)."""
    return Path(root) / UPLOAD_DIR / name


def remove_uploads(root: Path, folder: str | Path | None) -> None:
    """Delete an upload folder, only ever one inside ``root/.uploads``."""
    if not folder:
        return
    base = (Path(root) / UPLOAD_DIR).resolve()
    path = Path(folder).resolve()
    if path != base and base in path.parents:
        shutil.rmtree(path, ignore_errors=True)


def validate_files(data_path: str | Path, item_path: str | Path | None = None, data_format: str = "auto",
                   vectors_path: str | Path | None = None, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Load the files with the engine's loaders in a limited child process; raise its SemcollabError.

    Returns format, n_users, n_items, n_interactions, has_titles (without titles and vectors the
    encoder would embed bare item ids) and, with vectors, vector_dim. Past the decompressed-size,
    memory, CPU or time limits of :mod:`app.upload_check`: an UploadLimitError naming the file.
    """
    from app.upload_check import validate_uploads

    return validate_uploads(data_path, item_path, data_format, vectors_path, names=names)


# ----------------------------------------------------------------------------- processes
def _proc_stat(pid: int | None) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of process ``pid``; None when there is none."""
    if not pid or int(pid) <= 0:
        return None
    try:
        raw = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[19])


def _pid_exists(pid: int | None) -> bool:
    if not pid or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def alive(pid: int | None, start: int | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, given ``start``, is the process that started then."""
    if not _HAVE_PROC:  # no /proc: only whether the pid exists
        return _pid_exists(pid)
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X") and (start is None or st[1] == start)


def launch(cmd: list[str], out: Path, log_path: Path) -> subprocess.Popen:
    """Start ``cmd`` in the background: its own session and process group, unbuffered, output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def signal_group(pid: int, pgid: int | None, sig: int) -> None:
    """Send ``sig`` to the job's process group (to the process alone if it shares this server's group)."""
    try:
        if pgid and pgid > 1 and pgid != os.getpgrp():
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_group(pid: int, pgid: int | None, proc: subprocess.Popen | None, grace: float,
                start: int | None = None) -> None:
    """SIGTERM to the job's group; SIGKILL to what is left of it after ``grace`` seconds."""
    group = bool(pgid and pgid > 1 and pgid != os.getpgrp())
    gone = (lambda: proc.poll() is not None) if proc is not None else (lambda: not alive(pid, start))
    if not group and gone():  # a lone process that has ended: its pid may be someone else's by now
        return
    signal_group(pid, pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    if group or not gone():
        signal_group(pid, pgid, signal.SIGKILL)


# ----------------------------------------------------------------------------- the job registry on disk
def jobs_dir(root: Path) -> Path:
    return Path(root) / JOBS_DIR


def lock_path(root: Path, name: str) -> Path:
    return jobs_dir(root) / f"{name}.lock"


def _key(lock: Path) -> str:
    """The key of a job of this server in ``_MINE`` (however its runs folder was spelled)."""
    return os.path.abspath(lock)


def record_path(root: Path, name: str) -> Path:
    return jobs_dir(root) / f"{name}.json"


def max_jobs() -> int:
    """How many jobs may run at once over one runs folder: ``$SEMCOLLAB_MAX_JOBS`` (default 2)."""
    from app.upload_check import env_int

    return env_int(MAX_JOBS_ENV, DEFAULT_MAX_JOBS)


@contextlib.contextmanager
def _registry(root: Path) -> Iterator[Path]:
    """Exclusive access to ``root/.jobs`` (an flock, across threads and processes)."""
    d = jobs_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".registry", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield d
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _write(path: Path, rec: dict[str, Any]) -> None:
    """Replace ``path`` by ``rec`` in one rename (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    os.replace(tmp, path)


def _running(lock: Path, rec: dict[str, Any] | None) -> bool:
    """A live claim: its job runs (or is ours, not yet reaped), or it is being prepared by a live server."""
    if rec is None:  # written under the registry lock, so only a damaged file reads as nothing
        return False
    if rec.get("pid"):
        return _key(lock) in _MINE or alive(rec["pid"], rec.get("pid_start"))
    return alive(rec.get("server_pid"), rec.get("server_start"))


def _state(rec: dict[str, Any], rc: int | None) -> tuple[str, str | None]:
    """(state, error) of an ended job, from its exit status or, when no server saw it end, its log."""
    pr = progress(read_log(Path(rec["log"]))) if rec.get("log") else None
    error = pr.error if pr is not None else None
    if rec.get("cancelled"):
        return "cancelled", rec.get("cancel_note")
    if rc == 0 or (rc is None and pr is not None and pr.written):
        return "done", None
    if rc is not None:
        return "failed", error or f"the run exited with code {rc}"
    return ("failed", error) if error else ("ended", "the run ended while no server was watching it")


def _finalize(root: Path, lock: Path, rec: dict[str, Any] | None, rc: int | None) -> None:
    """Under the registry lock: record the ended job, delete its uploads, release its name."""
    if rec is not None and rec.get("pid"):
        state, error = _state(rec, rc)
        _write(record_path(root, lock.name[:-len(".lock")]),
               {**rec, "state": state, "rc": rc, "error": error, "ended": time.time()})
    if rec is not None:
        remove_uploads(root, rec.get("uploads"))
    lock.unlink(missing_ok=True)
    records = sorted(jobs_dir(root).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in records[KEEP_RECORDS:]:
        old.unlink(missing_ok=True)


def _reap(root: Path) -> list[str]:
    """Under the registry lock: finalize the claims whose job and server are gone; the live names."""
    live = []
    for lock in sorted(jobs_dir(root).glob("*.lock")):
        rec = _read(lock)
        if _running(lock, rec):
            live.append(lock.name[:-len(".lock")])
        else:
            _finalize(root, lock, rec, None)
    return live


def is_running(out: Path) -> bool:
    """Whether a live job (of any server over ``out``'s runs folder) holds the name ``out``."""
    lock = lock_path(Path(out).parent, Path(out).name)
    return lock.exists() and _running(lock, _read(lock))


def claim(root: Path, name: str, out: Path, log: Path, uploads: Path | None = None) -> Path:
    """Claim run ``name`` with ``root/.jobs/<name>.lock`` (O_CREAT|O_EXCL); ConfigError when the name is
    taken or ``max_jobs()`` jobs are already running over ``root``. Returns the lock file."""
    limit = max_jobs()
    me = os.getpid()
    with _registry(root):
        live = _reap(root)
        if name in live:
            raise ConfigError(f"{Path(root) / name} is being computed right now (started from another session); "
                              "pick another name")
        if len(live) >= limit:
            raise ConfigError(f"{len(live)} runs are being computed on this server already ({', '.join(live)}); "
                              f"at most {limit} run at once ({MAX_JOBS_ENV}): wait for one to finish")
        lock = lock_path(root, name)
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise ConfigError(f"{Path(root) / name} is being computed right now; pick another name") from None
        rec = {"name": name, "out": str(out), "log": str(log), "uploads": str(uploads) if uploads else None,
               "server_pid": me, "server_start": (_proc_stat(me) or (None, None))[1], "started": time.time()}
        with os.fdopen(fd, "w") as fh:
            json.dump(rec, fh, indent=1)
        remove_uploads(root, uploads)  # what a dead server may have left under that name
    return lock


def release(root: Path, name: str) -> None:
    """Give up a claim that never started a job (e.g. its uploads were refused); delete its uploads."""
    with _registry(root):
        lock = lock_path(root, name)
        rec = _read(lock)
        if rec is not None and not rec.get("pid") and rec.get("server_pid") == os.getpid():
            _finalize(root, lock, rec, None)


# ----------------------------------------------------------------------------- starting, stopping, listing
def begin(root: Path, name: str, cmd: list[str], out: Path, log: Path) -> subprocess.Popen:
    """Launch the job claimed as ``name`` and record its process in the claim (released if launching fails)."""
    try:
        proc = launch(cmd, out, log)
    except BaseException:
        release(root, name)
        raise
    attach(root, name, proc, cmd)
    return proc


def attach(root: Path, name: str, proc: subprocess.Popen, cmd: list[str] | None = None) -> None:
    """Write ``proc`` (pid, start time, process group) into the claim of ``name``; watch it until it ends."""
    lock = lock_path(root, name)
    st = _proc_stat(proc.pid)
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    with _LOCK:
        _MINE[_key(lock)] = (Path(root), name, proc)
    with _registry(root):
        rec = _read(lock) or {"name": name, "server_pid": os.getpid(), "started": time.time()}
        _write(lock, {**rec, "pid": proc.pid, "pid_start": st[1] if st else None, "pgid": pgid,
                      "cmd": [str(c) for c in (cmd or [])]})
    _install_handlers()
    threading.Thread(target=_watch, args=(Path(root), name, proc), name=f"semcollab-job-{name}", daemon=True).start()


def _watch(root: Path, name: str, proc: subprocess.Popen) -> None:
    proc.wait()
    finish(root, name, proc)


def finish(root: Path, name: str, proc: subprocess.Popen) -> None:
    """Once ``proc`` has ended: its record (with the exit status), its uploads deleted, its name free.
    Idempotent: the watcher thread, the page and the server's shutdown may all call it."""
    if proc.poll() is None:
        return
    lock = lock_path(root, name)
    with _registry(root):
        rec = _read(lock)
        if rec is not None and rec.get("pid") == proc.pid:
            _finalize(Path(root), lock, rec, proc.returncode)
    with _LOCK:
        if _MINE.get(_key(lock), (None, None, None))[2] is proc:
            _MINE.pop(_key(lock))


def _mark_cancelled(root: Path, name: str, note: str) -> dict[str, Any] | None:
    """Flag the running job ``name`` as cancelled; its claim, or None when no job of that name runs."""
    lock = lock_path(root, name)
    with _registry(root):
        rec = _read(lock)
        if rec is None or not rec.get("pid") or not _running(lock, rec):
            return None
        rec = {**rec, "cancelled": True, "cancel_note": note}
        _write(lock, rec)
    return rec


def cancel(root: Path, name: str, note: str = "cancelled from the Compute page", grace: float = GRACE_S,
           wait: bool = False) -> bool:
    """Stop job ``name``: SIGTERM to its whole process group, SIGKILL after ``grace`` seconds (in a
    thread unless ``wait``). Works for a job of an earlier server too. False when none runs."""
    rec = _mark_cancelled(root, name, note)
    if rec is None:
        return False
    with _LOCK:
        mine = _MINE.get(_key(lock_path(root, name)))
    proc = mine[2] if mine is not None and mine[2].pid == rec["pid"] else None
    t = threading.Thread(target=_stop_group, args=(rec["pid"], rec.get("pgid"), proc, grace, rec.get("pid_start")),
                         daemon=True)
    t.start()
    if wait:
        t.join()
    return True


def shutdown(grace: float = GRACE_S) -> None:
    """Stop every job this server started and record them as cancelled (at exit, and on SIGTERM / SIGHUP)."""
    with _LOCK:
        mine = list(_MINE.values())
    threads = []
    for root, name, proc in mine:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                _mark_cancelled(root, name, "the server stopped")
            with contextlib.suppress(ProcessLookupError):
                pgid = os.getpgid(proc.pid)
                threads.append(threading.Thread(target=_stop_group, args=(proc.pid, pgid, proc, grace), daemon=True))
                threads[-1].start()
    for t in threads:
        t.join()
    for root, name, proc in mine:
        with contextlib.suppress(OSError):
            finish(root, name, proc)


def _on_signal(sig: int, frame: Any) -> None:
    """SIGTERM / SIGHUP in a plain Python server: unwind like Ctrl-C, so that ``atexit`` stops the jobs
    (nothing is stopped inside the handler: it may interrupt this very module holding the registry)."""
    prev = _HANDLERS.get(sig)
    if callable(prev):
        prev(sig, frame)
    elif prev != signal.SIG_IGN:
        raise SystemExit(128 + sig)


def _install_handlers() -> None:
    """Chain SIGTERM / SIGHUP (only possible from the main thread; Streamlit's own handler exits cleanly)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if sig not in _HANDLERS:
            _HANDLERS[sig] = signal.getsignal(sig)
            signal.signal(sig, _on_signal)


atexit.register(shutdown)


def list_jobs(root: Path) -> list[dict[str, Any]]:
    """Every job over ``root`` from its lock or record: running ones first, then the newest. Each row holds
    name, state (starting, running, done, failed, cancelled, ended), started, ended, error, pid, log,
    ``mine`` (started by this server), ``orphan`` (its server is gone) and ``fraction`` (from its log)."""
    if not jobs_dir(root).is_dir():
        return []
    rows = []
    with _registry(root):
        for name in _reap(root):
            rec = _read(lock_path(root, name)) or {"name": name}
            rows.append({**rec, "state": "running" if rec.get("pid") else "starting",
                         "mine": rec.get("server_pid") == os.getpid(),
                         "orphan": not alive(rec.get("server_pid"), rec.get("server_start"))})
        rows += [r for r in (_read(p) for p in jobs_dir(root).glob("*.json")) if r is not None]
    for r in rows:
        r["fraction"] = progress(read_log(Path(r["log"]))).fraction if r.get("log") else 0.0
    return sorted(rows, key=lambda r: (r["state"] not in ("starting", "running"), -float(r.get("started") or 0)))


def log_path_for(out: Path) -> Path:
    """The log of a run: ``<parent>/<name>.log`` beside the run folder."""
    return Path(out).parent / f"{Path(out).name}.log"


@dataclass
class Progress:
    fraction: float
    stage: str | None
    n_done: int
    last_line: str
    cache_hit: bool
    written: bool
    error: str | None
    #: the running step's progress bar (the engine's tqdm line), when its last line is one
    step: "Step | None" = None


@dataclass
class Step:
    """One tqdm progress line of the running stage: ``desc: 42%|###| 9/18 [00:09<00:12, 1.2s/it]``."""

    desc: str
    n: int
    total: int
    elapsed: str
    eta: str

    @property
    def fraction(self) -> float:
        return min(self.n / self.total, 1.0) if self.total else 0.0


_TQDM_LINE = re.compile(r"^(?P<desc>.*?):\s+\d+%\|.*?\|\s*(?P<n>\d+)/(?P<total>\d+)\s+\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)")


def parse_step(line: str) -> Step | None:
    """The :class:`Step` a tqdm line shows, or None for any other line."""
    m = _TQDM_LINE.match(line.strip())
    if not m:
        return None
    return Step(m["desc"].strip(), int(m["n"]), int(m["total"]), m["elapsed"], m["eta"])


def read_log(path: Path, max_bytes: int = 400_000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def progress(text: str) -> Progress:
    """Progress of a run from its log: finished stages count 1, the running one 1/2."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    done: set[str] = set()
    current = None
    for ln in lines:
        m = _STAGE_LINE.match(ln)
        if not m or m["stage"] not in STAGES:
            continue
        if m["what"] == "...":
            current = m["stage"]
        else:
            done.add(m["stage"])
    cache_hit = any(ln.startswith("cache hit:") for ln in lines)
    written = any(ln.startswith("run written to") for ln in lines) or cache_hit
    frac = len(done) / len(STAGES)
    if current and current not in done:
        frac += 0.5 / len(STAGES)
    if written:
        frac = 1.0
    err = next((ln.split("semcollab: error:", 1)[1].strip() for ln in reversed(lines) if "semcollab: error:" in ln), None)
    if err is None and any(ln.startswith("Traceback") for ln in lines):
        err = next((ln for ln in reversed(lines) if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln)), "the run crashed")
    last = lines[-1] if lines else ""
    return Progress(fraction=min(frac, 1.0), stage=current, n_done=len(done), last_line=last,
                    cache_hit=cache_hit, written=written, error=err, step=None if written else parse_step(last))


# ----------------------------------------------------------------------------- the default regime sweep
#: (folder under the runs root, dataset) of the regime sweep ``make app`` computes in the background
DEFAULT_SWEEP = ("ml-100k-sweep", "ml-100k")
_REGIME_LINE = re.compile(r"^=== regime (?P<i>\d+)/(?P<n>\d+): (?P<name>.+) ===$")


def sweep_command(dataset: str, out: Path) -> list[str]:
    """The ``python -m analysis sweep`` command of the default regimes over ``dataset``, written to ``out``."""
    return [sys.executable, "-m", "analysis", "sweep", "--dataset", dataset, "--out", str(out)]


def start_sweep(root: Path, name: str = DEFAULT_SWEEP[0], dataset: str = DEFAULT_SWEEP[1]) -> bool:
    """Start the regime sweep ``root/name`` as a background job (the same claim, log and process handling
    as a run) unless it is done or running already; True when it was started."""
    out = Path(root) / name
    if (out / "sweep.parquet").is_file() or is_running(out):
        return False
    log = log_path_for(out)
    claim(Path(root), name, out, log)
    begin(Path(root), name, sweep_command(dataset, out), out, log)
    return True


def sweep_estimate(run: Path, n_regimes: int = 5) -> float | None:
    """Seconds a sweep of ``n_regimes`` regimes should take: that many times the given run's own recorded time
    (its manifest's stage timings), or None without a readable run."""
    m = read_manifest(Path(run))
    t = (m or {}).get("timings") or {}
    total = sum(float(v) for v in t.values() if isinstance(v, (int, float)))
    return n_regimes * total if total > 0 else None


@dataclass
class SweepProgress:
    """Where a background sweep stands: ``fraction`` of its regimes done (the running one by its stages)."""

    running: bool
    fraction: float
    text: str
    error: str | None


def sweep_progress(root: Path, name: str = DEFAULT_SWEEP[0]) -> SweepProgress | None:
    """The progress of the sweep job ``root/name`` from its log, or None when none was started. The
    log is parsed again only when it changed (size, mtime) or the sweep finished: pages call this on
    every rerun."""
    out = Path(root) / name
    log = log_path_for(out)
    try:
        st = log.stat()
    except OSError:
        return None
    parsed = _sweep_log(str(log), st.st_mtime_ns, st.st_size, (out / "sweep.parquet").is_file())
    return None if parsed is None else SweepProgress(is_running(out), *parsed)


@functools.lru_cache(maxsize=16)
def _sweep_log(log: str, mtime_ns: int, size: int, done: bool) -> tuple[float, str, str | None] | None:
    """(fraction, text, error) of a sweep log; the stamp arguments only key the cache."""
    text = read_log(Path(log))
    if not text:  # claimed, nothing written yet: the job is starting (a page drawn now must follow it)
        return 0.0, "starting", None
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    marks = [(j, m) for j, ln in enumerate(lines) if (m := _REGIME_LINE.match(ln))]
    if not marks:
        return 0.0, "starting", progress(text).error
    j, m = marks[-1]
    run = progress("\n".join(lines[j + 1 :]))
    i, n = int(m["i"]), int(m["n"])
    frac = 1.0 if done else min(((i - 1) + run.fraction) / n, 1.0)
    what = f"regime {i} of {n} ({m['name']})" + (f", {run.stage}" if run.stage else "")
    return frac, what, run.error
