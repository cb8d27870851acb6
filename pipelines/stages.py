"""Path-in / path-out stages: what ``recipe-embed run`` chains and what the Prefect tasks wrap.

Each stage takes the resolved config plus paths or URIs and returns paths, URIs or plain dicts,
never live models, so a stage can run in another process (a Prefect task, a child process).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.errors import RecipeEmbedError
from pipelines.io import write_json
from pipelines.metrics import Scores, headline

log = logging.getLogger(__name__)

TAG_PREFIX = "recipe_embed."

Lock = Callable[[], AbstractContextManager[Any]]


# --- keys --------------------------------------------------------------------------------------


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def dataset_key(cfg: PipelineConfig) -> str:
    """Digest of everything that shapes the dataset: data config, tokenizer limit, catalog bytes."""
    from pipelines.catalog import catalog_digest

    relevant = {
        "synthesis": cfg.synthesis.model_dump(mode="json"),
        "validation": cfg.validation.model_dump(mode="json"),
        "catalog": str(cfg.catalog.path.resolve()) if cfg.catalog.path else None,
        "model": cfg.model.model_dump(mode="json"),
        "catalog_digest": catalog_digest(cfg.catalog),
    }
    return _digest(relevant)[:16]


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recipe-embed")
    except PackageNotFoundError:
        import pipelines

        return str(getattr(pipelines, "__version__", "unknown"))


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout this code runs from, or None outside a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def training_key(cfg: PipelineConfig) -> str:
    """Digest of what decides the trained model: data key + model + training + evaluation config, and
    the code (package version, plus its git commit when it runs from a checkout)."""
    relevant = {
        "dataset": dataset_key(cfg),
        "model": cfg.model.model_dump(mode="json"),
        "training": cfg.training.model_dump(mode="json"),
        "evaluation": cfg.evaluation.model_dump(mode="json"),
        "code": {"version": package_version(), "commit": git_commit()},
    }
    return _digest(relevant)[:16]


# --- data --------------------------------------------------------------------------------------


def dataset_is_complete(data_dir: Path) -> bool:
    """A dataset dir counts only if its manifest verifies against every file and its gate passed."""
    from pipelines.datasets import read_manifest

    try:
        read_manifest(data_dir)
    except RecipeEmbedError:
        return False
    return True


def synthesize_stage(cfg: PipelineConfig) -> str:
    """Synthesize and validate pairs into ``datasets/<dataset_key>``; reuse a complete one."""
    from pipelines.datasets import build_dataset, timing_line

    out = cfg.paths.datasets_dir / dataset_key(cfg)
    if dataset_is_complete(out):
        log.info("dataset %s is complete, reusing it", out)
        return str(out)
    manifest = build_dataset(cfg, out)
    log.info("dataset %s written; %s", out, timing_line(manifest))
    return str(out)


# --- training and evaluation -------------------------------------------------------------------


def default_model_root(cfg: PipelineConfig) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return cfg.paths.models_dir / f"{stamp}-{training_key(cfg)}"


def train_stage(cfg: PipelineConfig, data_dir: str, out_dir: str | None = None, resume: bool = False) -> str:
    from pipelines import distributed
    from pipelines.errors import is_out_of_memory, out_of_memory
    from pipelines.training import train

    root = Path(out_dir) if out_dir else default_model_root(cfg)
    nproc = distributed.resolve_nproc(cfg.training.nproc_per_node, cfg.training.device)
    if nproc > 1 and not distributed.in_torchrun():  # training.nproc_per_node ranks under torchrun
        distributed.train_under_torchrun(cfg, data_dir, root, nproc, resume=resume)
        return str(root)
    try:
        train(Path(data_dir), root, cfg.model, cfg.training, resume=resume, progress=True)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(exc, cfg.training.per_device_batch_size) from exc
        raise
    return str(root)


def evaluate_stage(cfg: PipelineConfig, model: str, data_dir: str, out_json: str | None = None) -> dict[str, float]:
    """Evaluate a model (path, model root, hub id, ``bundled:...`` or ``models:/`` URI) on eval.parquet.

    Metrics for the whole eval, per slice and per intent. With ``out_json``, the per-query average
    precision goes beside it (:func:`pipelines.evaluation.per_query_path`) for the promotion rule.
    """
    from pipelines.evaluation import per_query_path, write_per_query
    from pipelines.serving import grid_path

    pairs, scores = _score(cfg, model, data_dir)
    if out_json:
        write_json(scores.metrics, out_json)
        write_per_query(scores, per_query_path(out_json), pairs)
        if scores.serving is not None:
            write_json(scores.serving, grid_path(out_json))
    return scores.metrics


def score_stage(cfg: PipelineConfig, model: str, data_dir: str) -> Scores:
    """Metrics plus per-query average precision on ``data_dir``'s eval set (what promotion compares)."""
    return _score(cfg, model, data_dir)[1]


