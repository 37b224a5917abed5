"""Loaders for user-supplied data, and the dispatcher the CLI and dashboard call.

Every loader returns a validated :class:`analysis.data.Dataset` (string ids, canonical
columns) whose ``source`` describes the files read; every bad input raises a
:class:`~analysis.errors.DataError` (or :class:`~analysis.errors.VectorError` for item
vectors) naming the file and the line, row or id at fault.

``load_dataset(path, format="auto")`` recognises, by file names and extensions:

* ``recbole``: a ``*.inter`` file (its ``*.item`` sibling is used when present), or a
  directory holding one (``.gz`` allowed);
* ``movielens``: ``u.data`` / ``ratings.dat`` / ``ratings.csv`` (with ``u.item`` /
  ``movies.dat`` / ``movies.csv``), or a directory holding them;
* ``amazon``: ``*.json`` / ``*.jsonl`` (optionally ``.gz``) reviews; the file whose name
  starts with ``meta`` beside it (or in the directory given) is the metadata;
* ``table``: ``*.csv`` / ``*.tsv`` / ``*.parquet`` (optionally ``.gz``); in a directory,
  the interaction file is the one named like ``inter*`` / ``ratings*`` /
  ``interactions*`` and the item file the one named like ``item*`` / ``movies*``.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from ..data import Dataset, validate
from ..errors import ConfigError, DataError
from .amazon import load_amazon
from .movielens import detect_movielens, load_movielens
from .recbole import load_recbole
from .table import load_table
from .vectors import load_vectors

FORMATS = ("recbole", "movielens", "amazon", "table")
ACCEPTED = (
    "recbole (*.inter [+ *.item]), movielens (u.data + u.item, ratings.dat + movies.dat, "
    "ratings.csv + movies.csv), amazon (*.json / *.jsonl [.gz] reviews [+ meta*.json[l][.gz]]), "
    "table (*.csv / *.tsv / *.parquet [+ item table])"
)
_JSON_EXT = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_TABLE_EXT = (".csv", ".tsv", ".tab", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz", ".parquet", ".pq")
_INTER_PREFIXES = ("inter", "ratings", "interactions", "reviews")
_ITEM_PREFIXES = ("item", "movies", "meta", "products")


def _has_ext(path: Path, exts: tuple[str, ...]) -> bool:
    return path.is_file() and path.name.lower().endswith(exts)


def _recbole_args(path: Path) -> dict | None:
    if path.is_dir():
        inters = sorted(p for p in path.iterdir() if p.name.endswith((".inter", ".inter.gz")))
        if not inters:
            return None
        if len(inters) > 1:
            raise DataError(f"{path}: several .inter files ({[p.name for p in inters]}); pass one of them")
        path = inters[0]
    elif not path.name.endswith((".inter", ".inter.gz")):
        return None
    stem = path.name[: path.name.rindex(".inter")]
    item = next((c for c in (path.with_name(stem + ".item"), path.with_name(stem + ".item.gz")) if c.is_file()), None)
    return {"inter_path": path, "item_path": item}


def _amazon_args(path: Path) -> dict | None:
    """Reviews file and, if exactly one is beside it, the meta*.json[l][.gz] metadata file."""
    if path.is_file():
        if not _has_ext(path, _JSON_EXT):
            return None
        siblings = [p for p in path.parent.iterdir() if p != path and _has_ext(p, _JSON_EXT)]
        meta = [p for p in siblings if p.name.lower().startswith("meta")]
        return {"reviews_path": path, "meta_path": meta[0] if len(meta) == 1 else None}
    files = sorted(p for p in path.iterdir() if _has_ext(p, _JSON_EXT))
    if not files:
        return None
    meta = [p for p in files if p.name.lower().startswith("meta")]
    reviews = [p for p in files if p not in meta]
    if len(reviews) != 1 or len(meta) > 1:
        raise DataError(
            f"{path}: cannot tell the Amazon reviews / metadata files apart among {[p.name for p in files]}; "
            "expect one reviews file and at most one meta* file"
        )
    return {"reviews_path": reviews[0], "meta_path": meta[0] if meta else None}


def _table_args(path: Path) -> dict | None:
    if path.is_file():
        return {"inter_path": path} if _has_ext(path, _TABLE_EXT) else None
    files = sorted(p for p in path.iterdir() if _has_ext(p, _TABLE_EXT))
    inter = [p for p in files if p.name.lower().startswith(_INTER_PREFIXES)]
    items = [p for p in files if p.name.lower().startswith(_ITEM_PREFIXES)]
    if len(inter) == 1 and len(items) <= 1:
        return {"inter_path": inter[0], "item_path": items[0] if items else None}
    if len(files) == 1:
        return {"inter_path": files[0]}
    if files:
        raise DataError(
            f"{path}: cannot tell the interaction and item tables apart among {[p.name for p in files]}; "
            "name them ratings.* / items.* or pass the files explicitly"
        )
    return None


def _movielens_args(path: Path) -> dict | None:
    return {"path": path} if detect_movielens(path) is not None else None


_DETECTORS = {
    "recbole": (_recbole_args, load_recbole),
    "movielens": (_movielens_args, load_movielens),
    "amazon": (_amazon_args, load_amazon),
    "table": (_table_args, load_table),
}


def detect_format(path) -> str:
    """The format ``load_dataset(path, "auto")`` would use; DataError if none fits."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found")
    for fmt in ("recbole", "movielens", "amazon", "table"):
        if _DETECTORS[fmt][0](path) is not None:
            return fmt
    raise DataError(f"{path}: unrecognised data; accepted formats: {ACCEPTED}")


def load_dataset(path, format: str = "auto", **options) -> Dataset:
    """Load user data in any supported format (auto-detected by file names / extensions).

    ``options`` go to the format's loader and override what detection found, e.g.
    ``item_path``, ``meta_path``, ``columns``, ``item_columns``, ``sep``, ``name``.
    """
    path = Path(path)
    if format not in ("auto", *FORMATS):
        raise DataError(f"unknown data format {format!r}; accepted: auto, {', '.join(FORMATS)}")
    if not path.exists():
        raise DataError(f"{path}: not found")
    fmt = detect_format(path) if format == "auto" else format
    detect, loader = _DETECTORS[fmt]
    args = detect(path)
    if args is None:
        raise DataError(f"{path}: does not look like {fmt} data; accepted formats: {ACCEPTED}")
    accepted = set(inspect.signature(loader).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"option(s) {unknown} do not apply to {fmt} data; it takes {sorted(accepted)}")
    args.update({k: v for k, v in options.items() if v is not None})
    ds = loader(**args)
    validate(ds)
    return ds


__all__ = [
    "ACCEPTED",
    "FORMATS",
    "detect_format",
    "load_amazon",
    "load_dataset",
    "load_movielens",
    "load_recbole",
    "load_table",
    "load_vectors",
]
