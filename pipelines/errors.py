"""Errors the CLI maps to exit codes: 2 for bad input, 1 for a failed quality gate or run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class RecipeEmbedError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with; the message is one line."""

    exit_code = 1


class InputError(RecipeEmbedError):
    """An unreadable file, a wrong format, missing columns, a bad argument."""

    exit_code = 2


class DataQualityError(RecipeEmbedError):
    """Data read fine but failed a gate (e.g. too many rejected rows)."""

    exit_code = 1


class TrainingError(RecipeEmbedError):
    """Training diverged (NaN/inf loss) or could not run."""

    exit_code = 1


class EvaluationError(RecipeEmbedError):
    """The evaluation set is inconsistent (query without relevant doc, miscounted queries)."""

    exit_code = 1


class TrackingError(RecipeEmbedError):
    """The MLflow tracking server is unreachable or refused a write."""

    exit_code = 1


class StorageError(RecipeEmbedError):
    """A file could not be written or read: permission, read-only file system, no space left."""

    exit_code = 1


_CAUSES = {
    "ENOSPC": "no space left on device",
    "EDQUOT": "disk quota exceeded",
    "EROFS": "read-only file system",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "ENOTDIR": "a parent is not a directory",
    "EISDIR": "is a directory",
    "ENOENT": "no such file or directory",
    "ENAMETOOLONG": "file name too long",
    "EMFILE": "too many open files",
    "EIO": "input/output error",
}


def describe_os_error(exc: BaseException, path: object = None) -> str:
    """``<path>: <cause>`` for an OSError (its errno named in words), on one line."""
    import errno as _errno

    code = getattr(exc, "errno", None)
    name = _errno.errorcode.get(code, "") if isinstance(code, int) else ""
    cause = _CAUSES.get(name) or (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    where = path or getattr(exc, "filename", None)
    text = f"{where}: {cause}" if where else str(cause)
    return " ".join(text.split())


def storage_error(exc: OSError, path: object = None, action: str = "cannot write") -> StorageError:
    """Wrap ``exc`` as a one-line :class:`StorageError`: ``cannot write PATH: no space left on device``."""
    text = describe_os_error(exc, path)
    return StorageError(f"{action} {text}" if action else text)


def write_failure(exc: BaseException, path: object) -> StorageError:
    """A one-line :class:`StorageError` for a failed write of ``path`` by any library.

    safetensors, torch and pyarrow report a full disk without an errno (``I/O error: No space left on
    device (os error 28)``, ``file write failed``): the errno is read from the message, and when the
    message names none and the file system holding ``path`` has no free space left, it is ENOSPC.
    """
    import errno as _errno
    import os
    import re

    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, OSError) and exc.errno is not None:
        return storage_error(exc, path)
    text = str(exc)
    m = re.search(r"os error (\d+)|\[Errno (\d+)\]", text)
    if m:
        code = int(m.group(1) or m.group(2))
        return storage_error(OSError(code, os.strerror(code)), path)
    if _no_space_left(path):
        return storage_error(OSError(_errno.ENOSPC, os.strerror(_errno.ENOSPC)), path)
    first = (text.strip().splitlines() or [type(exc).__name__])[0][:200]
    return StorageError(f"cannot write {path}: {first}")


def _no_space_left(path: object) -> bool:
    """Whether the file system holding ``path`` (or its nearest existing parent) has no free block."""
    import os
    from pathlib import Path

    p = Path(str(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20  # under 1 MiB: no model file fits


_INTERRUPT_NOTE = "recipe-embed: "


def note_interrupt(exc: BaseException, text: str) -> None:
    """Record on an interrupt (Ctrl-C) what it left behind and what to do next; the CLI prints the
    notes of every layer it passed through, outermost first (:func:`interrupt_message`)."""
    exc.add_note(_INTERRUPT_NOTE + text)


def interrupt_message(exc: BaseException) -> str:
    """``interrupted: MLflow run R ended KILLED; resume with recipe-embed train ... --resume``."""
    notes = [n.removeprefix(_INTERRUPT_NOTE) for n in getattr(exc, "__notes__", ()) if n.startswith(_INTERRUPT_NOTE)]
    return "interrupted" + (": " + "; ".join(reversed(notes)) if notes else "")


class OutOfMemoryError(TrainingError):
    """The device or the host ran out of memory; retrying with the same settings would fail again."""

    exit_code = 1


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA/MPS out-of-memory (``torch.OutOfMemoryError`` or its RuntimeError text) or ``MemoryError``."""
    if isinstance(exc, (MemoryError, OutOfMemoryError)):
        return True
    names = {c.__name__ for c in type(exc).__mro__}
    if "OutOfMemoryError" in names:  # torch.OutOfMemoryError (torch.cuda.OutOfMemoryError)
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@contextlib.contextmanager
def out_of_memory_as_error(batch_size: int | None = None, where: str = "training") -> Iterator[None]:
    """Raise any out-of-memory inside (torch's, CUDA's, MPS's, the host's) as one :class:`OutOfMemoryError`
    with the batch-size hint: the one place that recognises one (training and evaluation use it)."""
    try:
        yield
    except OutOfMemoryError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(exc, batch_size, where) from exc
        raise


def out_of_memory(exc: BaseException, batch_size: int | None = None, where: str = "training") -> OutOfMemoryError:
    """A one-line :class:`OutOfMemoryError` with the hint to lower the batch size; for an
    :class:`OutOfMemoryError` (training raises one already), a copy with its message unchanged."""
    if isinstance(exc, OutOfMemoryError):
        return OutOfMemoryError(str(exc))
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    hint = (
        f"lower the batch size (now {batch_size}), e.g. --set training.per_device_batch_size={max(2, batch_size // 2)}"
        if batch_size
        else "lower the batch size"
    )
    return OutOfMemoryError(f"out of memory during {where} ({first}); {hint}; not retried")
