"""MLflow tracking: one run per pipeline run, addressed by explicit run id.

Every function takes a ``run_id`` and logs through :class:`mlflow.MlflowClient`, so stages running
in different processes (Prefect tasks) can write to the same run. Call :func:`connect` once per
process first: it resolves the tracking URI, applies the HTTP retry/timeout settings and fails fast
when a tracking server is unreachable.

Metric keys follow sentence-transformers (``dim_384_cosine_map@100``); MLflow rejects ``@``, so
:func:`sanitize` maps it to ``_at_`` in every run (``dim_384_cosine_map_at_100``), with ``base_`` and
``champion_`` prefixes for the other models, so the MLflow compare view lines runs up.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import InputError, TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pipelines.config import PipelineConfig

MAX_PARAM_VALUE = 6000
"""MLflow's limit on a param value (characters); longer values are cut with a marker."""

_BATCH = 900
"""Metrics per ``log_batch`` call (MLflow allows 1000)."""

_PARAM_BATCH = 90
"""Params per ``log_batch`` call (MLflow allows 100)."""

TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")

DATASET_DIR_TAG = "recipe_embed.dataset_dir"
MODEL_URI_TAG = "recipe_embed.model_uri"
MODEL_DIR_TAG = "recipe_embed.model_dir"


# --- URIs and connection --------------------------------------------------------------------------


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


# --- keys -------------------------------------------------------------------------------------------

_BAD_KEY_CHARS = re.compile(r"[^0-9A-Za-z_\-. /]")


def sanitize(key: str) -> str:
    """``dim_384_cosine_map@100`` -> ``dim_384_cosine_map_at_100`` (:func:`pipelines.metrics.mlflow_key`);
    other characters MLflow rejects -> ``_``."""
    from pipelines.metrics import mlflow_key

    return _BAD_KEY_CHARS.sub("_", mlflow_key(key))


def unsanitize(key: str) -> str:
    """Inverse of :func:`sanitize` for our metric names: ``_at_`` -> ``@``."""
    from pipelines.metrics import from_mlflow_key

    return from_mlflow_key(key)


def _param_value(value: str) -> str:
    if len(value) <= MAX_PARAM_VALUE:
        return value
    marker = f"...[cut {len(value) - MAX_PARAM_VALUE + 20} chars]"
    return value[: MAX_PARAM_VALUE - len(marker)] + marker


# --- runs -------------------------------------------------------------------------------------------


def start_run(cfg: PipelineConfig, run_name: str | None = None, tags: Mapping[str, str] | None = None) -> str:
    """Create a run in ``cfg.tracking.experiment`` with the flattened config as params; return its id."""
    from mlflow.entities import Param

    c = client(cfg)
    experiment_id = ensure_experiment(cfg)
    all_tags = {"recipe_embed.profile": cfg.profile, **dict(tags or {})}
    run = c.create_run(experiment_id, run_name=run_name, tags=all_tags)
    run_id = str(run.info.run_id)
    params = [Param(k, _param_value(v)) for k, v in sorted(cfg.flat().items())]
    for i in range(0, len(params), _PARAM_BATCH):
        c.log_batch(run_id, params=params[i : i + _PARAM_BATCH])
    return run_id


