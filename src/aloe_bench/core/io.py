"""Reading and writing the project's files: one way for every log, metadata and data file.

- `read_jsonl`: every JSON value of a JSONL file with its line number; a bad line is a `DataFileError` that
  names `file:line`. With `log=True` it reads an append-only log: blank lines are skipped and a torn last
  line (no newline, not JSON: a writer killed mid-append) is ignored.
- `append_jsonl`: append rows durably (one write, flushed and fsynced) from any thread. A torn last line
  left by a crash is cut first (`repair_tail`), so a row is never glued onto half of another; the caller
  that reads the log back redoes the row that was cut.
- `atomic_write_text` / `atomic_write_json` / `atomic_write_jsonl`: a temp file beside the target, fsynced,
  then `os.replace`: a reader or a crash sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
import warnings
from pathlib import Path
from typing import Iterable

from .errors import AloeError


class DataFileError(AloeError, ValueError):
    """A data file (JSONL or JSON) cannot be read or is malformed; the message names the file and line."""


class PersonaFileError(DataFileError):
    """A persona input (or a file of conversations or pools built from personas) is malformed; the message
    names the file and line (or field)."""


class RepairWarning(UserWarning):
    """A documented repair was applied to a file (two JSON values glued on one line, a torn last line cut)."""


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------
def _split_glued(line: str, where: str, error: type[Exception]) -> list:
    """Decode one or more JSON values written on one line (`"a""b"` or `{..} {..}`)."""
    decoder = json.JSONDecoder()
    values, pos = [], 0
    while pos < len(line):
        while pos < len(line) and line[pos].isspace():
            pos += 1
        if pos >= len(line):
            break
        try:
            value, end = decoder.raw_decode(line, pos)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: malformed JSON at column {exc.colno}: {exc.msg}") from None
        values.append(value)
        pos = end
    return values


def _check_text_values(value, where: str, error: type[Exception]) -> None:
    """Strings decoded from JSON must be real text: a lone surrogate (`"\\ud800"`) cannot be written anywhere."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise error(f"{where}: invalid \\u escape (a lone surrogate) in a string") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text_values(key, where, error)
            _check_text_values(item, where, error)
    elif isinstance(value, list):
        for item in value:
            _check_text_values(item, where, error)


