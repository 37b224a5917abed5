"""Field normalisation shared by the loaders, and the final assembly of a Dataset.

Every loader maps its format's fields to the canonical tables of :mod:`analysis.data`
with the same rules, so the same catalogue read from two formats looks the same:

* titles: a trailing ``(YYYY)`` (or ``(YYYY-YYYY)``) is stripped and used as the year
  when the year field is missing or invalid; the MovieLens / RecBole typo ``unkonwn``
  becomes ``unknown``;
* years: a 4-digit year, anything else is NA;
* genres: ``|``-joined, with placeholders (``unknown``, ``(no genres listed)``) dropped;
* numbers: a value that does not parse raises :class:`DataError` naming file and line.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..data import Dataset, make_items, validate
from ..errors import DataError, DataWarning
from .textfiles import Table, as_text

_TRAILING_YEAR = re.compile(r"\s*\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")
_YEAR = re.compile(r"^\s*(\d{4})(?:\.0*)?\s*$")
#: genre tokens that mean "no genre"
_GENRE_PLACEHOLDERS = {"unknown", "(no genres listed)", "none", "n/a", ""}


def split_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Strip a trailing "(YYYY)" from each title; return (titles, years found in titles)."""
    titles = pd.Series(titles, dtype=object).fillna("").astype(str).str.strip().reset_index(drop=True)
    found = titles.str.extract(_TRAILING_YEAR, expand=False)
    stripped = titles.str.replace(_TRAILING_YEAR, "", regex=True).str.strip()
    # a title that is only "(1995)" keeps its text rather than becoming empty
    stripped = stripped.where(stripped != "", titles)
    stripped = stripped.where(stripped.str.lower() != "unkonwn", "unknown")
    return stripped, parse_years(found)


def parse_years(values: Iterable) -> pd.Series:
    """4-digit years (also "1995.0"); anything else (``unkonwn``, ``V``, "") is NA."""
    s = pd.Series(list(values), dtype=object).fillna("").astype(str)
    digits = s.str.extract(_YEAR, expand=False)
    return pd.to_numeric(digits, errors="coerce").astype("Int64")


def titles_and_years(titles: pd.Series, years: Iterable | None = None) -> tuple[pd.Series, pd.Series]:
    """Titles with the year stripped; the year field wins when valid, else the title's year."""
    stripped, from_title = split_title_year(titles)
    if years is None:
        return stripped, from_title
    field = parse_years(years)
    return stripped, field.fillna(from_title)


def join_genres(tokens: Iterable) -> str:
    """``|``-join genre tokens, dropping placeholders and duplicates (order kept)."""
    out: list[str] = []
    for tok in tokens:
        tok = str(tok).strip()
        if tok.lower() in _GENRE_PLACEHOLDERS or tok in out:
            continue
        out.append(tok)
    return "|".join(out)


def genres_from_strings(values: Iterable, sep: str | None = "|") -> list[str]:
    """Normalise genre strings split on ``sep`` (None: split on whitespace)."""
    return [join_genres(str(v).split(sep)) for v in values]


def parse_numbers(table: Table, column, label: str, *, required: bool = True) -> np.ndarray:
    """Float values of one string column; a bad value raises naming its file and line.

    Empty values are an error when ``required``, otherwise NaN.
    """
    col = table.frame[column]
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        num = col.to_numpy(dtype=float, na_value=np.nan)
        if not (required and np.isnan(num).any()):
            return num
    raw = as_text(col)
    num = pd.to_numeric(raw, errors="coerce").to_numpy(float)
    bad = np.isnan(num) if required else (np.isnan(num) & (raw != "").to_numpy())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{table.where(i)}: {label} {raw.iloc[i]!r} is not a number")
    return num


def parse_ids(table: Table, column, label: str) -> pd.Series:
    """Stripped string ids of one column; an empty id raises naming its file and line."""
    col = table.frame[column]
    if pd.api.types.is_float_dtype(col):
        inexact = (np.abs(col) >= 2**53).to_numpy()  # no longer an exact integer as a float
        if inexact.any():
            i = int(np.flatnonzero(inexact)[0])
            raise DataError(f"{table.where(i)}: {label} {float(col.iloc[i])!r} is a float too large to hold an exact "
                            "integer id; store the ids as integers or strings")
    if pd.api.types.is_float_dtype(col) and np.all(np.isnan(col) | (col == np.round(col))):
        col = col.astype("Int64")  # ids stored as floats (e.g. Parquet from pandas): "1", not "1.0"
    ids = as_text(col)
    empty = (ids == "").to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise DataError(f"{table.where(i)}: empty {label}")
    return ids.reset_index(drop=True)


def ordered_unique(ids: np.ndarray) -> np.ndarray:
    """Unique ids, numerically sorted when all are integers, else in first-seen order."""
    uniq = pd.unique(pd.Series(ids, dtype=object))
    try:
        order = np.argsort(np.asarray(uniq).astype(np.int64), kind="stable")
        return np.asarray(uniq, dtype=object)[order]
    except (ValueError, OverflowError):
        return np.asarray(uniq, dtype=object)


def assemble(
    name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    source: str,
    item_source: str | None = None,
    strict: bool = False,
) -> Dataset:
    """Build and validate the Dataset; items missing from the item file get empty metadata.

    If an item file is given but shares no id with the interactions, the two files are
    keyed differently and that is an error rather than a catalogue with no metadata.
    Some ids missing from it are a :class:`~analysis.errors.DataWarning` (count and
    examples), or a :class:`DataError` when ``strict``.
    """
    if len(interactions) == 0:
        raise DataError(f"{source}: no interactions")
    seen = ordered_unique(interactions["item_id"].to_numpy(dtype=object))
    if items is None:
        items = make_items(seen)
    else:
        dup = items["item_id"][items["item_id"].duplicated()]
        if len(dup):
            raise DataError(f"{item_source}: duplicate item id(s) {sorted(set(dup))[:5]}")
        known = set(items["item_id"])
        missing = [i for i in seen if i not in known]
        if len(missing) == len(seen):
            raise DataError(
                f"{item_source}: none of its item ids occur in the interactions "
                f"(e.g. item file {items['item_id'].head(3).tolist()} vs interactions {list(seen[:3])})"
            )
        if missing:
            missing_metadata(interactions, missing, item_source, strict)
            items = pd.concat([items, make_items(missing)], ignore_index=True)
    ds = Dataset(
        name=name,
        interactions=interactions.reset_index(drop=True),
        items=items.reset_index(drop=True),
        source=source,
    )
    validate(ds)
    return ds


def missing_metadata(interactions: pd.DataFrame, missing: list, item_source: str | None, strict: bool) -> None:
    """Warn about (or, strict, refuse) interaction item ids that the item file lacks."""
    if not missing:
        return
    n_pairs = int(interactions["item_id"].isin(set(missing)).sum())
    what = (f"{item_source}: {len(missing)} item id(s) of the interactions are missing from this file "
            f"({n_pairs} interaction(s)), e.g. {[str(i) for i in missing[:5]]}")
    if strict:
        raise DataError(f"{what}; strict mode (--strict) refuses items without metadata")
    warnings.warn(f"{what}; they are kept with no title, year, genres or description (--strict refuses them)",
                  DataWarning, stacklevel=4)