def _score(cfg: PipelineConfig, model: str, data_dir: str) -> tuple[Any, Scores]:
    from pipelines.evaluation import load_pairs, score_pairs
    from pipelines.stdio import detach_broken_stdio

    detach_broken_stdio()  # a dead worker's pipe must not fail the evaluation
    from pipelines.serving import serving_request, with_recommendation

    pairs = load_pairs(Path(data_dir) / "eval.parquet")
    scores = score_pairs(
        model,
        pairs,
        cfg.evaluation.dims,
        cfg.evaluation.batch_size,
        attention_backend=cfg.training.attention_backend,
        serving=serving_request(cfg.serving, Path(data_dir)),
    )
    if scores.serving is not None:
        scores = dataclasses.replace(scores, serving=with_recommendation(scores.serving, cfg.serving.max_relative_loss))
    return pairs, scores


def candidate_scores(candidate: dict[str, float], model_root: str | None) -> Scores:
    """The candidate's metrics with its per-query scores when ``evaluate_stage`` wrote them under ``model_root``."""
    from pipelines.evaluation import per_query_path, read_per_query

    if model_root:
        path = per_query_path(Path(model_root) / "eval_metrics.json")
        if path.exists():
            return Scores(dict(candidate), read_per_query(path))
    return Scores(dict(candidate))


# --- tracking and registry ---------------------------------------------------------------------


GIT_COMMIT_TAG = "mlflow.source.git.commit"


def run_tags(cfg: PipelineConfig) -> dict[str, str]:
    from pipelines.catalog import catalog_digest

    tags = {
        f"{TAG_PREFIX}profile": cfg.profile,
        f"{TAG_PREFIX}catalog_digest": catalog_digest(cfg.catalog),
        f"{TAG_PREFIX}dataset_key": dataset_key(cfg),
        f"{TAG_PREFIX}training_key": training_key(cfg),
        f"{TAG_PREFIX}base_model": cfg.model.base_model,
        f"{TAG_PREFIX}package_version": package_version(),
    }
    commit = git_commit()
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    return tags


def source_tags(flow_run_id: str | None = None) -> dict[str, str]:
    """Who ran what, for the UI's Source and Created by columns: ``mlflow.source.name`` (the entry point),
    ``mlflow.source.type`` (JOB for a flow run, LOCAL for the command line) and ``mlflow.user``."""
    import getpass
    import os
    import sys

    from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER") or "unknown"
    if flow_run_id:
        source, kind = "flows/train_and_evaluate.py (Prefect flow train-and-evaluate)", "JOB"
    else:
        entry = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        args = [a for a in sys.argv[1:2] if not a.startswith("-")]
        source, kind = " ".join([entry, *args]), "LOCAL"
    return {MLFLOW_SOURCE_NAME: source, MLFLOW_SOURCE_TYPE: kind, MLFLOW_USER: user}


def start_run_stage(cfg: PipelineConfig, run_name: str | None = None, flow_run_id: str | None = None) -> str:
    """Start the MLflow run, tagged with its owner (host, pid, pid start time, Prefect flow run id)
    so :mod:`pipelines.reconcile` can end it if its process dies."""
    from pipelines import tracking
    from pipelines.reconcile import owner_tags

    tracking.connect(cfg)
    tags = {**run_tags(cfg), **source_tags(flow_run_id), **owner_tags(flow_run_id)}
    return tracking.start_run(cfg, run_name=run_name, tags=tags)


FORCE_HINT = (
    "to retrain anyway, set registry.skip_unchanged=false (`--set registry.skip_unchanged=false`, or flow "
    'overrides {"registry": {"skip_unchanged": false}}), or change the config, e.g. --set training.seed=N'
)


def last_evaluated_run(cfg: PipelineConfig) -> Any | None:
    """The most recent run of the experiment with a promotion decision (promoted or rejected), or None."""
    from pipelines import tracking

    c = tracking.client(cfg)
    exp = c.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return None
    found: list[Any] = []
    for label in ("promoted", "rejected"):
        found += c.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.decision = '{label}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    return max(found, key=lambda r: r.info.start_time) if found else None