def read_bytes(path: str | Path, error: type[Exception] = DataFileError) -> bytes:
    """The bytes of a file, or `error` naming it (missing, a folder, unreadable)."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if not path.is_file():
        raise error(f"{path}: not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_text(path: str | Path, error: type[Exception] = DataFileError) -> str:
    """A UTF-8 text file (a byte-order mark dropped), or `error` naming the file and the line of a bad byte."""
    data = read_bytes(path, error).removeprefix(b"\xef\xbb\xbf")  # a byte-order mark some editors write
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_jsonl(path: str | Path, repair_glued: bool = True, *, log: bool = False, allow_empty: bool | None = None,
               error: type[Exception] = DataFileError) -> list[tuple[int, object]]:
    """`(line_number, value)` for every JSON value in a JSONL file.

    Lines are split on `\\n` only (so line numbers are an editor's, and a U+2028 inside a string stays inside
    it); `\\r\\n` endings and a byte-order mark are accepted. A data file (`log=False`) must have entries and
    no blank line except at the end (a blank line usually means a truncated or hand-edited file); two values
    glued on one line are split with a `RepairWarning` when `repair_glued` is set. An append-only log
    (`log=True`) may be empty, blank lines are skipped, glued values are an error, and a last line with no
    newline that is not JSON is a torn tail (a writer killed mid-append) and is left out.
    """
    path = Path(path)
    text = read_text(path, error)
    lines = text.removesuffix("\n").split("\n") if text else []
    torn_possible = log and not text.endswith("\n")
    rows: list[tuple[int, object]] = []
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        line = line.removesuffix("\r")
        if not line.strip():
            if log or number == len(lines):
                continue
            raise error(f"{where}: empty line")
        if log:
            try:
                values = [json.loads(line)]
            except json.JSONDecodeError as exc:
                if torn_possible and number == len(lines):
                    break
                raise error(f"{where}: invalid JSON at column {exc.colno} ({exc.msg})") from None
        else:
            values = _split_glued(line, where, error)
            if len(values) > 1:
                if not repair_glued:
                    raise error(f"{where}: {len(values)} JSON values on one line")
                warnings.warn(f"{where}: split {len(values)} JSON values glued on one line", RepairWarning,
                              stacklevel=2)
        for value in values:
            _check_text_values(value, where, error)
        rows.extend((number, value) for value in values)
    if not rows and not (log if allow_empty is None else allow_empty):
        raise error(f"{path}: file has no entries")
    return rows


def read_log(path: str | Path, error: type[Exception] = DataFileError, what: str = "a row",
             required: Iterable[str] = ()) -> list[dict]:
    """The rows of an append-only log (`read_jsonl(log=True)`); a row that is not an object, or lacks a
    `required` field, is an error naming its line."""
    rows = []
    for number, value in read_jsonl(path, log=True, error=error):
        if not isinstance(value, dict):
            raise error(f"{path}:{number}: {what} must be a JSON object")
        missing = [name for name in required if name not in value]
        if missing:
            raise error(f"{path}:{number}: missing field(s) {', '.join(missing)}")
        rows.append(value)
    return rows


def read_json(path: str | Path, error: type[Exception] = DataFileError):
    """One JSON document; a bad one is `error` naming the file and line."""
    try:
        return json.loads(read_text(path, error))
    except json.JSONDecodeError as exc:
        raise error(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None


# ---------------------------------------------------------------------------------------------------
# Appending
# ---------------------------------------------------------------------------------------------------
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(path: Path) -> threading.Lock:
    key = os.path.abspath(path)
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _cut_torn_tail(path: Path) -> int:
    try:
        fh = open(path, "r+b")
    except FileNotFoundError:
        return 0
    with fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        fh.seek(0)
        data = fh.read()
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return size - keep


def repair_tail(path: str | Path, what: str = "that row is written again") -> int:
    """Cut a last line that has no newline and return the bytes cut (0 when the file ends cleanly or is absent).

    Rows are appended one line each, newline last, in one fsynced write: a line without its newline is a row
    whose append never finished (even when it happens to parse), so it is dropped, with a `RepairWarning`, and
    the writer redoes it.
    """
    path = Path(path)
    with _lock(path):
        cut = _cut_torn_tail(path)
    if cut:
        warnings.warn(f"{path}: dropped a torn last line ({cut} bytes) left by an interrupted run; {what}",
                      RepairWarning, stacklevel=2)
    return cut


def append_jsonl(path: str | Path, rows: Iterable[dict], keep_unterminated: bool = False) -> None:
    """Append `rows`, one JSON line each, in one write, then flush and fsync: once this returns they survive
    a crash. Safe to call from several threads. A row is never glued onto a last line that lacks its newline:
    that line is cut first as a torn tail (`repair_tail`), or, with `keep_unterminated` (a file the caller has
    read and validated whole, e.g. a hand-edited pool), ended with a newline and kept."""
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    if not data:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cut = 0
    with _lock(path):
        if keep_unterminated:
            if path.exists() and path.stat().st_size:
                with open(path, "rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        data = b"\n" + data
        else:
            cut = _cut_torn_tail(path)
        with open(path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    if cut:
        warnings.warn(f"{path}: dropped a torn last line ({cut} bytes) left by an interrupted run before appending",
                      RepairWarning, stacklevel=2)


# ---------------------------------------------------------------------------------------------------
# Replacing whole files
# ---------------------------------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; a platform that cannot open a folder (Windows) skips it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` through a fsynced temp file and a rename; on any failure the old file stays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")  # unique: concurrent writers never share it
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data, **dumps) -> None:
    """`data` as indented JSON (non-ASCII kept as is), newline-terminated, written atomically."""
    options = {"indent": 2, "ensure_ascii": False} | dumps
    atomic_write_text(path, json.dumps(data, **options) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """A whole JSONL file written atomically (rewriting a log, writing a pool)."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def emit_report(report: dict, output: str | Path | None = None) -> None:
    """Print a report's JSON to stdout and, with `output`, write the same JSON there (atomically)."""
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if output:
        atomic_write_json(output, report)
