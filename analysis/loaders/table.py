"""Generic interaction / item tables (CSV, TSV, Parquet) with a column mapping.

``columns`` maps canonical names to the file's names, e.g. ``{"user_id": "uid",
"item_id": "movie", "rating": "stars", "timestamp": "ts"}``; canonical names not mapped
are looked up under common spellings (``userId``, ``movieId``, ``stars``, ...). A mapped
column that is absent is an error listing the columns the file has. Timestamps may be
numbers (seconds) or dates (converted to UTC seconds; naive dates are taken as UTC).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import Dataset, make_interactions, make_items
from ..errors import ConfigError, DataError
from .normalize import assemble, join_genres, parse_ids, parse_numbers, titles_and_years
from .textfiles import Table, as_text, read_quoted

INTER_ALIASES = {
    "user_id": ("user_id", "userid", "user", "uid", "reviewerid", "customer_id"),
    "item_id": ("item_id", "itemid", "item", "iid", "movieid", "movie_id", "parent_asin", "asin", "product_id"),
    "rating": ("rating", "stars", "score", "overall"),
    "timestamp": ("timestamp", "time", "ts", "date", "datetime", "unixreviewtime"),
}
ITEM_ALIASES = {
    "item_id": INTER_ALIASES["item_id"],
    "title": ("title", "movie_title", "name", "item_name"),
    "year": ("year", "release_year"),
    "genres": ("genres", "genre", "categories", "category", "class"),
    "description": ("description", "desc", "overview", "plot", "summary"),
}
PARQUET_EXT = (".parquet", ".pq")
_EXT_SEP = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def _base_suffix(path: Path) -> str:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return Path(name).suffix.lower()


def _sniff_sep(path: Path) -> str:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
            first = fh.readline()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc})") from None
    counts = {s: first.count(s) for s in ("\t", ",", ";", "|")}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        raise DataError(f"{path}, line 1: cannot tell the separator (no tab, comma, ';' or '|' in the header)")
    return best


def read_table(path, sep: str | None = None, numeric=()) -> Table:
    """Read a CSV / TSV (optionally .gz) or Parquet file as a :class:`Table`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    ext = _base_suffix(path)
    if ext in PARQUET_EXT:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"{path}: cannot read Parquet file ({exc})") from None
        frame.columns = [str(c) for c in frame.columns]
        return Table(path=path, frame=frame.reset_index(drop=True), unit="row")
    return read_quoted(path, sep or _EXT_SEP.get(ext) or _sniff_sep(path), numeric=numeric)


def _resolve(path: Path, columns: list, mapping: dict | None, aliases: dict, required: tuple[str, ...], what: str) -> dict:
    """canonical name -> column of the file (only for columns that exist)."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(aliases))
    if unknown:
        raise ConfigError(f"{what} column mapping has unknown key(s) {unknown}; accepted: {list(aliases)}")
    cols = [str(c) for c in columns]
    lower = {c.lower(): c for c in cols}
    out = {}
    for canon, names in aliases.items():
        if canon in mapping:
            if mapping[canon] not in cols:
                raise DataError(
                    f"{path}: column {mapping[canon]!r} (mapped to {canon}) not found; available columns: {cols}"
                )
            out[canon] = mapping[canon]
            continue
        hit = next((lower[n] for n in names if n in lower), None)
        if hit is not None:
            out[canon] = hit
        elif canon in required:
            raise DataError(f"{path}: no {canon} column (give it in the column mapping); available columns: {cols}")
    return out


def _timestamps(table: Table, column: str) -> np.ndarray:
    """Seconds: numbers as they are, or dates converted to UTC epoch seconds."""
    col = table.frame[column]
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return parse_numbers(table, column, "timestamp")
    if pd.api.types.is_datetime64_any_dtype(col):  # e.g. a Parquet timestamp column
        if col.isna().any():
            raise DataError(f"{table.where(int(np.flatnonzero(col.isna().to_numpy())[0]))}: missing timestamp")
        col = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
        return ((col - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(float)
    raw = as_text(col)
    num = pd.to_numeric(raw, errors="coerce").to_numpy(float)
    bad = np.isnan(num)
    if not bad.any():
        return num
    if (~bad).any():  # some numbers, some not: report the first non-number
        return parse_numbers(table, column, "timestamp")
    dt = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
    missing = dt.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{table.where(i)}: timestamp {raw.iloc[i]!r} is neither a number nor a date")
    return ((dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(float)


def _genres(values: pd.Series) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, (list, tuple, np.ndarray)):
            out.append(join_genres(v))
        elif v is None or (isinstance(v, float) and np.isnan(v)):
            out.append("")
        else:
            out.append(join_genres(str(v).split("|")))
    return out


def _texts(values: pd.Series) -> list[str]:
    """Description strings; list values (e.g. Parquet list columns) are space-joined."""
    out = []
    for v in values:
        if isinstance(v, (list, tuple, np.ndarray)):
            out.append(" ".join(str(x).strip() for x in v))
        elif v is None or (isinstance(v, float) and np.isnan(v)):
            out.append("")
        else:
            out.append(str(v).strip())
    return out


def load_table(
    inter_path,
    item_path=None,
    columns: dict | None = None,
    item_columns: dict | None = None,
    sep: str | None = None,
    name: str | None = None,
    strict: bool = False,
) -> Dataset:
    """Load an interaction table (+ optional item table) with a canonical -> actual column mapping."""
    inter_path = Path(inter_path)
    resolved: dict = {}

    def numeric(names: list) -> list:  # resolve the mapping on the header, before parsing
        resolved.update(_resolve(inter_path, names, columns, INTER_ALIASES, ("user_id", "item_id"), "interaction"))
        return [resolved[c] for c in ("rating", "timestamp") if c in resolved]

    table = read_table(inter_path, sep, numeric)
    cols = resolved or _resolve(
        inter_path, list(table.frame.columns), columns, INTER_ALIASES, ("user_id", "item_id"), "interaction"
    )
    inter = make_interactions(
        parse_ids(table, cols["user_id"], "user id"),
        parse_ids(table, cols["item_id"], "item id"),
        parse_numbers(table, cols["rating"], "rating") if "rating" in cols else None,
        _timestamps(table, cols["timestamp"]) if "timestamp" in cols else None,
    )
    items = None
    source = f"table: {inter_path}"
    if item_path is not None:
        item_path = Path(item_path)
        it = read_table(item_path, sep)
        icols = _resolve(item_path, list(it.frame.columns), item_columns, ITEM_ALIASES, ("item_id",), "item")
        frame = it.frame
        titles = as_text(frame[icols["title"]]) if "title" in icols else pd.Series([""] * len(frame))
        years = as_text(frame[icols["year"]]) if "year" in icols else None
        titles, years = titles_and_years(titles, years)
        items = make_items(
            parse_ids(it, icols["item_id"], "item id"),
            titles,
            years,
            _genres(frame[icols["genres"]]) if "genres" in icols else None,
            _texts(frame[icols["description"]]) if "description" in icols else None,
        )
        source += f" + items {item_path}"
    return assemble(name or inter_path.name.split(".")[0], inter, items, source, str(item_path), strict)
