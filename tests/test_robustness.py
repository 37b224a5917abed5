"""Bad input, one row per case: a specific error or warning that names the file, line or id.

Each row of :data:`ERRORS` is ``Case(id, write, call, expect, match)``:

* ``write(tmp_path)`` puts the bad input under ``tmp_path`` and returns the path to hand over;
* ``call(path)`` is the entry point a user would reach it through: :func:`load` (the format
  auto-detected, as ``semcollab run --data``), :func:`vectors` (``--semantic FILE``),
  :func:`cli` (``semcollab run --data PATH ...`` through :func:`analysis.cli.main`) or
  :func:`pipeline` (:func:`analysis.run`, which must stop before training anything);
* ``expect`` is the exception class and ``match`` a regex that its message must match
  (``re.search``): write it so that it names the file and the line / id at fault.

:data:`WARNINGS` rows are read but not as written: ``expect`` is the warning class and the
call returns normally. :data:`RESULTS` rows must load, and ``match`` is searched in
``str()`` of what the call returns. To add a case, add one row (and, if the input needs
more than a line, a small writer function above the tables). Keep files tiny.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.cli import main
from analysis.data import index
from analysis.errors import DataError, DataWarning, VectorError
from analysis.loaders import load_dataset, load_vectors
from analysis.pipeline import load_dataset as load_for_run
from conftest import QUICK_TUNING


class Case(NamedTuple):
    id: str
    write: Callable[[Path], Path]
    call: Callable[[Path], Any]
    expect: type[BaseException] | type[Warning] | None
    match: str


class CliFailed(Exception):
    """``semcollab run`` exited with an error; the message is what it printed on stderr."""


# ----------------------------------------------------------------------------- entry points


def load(path: Path):
    return load_dataset(path)


def load_strict(path: Path):
    return load_dataset(path, strict=True)


def titles(path: Path) -> list[str]:
    return load_dataset(path).items["title"].tolist()


def user_ids(path: Path) -> list[str]:
    """The users as the run's split stage indexes them."""
    return index(load_for_run(analysis.RunConfig(dataset="files", data_path=str(path)))).user_ids.tolist()


def vectors(path: Path):
    return load_vectors(path, ["a", "b"], name="semantic vectors")


def cli(*options: str) -> Callable[[Path], str]:
    """``semcollab run --data PATH --out <sibling> [options]``; a non-zero exit raises CliFailed(stderr)."""

    def call(path: Path) -> str:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["run", "--data", str(path), "--out", str(path.parent / "run"), *options])
        if rc != 0:
            raise CliFailed(err.getvalue())
        return out.getvalue()

    return call


def pipeline(path: Path):
    """:func:`analysis.run` on the data; it must stop in the split stage, before any vectors or training."""
    stages: list[str] = []
    cfg = analysis.RunConfig(dataset="files", data_path=str(path), tuning=QUICK_TUNING, n_boot=50, umap=False)
    try:
        return analysis.run(cfg, out=path.parent / "run", log=stages.append, progress=False)
    finally:
        assert "[split] ..." in stages and "[semantic vectors] ..." not in stages, stages


# ----------------------------------------------------------------------------- writers


