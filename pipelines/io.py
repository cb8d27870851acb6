"""File helpers: atomic writes, content digests and reading tabular files with clear errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.errors import InputError

TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it replaces ``target`` in one rename.

    A run killed mid-write leaves at most a ``.tmp`` file that no reader looks at.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(target)


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
