"""Amazon review data (JSON lines, optionally gzipped), 2014/2018 and 2023 releases.

The release is detected from the keys of each record:

* 2014 / 2018: reviews ``reviewerID, asin, overall, unixReviewTime`` (seconds);
  metadata ``asin, title, description (list or str), category (list), brand`` (the 2014
  metadata files are Python literals, not JSON: they are refused, never ``eval``-ed);
* 2023: reviews ``user_id, parent_asin (fallback asin), rating, timestamp`` (milliseconds,
  converted to seconds); metadata ``parent_asin, title, description (list),
  categories (list), main_category, store``.

Items reviewed but absent from the metadata keep an empty title; metadata items with
no review are dropped (a category's metadata file lists far more items than its 5-core
reviews). Brand / store, when present, is prefixed to the description ("Brand: X.")
because it is item text the semantic view can use.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import Dataset, make_interactions, make_items
from ..errors import DataError
from .normalize import assemble, join_genres, missing_metadata

#: release -> (user key, item keys in order of preference, rating key, time key, time divisor)
REVIEW_SCHEMAS = {
    "2018": ("reviewerID", ("asin",), "overall", "unixReviewTime", 1.0),
    "2023": ("user_id", ("parent_asin", "asin"), "rating", "timestamp", 1000.0),
}


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) for every non-blank line; bad JSON raises naming file and line."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as fh:
            for ln, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    hint = ""
                    if line.lstrip().startswith("{'"):
                        hint = "; this looks like a Python literal (Amazon 2014 metadata): convert it to JSON first"
                    raise DataError(
                        f"{path}, line {ln}: malformed JSON ({exc.msg} at column {exc.colno}){hint}"
                    ) from None
                if not isinstance(rec, dict):
                    raise DataError(f"{path}, line {ln}: expected a JSON object, found {type(rec).__name__}")
                yield ln, rec
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read file ({exc})") from None


def _detect(path: Path, ln: int, rec: dict) -> str:
    if "reviewerID" in rec:
        return "2018"
    if "user_id" in rec and ("parent_asin" in rec or "asin" in rec):
        return "2023"
    raise DataError(
        f"{path}, line {ln}: not an Amazon review record (expected reviewerID/asin/overall/unixReviewTime "
        f"or user_id/parent_asin/rating/timestamp); keys are {sorted(rec)[:10]}"
    )


def _read_reviews(path: Path):
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    times: list[float] = []
    schema = None
    for ln, rec in iter_json_lines(path):
        if schema is None:
            release = _detect(path, ln, rec)
            schema = REVIEW_SCHEMAS[release]
        ukey, ikeys, rkey, tkey, div = schema
        item = next((rec[k] for k in ikeys if rec.get(k) not in (None, "")), None)
        user = rec.get(ukey)
        if user in (None, "") or item is None:
            raise DataError(f"{path}, line {ln}: missing {ukey if user in (None, '') else '/'.join(ikeys)}")
        try:
            rating = float(rec[rkey]) if rec.get(rkey) is not None else np.nan
            ts = float(rec[tkey]) / div if rec.get(tkey) is not None else np.nan
        except (TypeError, ValueError):
            raise DataError(f"{path}, line {ln}: {rkey} / {tkey} must be numbers, got {rec.get(rkey)!r} / {rec.get(tkey)!r}") from None
        users.append(str(user))
        items.append(str(item))
        ratings.append(rating)
        times.append(ts)
    if schema is None:
        raise DataError(f"{path}: no reviews")
    return release, make_interactions(users, items, ratings, times)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v).strip() for v in value if str(v).strip())
    return str(value).strip()


def _categories(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    out = []
    for v in value:
        if isinstance(v, list):  # 2014 metadata: list of category paths
            out.extend(str(x) for x in v)
        elif "<" not in str(v):  # 2018 metadata has HTML fragments in some category lists
            out.append(str(v))
    return out


def _read_meta(path: Path, wanted: set[str]) -> pd.DataFrame:
    rows: dict[str, tuple] = {}
    for ln, rec in iter_json_lines(path):
        item = rec.get("parent_asin") or rec.get("asin")
        if not item:
            raise DataError(f"{path}, line {ln}: metadata record without parent_asin / asin")
        item = str(item)
        if item not in wanted or item in rows:  # duplicates: the first record wins
            continue
        cats = _categories(rec.get("categories", rec.get("category")))
        if not cats and rec.get("main_category"):
            cats = [str(rec["main_category"])]
        desc = _text(rec.get("description"))
        brand = _text(rec.get("brand") or rec.get("store"))
        if brand:
            desc = f"Brand: {brand}." + (f" {desc}" if desc else "")
        rows[item] = (_text(rec.get("title")), join_genres(cats), desc)
    ids = list(rows)
    return make_items(ids, [rows[i][0] for i in ids], None, [rows[i][1] for i in ids], [rows[i][2] for i in ids])


def load_amazon(reviews_path, meta_path=None, name: str | None = None, strict: bool = False) -> Dataset:
    """Load Amazon reviews (+ metadata) from JSON lines files (``.json``, ``.jsonl``, ``.gz``)."""
    reviews_path = Path(reviews_path)
    release, inter = _read_reviews(reviews_path)
    items = None
    source = f"Amazon {release} reviews: {reviews_path}"
    if meta_path is not None:
        meta_path = Path(meta_path)
        order = pd.unique(inter["item_id"])
        meta = _read_meta(meta_path, set(order))
        if len(meta) == 0:
            raise DataError(
                f"{meta_path}: none of its items (parent_asin / asin) occur in the reviews {reviews_path}"
            )
        # catalogue in first-review order; reviewed items without metadata get empty fields
        meta = meta.set_index("item_id")
        missing_metadata(inter, [i for i in order if i not in meta.index], str(meta_path), strict)
        meta = meta.reindex(order)
        items = make_items(order, meta["title"], None, meta["genres"], meta["description"])
        source += f" + metadata {meta_path}"
    default = reviews_path.name.split(".")[0]
    return assemble(name or default, inter, items, source, str(meta_path), strict)
