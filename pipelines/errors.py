"""Errors the CLI maps to exit codes: 2 for bad input, 1 for a failed quality gate or run."""

from __future__ import annotations


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


def out_of_memory(exc: BaseException, batch_size: int | None = None, where: str = "training") -> OutOfMemoryError:
    """A one-line :class:`OutOfMemoryError` with the hint to lower the batch size."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    hint = (
        f"lower the batch size (now {batch_size}), e.g. --set training.per_device_batch_size={max(2, batch_size // 2)}"
        if batch_size
        else "lower the batch size"
    )
    return OutOfMemoryError(f"out of memory during {where} ({first}); {hint}; not retried")
