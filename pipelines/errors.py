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