def should_skip_training(cfg: PipelineConfig) -> str | None:
    """A reason to skip when the champion or the last evaluated candidate (promoted or rejected) was
    trained with this training key (catalog, data, model, training and evaluation config, code version
    and commit) and base model; else None. ``registry.skip_unchanged=false`` turns the skip off."""
    from pipelines import registry, tracking

    if not cfg.registry.skip_unchanged:
        return None
    tracking.connect(cfg)
    mine = run_tags(cfg)
    keys = [f"{TAG_PREFIX}{k}" for k in ("catalog_digest", "training_key", "base_model")]

    def same(tags: dict[str, str]) -> bool:
        return all(tags.get(k) == mine[k] for k in keys)

    c = tracking.client(cfg)
    champ = registry.champion(cfg)
    if champ and champ.get("run_id"):
        tags = c.get_run(champ["run_id"]).data.tags
        if same(tags):
            return (
                f"champion v{champ['version']} (run {champ['run_id']}) was trained with the same training key "
                f"{mine[keys[1]]} (catalog, config, code and base model); {FORCE_HINT}"
            )
    last = last_evaluated_run(cfg)
    if last is not None and same(last.data.tags):
        tags = last.data.tags
        version = tags.get("registered_version")
        what = f"v{version} " if version else ""
        return (
            f"the last evaluated candidate {what}(run {last.info.run_id}, {tags.get('decision')}) was trained with "
            f"the same training key {mine[keys[1]]} (catalog, config, code and base model); {FORCE_HINT}"
        )
    return None


SKIPPED = "skipped"


def mark_skipped_stage(cfg: PipelineConfig, run_id: str, reason: str) -> None:
    """Tag a skipped night's run ``decision=skipped`` with the reason (filter it out in the Compare view
    with ``tags.decision != 'skipped'``)."""
    from pipelines import registry, tracking

    tracking.connect(cfg)
    line = f"SKIPPED training: {reason}"
    tracking.set_tags(run_id, {"decision": SKIPPED, "decision_reason": reason[:4900], "decision_line": line[:4900]})
    champ = registry.champion(cfg)
    note = line
    if champ and champ.get("run_id"):
        link = champion_run_link(cfg, str(champ["run_id"]))
        note += f"\n\nChampion: version {champ['version']}, run [{champ['run_id']}]({link})"
    registry.show_verdict(tracking.client(cfg), run_id, SKIPPED, note)


def champion_run_link(cfg: PipelineConfig, run_id: str) -> str:
    """The champion run's page: a full URL on a tracking server, else the UI's own link (``#/experiments/...``)."""
    from pipelines import tracking

    url = tracking_ui_url(cfg, run_id)
    if url:
        return url
    exp_id = tracking.client(cfg).get_run(run_id).info.experiment_id
    return f"#/experiments/{exp_id}/runs/{run_id}"


def log_stage(
    cfg: PipelineConfig,
    run_id: str,
    data_dir: str,
    model_root: str,
    candidate: dict[str, float],
    base: dict[str, float] | None,
) -> str:
    """Log dataset inputs, training history, metrics and the model; return the model URI."""
    from pipelines import tracking

    tracking.connect(cfg)
    tracking.log_dataset(run_id, Path(data_dir))
    tracking.log_training(run_id, Path(model_root))
    primary_dim = cfg.registry.primary_dim
    tracking.log_metrics(run_id, headline(candidate, primary_dim))  # all of them: the table (log_report)
    if base:
        tracking.log_metrics(run_id, headline(base, primary_dim, "base"), prefix="base_")
    return tracking.log_model(run_id, Path(model_root), cfg)


def promote_stage(
    cfg: PipelineConfig,
    run_id: str,
    model_uri: str,
    data_dir: str,
    candidate: dict[str, float],
    lock: Lock | None = None,
    base: dict[str, float] | None = None,
    model_root: str | None = None,
    score: Callable[[str], Scores] | None = None,
) -> dict[str, Any]:
    """Champion/challenger under a lock; then the report artifacts (plot, metrics, model card).

    ``score(uri)``: how a model is scored on the eval split (default :func:`score_stage`)."""
    from pipelines import registry, tracking
    from pipelines.datasets import read_manifest
    from pipelines.serving import read_grid

    tracking.connect(cfg)

    scored: dict[str, Scores] = {}

    def evaluate(uri: str) -> Scores:
        scored[uri] = score(uri) if score is not None else score_stage(cfg, uri, data_dir)
        return scored[uri]

    decision = registry.promote(
        cfg, run_id, model_uri, candidate_scores(candidate, model_root), evaluate=evaluate, lock=lock
    )
    out = decision.to_dict()
    out["line"] = decision.line()
    out["champion_metrics"] = _champion_metrics(cfg, run_id, decision, scored)
    grid = read_grid(Path(model_root) / "eval_metrics.json") if model_root else None
    if grid is not None:
        from pipelines.tracking.serving import log_serving

        log_serving(run_id, grid, cfg.registry.model_name, decision.candidate_version)
        out["serving"] = grid
    train_result: dict[str, Any] = {}
    if model_root:
        from pipelines.training import load_train_result

        train_result = load_train_result(Path(model_root))
    tracking.log_report(
        run_id,
        cfg,
        candidate=candidate,
        base=base,
        champion=out.get("champion_metrics"),
        manifest=read_manifest(Path(data_dir)),
        train_result=train_result,
        decision=out,
        serving=grid,
    )
    return out


