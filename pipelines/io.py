"""File helpers: atomic writes, content digests and reading tabular files with clear errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.errors import InputError, storage_error

TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic read-and-restore (not thread-safe, rarely reached)
    os.umask(mask)
    return mask


def fsync_dir(path: str | Path) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_beside(target: Path) -> Path:
    """An empty temp file beside ``target`` with the mode a plain ``open()`` would give (not 0600)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(tmp)


def _flush_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it replaces ``target`` in one rename.

    A run killed mid-write leaves at most a ``.tmp`` file that no reader looks at. The file gets the
    umask's mode, its data and the directory entry are fsynced, and any OSError (no space, read-only
    file system, permission) becomes a one-line :class:`~pipelines.errors.StorageError` naming ``target``.
    """
    target = Path(target)
    try:
        tmp_path = _temp_beside(target)
    except OSError as exc:
        raise storage_error(exc, target) from exc
    try:
        yield tmp_path
        _flush_file(tmp_path)
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    except OSError as exc:
        raise storage_error(exc, target) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


class StagedFiles:
    """Write several files under temp names, then rename them into place together (``commit``).

    Nothing is renamed until every file is written, so a full disk or a kill mid-way leaves the old
    files (or none) and only ``.tmp`` names beside them. ``commit`` renames in the order the paths
    were staged: stage the file that marks the set complete (a manifest) last. Use as a context
    manager: leaving it without ``commit`` (an error) removes the temp files.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self.committed = False

    def path(self, target: str | Path) -> Path:
        target = Path(target)
        try:
            tmp = _temp_beside(target)
        except OSError as exc:
            raise storage_error(exc, target) from exc
        self._staged.append((tmp, target))
        return tmp

    def commit(self, before_rename: Callable[[], None] | None = None) -> None:
        """fsync every temp file, run ``before_rename`` (e.g. remove a stale manifest), rename all."""
        current: Path | None = None
        try:
            for tmp, target in self._staged:
                current = target
                _flush_file(tmp)
            if before_rename is not None:
                before_rename()
            for tmp, target in self._staged:
                current = target
                os.replace(tmp, target)
            for parent in {t.parent for _, t in self._staged}:
                fsync_dir(parent)
        except OSError as exc:
            raise storage_error(exc, current) from exc
        self.committed = True

    def discard(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def write_parquet(df: pd.DataFrame, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        to_parquet(df, tmp, target)
    return Path(target)


def to_parquet(df: pd.DataFrame, path: Path, target: str | Path | None = None) -> None:
    """``df.to_parquet(path)``; pyarrow's I/O errors (an ``OSError`` without errno) become a
    :class:`~pipelines.errors.StorageError` naming ``target`` with the cause read from the message."""
    try:
        df.to_parquet(path, index=False)
    except OSError as exc:
        if exc.errno is None:  # pyarrow: "IOError: [Errno 28] No space left on device"
            import re

            m = re.search(r"\[Errno (\d+)\]", str(exc))
            if m:
                exc = OSError(int(m.group(1)), os.strerror(int(m.group(1))))
        raise storage_error(exc, target or path) from exc


def write_json(obj: Any, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return Path(target)


def write_text(text: str, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def read_json_object(path: str | Path, hint: str = "") -> dict[str, Any]:
    """A JSON object from ``path``; InputError naming the file if missing, unreadable or not an object."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{p}: no such file{f' ({hint})' if hint else ''}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a JSON object")
    return data


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_table(path: str | Path, required: Sequence[str] = ()) -> pd.DataFrame:
    """Read CSV, JSONL or Parquet. Any problem -> :class:`InputError` naming the file."""
    p = Path(path)
    kind = TABLE_SUFFIXES.get(p.suffix.lower())
    if kind is None:
        raise InputError(f"{p}: unsupported format {p.suffix or '(no suffix)'!r}; use .parquet, .csv or .jsonl")
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a {kind} file")
    try:
        if kind == "parquet":
            df = pd.read_parquet(p)
        elif kind == "csv":
            df = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])
        else:
            df = pd.read_json(p, lines=True, dtype=False)
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not valid UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except Exception as exc:  # pandas/pyarrow raise many types; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: cannot read as {kind}: {first}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            f"{p}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, df.columns)) or 'none'})"
        )
    return df


def read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    """One JSON object a line (blank lines skipped); a bad line, bad UTF-8 or an unreadable file is an
    :class:`InputError` naming the file (and the line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    records = []
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {no} is not valid JSON ({exc.msg})") from exc
        if not isinstance(rec, dict):
            raise InputError(f"{path}: line {no} is not a JSON object")
        records.append(rec)
    return records