def end_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark the run terminated with ``status`` (FINISHED, FAILED or KILLED)."""
    if status not in TERMINAL_STATUSES:
        raise InputError(f"end_run: status must be one of {', '.join(TERMINAL_STATUSES)}, got {status!r}")
    client().set_terminated(run_id, status=status)


def run_status(run_id: str) -> str:
    return str(client().get_run(run_id).info.status)


class RunKilled(SystemExit):
    """Raised inside :func:`run_guard` when the process gets SIGTERM (exit code 128 + signal)."""


@contextlib.contextmanager
def run_guard(run_id: str, end_on_success: bool = True) -> Iterator[str]:
    """Never leave ``run_id`` RUNNING: an exception ends it FAILED, SIGTERM/Ctrl-C ends it KILLED.

    On SIGTERM the handler marks the run KILLED and raises :class:`RunKilled` (a ``SystemExit`` with
    code 143), so the process exits unless someone catches it. ``end_on_success=False`` leaves a
    successful run open for the next stage (another process may continue it).
    """
    previous: Any = None
    installed = False
    ended = False

    def _on_term(signum: int, _frame: Any) -> None:
        nonlocal ended
        if not ended:
            ended = True
            with contextlib.suppress(Exception):
                end_run(run_id, "KILLED")
        raise RunKilled(128 + signum)

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_term)
        installed = True
    try:
        yield run_id
    except (KeyboardInterrupt, RunKilled):
        if not ended:
            ended = True
            with contextlib.suppress(Exception):
                end_run(run_id, "KILLED")
        raise
    except BaseException as exc:
        clean_exit = isinstance(exc, SystemExit) and exc.code in (0, None)
        if not ended and (end_on_success or not clean_exit):
            ended = True
            with contextlib.suppress(Exception):
                end_run(run_id, "FINISHED" if clean_exit else "FAILED")
        raise
    else:
        if end_on_success and not ended:
            end_run(run_id, "FINISHED")
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


# --- logging ----------------------------------------------------------------------------------------


def _as_float(value: Any) -> float | None:
    """``value`` as a float (NaN and inf included), or None when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def log_metrics(run_id: str, metrics: Mapping[str, Any], prefix: str = "", step: int = 0) -> dict[str, float]:
    """Log ``metrics`` with sanitized keys and ``prefix`` ("", "base_", "champion_"); return what was logged.

    Non-numeric values are skipped; NaN and inf are logged as they are (MLflow stores them).
    """
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    logged: dict[str, float] = {}
    for key, value in metrics.items():
        v = _as_float(value)
        if v is None or isinstance(value, bool):
            continue
        logged[prefix + sanitize(key)] = v
    batch = [Metric(k, v, now, step) for k, v in logged.items()]
    c = client()
    for i in range(0, len(batch), _BATCH):
        c.log_batch(run_id, metrics=batch[i : i + _BATCH])
    return logged


def read_metrics(run_id: str, prefix: str = "", c: MlflowClient | None = None) -> dict[str, float]:
    """The run's latest eval metrics under ``prefix`` (``dim_*``, ``slice_*``, ``intent_*``), keys
    unsanitized, prefix cut.

    ``c``: the client to read with (default: one on the process URI set by :func:`connect`).
    """
    data = (c or client()).get_run(run_id).data.metrics
    starts = tuple(prefix + p for p in ("dim_", "slice_", "intent_"))
    out: dict[str, float] = {}
    for key, value in data.items():
        if key.startswith(starts):
            out[unsanitize(key[len(prefix) :])] = float(value)
    return out


def set_tags(run_id: str, tags: Mapping[str, Any]) -> None:
    c = client()
    for k, v in tags.items():
        c.set_tag(run_id, k, v if isinstance(v, str) else json.dumps(v, sort_keys=True))


def log_dataset(run_id: str, data_dir: str | Path) -> None:
    """Log the train and eval parquet files as ``mlflow.data`` inputs with the manifest digests.

    Contexts are ``training`` and ``evaluation``; the dataset directory is recorded as a run tag so
    ``recipe-embed promote`` can find the eval set again.
    """
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag

    from pipelines.datasets import read_manifest

    root = Path(data_dir).expanduser().resolve()
    manifest = read_manifest(root, verify=False, require_passed=False)
    digests: dict[str, str] = manifest.get("digests") or {}
    inputs = []
    tags: dict[str, str] = {DATASET_DIR_TAG: str(root)}
    for split, context in (("train", "training"), ("eval", "evaluation")):
        path = root / f"{split}.parquet"
        if not path.exists():
            raise InputError(f"{path}: no such file (is {root} a dataset directory?)")
        sha = digests.get(path.name) or digests.get(split) or ""
        if not sha:
            from pipelines.io import sha256_file

            sha = sha256_file(path)
        df = pd.read_parquet(path)
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways" (same class)
            warnings.simplefilter("ignore", UserWarning)
            ds = from_pandas(df, source=str(path), name=f"recipe-{split}", digest=sha[:32])
        inputs.append(
            DatasetInput(
                ds._to_mlflow_entity(),
                tags=[InputTag("mlflow.data.context", context), InputTag("sha256", sha)],
            )
        )
        tags[f"dataset.{split}.sha256"] = sha
        tags[f"dataset.{split}.rows"] = str(len(df))
    if manifest.get("catalog_digest"):
        tags["dataset.catalog_digest"] = str(manifest["catalog_digest"])
    client().log_inputs(run_id, datasets=inputs)
    set_tags(run_id, tags)


