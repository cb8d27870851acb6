"""MLflow tracking: one run per pipeline run, addressed by explicit run id.

Every function takes a ``run_id`` and logs through :class:`mlflow.MlflowClient`, so stages running
in different processes (Prefect tasks) can write to the same run. Call :func:`connect` once per
process first: it resolves the tracking URI, applies the HTTP retry/timeout settings and fails fast
when a tracking server is unreachable.

The parts, one concern each:

* :mod:`~pipelines.tracking.connection`: the tracking URI, HTTP settings, a server's health, the experiment;
* :mod:`~pipelines.tracking.runs`: create and end runs, :func:`run_guard`, tags;
* :mod:`~pipelines.tracking.metric_log`: metric keys as MLflow takes them, metrics in and out;
* :mod:`~pipelines.tracking.inputs`: the dataset inputs;
* :mod:`~pipelines.tracking.model_log`: the training figures and the model;
* :mod:`~pipelines.tracking.report`: the report artifacts (plot, metrics JSON, model card).

Callers use this package's names (``tracking.connect``, ``tracking.log_metrics``, ...).
"""

from pipelines.tracking.connection import (
    apply_http_settings,
    check_server,
    client,
    connect,
    ensure_experiment,
    is_remote,
    resolve_tracking_uri,
)
from pipelines.tracking.inputs import DATASET_DIR_TAG, log_dataset
from pipelines.tracking.metric_log import log_metric_batch, log_metrics, read_metrics, sanitize, unsanitize
from pipelines.tracking.model_log import MODEL_DIR_TAG, MODEL_URI_TAG, log_model, log_training, pip_requirements
from pipelines.tracking.report import log_report
from pipelines.tracking.runs import (
    MAX_PARAM_VALUE,
    TERMINAL_STATUSES,
    RunKilled,
    end_run,
    run_guard,
    run_status,
    set_tags,
    start_run,
)

__all__ = [
    "DATASET_DIR_TAG",
    "MAX_PARAM_VALUE",
    "MODEL_DIR_TAG",
    "MODEL_URI_TAG",
    "TERMINAL_STATUSES",
    "RunKilled",
    "apply_http_settings",
    "check_server",
    "client",
    "connect",
    "end_run",
    "ensure_experiment",
    "is_remote",
    "log_dataset",
    "log_metric_batch",
    "log_metrics",
    "log_model",
    "log_report",
    "log_training",
    "pip_requirements",
    "read_metrics",
    "resolve_tracking_uri",
    "run_guard",
    "run_status",
    "sanitize",
    "set_tags",
    "start_run",
    "unsanitize",
]