def put(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def recbole(inter: str, item: str | bytes | None = None) -> Callable[[Path], Path]:
    """A folder with ``d.inter`` (and ``d.item``); ``inter`` rows are "user item" pairs, one per line."""

    def write(tmp: Path) -> Path:
        rows = [line.split() for line in inter.strip().splitlines()]
        put(tmp / "data" / "d.inter", "user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in rows))
        if item is not None:
            put(tmp / "data" / "d.item", item)
        return tmp / "data"

    return write


def pairs(n_users: int, per_user: int, n_items: int) -> str:
    """Lines "user item": users 1..n each take ``per_user`` distinct items, cycling through the catalogue."""
    return "\n".join(f"{u + 1} i{(u * per_user + k) % n_items}" for u in range(n_users) for k in range(per_user))


# UTF-8 titles with one stray 0xFF byte on line 4 (offset: 30 + 14 + 8 + 6 bytes before it)
ITEM_FF = "item_id:token\ttitle:token_seq\na\tMisérables\nb\tCafé\nc\tBad ".encode() + b"\xff byte\n"
ITEM_AB = "item_id:token\ttitle:token_seq\na\tAlpha\nb\tBeta\n"


def csv_items_ff(tmp: Path) -> Path:
    put(tmp / "data" / "ratings.csv", "user_id,item_id\n1,a\n1,b\n2,c\n")
    put(tmp / "data" / "items.csv", "item_id,title\na,Misérables\nb,Café\n".encode() + b"c,Bad \xff byte\n")
    return tmp / "data"


def amazon_meta_lacks(tmp: Path) -> Path:
    """Amazon reviews of B1, B2, B3; the metadata file knows B1 only."""
    reviews = [{"reviewerID": u, "asin": a, "overall": 5.0, "unixReviewTime": 1400000000 + k}
               for k, (u, a) in enumerate([("A1", "B1"), ("A1", "B2"), ("A2", "B3")])]
    put(tmp / "data" / "Books_5.jsonl", "".join(json.dumps(r) + "\n" for r in reviews))
    put(tmp / "data" / "meta_Books.jsonl", json.dumps({"asin": "B1", "title": "One"}) + "\n")
    return tmp / "data"


def csv_with_quote(line_41: str, n_lines: int) -> Callable[[Path], Path]:
    """ratings.csv of ``n_lines`` lines, line 41 replaced by ``line_41`` (a quote that never closes)."""

    def write(tmp: Path) -> Path:
        lines = ["user_id,item_id,rating"] + [f"{i},{i},3" for i in range(1, n_lines)]
        lines[40] = line_41
        return put(tmp / "ratings.csv", "\n".join(lines) + "\n")

    return write


def float_user_ids(tmp: Path) -> Path:
    p = tmp / "ratings.parquet"
    pd.DataFrame({"user_id": [1.0, 1e23], "item_id": ["a", "b"]}).to_parquet(p)
    return p


def npz_object_ids(tmp: Path) -> Path:
    p = tmp / "v.npz"
    np.savez(p, ids=np.array(["a", "b"], dtype=object), vectors=np.ones((2, 3)), allow_pickle=True)
    return p


def npz_truncated(tmp: Path) -> Path:
    np.savez(tmp / "full.npz", ids=np.array(["a", "b"]), vectors=np.ones((2, 3)))
    raw = (tmp / "full.npz").read_bytes()
    return put(tmp / "v.npz", raw[: len(raw) // 2])


def npz_corrupt_member(tmp: Path) -> Path:
    """A valid zip whose 'vectors' member is not a .npy array."""
    with zipfile.ZipFile(tmp / "v.npz", "w") as z:
        buf = io.BytesIO()
        np.save(buf, np.array(["a", "b"]))
        z.writestr("ids.npy", buf.getvalue())
        z.writestr("vectors.npy", b"\x93NUMPY garbage")
    return tmp / "v.npz"


def npy_truncated(tmp: Path) -> Path:
    np.save(tmp / "v.npy", np.ones((2, 64)))
    put(tmp / "v.ids.txt", "a\nb\n")
    raw = (tmp / "v.npy").read_bytes()
    return put(tmp / "v.npy", raw[:200])


# ----------------------------------------------------------------------------- the tables

ERRORS = [
    Case("inter-comma-separated", lambda t: put(t / "c.inter", "user_id:token,item_id:token,rating:float\n1,a,3\n"),
         load, DataError, r"c\.inter, line 1: RecBole atomic files are tab-separated.*it looks ','-separated"),
    # long enough for the swallowed lines to pass the csv module's 128 KiB field limit
    Case("csv-unbalanced-quote-long", csv_with_quote('40,"40,3', 16000), load, DataError,
         r"ratings\.csv, line 41: unbalanced quote"),
    Case("csv-unbalanced-quote-last-field", csv_with_quote('40,40,"3', 100), load, DataError,
         r"ratings\.csv, line 41: unbalanced quote: .* runs on to the end of the file \(line 100\)"),
    Case("csv-unbalanced-quote-short-record", csv_with_quote('40,"40,3', 100), load, DataError,
         r"ratings\.csv, line 41: expected 3 fields .* found 2 \(the record runs on to line 100: "
         r"is a quote unbalanced"),
    Case("float-id-beyond-2**53", float_user_ids, load, DataError,
         r"ratings\.parquet, row 2: user id 1e\+23 is a float too large to hold an exact integer id"),
    Case("npz-object-array", npz_object_ids, vectors, VectorError,
         r"v\.npz: cannot load array 'ids' without pickle \(object arrays are not accepted"),
    Case("npz-truncated", npz_truncated, vectors, VectorError, r"v\.npz: cannot read vectors: the file is truncated"),
    Case("npz-corrupt-member", npz_corrupt_member, vectors, VectorError,
         r"v\.npz: cannot read array 'vectors': the file is truncated or not a valid NumPy file"),
    Case("npy-truncated", npy_truncated, vectors, VectorError, r"v\.npy: cannot read vectors: the file is truncated"),
    Case("item-ids-missing-strict", recbole("1 a\n1 x\n2 y\n2 x", ITEM_AB), load_strict, DataError,
         r"d\.item: 2 item id\(s\) of the interactions are missing from this file \(3 interaction\(s\)\), "
         r"e\.g\. \['x', 'y'\]; strict mode \(--strict\) refuses"),
    Case("item-ids-missing-cli-strict", recbole("1 a\n1 x\n2 y\n2 x", ITEM_AB), cli("--strict"), CliFailed,
         r"semcollab: error: .*d\.item: 2 item id\(s\) of the interactions are missing.*"
         r"strict mode \(--strict\) refuses"),
    Case("amazon-meta-lacks-reviewed-items-strict", amazon_meta_lacks, load_strict, DataError,
         r"meta_Books\.jsonl: 2 item id\(s\) of the interactions are missing .*strict mode \(--strict\) refuses"),
    Case("every-user-one-interaction", recbole(pairs(50, 1, 50)), pipeline, DataError,
         r"too small to evaluate after the split: only 0 of 50 users have validation pairs and 0 have test pairs, "
         r"at least 20 of each are needed .* 50 of the 50 users have fewer"),
    Case("three-users", recbole(pairs(3, 60, 60)), cli(), CliFailed,
         r"d\.inter.*too small to evaluate after the split: only 3 of 3 users have validation pairs and 3 have "
         r"test pairs, at least 20 of each"),
    Case("too-few-items", recbole(pairs(30, 8, 20)), cli(), CliFailed,
         r"d\.inter.*too small to evaluate after the split: only 20 of 20 items have training pairs, at least 44"),
]

WARNINGS = [
    Case("item-utf8-with-one-0xff-byte", recbole("1 a\n1 b\n2 c", ITEM_FF), load, DataWarning,
         r"d\.item: 1 line\(s\) are not valid UTF-8 \(the first: line 4, byte offset 58\); read as UTF-8"),
    Case("csv-items-utf8-with-one-0xff-byte", csv_items_ff, load, DataWarning,
         r"items\.csv: 1 line\(s\) are not valid UTF-8 \(the first: line 4, byte offset 42\)"),
    Case("item-ids-missing", recbole("1 a\n1 x\n2 y\n2 x", ITEM_AB), load, DataWarning,
         r"d\.item: 2 item id\(s\) of the interactions are missing from this file \(3 interaction\(s\)\), "
         r"e\.g\. \['x', 'y'\]; they are kept with no title"),
    Case("amazon-meta-lacks-reviewed-items", amazon_meta_lacks, load, DataWarning,
         r"meta_Books\.jsonl: 2 item id\(s\) of the interactions are missing from this file \(2 interaction\(s\)\), "
         r"e\.g\. \['B2', 'B3'\]"),
]

RESULTS = [
    Case("item-utf8-with-one-0xff-byte-titles", recbole("1 a\n1 b\n2 c", ITEM_FF), titles, None,
         r"^\['Misérables', 'Café', 'Bad \ufffd byte'\]$"),
    Case("csv-items-utf8-with-one-0xff-byte-titles", csv_items_ff, titles, None,
         r"^\['Misérables', 'Café', 'Bad \ufffd byte'\]$"),
    Case("numeric-id-beyond-int64", recbole("99999999999999999999999 a\n2 a\n10 b"), user_ids, None,
         r"^\['2', '10', '99999999999999999999999'\]$"),
]


@pytest.mark.parametrize("case", ERRORS, ids=[c.id for c in ERRORS])
def test_bad_input_raises_a_specific_error(case: Case, tmp_path):
    path = case.write(tmp_path)
    with pytest.raises(case.expect, match=case.match):
        case.call(path)


@pytest.mark.parametrize("case", WARNINGS, ids=[c.id for c in WARNINGS])
def test_bad_input_is_read_with_a_specific_warning(case: Case, tmp_path):
    path = case.write(tmp_path)
    with pytest.warns(case.expect, match=case.match):
        case.call(path)


@pytest.mark.parametrize("case", RESULTS, ids=[c.id for c in RESULTS])
@pytest.mark.filterwarnings("ignore::analysis.errors.DataWarning")
def test_odd_input_is_read_as_written(case: Case, tmp_path):
    path = case.write(tmp_path)
    assert re.search(case.match, str(case.call(path)))


def test_a_latin1_item_file_stays_latin1_without_a_warning(tmp_path):
    """A file that is clearly latin-1 (like MovieLens' own u.item) is read as latin-1, silently."""
    item = "item_id:token\ttitle:token_seq\na\tMisérables\nb\tCafé\n".encode("latin-1")
    path = recbole("1 a\n2 b", item)(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert titles(path) == ["Misérables", "Café"]


def test_line_numbers_still_name_the_line_after_bad_bytes_were_replaced(tmp_path):
    put(tmp_path / "r.csv", "user_id,item_id,rating,title\n1,a,3,Café\n".encode() + b"2,b,3,Caf\xff\n3,c,x,ok\n")
    with pytest.warns(DataWarning, match=r"r\.csv: 1 line\(s\) are not valid UTF-8 \(the first: line 3"):
        with pytest.raises(DataError, match=r"r\.csv, line 4: rating 'x' is not a number"):
            load(tmp_path / "r.csv")
