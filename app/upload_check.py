"""Check uploaded files in a child process with memory, CPU and time limits and a cap on decompressed size.

The Compute page never decompresses or parses an upload in the dashboard's own process: a 146 KB
gzip file can expand to gigabytes. :func:`validate_uploads` runs ``python -m app.upload_check``
with the request on stdin. The child limits itself (``RLIMIT_AS``, ``RLIMIT_CPU``) before it
reads any file, measures every file's decompressed size by streaming it (stopping as soon as it
passes the cap), then loads the files with the engine's loaders and prints a summary as one JSON
line. The parent waits with a wall-clock timeout, kills the child past it, and turns every outcome
into a :class:`~analysis.errors.SemcollabError` that names the file and the limit. At most a few
checks run at once per server. Settings (environment variables, whole numbers):

* ``SEMCOLLAB_UPLOAD_MAX_EXPANDED_MB``: decompressed size of one uploaded file (default 1024);
* ``SEMCOLLAB_VALIDATE_MEMORY_MB``: address-space limit of the checking process (default 3072);
* ``SEMCOLLAB_VALIDATE_CPU_S``: its CPU-time limit (default 120);
* ``SEMCOLLAB_VALIDATE_TIMEOUT_S``: its wall-clock limit (default 180);
* ``SEMCOLLAB_VALIDATE_PARALLEL``: checks running at once in one server (default 2).
"""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import resource
import signal
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.errors import ConfigError, DataError, SemcollabError

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20
_MARK = "@upload-check "
_CHUNK = 1 << 20
_STREAMS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".lzma": lzma.open}
_ENV = {"max_expanded": ("SEMCOLLAB_UPLOAD_MAX_EXPANDED_MB", 1024), "memory": ("SEMCOLLAB_VALIDATE_MEMORY_MB", 3072),
        "cpu": ("SEMCOLLAB_VALIDATE_CPU_S", 120), "timeout": ("SEMCOLLAB_VALIDATE_TIMEOUT_S", 180),
        "parallel": ("SEMCOLLAB_VALIDATE_PARALLEL", 2)}


class UploadLimitError(DataError):
    """An upload passed one of the checker's limits; ``peak_rss`` is the checker's peak memory (bytes)."""

    def __init__(self, message: str, peak_rss: int | None = None):
        super().__init__(message)
        self.peak_rss = peak_rss


@dataclass(frozen=True)
class Limits:
    max_expanded: int  # bytes
    memory: int  # bytes
    cpu: int  # seconds
    timeout: float  # seconds
    parallel: int


def _env_int(key: str) -> int:
    return env_int(*_ENV[key])


def env_int(name: str, default: int) -> int:
    """A positive whole number from the environment variable ``name`` (``default`` when unset)."""
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be at least 1")
    return value


def limits() -> Limits:
    """The limits in force, read from the environment now."""
    return Limits(max_expanded=_env_int("max_expanded") * MB, memory=_env_int("memory") * MB, cpu=_env_int("cpu"),
                  timeout=float(_env_int("timeout")), parallel=_env_int("parallel"))


def _mb(n: int) -> str:
    return f"{n / MB:,.0f} MB"


# ----------------------------------------------------------------------------- decompressed size
def _too_large(label: str, cap: int) -> UploadLimitError:
    return UploadLimitError(f"{label} expands to more than {_mb(cap)} when decompressed, the limit on an uploaded "
                            f"file ({_ENV['max_expanded'][0]}); upload a smaller file")


