"""RecBole atomic files (``.inter`` + optional ``.item``).

Atomic files are tab-separated with a ``name:type`` header (types ``token``,
``token_seq``, ``float``, ``float_seq``); ``token_seq`` values are space-separated.
Field names differ between datasets, so the canonical fields are found by name:
user / item / rating / timestamp in the interactions, and title-, year-, genre- and
description-like fields in the item file. MovieLens-100K as distributed by RecBole has
two quirks handled here through the shared normalisation: item 267 has title and year
``unkonwn`` (stored as title "unknown", year NA) and item 1412 has year ``V`` with the
real year at the end of its title.
"""
from __future__ import annotations

from pathlib import Path

from ..data import Dataset, make_interactions, make_items
from ..errors import DataError
from .normalize import assemble, join_genres, parse_ids, parse_numbers, titles_and_years
from .textfiles import Table, read_plain

USER_FIELDS = ("user_id", "uid", "user", "userid", "reviewer_id")
ITEM_FIELDS = ("item_id", "iid", "item", "itemid", "movie_id", "business_id", "venue_id", "book_id", "asin")
RATING_FIELDS = ("rating", "stars", "score", "overall")
TIME_FIELDS = ("timestamp", "time", "ts", "date")
TITLE_FIELDS = ("movie_title", "title", "movie_name", "book_title", "item_name", "name")
YEAR_FIELDS = ("release_year", "year", "publication_year", "year_of_publication")
GENRE_FIELDS = ("class", "genre", "genres", "categories", "category", "type")
DESCRIPTION_FIELDS = ("description", "desc", "overview", "plot", "summary", "synopsis", "abstract")


def _numeric_fields(columns: list) -> list:
    return [c for c in columns if str(c).split(":")[0].strip().lower() in RATING_FIELDS + TIME_FIELDS]


def _read_atomic(path: Path, numeric=()) -> tuple[Table, dict[str, str]]:
    """Read an atomic file; rename columns to bare field names, return name -> type."""
    table = read_plain(path, "\t", header=True, numeric=numeric)
    _check_tab_separated(path, [str(c) for c in table.frame.columns])
    types: dict[str, str] = {}
    names = []
    for col in table.frame.columns:
        name, colon, typ = str(col).strip().partition(":")
        if not colon or not name:
            raise DataError(f"{path}, line 1: header field {str(col)!r} is not of the form name:type")
        names.append(name)
        types[name] = typ
    table.frame.columns = names
    return table, types


def _check_tab_separated(path: Path, header: list[str]) -> None:
    """Atomic files are tab-separated: a header with one field but other separators in it is not."""
    found = [(header[0].count(sep), sep) for sep in (",", ";", "|", " ") if len(header) == 1 and sep in header[0]]
    if found:
        raise DataError(
            f"{path}, line 1: RecBole atomic files are tab-separated, but the header {header[0]!r} has no tab "
            f"(it looks {max(found)[1]!r}-separated); separate its fields with tabs"
        )


def _pick(types: dict[str, str], candidates: tuple[str, ...]) -> str | None:
    lower = {n.lower(): n for n in types}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    return None


def _seq_tokens(value: str, typ: str) -> list[str]:
    """Split a genre-like value: token_seq is space-separated unless it carries '|' or ','."""
    value = value.strip()
    if "|" in value:
        return value.split("|")
    if typ == "token_seq":
        if "," in value:
            return [t.strip().strip("'\"") for t in value.split(",")]
        return value.split()
    return [value]


def load_recbole(inter_path, item_path=None, name: str | None = None, strict: bool = False) -> Dataset:
    """Load a RecBole ``.inter`` file and, if given, its ``.item`` file."""
    inter_path = Path(inter_path)
    table, types = _read_atomic(inter_path, numeric=_numeric_fields)
    user_f, item_f = _pick(types, USER_FIELDS), _pick(types, ITEM_FIELDS)
    if user_f is None or item_f is None:
        raise DataError(
            f"{inter_path}: needs a user field ({'/'.join(USER_FIELDS[:3])}) and an item field "
            f"({'/'.join(ITEM_FIELDS[:3])}); header has {list(types)}"
        )
    rating_f, time_f = _pick(types, RATING_FIELDS), _pick(types, TIME_FIELDS)
    inter = make_interactions(
        parse_ids(table, user_f, "user id"),
        parse_ids(table, item_f, "item id"),
        None if rating_f is None else parse_numbers(table, rating_f, "rating"),
        None if time_f is None else parse_numbers(table, time_f, "timestamp"),
    )
    items = None
    source = f"RecBole atomic files: {inter_path}"
    if item_path is not None:
        item_path = Path(item_path)
        items = _read_items(item_path, item_f)
        source += f" + {item_path}"
    return assemble(name or inter_path.name.split(".")[0], inter, items, source, str(item_path), strict)


def _read_items(path: Path, item_field: str):
    table, types = _read_atomic(path)
    key = item_field if item_field in types else _pick(types, ITEM_FIELDS)
    if key is None:
        raise DataError(f"{path}: no item id field ({item_field}) in header {list(types)}")
    frame = table.frame
    ids = parse_ids(table, key, "item id")
    title_f, year_f = _pick(types, TITLE_FIELDS), _pick(types, YEAR_FIELDS)
    genre_f, desc_f = _pick(types, GENRE_FIELDS), _pick(types, DESCRIPTION_FIELDS)
    titles, years = titles_and_years(
        frame[title_f] if title_f else [""] * len(frame), None if year_f is None else frame[year_f]
    )
    genres = None
    if genre_f is not None:
        genres = [join_genres(_seq_tokens(v, types[genre_f])) for v in frame[genre_f]]
    descriptions = None if desc_f is None else frame[desc_f].str.strip()
    return make_items(ids, titles, years, genres, descriptions)
