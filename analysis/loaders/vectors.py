"""Precomputed item vectors supplied by the user, aligned to the catalogue.

Accepted layouts (never unpickled: ``allow_pickle=False`` throughout):

* ``.npy`` matrix + an ids file: text with one id per line, or a ``.npy`` array of
  strings / integers. Without ``ids_path``, a sibling ``<stem>.ids.txt``,
  ``<stem>_ids.txt``, ``<stem>.ids.npy`` or ``<stem>_ids.npy`` is used;
* ``.npz`` with arrays ``ids`` and ``vectors``;
* Parquet with an ``item_id`` column and either one list / array column or only
  numeric columns (one per dimension, in column order).

The result is a float32 ``(len(item_ids), d)`` matrix in catalogue order. Anything
that would silently corrupt a diagnostic is a :class:`VectorError`: a row count that
differs from the id count, duplicate ids, ids outside the catalogue, catalogue items
without a vector, NaN / inf or all-zero rows (cosine is undefined), non-2-D or
non-numeric arrays.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import VectorError

_IDS_SUFFIXES = (".ids.txt", "_ids.txt", ".ids.npy", "_ids.npy")


def _few(values, n: int = 5) -> str:
    values = list(values)
    shown = ", ".join(repr(str(v)) for v in values[:n])
    return f"{shown}{', ...' if len(values) > n else ''} ({len(values)} in all)"


def _np_load(path: Path, what: str):
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise VectorError(f"{path}: {what} file not found") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise VectorError(_unreadable(path, what, exc)) from None


def _unreadable(path: Path, what: str, exc: Exception) -> str:
    """Why a .npy / .npz could not be read: object arrays (pickles) or a truncated / corrupt file."""
    if "allow_pickle" in str(exc):
        return (f"{path}: cannot load {what} without pickle (object arrays are not accepted; save strings "
                "as a '<U' array)")
    return f"{path}: cannot read {what}: the file is truncated or not a valid NumPy file ({type(exc).__name__}: {exc})"


def _npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``ids`` and ``vectors`` of a .npz, each read in full (members are loaded lazily)."""
    with _np_load(path, "vectors") as npz:
        missing = [k for k in ("ids", "vectors") if k not in npz.files]
        if missing:
            raise VectorError(f"{path}: .npz needs arrays 'ids' and 'vectors'; it has {npz.files}")
        out = []
        for key in ("ids", "vectors"):
            try:
                out.append(npz[key])
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise VectorError(_unreadable(path, f"array {key!r}", exc)) from None
    return out[0], out[1]


