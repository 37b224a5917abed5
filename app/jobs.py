"""Background runs for the Compute page: build the CLI command, check uploads, launch, follow the log.

A run is computed by ``python -m analysis run ... --out <runs>/<name>`` in a subprocess of its own
(``PYTHONUNBUFFERED=1``, stdout and stderr to ``<runs>/<name>.log``), so a long computation never
blocks the dashboard or other sessions; the page polls the log once a second and maps the
engine's stage lines (``[stage] ...`` / ``[stage] done in 1.2s``) to a progress bar. Uploaded files
are checked in-process first with the engine's own loaders, which raise the specific
:class:`~analysis.errors.SemcollabError` (file, row, id) shown to the user. No Streamlit here.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.errors import ConfigError
from analysis.runstore import read_manifest

ROOT = Path(__file__).resolve().parent.parent
#: the engine's stages, in order (analysis.pipeline.run)
STAGES = ("load", "split", "semantic vectors", "semantic recommenders", "collaborative", "rank and evaluate",
          "fusion", "complementarity", "bootstrap", "item geometry", "projection", "assemble", "write")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
UPLOAD_DIR = ".uploads"
INTERACTION_TYPES = ["csv", "tsv", "txt", "parquet", "inter", "data", "dat", "json", "jsonl", "gz"]
ITEM_TYPES = ["csv", "tsv", "txt", "parquet", "item", "dat", "json", "jsonl", "gz"]
VECTOR_TYPES = ["npz", "parquet", "npy"]
_STAGE_LINE = re.compile(r"^\[(?P<stage>[^\]]+)\] (?P<what>\.\.\.|done in .*)$")

#: runs being computed by this server process (any session): out path -> process
_RUNNING: dict[str, subprocess.Popen] = {}
_LOCK = threading.Lock()


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


def check_name(name: str, root: Path, force: bool = False) -> Path:
    """The run folder ``root/name``; ConfigError for a bad name, a folder in use or (without force) a run."""
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise ConfigError(f"run name {name!r} is not allowed: use 1–64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    out = Path(root) / name
    if is_running(out):
        raise ConfigError(f"{out} is being computed right now (started from another session); pick another name")
    if out.exists() and not force:
        what = "a run" if read_manifest(out) is not None else "a folder"
        raise ConfigError(f"{out} already holds {what}; pick another name or tick 'replace an existing run'")
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
    return cmd


# ----------------------------------------------------------------------------- uploads
def _safe_filename(name: str) -> str:
    base = Path(str(name)).name
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return base or "upload"


def save_upload(folder: Path, filename: str, data: bytes) -> Path:
    """Write one uploaded file into ``folder`` under a sanitised version of its own name."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / _safe_filename(filename)
    p.write_bytes(data)
    return p


def upload_folder(root: Path, name: str) -> Path:
    """Where the uploads of run ``name`` are kept: ``root/.uploads/name`` (not listed as a run)."""
    return Path(root) / UPLOAD_DIR / name


def validate_files(data_path: str | Path, item_path: str | Path | None = None, data_format: str = "auto",
                   vectors_path: str | Path | None = None) -> dict[str, Any]:
    """Load the files with the engine's loaders; raise its SemcollabError on bad input.

    Returns format, n_users, n_items, n_interactions, has_titles (without titles and vectors the
    encoder would embed bare item ids) and, with vectors, vector_dim.
    """
    from analysis.loaders import detect_format, load_dataset, load_vectors

    fmt = detect_format(data_path) if data_format == "auto" else data_format
    kw = {"item_path": str(item_path)} if item_path and fmt in ("table", "recbole") else {}
    ds = load_dataset(data_path, format=fmt, **kw)
    info: dict[str, Any] = {
        "format": fmt, "n_users": int(ds.interactions["user_id"].nunique()), "n_items": int(len(ds.items)),
        "n_interactions": int(len(ds.interactions)),
        "has_titles": bool("title" in ds.items and ds.items["title"].astype(str).str.strip().ne("").any()),
    }
    if vectors_path:
        v = load_vectors(str(vectors_path), ds.items["item_id"].to_numpy(), name="semantic vectors")
        info["vector_dim"] = int(v.shape[1])
    return info


# ----------------------------------------------------------------------------- processes
def launch(cmd: list[str], out: Path, log_path: Path) -> subprocess.Popen:
    """Start ``cmd`` in the background (own session, unbuffered, output to ``log_path``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    with _LOCK:
        _RUNNING[str(Path(out).resolve())] = proc
    return proc


def is_running(out: Path) -> bool:
    with _LOCK:
        p = _RUNNING.get(str(Path(out).resolve()))
        if p is not None and p.poll() is not None:
            _RUNNING.pop(str(Path(out).resolve()), None)
            return False
        return p is not None


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
    return Progress(fraction=min(frac, 1.0), stage=current, n_done=len(done), last_line=lines[-1] if lines else "",
                    cache_hit=cache_hit, written=written, error=err)
