"""Where the engine caches things: datasets, encoded vectors, tuning results.

``$SEMCOLLAB_CACHE`` overrides the location (tests point it at a temporary folder);
otherwise the user's cache directory (``~/.cache/semcollab`` on Linux).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def cache_dir(*parts: str) -> Path:
    """The cache root (or a sub-folder of it), created on demand."""
    root = os.environ.get("SEMCOLLAB_CACHE")
    if root:
        base = Path(root)
    else:
        from platformdirs import user_cache_dir

        base = Path(user_cache_dir("semcollab"))
    p = base.joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def digest(*objs: Any) -> str:
    """Stable SHA-256 hex digest of JSON-able objects, strings, bytes and numpy arrays."""
    h = hashlib.sha256()
    for o in objs:
        if isinstance(o, np.ndarray):
            h.update(str((o.dtype.str, o.shape)).encode())
            h.update(np.ascontiguousarray(o).tobytes())
        elif isinstance(o, bytes):
            h.update(o)
        elif isinstance(o, str):
            h.update(o.encode())
        else:
            h.update(json.dumps(o, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` to ``path`` via a temporary file and rename (never half-written)."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    os.replace(tmp, path)


def atomic_save_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)
