"""Reading delimited text files so that every bad value can be traced to its line.

Loaders turn user files into canonical tables; when a value is wrong the error must say
*which file and which line*. :func:`read_plain` handles unquoted formats (RecBole atomic
files, MovieLens ``u.data`` / ``u.item`` / ``*.dat``): it counts separators per line with
numpy, so a line with too many or too few fields is reported exactly, then lets pandas
parse. :func:`read_quoted` handles CSV-style files where quoted fields may hold
separators or newlines; line numbers of bad records are recovered by rescanning with the
``csv`` module only when an error is raised. Values are strings, except columns named
as numeric, which are parsed as floats in one fast pass when all of them parse (the
common case); otherwise the file is re-read as strings so the bad value can be named.
"""
from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

#: byte that replaces a multi-character separator ("::") before parsing
_UNIT_SEP = "\x1f"


def read_bytes(path: Path) -> bytes:
    """Whole file as bytes, transparently gunzipped when the name ends in ``.gz``."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError) as exc:  # bad gzip stream, permissions, ...
        raise DataError(f"{path}: cannot read file ({exc})") from None


def decode(raw: bytes, path: Path, encodings: tuple[str, ...]) -> str:
    """Decode with the first encoding that works (latin-1 last: it never fails)."""
    for enc in encodings:
        try:
            return raw.decode(enc)
        except UnicodeDecodeError as exc:
            last = exc
    raise DataError(f"{path}: cannot decode as {' / '.join(encodings)} ({last})")


@dataclass
class Table:
    """Records of one file (string columns, plus float columns that parsed cleanly)
    and the map record index -> line number used in error messages."""

    path: Path
    frame: pd.DataFrame
    #: 1-based line of each data record (plain files); None until needed (quoted files)
    _lines: np.ndarray | None = None
    _sep: str = ","
    _encoding: str = "utf-8"
    _header: bool = True
    #: "line" for text files; "row" (1-based data row) for binary tables such as Parquet
    unit: str = "line"

    def line(self, record: int) -> int:
        """1-based line number where data record ``record`` (0-based) starts."""
        if self.unit == "row":
            return record + 1
        if self._lines is None:
            self._lines = _quoted_record_lines(self.path, self._sep, self._encoding, self._header)
        return int(self._lines[record])

    def where(self, record: int) -> str:
        return f"{self.path}, {self.unit} {self.line(record)}"


def as_text(values: pd.Series) -> pd.Series:
    """Values as stripped strings with missing values as ""."""
    if isinstance(values.dtype, pd.StringDtype):
        return values.fillna("").str.strip()
    obj = values.astype(object)
    return obj.where(obj.notna(), "").astype(str).str.strip()


def _line_layout(raw: bytes, sep: bytes):
    """Per line: number of separators, and whether it is blank (empty or only '\\r')."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    nl = np.flatnonzero(buf == 10)
    if len(buf) and buf[-1] != 10:  # last line without a newline
        nl = np.append(nl, len(buf))
    starts = np.concatenate(([0], nl[:-1] + 1)) if len(nl) else np.zeros(0, np.int64)
    lengths = nl - starts
    ends_cr = np.zeros(len(nl), bool)
    has = lengths > 0
    ends_cr[has] = buf[nl[has] - 1] == 13
    blank = (lengths == 0) | ((lengths == 1) & ends_cr)
    seps = np.flatnonzero(buf == sep[0])
    counts = np.bincount(np.searchsorted(nl, seps), minlength=len(nl))[: len(nl)]
    return counts, blank