def log_training(run_id: str, model_root: str | Path) -> dict[str, Any]:
    """Loss history as step metric ``train_loss``, plus pairs/s, seconds and validation metrics."""
    from mlflow.entities import Metric

    from pipelines.training import load_train_result

    result = load_train_result(Path(model_root))
    now = int(time.time() * 1000)
    batch: list[Metric] = []
    for i, row in enumerate(result.get("loss_history") or []):
        loss = _as_float(row.get("loss"))
        if loss is None:
            continue
        step = int(row.get("step", i))
        batch.append(Metric("train_loss", loss, now, step))
        if row.get("epoch") is not None:
            batch.append(Metric("train_epoch", float(row["epoch"]), now, step))
    c = client()
    for i in range(0, len(batch), _BATCH):
        c.log_batch(run_id, metrics=batch[i : i + _BATCH])
    scalars = {
        "train_pairs_per_second": result.get("pairs_per_second"),
        "train_seconds": result.get("seconds"),
        "train_pairs": result.get("train_pairs"),
    }
    log_metrics(run_id, {k: v for k, v in scalars.items() if v is not None})
    val = result.get("validation_metrics") or {}
    if isinstance(val, Mapping):
        log_metrics(run_id, {k: v for k, v in val.items() if not isinstance(v, Mapping)}, prefix="validation_")
    tags = {MODEL_DIR_TAG: str(Path(model_root).expanduser().resolve())}
    if result.get("device"):
        tags["train.device"] = str(result["device"])
    if result.get("best_checkpoint"):
        tags["train.best_checkpoint"] = str(result["best_checkpoint"])
    set_tags(run_id, tags)
    return result


def pip_requirements() -> list[str]:
    """Exact pins of what loading the model needs (skips MLflow's slow requirement inference)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("sentence-transformers", "transformers", "torch", "tokenizers", "safetensors"):
        try:
            reqs.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return reqs


def log_model(run_id: str, model_dir: str | Path, cfg: PipelineConfig) -> str:
    """Log the SentenceTransformer with ``mlflow.sentence_transformers.log_model``; return its URI.

    The model is attached to ``run_id`` (no active run needed) and its URI is kept as a run tag.
    """
    import mlflow
    import mlflow.sentence_transformers
    from sentence_transformers import SentenceTransformer

    from pipelines.models import model_dir_of

    path = model_dir_of(model_dir)
    c = client()
    run = c.get_run(run_id)
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    model = SentenceTransformer(str(path), device="cpu")
    info = mlflow.sentence_transformers.log_model(
        model,
        name="model",
        run_id=run_id,
        pip_requirements=pip_requirements(),
        metadata={"profile": cfg.profile, "dims": list(cfg.evaluation.dims)},
    )
    uri = str(info.model_uri)
    set_tags(run_id, {MODEL_URI_TAG: uri})
    return uri


def log_report(
    run_id: str,
    cfg: PipelineConfig,
    candidate: Mapping[str, float],
    base: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    manifest: Mapping[str, Any] | None,
    train_result: Mapping[str, Any] | None,
    decision: Mapping[str, Any] | None = None,
) -> None:
    """Artifacts: ``report/metrics.png``, ``report/metrics.json`` and ``report/model-card.md``."""
    from pipelines.io import write_json, write_text
    from pipelines.modelcard import render_model_card
    from pipelines.plots import plot_dim_metrics

    dims = tuple(cfg.evaluation.dims)
    series = {"candidate": dict(candidate)}
    if base:
        series["base"] = dict(base)
    if champion:
        series["champion"] = dict(champion)
    with tempfile.TemporaryDirectory(prefix="recipe-embed-report-") as tmp:
        out = Path(tmp) / "report"
        out.mkdir()
        plot_dim_metrics(series, dims, out / "metrics.png")
        write_json(
            {
                "candidate": _jsonable(candidate),
                "base": _jsonable(base),
                "champion": _jsonable(champion),
                "dims": list(dims),
                "decision": dict(decision) if decision else None,
            },
            out / "metrics.json",
        )
        write_text(
            render_model_card(cfg, candidate, base, champion, manifest or {}, train_result or {}, decision),
            out / "model-card.md",
        )
        client().log_artifacts(run_id, str(out), artifact_path="report")


def _jsonable(metrics: Mapping[str, float] | None) -> dict[str, float | str] | None:
    if metrics is None:
        return None
    return {k: (float(v) if math.isfinite(float(v)) else str(v)) for k, v in metrics.items()}
