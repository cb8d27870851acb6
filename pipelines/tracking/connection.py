"""Where runs are logged: the tracking URI, MLflow's HTTP settings, a server's health, the experiment."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pipelines.config import PipelineConfig


def resolve_tracking_uri(cfg: PipelineConfig) -> str:
    """``$MLFLOW_TRACKING_URI``, else ``cfg.tracking.tracking_uri``, else the embedded sqlite store.

    The embedded store is ``sqlite:///<abs data_dir>/mlflow.db``; its parent directory is created.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.tracking_uri
    if uri:
        if uri.startswith("sqlite:///"):
            db = uri[len("sqlite:///") :]
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
        return uri
    db_path = Path(cfg.paths.mlflow_db).expanduser().resolve()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db_path}"


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def apply_http_settings(cfg: PipelineConfig) -> None:
    """Lower MLflow's HTTP retries, timeout and backoff (it defaults to minutes of retrying)."""
    t = cfg.tracking
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(t.http_request_max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(t.http_request_timeout)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(t.http_request_backoff_factor)


def check_server(uri: str, timeout_s: float = 5.0) -> None:
    """GET ``<uri>/health``; any failure -> :class:`TrackingError` within ``timeout_s`` seconds."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        raise TrackingError(f"MLflow tracking server at {uri} is unreachable: HTTP {exc.code} on /health") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TrackingError(f"MLflow tracking server at {uri} is unreachable: {reason}") from exc
    if status != 200:
        raise TrackingError(f"MLflow tracking server at {uri} is unreachable: HTTP {status} on /health")


def connect(cfg: PipelineConfig) -> str:
    """Resolve the URI, apply HTTP settings, check a server's health, make it the process default.

    Call this at the start of every process that logs, before any training time is spent.
    """
    import mlflow

    uri = resolve_tracking_uri(cfg)
    apply_http_settings(cfg)
    if is_remote(uri):
        check_server(uri, timeout_s=min(5.0, float(cfg.tracking.http_request_timeout)))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def client(cfg: PipelineConfig | None = None) -> MlflowClient:
    """A client on ``cfg``'s tracking URI, or on the process default set by :func:`connect`."""
    from mlflow import MlflowClient

    if cfg is None:
        return MlflowClient()
    uri = resolve_tracking_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(cfg: PipelineConfig) -> str:
    """Get or create ``cfg.tracking.experiment``; the embedded store keeps artifacts under data_dir."""
    from mlflow.exceptions import MlflowException

    c = client(cfg)
    name = cfg.tracking.experiment
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    artifact_location = None
    if not is_remote(resolve_tracking_uri(cfg)):
        root = Path(cfg.paths.mlflow_artifacts).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        artifact_location = root.as_uri()
    try:
        return str(c.create_experiment(name, artifact_location=artifact_location))
    except MlflowException:  # another process created it first
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)
