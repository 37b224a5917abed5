"""The saved *run*: a directory of parquet tables, ``.npy`` vectors and a manifest.

A run is written to a temporary sibling directory and renamed into place, so it
appears whole or not at all. The dashboard and notebooks open it with
:func:`open_run`. Schema (version ``SCHEMA_VERSION``); ``item_idx`` / ``user_idx``
are the dense indices used everywhere, ``K`` is the largest cut-off of the run:

``items``          item_idx, item_id, title, year, genres, description, text,
                   popularity (train count), pop_decile (1..10, 10 = most popular),
                   pop_bucket (head/torso/tail/cold), cold (no training interactions),
                   held_out (held out entirely by the item cold-start regime),
                   sem_x, sem_y, col_x, col_y (2-D maps; NaN where a view has no vector),
                   overlap, jaccard, disagreement (at the run's neighbourhood k; NaN if cold),
                   procrustes_cos, hits_shared, hits_sem_only, hits_col_only, hits_missed_by_both
                   (test-set hit counts at K for the compared semantic view vs collaborative),
                   n_test (times the item is a test item), sem_shared, sem_private, col_shared,
                   col_private (per-item share of energy in the AJIVE joint subspace / the rest)
``users``          user_idx, user_id, n_train, n_valid, n_test, activity_bucket,
                   <system>_recall@k / <system>_ndcg@k / <system>_hit@k for every system and k
                   (test split), list_jaccard, rbo, hits_sem, hits_col, shared, only_sem, only_col,
                   oracle_select_recall, oracle_select_ndcg, oracle_union_recall, oracle_union_ndcg,
                   hits_first_ndcg_a / _b (each compared view's own hits ranked first: the union
                   oracle's NDCG gain is read against the better one) (compared views at K),
                   control_* (same for most-popular vs collaborative)
``topk``           user_idx, system, rank (1..K), item_idx, hit (test)
``interactions``   user_idx, item_idx, part (train / valid / test / removed: training pairs a
                   sparsity regime removed, masked at evaluation)
``metrics``        system, part, segment, metric, k, mean, lo, hi, n_users   (95 % bootstrap over
                   users); systems: semantic, semantic_zs, collab, ease, pop, fusion, rrf (every k, valid
                   and test) and oracle_select, oracle_union, control_oracle_select,
                   control_oracle_union (test, at K only); segment: all, and on test, when the run
                   has cold items, warm / cold (each its own ranking: candidates = the segment's
                   items, relevant = its test pairs; analysis.split.SEGMENTS)
``differences``    system_a, system_b, part, metric, k, diff, lo, hi, p_value, n_users (paired)
``fusion``         part, method (score / cold_aware / rrf), alpha, metric, k, value,
                   segment_type (all / item_pop / user_activity), segment
``neighbors``      item_idx, view (semantic / collaborative), rank, neighbor_idx, sim
                   (depth ``manifest["neighbor_depth"]`` >= 2k; semantic lists include cold items,
                   the stored overlap uses the items both views can place)
``agreement_deciles`` decile, n_items, mean_overlap, mean_jaccard, mean_disagreement, chance
``tuning``         model, params (JSON), ndcg@K, recall@K (validation), best_epoch, seconds, chosen
``similarity``     statistic (cka / debiased_cka / procrustes_distance), variant (raw / top_pc_removed),
                   raw, null_mean, null_std, null_lo, null_hi, p_value, n_items, n_perm
``cca``            component, train_corr, heldout_corr, null_q95, significant (held-out canonical
                   correlations, PCA-regularised, fit on 2/3 of the items, permutation null)
``ajive``          component, sigma2, wedin_bound, random_bound, joint
``variance``       view, shared, private, joint_rank (fractions of each view's variance)
``probes``         regime (in_distribution / shift_popularity / shift_time), probe (ridge /
                   reduced_rank / mlp), capacity (str), r2, r2_shared, r2_private, shared_dim, mean_cos,
                   overlap (leave-one-out against the true vectors), recall, ndcg, ceiling_recall,
                   ceiling_ndcg, floor_recall, floor_ndcg (ranked within the evaluated items),
                   n_eval_users, readable, reason, n_train, n_eval (+ capacity_num, valid_r2, lam, n_valid);
                   items.probe_residual / items.probe_best: the best probe's cross-fitted residual
``fusion_models``  system, metric, k, mean, lo, hi, n_users: best single view, score fusion at the
                   validation alpha, alignment baseline, gated complementarity-aware fusion (test)
``fusion_model_differences`` system_a, system_b, metric, k, diff, lo, hi, p_value (paired bootstrap)
vectors/           semantic_items.npy (frozen encoder vectors), semantic_rec_items.npy,
                   semantic_rec_users.npy (trained semantic recommender), collab_items.npy,
                   collab_users.npy (cold rows are NaN), all float32.
``manifest.json``  schema_version, config, config_hash, regime, dataset {name, source,
                   checksum, n_users, n_items, n_interactions}, systems {name: description},
                   compared {semantic, collaborative}, K, ks, k_neighbors, neighbor_depth, chance_overlap,
                   fusion {alpha_valid, metric, headroom, ...}, summary (headline numbers),
                   timings {stage: seconds}, versions {package: version}, created,
                   files {relative path: {sha256, bytes}} (every file of the run but the manifest),
                   manifest_sha256 (SHA-256 of the manifest itself without this key, canonical JSON).

Safety. :func:`prepare_out` (called before any computing, and again by :func:`write_run`)
only accepts an ``out`` that is absent, an empty folder or a run (a folder holding
``manifest.json``), and recovers what an interrupted writer left: an orphaned
``.NAME.old-PID-*`` is restored when ``out`` is missing, stale ``.NAME.tmp-PID-*`` /
``.NAME.old-PID-*`` siblings of dead writers are removed. :func:`write_run` swaps the new
run in with ``renameat2(RENAME_EXCHANGE)`` where the platform has it (two renames
elsewhere), so at any kill ``out`` holds the old or the new run whole, or the next
:func:`prepare_out` restores it. :func:`open_run` verifies every file against the
manifest's SHA-256 (:func:`verify_run`); :func:`cached_run` is the cache-hit check.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
import pandas as pd

from .errors import RunError

SCHEMA_VERSION = 3
TABLES = ["items", "users", "topk", "interactions", "metrics", "differences", "fusion", "neighbors",
          "agreement_deciles", "tuning", "similarity", "cca", "ajive", "variance", "probes", "fusion_models",
          "fusion_model_differences"]
VECTORS = ["semantic_items", "semantic_rec_items", "semantic_rec_users", "collab_items", "collab_users"]
HOW_TO_MAKE = "make one with `semcollab run --dataset synthetic --out runs/synthetic` (or --dataset ml-100k)"
RECOMPUTE = "recompute it with `semcollab run ... --force`"
MANIFEST = "manifest.json"
Log = Callable[[str], None]

_AT_FDCWD, _RENAME_NOREPLACE, _RENAME_EXCHANGE = -100, 1, 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- atomic rename
def _load_renameat2() -> Any:
    """libc's ``renameat2`` (Linux, glibc >= 2.28), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _load_renameat2()