def _champion_metrics(cfg: PipelineConfig, run_id: str, decision: Any, scored: dict[str, Scores]) -> dict | None:
    """Every metric of the champion re-scored on this eval (what the run logged a headline of), or None."""
    from pipelines import tracking

    name = cfg.registry.model_name
    for version in (decision.champion_version, decision.scored_against):
        if version and f"models:/{name}/{version}" in scored:
            return dict(scored[f"models:/{name}/{version}"].metrics)
    return tracking.read_metrics(run_id, prefix="champion_") or None  # a rerun: what the run holds


def end_run_stage(run_id: str, status: str = "FINISHED") -> None:
    from pipelines import tracking

    tracking.end_run(run_id, status)


def tracking_ui_url(cfg: PipelineConfig, run_id: str) -> str | None:
    """A browser link to the run when the tracking URI is an HTTP server, else None.

    The link starts with ``$MLFLOW_UI_URL`` when set (the address people open, e.g. behind a proxy),
    else with the tracking URI itself."""
    from mlflow.tracking import MlflowClient

    from pipelines import tracking

    uri = tracking.resolve_tracking_uri(cfg)
    if not tracking.is_remote(uri):
        return None
    exp_id = MlflowClient(uri).get_run(run_id).info.experiment_id
    base = os.environ.get("MLFLOW_UI_URL") or uri
    return f"{base.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"


# --- the whole pipeline without Prefect ---------------------------------------------------------


def run_pipeline(
    cfg: PipelineConfig,
    *,
    run_name: str | None = None,
    echo: Callable[[str], None] = print,
    lock: Lock | None = None,
) -> dict:
    """synthesize -> validate -> train -> evaluate -> log -> promote, in this process.

    Returns the same report dict as the Prefect flow (see :mod:`pipelines.report`). ``lock``: the
    promotion lock factory (default: the file lock keyed by the tracking URI, :mod:`pipelines.locks`).
    """
    from pipelines import tracking

    run_id = start_run_stage(cfg, run_name=run_name)
    echo(f"MLflow run {run_id} at {tracking.resolve_tracking_uri(cfg)}")
    report: dict[str, Any] = {
        "profile": cfg.profile,
        "run_id": run_id,
        "dims": list(cfg.evaluation.dims),
        "skipped": None,
        "primary_dim": cfg.registry.primary_dim,
        "tracking_uri": tracking.resolve_tracking_uri(cfg),
    }
    with tracking.run_guard(run_id):
        echo("[1/5] synthesize + validate")
        already = dataset_is_complete(cfg.paths.datasets_dir / dataset_key(cfg))
        data_dir = synthesize_stage(cfg)
        report.update(data_dir=data_dir, synthesis="cached" if already else "computed")
        from pipelines.models import pick_device

        device = pick_device(cfg.training.device)
        echo(f"[2/5] train on {device}: batch {cfg.training.per_device_batch_size}, {cfg.training.epochs:g} epoch(s)")
        model_root = train_stage(cfg, data_dir)
        echo("[3/5] evaluate candidate and base model")
        candidate = evaluate_stage(cfg, model_root, data_dir, str(Path(model_root) / "eval_metrics.json"))
        base = (
            evaluate_stage(cfg, cfg.model.base_model, data_dir, str(Path(model_root) / "base_metrics.json"))
            if cfg.evaluation.evaluate_base
            else None
        )
        echo("[4/5] log to MLflow")
        model_uri = log_stage(cfg, run_id, data_dir, model_root, candidate, base)
        echo("[5/5] champion/challenger")
        decision = promote_stage(
            cfg, run_id, model_uri, data_dir, candidate, lock=lock, base=base, model_root=model_root
        )
        report.update(model_root=model_root, model_uri=model_uri, decision=decision)
        report["metrics"] = {"candidate": candidate, "champion": decision.get("champion_metrics"), "base": base}
        report["mlflow_url"] = tracking_ui_url(cfg, run_id)
    return report