def _ids_from_array(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise VectorError(f"{path}: ids must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind in "US":
        ids = arr.astype(str)
    elif arr.dtype.kind in "iu":
        ids = arr.astype(np.int64).astype(str)
    else:
        raise VectorError(f"{path}: ids must be strings or integers, got dtype {arr.dtype}")
    return np.char.strip(ids).astype(object)


def _read_ids(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return _ids_from_array(_np_load(path, "ids"), path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise VectorError(f"{path}: ids file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VectorError(f"{path}: cannot read ids ({exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    ids = [ln.strip() for ln in lines]
    empty = [i + 1 for i, v in enumerate(ids) if not v]
    if empty:
        raise VectorError(f"{path}, line {empty[0]}: empty id")
    return np.asarray(ids, dtype=object)


def _parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise VectorError(f"{path}: cannot read Parquet file ({exc})") from None
    if "item_id" not in frame.columns:
        raise VectorError(f"{path}: no 'item_id' column; columns are {list(frame.columns)}")
    ids = frame["item_id"]
    if ids.isna().any():
        raise VectorError(f"{path}, row {int(np.flatnonzero(ids.isna().to_numpy())[0]) + 1}: missing item_id")
    if pd.api.types.is_float_dtype(ids):
        ids = ids.astype(np.int64)
    ids = ids.astype(str).str.strip().to_numpy(dtype=object)
    rest = frame.drop(columns="item_id")
    if rest.shape[1] == 0:
        raise VectorError(f"{path}: no vector column besides 'item_id'")
    first = rest.iloc[:, 0]
    if rest.shape[1] == 1 and first.dtype == object:
        lengths = first.map(lambda v: len(v) if isinstance(v, (list, tuple, np.ndarray)) else -1).to_numpy()
        if (lengths < 0).any():
            row = int(np.flatnonzero(lengths < 0)[0])
            raise VectorError(f"{path}, row {row + 1} (item {ids[row]}): {first.name!r} is not a list of numbers")
        if len(set(lengths.tolist())) > 1:
            row = int(np.flatnonzero(lengths != lengths[0])[0])
            raise VectorError(
                f"{path}, row {row + 1} (item {ids[row]}): vector length {lengths[row]} differs from {lengths[0]}"
            )
        try:
            mat = np.stack([np.asarray(v, dtype=np.float64) for v in first]) if len(first) else np.zeros((0, 0))
        except (TypeError, ValueError) as exc:
            raise VectorError(f"{path}: column {first.name!r} holds non-numeric values ({exc})") from None
        return ids, mat
    non_numeric = [c for c in rest.columns if not pd.api.types.is_numeric_dtype(rest[c]) or pd.api.types.is_bool_dtype(rest[c])]
    if non_numeric:
        raise VectorError(
            f"{path}: expected one list column or only numeric columns besides 'item_id'; "
            f"non-numeric: {[str(c) for c in non_numeric][:5]}"
        )
    return ids, rest.to_numpy(dtype=np.float64)


def _read(path: Path, ids_path: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(ids, matrix, description of the files)."""
    if not path.exists():
        raise VectorError(f"{path}: vectors file not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        ids, mat = _npz_arrays(path)
        return _ids_from_array(ids, path), mat, str(path)
    if suffix in (".parquet", ".pq"):
        ids, mat = _parquet(path)
        return ids, mat, str(path)
    if suffix == ".npy":
        if ids_path is None:
            stem = path.with_suffix("")
            ids_path = next((Path(f"{stem}{s}") for s in _IDS_SUFFIXES if Path(f"{stem}{s}").is_file()), None)
            if ids_path is None:
                raise VectorError(
                    f"{path}: a .npy matrix needs an ids file (one id per line, or .npy of strings); "
                    f"none given and no {', '.join(stem.name + s for s in _IDS_SUFFIXES)} next to it"
                )
        mat = _np_load(path, "vectors")
        return _read_ids(Path(ids_path)), mat, f"{path} + ids {ids_path}"
    raise VectorError(f"{path}: unsupported vectors file; use .npy (+ ids file), .npz (ids, vectors) or .parquet")


def load_vectors(path, item_ids, ids_path=None, name: str = "vectors", allow_extra: bool = False) -> np.ndarray:
    """float32 ``(len(item_ids), d)`` vectors in the order of ``item_ids``.

    ``allow_extra=True`` drops vectors of ids outside the catalogue instead of failing
    (e.g. a catalogue reduced by k-core filtering).
    """
    path = Path(path)
    ids, mat, where = _read(path, None if ids_path is None else Path(ids_path))
    mat = np.asarray(mat)
    label = f"{name} ({where})"
    if mat.dtype.kind not in "fiu":
        raise VectorError(f"{label}: vectors must be a numeric array, got dtype {mat.dtype}")
    if mat.ndim != 2:
        raise VectorError(f"{label}: vectors must be a 2-D (items x dimensions) array, got shape {mat.shape}")
    if mat.shape[0] != len(ids):
        raise VectorError(f"{label}: {mat.shape[0]} vector rows but {len(ids)} ids")
    if mat.shape[1] == 0:
        raise VectorError(f"{label}: vectors have 0 dimensions")
    id_series = pd.Series(ids, dtype=object)
    dup = id_series[id_series.duplicated()].unique()
    if len(dup):
        raise VectorError(f"{label}: duplicate id(s) {_few(dup)}")
    catalogue = pd.Index(pd.Series(list(item_ids), dtype=object).astype(str))
    pos = pd.Index(id_series).get_indexer(catalogue)
    extra = id_series[~id_series.isin(catalogue)]
    if len(extra) and not allow_extra:
        raise VectorError(f"{label}: id(s) not in the catalogue: {_few(extra)}")
    if (pos < 0).any():
        raise VectorError(f"{label}: catalogue item(s) without a vector: {_few(catalogue[pos < 0])}")
    out = mat[pos].astype(np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        bad = catalogue[~finite]
        raise VectorError(f"{label}: NaN or inf in the vector of item(s) {_few(bad)}")
    zero = ~np.any(out != 0, axis=1)
    if zero.any():
        raise VectorError(f"{label}: all-zero vector (cosine undefined) for item(s) {_few(catalogue[zero])}")
    return out