def _renameat2(src: Path, dst: Path, flags: int) -> None:
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(src), None, str(dst))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- what may be replaced
def _is_run_dir(path: Path) -> bool:
    """A run, possibly damaged: a real folder (not a link) that holds ``manifest.json`` and nothing
    but run files (a folder of someone else's that happens to hold a ``manifest.json`` -- a web app,
    a browser extension, a run with the user's own notes added -- is not one)."""
    return path.is_dir() and not path.is_symlink() and (path / MANIFEST).is_file() and _run_shaped(path)


def _replaceable(path: Path) -> bool:
    """What ``write_run`` may replace: a run or an empty real folder."""
    return _is_run_dir(path) or (path.is_dir() and not path.is_symlink() and not any(path.iterdir()))


def _is_run_file(e: Path) -> bool:
    """An entry a run folder holds: manifest.json, a parquet table, or vectors/ with .npy files only."""
    if e.name == "vectors" and e.is_dir() and not e.is_symlink():
        return all(v.suffix == ".npy" and v.is_file() and not v.is_symlink() for v in e.iterdir())
    return e.is_file() and not e.is_symlink() and (e.name == MANIFEST or e.suffix == ".parquet")


def _run_shaped(path: Path) -> bool:
    """A real folder holding nothing but run files (a run being written or being removed)."""
    if not path.is_dir() or path.is_symlink():
        return False
    return all(_is_run_file(e) for e in path.iterdir())


