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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, DataWarning

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
    """Decode with the first encoding; see :func:`text_encoding` when it fails."""
    try:
        return raw.decode(encodings[0])
    except UnicodeDecodeError:
        return raw.decode(*text_encoding(raw, path, encodings))


def text_encoding(raw: bytes, path: Path, encodings: tuple[str, ...]) -> tuple[str, str]:
    """(encoding, errors) to decode ``raw`` with: the first of ``encodings`` that works.

    A UTF-8 file with a few bad bytes is not re-read as latin-1 as a whole (that would
    turn every accented character into mojibake): when UTF-8 comes first and latin-1 is
    allowed, a file is read as latin-1 only when it is clearly latin-1 (its non-ASCII
    lines are mostly not valid UTF-8); otherwise it stays UTF-8, the bad bytes become
    U+FFFD and a :class:`~analysis.errors.DataWarning` names the file, how many lines were
    affected, and the first one's line number and byte offset.
    """
    first, last_exc = encodings[0], None
    try:
        raw.decode(first)
        return first, "strict"
    except UnicodeDecodeError as exc:
        last_exc = exc
    if first.replace("_", "-").lower().startswith("utf-8") and "latin-1" in encodings:
        return _utf8_or_latin1(raw, path, first)
    for enc in encodings[1:]:
        try:
            raw.decode(enc)
            return enc, "strict"
        except UnicodeDecodeError as exc:
            last_exc = exc
    raise DataError(f"{path}: cannot decode as {' / '.join(encodings)} ({last_exc})")


def _utf8_lines(raw: bytes) -> tuple[list[tuple[int, int]], int]:
    """(line, byte offset of the first bad byte) of every line that is not valid UTF-8,
    and how many lines hold valid non-ASCII UTF-8."""
    bad, good, offset = [], 0, 0
    for ln, line in enumerate(raw.split(b"\n"), 1):
        if not line.isascii():
            try:
                line.decode("utf-8")
                good += 1
            except UnicodeDecodeError as exc:
                bad.append((ln, offset + exc.start))
        offset += len(line) + 1
    return bad, good


def _utf8_or_latin1(raw: bytes, path: Path, utf8: str) -> tuple[str, str]:
    bad, good = _utf8_lines(raw)
    ln, offset = bad[0]
    where = f"{len(bad)} line(s) are not valid UTF-8 (the first: line {ln}, byte offset {offset})"
    if good >= len(bad):
        warnings.warn(f"{path}: {where}; read as UTF-8 with the bad bytes replaced by U+FFFD", DataWarning,
                      stacklevel=4)
        return utf8, "replace"
    if good:
        warnings.warn(f"{path}: {where} but {good} other line(s) are UTF-8; read as latin-1, check the encoding",
                      DataWarning, stacklevel=4)
    return "latin-1", "strict"


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
    #: how undecodable bytes were handled ("replace" for a UTF-8 file with a few bad bytes)
    _errors: str = "strict"
    _header: bool = True
    #: "line" for text files; "row" (1-based data row) for binary tables such as Parquet
    unit: str = "line"

    def line(self, record: int) -> int:
        """1-based line number where data record ``record`` (0-based) starts."""
        if self.unit == "row":
            return record + 1
        if self._lines is None:
            self._lines = _quoted_record_lines(self.path, self._sep, self._encoding, self._header, self._errors)
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


def _open_text(path: Path, encoding: str, errors: str = "strict"):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, errors=errors, newline="")
    return open(path, encoding=encoding, errors=errors, newline="")


def _quoted_record_lines(path: Path, sep: str, encoding: str, header: bool, errors: str = "strict") -> np.ndarray:
    """Start line of every data record of a quoted CSV file (rescan with ``csv``)."""
    starts = []
    with _open_text(path, encoding, errors) as fh:
        reader = csv.reader(fh, delimiter=sep)
        prev = 0
        for row in reader:
            if row:
                starts.append(prev + 1)
            prev = reader.line_num
    arr = np.asarray(starts, dtype=np.int64)
    return arr[1:] if header else arr


def _quoted_problem(path: Path, sep: str, encoding: str, errors: str, eof_in_quote: bool) -> str | None:
    """Where a quoted file goes wrong, as "<path>, line N: ...", or None if the rescan finds nothing.

    Lines are those where the faulty *record* starts: a quote that never closes swallows
    the lines after it, so the line where the reader gave up is not where the fault is.
    """
    with _open_text(path, encoding, errors) as fh:
        reader = csv.reader(fh, delimiter=sep)
        width, prev, start = None, 0, 0
        try:
            for row in reader:
                if row and width is not None and len(row) != width:
                    end, found = reader.line_num, len(row)
                    hint = f" (the record runs on to line {end}: is a quote unbalanced?)" if end - prev > 1 else ""
                    return f"{path}, line {prev + 1}: expected {width} fields (as in the header), found {found}{hint}"
                if row:
                    width, start = width or len(row), prev + 1
                prev = reader.line_num
        except csv.Error as exc:
            if reader.line_num - prev <= 1:
                return f"{path}, line {prev + 1}: {exc}"
            return (f"{path}, line {prev + 1}: unbalanced quote: a quoted field of the record starting on this line "
                    f"never closes (read on to line {reader.line_num}: {exc})")
    if eof_in_quote and start:
        return (f"{path}, line {start}: unbalanced quote: a quoted field of the record starting on this line "
                f"runs on to the end of the file (line {prev})")
    return None


def read_quoted(
    path: Path, sep: str, encodings: tuple[str, ...] = ("utf-8-sig", "latin-1"), numeric: Numeric = ()
) -> Table:
    """Read a CSV-style file with a header (quoted fields allowed); see :func:`read_plain` for ``numeric``.

    The encoding is the first of ``encodings`` that decodes the file, chosen as in
    :func:`text_encoding` (a UTF-8 file with a few bad bytes stays UTF-8, with a warning).
    """
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        return _parse_quoted(path, sep, encodings[0], "strict", numeric)
    except UnicodeDecodeError:
        enc, errors = text_encoding(read_bytes(path), path, encodings)
    return _parse_quoted(path, sep, enc, errors, numeric)


def _parse_quoted(path: Path, sep: str, enc: str, errors: str, numeric: Numeric) -> Table:
    kw = dict(sep=sep, header=0, keep_default_na=False, index_col=False, encoding=enc, encoding_errors=errors,
              compression="infer")
    try:
        names = pd.read_csv(path, nrows=0, **kw).columns.tolist()
        frame = _read_fast(lambda **k: pd.read_csv(path, **kw, **k), names, numeric)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except pd.errors.ParserError as exc:
        problem = _quoted_problem(path, sep, enc, errors, eof_in_quote="EOF inside string" in str(exc))
        raise DataError(problem or f"{path}: cannot parse ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read file ({exc})") from None
    return Table(path=path, frame=frame, _sep=sep, _encoding=enc, _errors=errors, _header=True)