def read_plain(
    path: Path,
    sep: str,
    *,
    header: bool,
    n_fields: int | None = None,
    encodings: tuple[str, ...] = ("utf-8-sig", "latin-1"),
    numeric: Numeric = (),
) -> Table:
    """Read an unquoted delimited file; every non-blank line must have the same field count.

    ``n_fields`` is required when there is no header; with a header it is taken from
    the header line. Columns are named by the header, or 0..n-1 without one. Columns
    in ``numeric`` (names, positions, or a function of the column list) are parsed as
    floats when every value is a number; otherwise the file is kept as strings so that
    :func:`~.normalize.parse_numbers` can name the bad value and its line.
    """
    raw = read_bytes(path)
    if len(sep) > 1:
        raw = raw.replace(sep.encode(), _UNIT_SEP.encode())
        sep = _UNIT_SEP
    counts, blank = _line_layout(raw, sep.encode())
    record_lines = np.flatnonzero(~blank) + 1
    if len(record_lines) == 0:
        raise DataError(f"{path}: file is empty")
    if header:
        n_fields = int(counts[record_lines[0] - 1]) + 1
    assert n_fields is not None
    bad = np.flatnonzero(~blank & (counts != n_fields - 1))
    if len(bad):
        ln = int(bad[0]) + 1
        shown = "tab" if sep == "\t" else ("'::'" if sep == _UNIT_SEP else repr(sep))
        raise DataError(
            f"{path}, line {ln}: expected {n_fields} {shown}-separated fields, found {int(counts[bad[0]]) + 1}"
        )
    text = decode(raw, path, encodings)
    kw = dict(sep=sep, header=0 if header else None, keep_default_na=False, index_col=False, quoting=csv.QUOTE_NONE)
    names = pd.read_csv(io.StringIO(text), nrows=0, **kw).columns.tolist() if header else list(range(n_fields))
    frame = _read_fast(lambda **k: pd.read_csv(io.StringIO(text), **kw, **k), names, numeric)
    if not header:
        frame.columns = names
    lines = record_lines[1:] if header else record_lines
    if len(lines) != len(frame):  # pragma: no cover - would mean our line layout disagrees with pandas
        raise DataError(f"{path}: could not map records to lines ({len(lines)} vs {len(frame)})")
    return Table(path=path, frame=frame, _lines=lines, _sep=sep, _header=header)


Numeric = Sequence | Callable[[list], Sequence]


def _read_fast(read: Callable[..., pd.DataFrame], names: list, numeric: Numeric) -> pd.DataFrame:
    """Parse ``numeric`` columns as floats if they all parse, else everything as strings."""
    cols = [c for c in (numeric(names) if callable(numeric) else numeric) if c in names]
    if cols:
        try:
            frame = read(dtype={c: (np.float64 if c in cols else str) for c in names})
            if not frame[cols].isna().to_numpy().any():
                return frame
        except (ValueError, TypeError):
            pass
    return read(dtype=str)


def _open_text(path: Path, encoding: str):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _quoted_record_lines(path: Path, sep: str, encoding: str, header: bool) -> np.ndarray:
    """Start line of every data record of a quoted CSV file (rescan with ``csv``)."""
    starts = []
    with _open_text(path, encoding) as fh:
        reader = csv.reader(fh, delimiter=sep)
        prev = 0
        for row in reader:
            if row:
                starts.append(prev + 1)
            prev = reader.line_num
    arr = np.asarray(starts, dtype=np.int64)
    return arr[1:] if header else arr


def _first_bad_quoted_line(path: Path, sep: str, encoding: str) -> tuple[int, int, int] | None:
    """(line, fields found, fields expected) of the first record whose width differs from the header."""
    with _open_text(path, encoding) as fh:
        reader = csv.reader(fh, delimiter=sep)
        width = None
        prev = 0
        try:
            for row in reader:
                if row:
                    if width is None:
                        width = len(row)
                    elif len(row) != width:
                        return prev + 1, len(row), width
                prev = reader.line_num
        except csv.Error as exc:
            raise DataError(f"{path}, line {reader.line_num}: {exc}") from None
    return None


def read_quoted(
    path: Path, sep: str, encodings: tuple[str, ...] = ("utf-8-sig", "latin-1"), numeric: Numeric = ()
) -> Table:
    """Read a CSV-style file with a header (quoted fields allowed); see :func:`read_plain` for ``numeric``."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    last_exc: Exception | None = None
    for enc in encodings:
        try:
            kw = dict(sep=sep, header=0, keep_default_na=False, index_col=False, encoding=enc, compression="infer")
            names = pd.read_csv(path, nrows=0, **kw).columns.tolist()
            frame = _read_fast(lambda **k: pd.read_csv(path, **kw, **k), names, numeric)
            return Table(path=path, frame=frame, _sep=sep, _encoding=enc, _header=True)
        except UnicodeDecodeError as exc:
            last_exc = exc
            continue
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: file is empty") from None
        except pd.errors.ParserError as exc:
            bad = _first_bad_quoted_line(path, sep, enc)
            if bad is not None:
                ln, got, want = bad
                raise DataError(f"{path}, line {ln}: expected {want} fields (as in the header), found {got}") from None
            raise DataError(f"{path}: cannot parse ({exc})") from None
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot read file ({exc})") from None
    raise DataError(f"{path}: cannot decode as {' / '.join(encodings)} ({last_exc})")