def _stream_size(path: Path, cap: int, label: str) -> int:
    """Decompressed size of a gzip / bz2 / xz file, read a chunk at a time; stops past ``cap``."""
    total = 0
    try:
        with _STREAMS[path.suffix.lower()](path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                total += len(chunk)
                if total > cap:
                    raise _too_large(label, cap)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{label}: not a valid {path.suffix} file ({exc})") from None
    return total


def _zip_size(path: Path, cap: int, label: str) -> int:
    """Declared size of a .zip / .npz's members (``zipfile`` never reads past a member's declared size)."""
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(int(i.file_size) for i in z.infolist())
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{label}: not a valid {path.suffix} (zip) file ({exc})") from None
    if total > cap:
        raise _too_large(label, cap)
    return total


def _parquet_size(path: Path, cap: int, label: str) -> int:
    """Uncompressed size of a Parquet file's column data, from its footer (the loader reports bad files)."""
    import pyarrow.parquet as pq

    try:
        md = pq.ParquetFile(path).metadata
        total = sum(int(md.row_group(i).total_byte_size) for i in range(md.num_row_groups))
    except Exception:  # unreadable footer: the engine's loader says what is wrong
        return path.stat().st_size
    if total > cap:
        raise _too_large(label, cap)
    return total


def expanded_size(path: str | os.PathLike, cap: int, label: str | None = None) -> int:
    """Bytes ``path`` holds once decompressed; UploadLimitError naming ``label`` as soon as it passes ``cap``."""
    path = Path(path)
    label = label or path.name
    suffix = path.suffix.lower()
    if suffix in _STREAMS:
        return _stream_size(path, cap, label)
    if suffix in (".zip", ".npz"):
        return _zip_size(path, cap, label)
    if suffix in (".parquet", ".pq"):
        return _parquet_size(path, cap, label)
    size = path.stat().st_size
    if size > cap:
        raise _too_large(label, cap)
    return size


# ----------------------------------------------------------------------------- the child
def _say(**what: Any) -> None:
    sys.stdout.write(_MARK + json.dumps(what) + "\n")
    sys.stdout.flush()


def _describe(req: dict[str, Any]) -> dict[str, Any]:
    """Sizes first, then the engine's loaders (item file passed as the engine passes it); the summary."""
    files = req["files"]
    for path, label in files.values():
        _say(phase=label)
        expanded_size(path, int(req["max_expanded"]), label)
    from analysis.loaders import detect_format, load_dataset, load_vectors

    data, label = files["inter"]
    _say(phase=label + (f" with {files['items'][1]}" if "items" in files else ""))
    fmt = detect_format(data) if req["format"] == "auto" else req["format"]
    ds = load_dataset(data, format=fmt, **({"item_path": files["items"][0]} if "items" in files else {}))
    info: dict[str, Any] = {
        "format": fmt, "n_users": int(ds.interactions["user_id"].nunique()), "n_items": int(len(ds.items)),
        "n_interactions": int(len(ds.interactions)),
        "has_titles": bool("title" in ds.items and ds.items["title"].astype(str).str.strip().ne("").any()),
    }
    if "vectors" in files:
        _say(phase=files["vectors"][1])
        v = load_vectors(files["vectors"][0], ds.items["item_id"].to_numpy(), name="semantic vectors")
        info["vector_dim"] = int(v.shape[1])
    return info


def _limit_self(kind: int, value: int, hard_extra: int = 0) -> None:
    _, hard = resource.getrlimit(kind)
    cap = lambda v: v if hard == resource.RLIM_INFINITY else min(v, hard)  # noqa: E731
    resource.setrlimit(kind, (cap(value), cap(value + hard_extra)))


def _peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM of its own address space (ru_maxrss is
    not used: Linux carries the forking parent's peak across exec into it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv: list[str] | None = None) -> int:
    """``python -m app.upload_check MEMORY_BYTES CPU_SECONDS`` with the request (JSON) on stdin."""
    memory, cpu = (int(a) for a in (sys.argv[1:] if argv is None else argv))
    _limit_self(resource.RLIMIT_AS, memory)
    _limit_self(resource.RLIMIT_CPU, cpu, hard_extra=5)  # soft: SIGXCPU; hard: SIGKILL
    req = json.loads(sys.stdin.read())
    try:
        res: dict[str, Any] = {"ok": _describe(req)}
    except MemoryError:
        res = {"limit": "memory"}
    except SemcollabError as exc:
        res = {"error": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # a loader bug or an unreadable file: a message, not a stack trace
        res = {"error": "unexpected", "message": f"{type(exc).__name__}: {exc}"}
    res["peak_rss"] = _peak_rss()
    _say(result=res)
    return 0


# ----------------------------------------------------------------------------- the parent
_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
            "PYTHONUNBUFFERED": "1"}
_ACTIVE = [0]
_COND = threading.Condition()
ROLES = {"inter": "the interaction file", "items": "the item file", "vectors": "the vector file"}


class _Slot:
    """At most ``limits().parallel`` checks at once in this process (a ConfigError after ``timeout``)."""

    def __init__(self, lim: Limits):
        self.lim = lim

    def __enter__(self) -> None:
        with _COND:
            if not _COND.wait_for(lambda: _ACTIVE[0] < self.lim.parallel, timeout=self.lim.timeout):
                raise ConfigError(f"the server is busy checking other uploads ({self.lim.parallel} at once, "
                                  f"{_ENV['parallel'][0]}); try again in a minute")
            _ACTIVE[0] += 1

    def __exit__(self, *exc: Any) -> None:
        with _COND:
            _ACTIVE[0] -= 1
            _COND.notify()


def _text(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else (x or "")


def _run_child(req: dict[str, Any], lim: Limits) -> tuple[int | None, str]:
    """(exit status, or None past the wall-clock limit; stdout) of the checking process."""
    cmd = [sys.executable, "-m", "app.upload_check", str(lim.memory), str(lim.cpu)]
    try:
        p = subprocess.run(cmd, input=json.dumps(req), capture_output=True, text=True, timeout=lim.timeout, cwd=ROOT,
                           env={**os.environ, **_THREADS}, start_new_session=True)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
        return None, _text(exc.stdout)
    return p.returncode, p.stdout


def _outcome(rc: int | None, stdout: str, lim: Limits, first: str) -> dict[str, Any]:
    """The child's summary, or the SemcollabError its report (or its death) stands for."""
    said = [json.loads(ln[len(_MARK):]) for ln in stdout.splitlines() if ln.startswith(_MARK)]
    phase = next((m["phase"] for m in reversed(said) if "phase" in m), first)
    res = next((m["result"] for m in reversed(said) if "result" in m), None)
    if rc is None:
        raise UploadLimitError(f"checking {phase} took longer than {lim.timeout:.0f} s, the limit "
                               f"({_ENV['timeout'][0]}); upload a smaller file")
    if res is None:
        how = signal.Signals(-rc).name if rc < 0 and -rc in signal.valid_signals() else f"exit status {rc}"
        if rc in (-signal.SIGXCPU, -signal.SIGKILL):
            raise UploadLimitError(f"checking {phase} used more than {lim.cpu} s of CPU time, the limit "
                                   f"({_ENV['cpu'][0]}); upload a smaller file")
        raise UploadLimitError(f"checking {phase} stopped ({how}); its limits are {_mb(lim.memory)} of memory "
                               f"({_ENV['memory'][0]}) and {lim.cpu} s of CPU time")
    peak = res.get("peak_rss")
    if "ok" in res:
        return {**res["ok"], "checker_peak_rss": peak}
    if res.get("limit") == "memory":
        raise UploadLimitError(f"checking {phase} needed more than {_mb(lim.memory)} of memory, the limit "
                               f"({_ENV['memory'][0]}); upload a smaller file", peak)
    if res["error"] == "UploadLimitError":
        raise UploadLimitError(res["message"], peak)
    import analysis.errors as errors

    cls = getattr(errors, res["error"], None)
    if not (isinstance(cls, type) and issubclass(cls, SemcollabError)):
        raise DataError(f"{phase} could not be read ({res['message']})")
    raise cls(res["message"])


def validate_uploads(data_path: str | os.PathLike, item_path: str | os.PathLike | None = None,
                     data_format: str = "auto", vectors_path: str | os.PathLike | None = None,
                     names: dict[str, str] | None = None) -> dict[str, Any]:
    """Check the files in a limited child process; its summary or the SemcollabError naming the file.

    The summary holds format, n_users, n_items, n_interactions, has_titles, vector_dim (with
    vectors) and checker_peak_rss (the child's peak memory, bytes). ``names`` maps a role
    ("inter", "items", "vectors") to the name the user gave the file, used in messages.
    """
    lim = limits()
    names = names or {}
    files = {role: [str(p), f"{ROLES[role]} {names.get(role) or Path(p).name}"]
             for role, p in (("inter", data_path), ("items", item_path), ("vectors", vectors_path)) if p}
    req = {"files": files, "format": data_format, "max_expanded": lim.max_expanded}
    with _Slot(lim):
        rc, stdout = _run_child(req, lim)
    return _outcome(rc, stdout, lim, files["inter"][1])


if __name__ == "__main__":
    sys.exit(main())