def _complete(path: Path) -> bool:
    """A whole run at ``path``: verified checksums, or (written before checksums) every file present."""
    m = read_manifest(path)
    if m is None or not _is_run_dir(path):
        return False
    if "files" not in m:
        return all((path / f"{t}.parquet").is_file() for t in TABLES) and \
            all((path / "vectors" / f"{v}.npy").is_file() for v in VECTORS)
    try:
        verify_run(path)
    except RunError:
        return False
    return True


# ----------------------------------------------------------------------------- prepare_out
def _check_target(out: Path) -> None:
    """RunError unless ``out`` (absolute) may receive a run: absent, an empty folder or a run."""
    if out.is_symlink():
        raise RunError(f"{out} is a symbolic link (to {os.readlink(out)}); runs are put in place by renaming "
                       "folders, which would replace the link, not its target: give the real folder as --out")
    cwd = Path.cwd().resolve()
    real = out.resolve()
    if real == cwd or real in cwd.parents:
        raise RunError(f"{out} is the current folder or one of its parents; a run needs a folder of its own, "
                       "e.g. --out runs/NAME")
    if os.path.lexists(out) and not out.is_dir():
        raise RunError(f"{out} is a file, not a run folder; semcollab will not replace it: pick another --out")
    try:
        ok = not out.is_dir() or _replaceable(out)
    except OSError as e:
        raise RunError(f"cannot use {out} as a run folder: {e.strerror or e}") from e
    if not ok:
        foreign = sorted(e.name for e in out.iterdir() if not _is_run_file(e))
        what = f"no {MANIFEST}" if not (out / MANIFEST).is_file() else "files a run never holds"
        raise RunError(f"{out} is a folder that is not a run (it holds {', '.join(foreign[:5])}: {what}); semcollab "
                       "only replaces a run or an empty folder: pick another --out or move those files away")
    parent = out.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RunError(f"cannot write the run {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunError(f"cannot write the run {out}: the folder {parent} is not writable")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a process of another user counts as running)."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return True


def _leftovers(out: Path) -> list[tuple[str, Path]]:
    """(kind, path) of the ``.NAME.tmp-PID-*`` / ``.NAME.old-PID-*`` siblings whose writer is gone."""
    pat = re.compile(rf"^\.{re.escape(out.name)}\.(tmp|old)-(\d+)(?:-[A-Za-z0-9_]+)?$")
    if not out.parent.is_dir():
        return []
    found = []
    for e in sorted(out.parent.iterdir(), key=lambda q: q.name):
        m = pat.match(e.name)
        if m and not _alive(int(m.group(2))):
            found.append((m.group(1), e))
    return found


def _recover(out: Path, log: Log) -> None:
    """Restore an orphaned ``.old`` run when ``out`` is missing; remove dead writers' leftovers."""
    left = _leftovers(out)
    if not left:
        return
    if not os.path.lexists(out):
        olds = sorted((p for kind, p in left if kind == "old" and _replaceable(p)), key=lambda p: not _complete(p))
        for p in olds:
            try:
                os.rename(p, out)
            except OSError:
                continue
            log(f"restored {out} from {p.name}, left by an interrupted write")
            break
    out_whole = _complete(out)
    for kind, p in _leftovers(out):
        if (_run_shaped(p) or _is_run_dir(p)) and (kind == "tmp" or out_whole):
            shutil.rmtree(p, ignore_errors=True)
            log(f"removed {p.name}, left by an interrupted write")


def prepare_out(out: str | os.PathLike, log: Log | None = None) -> Path:
    """Check that a run may be written to ``out`` and recover an interrupted write there.

    Call it before computing. ``out`` must be absent, an empty folder or a run (a folder
    holding ``manifest.json``); anything else (a folder of other files, a file, a symbolic
    link, the current folder or one of its parents, a place whose parent is not writable)
    raises :class:`RunError` naming the path and why. Then, for dead writers only: an
    orphaned ``.NAME.old-PID-*`` run is restored when ``out`` is missing, stale
    ``.NAME.tmp-PID-*`` folders are removed, and stale ``.NAME.old-PID-*`` folders are
    removed once ``out`` holds a whole run. Returns ``out`` as an absolute path.
    """
    out = Path(os.path.abspath(out))
    _check_target(out)
    _recover(out, log or (lambda m: None))
    return out


# ----------------------------------------------------------------------------- checksums
def _digest(path: Path, sync: bool = False) -> dict[str, Any]:
    """``{"sha256", "bytes"}`` of a file, read in chunks (``sync``: flush it to disk too)."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
        if sync:
            os.fsync(f.fileno())
    return {"sha256": h.hexdigest(), "bytes": n}


def _manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON, without its own ``manifest_sha256``."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _layout_files(path: Path) -> list[str]:
    """Relative paths of the files a run is made of: ``*.parquet`` and ``vectors/*``."""
    rel = [f.name for f in path.glob("*.parquet") if f.is_file()]
    rel += [f"vectors/{f.name}" for f in (path / "vectors").glob("*") if f.is_file()]
    return sorted(rel)


def _verify_file(run: Path, rel: str, want: Any) -> None:
    """RunError naming ``rel`` unless it exists with the recorded size and SHA-256."""
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or ".." in parts or not isinstance(want, dict):
        raise RunError(f"run {run} could not be read: its manifest lists {rel!r}, which is not a file of a run; "
                       f"{RECOMPUTE}")
    f = run.joinpath(*parts)
    if not f.is_file():
        raise RunError(f"run {run} is incomplete: {rel} is missing; {RECOMPUTE}")
    try:
        got = _digest(f)
    except OSError as e:
        raise RunError(f"run {run} could not be read: {rel} ({e.strerror or e}); {RECOMPUTE}") from e
    if got["bytes"] != want.get("bytes"):
        raise RunError(f"run {run} could not be read: {rel} has {got['bytes']} bytes, the manifest says "
                       f"{want.get('bytes')} (truncated or rewritten since the run was written); {RECOMPUTE}")
    if got["sha256"] != want.get("sha256"):
        raise RunError(f"run {run} could not be read: {rel} does not match the SHA-256 recorded when the run "
                       f"was written (changed or damaged since); {RECOMPUTE}")


def verify_run(path: str | os.PathLike) -> dict[str, Any]:
    """Check every file of the run at ``path`` against its manifest; return the manifest.

    Raises :class:`RunError` naming the file when the manifest is missing, unreadable,
    has no checksums (a run written before they existed) or was edited, or when a listed
    file is missing, has another size or SHA-256, or a ``*.parquet`` / ``vectors/*`` file
    is not listed.
    """
    p = Path(path)
    m = read_manifest(p)
    if m is None:
        raise RunError(f"{p} is not a complete run ({MANIFEST} missing or unreadable); {HOW_TO_MAKE}")
    files = m.get("files")
    if "manifest_sha256" not in m or not isinstance(files, dict):
        raise RunError(f"run {p} has no file checksums in its {MANIFEST} (it was written by an older "
                       f"semcollab); {RECOMPUTE}")
    if _manifest_digest(m) != m["manifest_sha256"]:
        raise RunError(f"run {p} could not be read: {MANIFEST} was edited after the run was written (its "
                       f"SHA-256 does not match); {RECOMPUTE}")
    for rel, want in sorted(files.items()):
        _verify_file(p, rel, want)
    extra = [rel for rel in _layout_files(p) if rel not in files]
    if extra:
        raise RunError(f"run {p} could not be read: {extra[0]} is not one of the files the run was written "
                       f"with; remove it or {RECOMPUTE}")
    return m


def seal_run(path: str | os.PathLike) -> dict[str, Any]:
    """Record the size and SHA-256 of the files now in the run at ``path`` in its manifest.

    For tools and tests that change a run on purpose (a migration, a fixture that drops a
    table); :func:`open_run` accepts the run afterwards. Returns the new manifest.
    """
    p = Path(path)
    m = read_manifest(p)
    if m is None or not _is_run_dir(p):
        raise RunError(f"{p} is not a run ({MANIFEST} missing or unreadable); {HOW_TO_MAKE}")
    files = {rel: _digest(p.joinpath(*rel.split("/")), sync=True) for rel in _layout_files(p)}
    tmp = p / f".{MANIFEST}.tmp-{os.getpid()}"
    _write_manifest(tmp, {**m, "files": files})
    os.replace(tmp, p / MANIFEST)
    return verify_run(p)


# ----------------------------------------------------------------------------- write_run
def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    data = json.loads(json.dumps(manifest, default=str))  # plain JSON types, as a reader sees them
    data.pop("manifest_sha256", None)
    data["manifest_sha256"] = _manifest_digest(data)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())


#: rows per parquet row group: a large table (top-K lists, interactions of 50k users) streams in
#: pieces of a few MiB instead of one block
ROW_GROUP_ROWS = 262_144


def _write_files(tmp: Path, tables: dict[str, pd.DataFrame], vectors: dict[str, np.ndarray],
                 manifest: dict[str, Any]) -> None:
    """Every file of the run into ``tmp``, flushed to disk, the manifest (with checksums) last."""
    for name, df in tables.items():
        df.to_parquet(tmp / f"{name}.parquet", index=False, row_group_size=ROW_GROUP_ROWS)
    (tmp / "vectors").mkdir()
    for name, arr in vectors.items():
        np.save(tmp / "vectors" / f"{name}.npy", np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    files = {rel: _digest(tmp.joinpath(*rel.split("/")), sync=True) for rel in _layout_files(tmp)}
    _fsync_dir(tmp / "vectors")
    _write_manifest(tmp / MANIFEST, {**manifest, "schema_version": SCHEMA_VERSION, "files": files})
    _fsync_dir(tmp)


def _take_displaced(tmp: Path, out: Path) -> Path:
    """After an exchange ``tmp`` holds what ``out`` held: a run or empty folder to delete, or else put back."""
    if _replaceable(tmp):
        return tmp
    _renameat2(tmp, out, _RENAME_EXCHANGE)
    raise RunError(f"{out} changed while the run was being written and now holds something that is not a run; "
                   "it was left as it is")


def _install_by_renames(tmp: Path, out: Path) -> Path | None:
    """Two renames (platforms without renameat2): ``out`` aside to ``.NAME.old-PID-*``, ``tmp`` to ``out``."""
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return None
    old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(out, old)
    if not _replaceable(old):
        os.rename(old, out)
        raise RunError(f"{out} changed while the run was being written and now holds something that is not a "
                       "run; it was left as it is")
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    return old


def _install(tmp: Path, out: Path) -> Path | None:
    """Put the finished run ``tmp`` at ``out`` atomically; return where the replaced content now is, if any."""
    if _RENAMEAT2 is None:
        return _install_by_renames(tmp, out)
    for _ in range(8):
        try:
            _renameat2(tmp, out, _RENAME_EXCHANGE)
            return _take_displaced(tmp, out)
        except FileNotFoundError:
            pass  # nothing at out yet
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
            return _install_by_renames(tmp, out)
        try:
            _renameat2(tmp, out, _RENAME_NOREPLACE)
            return None
        except FileExistsError:
            continue  # another writer put a run there meanwhile: exchange with it
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
            return _install_by_renames(tmp, out)
    raise RunError(f"could not put the run in place at {out}: it kept changing while being replaced")


def write_run(out: Path, tables: dict[str, pd.DataFrame], vectors: dict[str, np.ndarray], manifest: dict[str, Any]) -> Path:
    """Write a complete run to ``out`` atomically and return ``out`` (absolute).

    ``out`` must pass :func:`prepare_out`. The run is written to ``.NAME.tmp-PID-*``
    beside ``out`` with the SHA-256 of every file in its manifest, then swapped in; the
    run it replaces is deleted only after the swap.
    """
    missing = [t for t in TABLES if t not in tables] + [v for v in VECTORS if v not in vectors]
    if missing:
        raise RunError(f"refusing to write an incomplete run to {out}: missing {missing}")
    out = prepare_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        _write_files(tmp, tables, vectors, manifest)
        displaced = _install(tmp, out)
        _fsync_dir(out.parent)
        if displaced is not None:  # the new run is in place: a failure here only leaves a leftover
            shutil.rmtree(displaced, ignore_errors=True)
    finally:
        if os.path.lexists(tmp) and (_run_shaped(tmp) or _is_run_dir(tmp)):
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a complete run at ``path``, or None when there is none."""
    f = Path(path) / MANIFEST
    if not f.is_file():
        return None
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return m if isinstance(m, dict) else None


def _read_error(run: Path, f: Path, exc: Exception) -> RunError:
    rel = f.relative_to(run).as_posix()
    return RunError(f"run {run} could not be read: {rel} ({type(exc).__name__}: {exc}); {RECOMPUTE}")


@dataclass
class Run:
    """A saved run, opened read-only. Tables and vectors load lazily and are memoised."""

    path: Path
    manifest: dict[str, Any]
    _tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def table(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            f = self.path / f"{name}.parquet"
            if not f.exists():
                raise RunError(f"run {self.path} has no table {name!r} ({f.name} is missing); {HOW_TO_MAKE}")
            try:
                self._tables[name] = pd.read_parquet(f)
            except Exception as e:  # pyarrow / OS errors of a damaged file
                raise _read_error(self.path, f, e) from e
        return self._tables[name]

    def vectors(self, name: str) -> np.ndarray:
        f = self.path / "vectors" / f"{name}.npy"
        if not f.exists():
            raise RunError(f"run {self.path} has no vectors {name!r}; {HOW_TO_MAKE}")
        try:
            return np.load(f, allow_pickle=False, mmap_mode="r")
        except Exception as e:  # truncated or not a .npy file
            raise _read_error(self.path, f, e) from e

    @cached_property
    def items(self) -> pd.DataFrame:
        return self.table("items")

    @cached_property
    def users(self) -> pd.DataFrame:
        return self.table("users")

    @property
    def name(self) -> str:
        return self.path.name


def open_run(path: str | os.PathLike) -> Run:
    """Open a saved run after checking every file's SHA-256; RunError (naming the file) when it is
    missing, incomplete, damaged, edited or from an incompatible schema."""
    p = Path(path)
    if not p.exists():
        raise RunError(f"no run at {p}; {HOW_TO_MAKE}")
    m = read_manifest(p)
    if m is None:
        raise RunError(f"{p} is not a complete run ({MANIFEST} missing or unreadable); {HOW_TO_MAKE}")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise RunError(
            f"run {p} has schema version {m.get('schema_version')}, this semcollab reads {SCHEMA_VERSION}; {RECOMPUTE}"
        )
    missing = [t for t in TABLES if not (p / f"{t}.parquet").exists()]
    if missing:
        raise RunError(f"run {p} is incomplete: missing {missing}; recompute it with --force")
    return Run(path=p, manifest=verify_run(p))


def cached_run(out: str | os.PathLike, config_hash: str, checksum: str, schema_version: int = SCHEMA_VERSION,
               log: Log = print) -> Run | None:
    """The run at ``out`` opened and verified when it is a cache hit, else None (then compute it).

    A hit is a run whose manifest has this ``config_hash``, dataset ``checksum`` and
    ``schema_version`` and whose files all pass :func:`verify_run`. A matching run that is
    damaged or edited is reported through ``log`` and gives None, so the caller recomputes.
    """
    m = read_manifest(Path(out))
    if m is None or m.get("config_hash") != config_hash or m.get("schema_version") != schema_version \
            or (m.get("dataset") or {}).get("checksum") != checksum:
        return None
    try:
        run = open_run(out)
    except RunError as e:
        log(f"not reusing {out}: {e} -- computing it again")
        return None
    log(f"cache hit: {out} already holds this run (use --force to recompute)")
    return run


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Complete runs under ``root`` (the folder itself, its children and grandchildren)."""
    root = Path(root)
    if not root.exists():
        return []
    cands = [root, *root.glob("*"), *root.glob("*/*")]
    return sorted(p for p in cands if p.is_dir() and not p.name.startswith(".") and read_manifest(p) is not None)
