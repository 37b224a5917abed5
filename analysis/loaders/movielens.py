"""MovieLens in its raw distribution formats, detected by the files present.

* ML-100K: ``u.data`` (tab: user, item, rating, timestamp) + ``u.item`` (``|``-separated,
  latin-1: id, "Title (Year)", release date, video date, URL, 19 genre flags);
* ML-1M / ML-10M: ``ratings.dat`` + ``movies.dat`` (``::``-separated, genres ``|``);
* ML-latest / 20M / 25M: ``ratings.csv`` + ``movies.csv`` (CSV with header).

Titles lose their trailing "(YYYY)", which becomes the year (ML-100K falls back to the
release date when the title has none).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import Dataset, make_interactions, make_items
from ..errors import DataError
from .normalize import assemble, genres_from_strings, join_genres, parse_ids, parse_numbers, parse_years, split_title_year
from .textfiles import read_plain, read_quoted

#: the fixed order of the 19 genre flags in ML-100K ``u.item`` (and ``u.genre``)
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

#: variant -> (ratings file, movies file)
VARIANTS = {
    "ml-100k": ("u.data", "u.item"),
    "ml-1m": ("ratings.dat", "movies.dat"),
    "ml-latest": ("ratings.csv", "movies.csv"),
}


def _find(directory: Path, name: str) -> Path | None:
    for cand in (directory / name, directory / (name + ".gz")):
        if cand.is_file():
            return cand
    return None


def _looks_like_latest(ratings: Path) -> bool:
    """ratings.csv is a common name: only MovieLens's own header makes it ML-latest."""
    opener = gzip.open if ratings.name.endswith(".gz") else open
    try:
        with opener(ratings, "rt", encoding="utf-8-sig", errors="replace") as fh:
            header = fh.readline().strip().split(",")
    except OSError:
        return False
    return header[:2] == ["userId", "movieId"]


def detect_movielens(path: Path) -> tuple[str, Path, Path | None] | None:
    """(variant, ratings file, movies file or None) for a directory or ratings file, else None."""
    directory = path if path.is_dir() else path.parent
    for variant, (rname, mname) in VARIANTS.items():
        ratings = _find(directory, rname) if path.is_dir() else path
        base = ratings.name[:-3] if ratings and ratings.name.endswith(".gz") else (ratings.name if ratings else "")
        if base != rname or (variant == "ml-latest" and not _looks_like_latest(ratings)):
            continue
        return variant, ratings, _find(directory, mname)
    return None


def load_movielens(path, item_path=None, name: str | None = None, strict: bool = False) -> Dataset:
    """Load MovieLens from a directory or a ratings file (``u.data`` / ``ratings.dat`` / ``ratings.csv``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found")
    found = detect_movielens(path)
    if found is None:
        expected = ", ".join(f"{r} (+ {m})" for r, m in VARIANTS.values())
        raise DataError(f"{path}: no MovieLens ratings file found; expected one of {expected}")
    variant, ratings_path, movies_path = found
    if item_path is not None:
        movies_path = Path(item_path)
    reader = {"ml-100k": _ml100k, "ml-1m": _ml1m, "ml-latest": _mllatest}[variant]
    inter, items = reader(ratings_path, movies_path)
    source = f"MovieLens ({variant} format): {ratings_path}" + (f" + {movies_path}" if movies_path else "")
    default_name = path.name if path.is_dir() else path.parent.name or variant
    return assemble(name or default_name, inter, items, source, str(movies_path), strict)


def _interactions(table, cols) -> pd.DataFrame:
    u, i, r, t = cols
    return make_interactions(
        parse_ids(table, u, "user id"),
        parse_ids(table, i, "item id"),
        parse_numbers(table, r, "rating"),
        parse_numbers(table, t, "timestamp"),
    )


def _ml100k(ratings_path: Path, movies_path: Path | None):
    inter = _interactions(read_plain(ratings_path, "\t", header=False, n_fields=4, numeric=(2, 3)), (0, 1, 2, 3))
    if movies_path is None:
        return inter, None
    table = read_plain(movies_path, "|", header=False, n_fields=5 + len(ML100K_GENRES), encodings=("latin-1",))
    frame = table.frame
    flags = frame.iloc[:, 5:].apply(lambda c: pd.to_numeric(c.str.strip(), errors="coerce")).to_numpy(float)
    bad = ~np.isin(flags, (0.0, 1.0))
    if bad.any():
        row, col = (int(x[0]) for x in np.nonzero(bad))
        raise DataError(
            f"{table.where(row)}: genre flag {ML100K_GENRES[col]!r} is {frame.iat[row, 5 + col]!r}, expected 0 or 1"
        )
    names = np.array(ML100K_GENRES, dtype=object)
    genres = [join_genres(names[r.astype(bool)]) for r in flags]
    titles, title_years = split_title_year(frame[1])
    date_years = parse_years(frame[2].str.strip().str.extract(r"(\d{4})\s*$", expand=False))
    items = make_items(parse_ids(table, 0, "item id"), titles, title_years.fillna(date_years), genres)
    return inter, items


def _ml1m(ratings_path: Path, movies_path: Path | None):
    inter = _interactions(read_plain(ratings_path, "::", header=False, n_fields=4, numeric=(2, 3)), (0, 1, 2, 3))
    if movies_path is None:
        return inter, None
    table = read_plain(movies_path, "::", header=False, n_fields=3)
    titles, years = split_title_year(table.frame[1])
    items = make_items(parse_ids(table, 0, "item id"), titles, years, genres_from_strings(table.frame[2]))
    return inter, items


def _require(table, cols: tuple[str, ...]) -> None:
    missing = [c for c in cols if c not in table.frame.columns]
    if missing:
        raise DataError(f"{table.path}: missing column(s) {missing}; found {list(table.frame.columns)}")


def _mllatest(ratings_path: Path, movies_path: Path | None):
    table = read_quoted(ratings_path, ",", numeric=("rating", "timestamp"))
    cols = ("userId", "movieId", "rating", "timestamp")
    _require(table, cols)
    inter = _interactions(table, cols)
    if movies_path is None:
        return inter, None
    mt = read_quoted(movies_path, ",")
    _require(mt, ("movieId", "title", "genres"))
    titles, years = split_title_year(mt.frame["title"])
    items = make_items(parse_ids(mt, "movieId", "item id"), titles, years, genres_from_strings(mt.frame["genres"]))
    return inter, items
