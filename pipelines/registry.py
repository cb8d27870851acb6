"""Champion/challenger promotion in the MLflow Model Registry.

Each candidate becomes a version of ``cfg.registry.model_name``. The incumbent is the version under
the ``champion`` alias, always read with ``get_model_version_by_alias`` (search results may carry
empty aliases). The champion is re-scored on the candidate's eval set (through an injected
``evaluate`` callable) and :func:`pipelines.promotion.decide` applies the rule (pure, no MLflow): a
seeded paired bootstrap over queries of the per-query average precision at the primary dim. On
promotion the aliases move: ``champion`` -> candidate, ``previous-champion`` -> old champion; the
decision tags are written first.

Races. The champion is scored before the lock (the slow part) and the candidate remembers which
version that was. Inside the lock the champion is read again: when it is still that version the rule
decides; when a racing promotion moved it meanwhile, the candidate must still pass the rule against
the version it was scored against AND beat the new champion by point estimate on the same eval set
(re-scored as needed). So when two candidates both beat the old champion, the better of the two ends
as champion whichever takes the lock first (an exact tie keeps the one that came first).
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines import tracking
from pipelines.errors import InputError, TrackingError
from pipelines.metrics import LOAD_LINE, PRIMARY, Scores, headline, is_saturated, metric_key
from pipelines.promotion import (
    Decision,
    as_scores,
    decide,
    run_name_for,
    superseded_line,
    verdict_line,
    with_changes,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from pipelines.config import PipelineConfig

RUN_ID_TAG = "recipe_embed.run_id"
CATALOG_DIGEST_TAG = "recipe_embed.catalog_digest"
SATURATED_TAG = "eval_saturated"

Evaluate = Callable[[str], "Scores | Mapping[str, float]"]
LockFactory = Callable[[], AbstractContextManager[Any]]

MODEL_DESCRIPTION = (
    "Recipe-search sentence embedder (recipe-embed): questions about recipes, ingredients, diets and times "
    "-> the catalog's answers. Fine-tuned with MatryoshkaLoss(MultipleNegativesRankingLoss); embeddings can be "
    "truncated to {dims} dimensions. The version under the alias '{alias}' is the one to serve: {load}. "
    "Each version's description is its promotion decision."
)


# --- registry access ---------------------------------------------------------------------------------


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


def get_alias(c: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version under ``alias``, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


def find_version(c: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version registered earlier for ``run_id`` (lowest number), or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = c.search_model_versions(f"name = '{name}' and tags.`{RUN_ID_TAG}` = '{run_id}'")
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise
    if not found:
        return None
    return min(found, key=lambda v: int(v.version))


def register_version(cfg: PipelineConfig, run_id: str, model_uri: str) -> ModelVersion:
    """Register ``model_uri`` as a version of the model; a rerun for the same run reuses its version.

    Safe against two processes registering one run at once: the check-then-register step holds a
    file lock keyed by the tracking URI (re-entered harmlessly under the promotion lock, which is a
    different file), and any duplicate that still appears (two hosts on one server) is deleted,
    keeping the lowest version for the run.
    """
    import mlflow

    from pipelines.locks import file_lock, lock_path

    c = tracking.client(cfg)
    name = cfg.registry.model_name
    uri = tracking.resolve_tracking_uri(cfg)
    with file_lock(lock_path(uri, f"register-{name}"), cfg.registry.lock_timeout_s):
        existing = find_version(c, name, run_id)
        if existing is None:
            mv = mlflow.register_model(model_uri, name, tags={RUN_ID_TAG: run_id})
            mine = str(mv.version)
            describe_model(cfg, c)
        else:
            mine = str(existing.version)
        return _dedupe_versions(c, name, run_id, mine)


def _dedupe_versions(c: MlflowClient, name: str, run_id: str, mine: str) -> ModelVersion:
    """Keep the lowest version registered for ``run_id``; delete ``mine`` if it is a later duplicate."""
    from mlflow.exceptions import MlflowException

    lowest = find_version(c, name, run_id)
    keep = str(lowest.version) if lowest is not None else mine
    if keep != mine:
        with contextlib.suppress(MlflowException):
            c.delete_model_version(name, mine)
    return c.get_model_version(name, keep)


def model_description(cfg: PipelineConfig) -> str:
    reg = cfg.registry
    return MODEL_DESCRIPTION.format(
        dims=", ".join(map(str, cfg.evaluation.dims)),
        alias=reg.champion_alias,
        load=LOAD_LINE.format(name=reg.model_name, alias=reg.champion_alias),
    )


def describe_model(cfg: PipelineConfig, c: MlflowClient) -> None:
    """Give the registered model its description (what it is, how to load the champion) when it differs."""
    name = cfg.registry.model_name
    text = model_description(cfg)
    if (c.get_registered_model(name).description or "") != text:
        c.update_registered_model(name, description=text)


def default_lock(cfg: PipelineConfig) -> AbstractContextManager[Any]:
    """The promotion lock's file lock keyed by the tracking URI (see :mod:`pipelines.locks`); the entry
    points inject :func:`pipelines.locks.promotion_lock`, which adds the Prefect slot."""
    from pipelines.locks import promotion_lock

    return promotion_lock(cfg, slot=False)()


def _decision_tags(decision: Decision) -> dict[str, str]:
    """The decision as tags, each said once and none empty (a missing champion or interval leaves its tag out)."""
    data = decision.to_dict()
    tags = {
        "decision": decision.label,
        "decision_reason": decision.reason[:4900],
        "decision_line": verdict_line(decision)[:4900],
        "decision_deltas": json.dumps(data["deltas"]) if decision.deltas else "",
        "decision_champion_version": decision.champion_version or "",
        "decision_candidate_version": decision.candidate_version or "",
        "decision_scored_against": decision.scored_against or "",
        SATURATED_TAG: "true" if decision.saturated else "false",
    }
    if decision.delta is not None:
        tags["decision_delta"] = f"{decision.delta:+.6f}"
        tags["decision_ci_low"] = f"{decision.ci_low:.6f}" if decision.ci_low is not None else ""
        tags["decision_ci_high"] = f"{decision.ci_high:.6f}" if decision.ci_high is not None else ""
    return {k: v for k, v in tags.items() if v}


CHAMPION_TAG = "champion"
"""``champion=true`` on the one run whose model holds the champion alias (runs list: ``tags.champion = 'true'``)."""


def show_verdict(c: MlflowClient, run_id: str, label: str, line: str, version: str | None = None) -> None:
    """The run's description is its verdict line; its name starts with what happened."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

    c.set_tag(run_id, MLFLOW_RUN_NOTE, line[:4900])
    c.set_tag(run_id, MLFLOW_RUN_NAME, run_name_for(label, version, c.get_run(run_id).info.run_name))


def move_champion_tag(c: MlflowClient, new_run: str, old_run: str | None) -> None:
    """``champion=true`` on ``new_run`` only; taken off the former champion's run."""
    c.set_tag(new_run, CHAMPION_TAG, "true")
    if old_run and old_run != new_run:
        with contextlib.suppress(Exception):  # a deleted run: nothing to take off
            c.delete_tag(old_run, CHAMPION_TAG)


def _run_tag(c: MlflowClient, run_id: str | None, key: str) -> str | None:
    if not run_id:
        return None
    try:
        return c.get_run(run_id).data.tags.get(key)
    except Exception:  # a deleted or foreign run: no tag to compare
        return None


def _version_run_id(mv: ModelVersion) -> str | None:
    return (mv.tags or {}).get(RUN_ID_TAG) or mv.run_id


def promote(
    cfg: PipelineConfig,
    run_id: str,
    model_uri: str,
    candidate: Scores | Mapping[str, float],
    evaluate: Evaluate,
    lock: LockFactory | None = None,
) -> Decision:
    """Register the candidate and decide, under the lock, against the champion re-scored on the
    candidate's eval set.

    ``evaluate(uri)`` returns a model's :class:`Scores` on the candidate's eval set, for
    ``models:/<name>/<version>`` (the champion) and, when ``candidate`` carries no per-query scores,
    for ``model_uri`` itself. The decision tags go on the run and the version (and the version's
    description is its decision line) before any alias moves; the champion's metrics are logged on the
    run as ``champion_*`` and the paired per-query scores as ``decision/per_query_ap.parquet``.
    """
    if not run_id:
        raise InputError("promote: a run id is required")
    if not model_uri:
        raise InputError(f"promote: run {run_id} has no logged model URI")
    tracking.connect(cfg)
    reg = cfg.registry
    name = reg.model_name
    dims = tuple(cfg.evaluation.dims)
    c = tracking.client(cfg)
    cand = as_scores(candidate)
    assert cand is not None
    scored: dict[str, Scores] = {}

    def score(version: str) -> Scores:
        if version not in scored:
            got = as_scores(evaluate(f"models:/{name}/{version}"))
            assert got is not None
            scored[version] = got
        return scored[version]

    def full_candidate() -> Scores:
        nonlocal cand
        assert cand is not None
        if cand.ap(reg.primary_dim) is None:
            again = as_scores(evaluate(model_uri))
            if again is not None and again.per_query_ap:
                cand = Scores(cand.metrics, again.per_query_ap)
        return cand

    def catalog_of(mv: ModelVersion | None) -> str | None:
        return _run_tag(c, _version_run_id(mv), CATALOG_DIGEST_TAG) if mv is not None else None

    # Score the champion before taking the lock (the slow part); remember which version it was.
    first = get_alias(c, name, reg.champion_alias)
    if first is not None and _version_run_id(first) == run_id:
        first = None  # the candidate itself (a rerun after a crash)
    if first is not None and decide(cand, None, reg, dims).promote:
        score(str(first.version))
        full_candidate()

    with lock() if lock is not None else default_lock(cfg):
        version = register_version(cfg, run_id, model_uri)
        v = str(version.version)
        incumbent = get_alias(c, name, reg.champion_alias)
        if incumbent is not None and str(incumbent.version) == v:
            return Decision(True, f"version {v} is already the champion", {}, v, v, primary_dim=reg.primary_dim)
        mine = _run_tag(c, run_id, CATALOG_DIGEST_TAG)
        baseline = str(first.version) if first is not None else None
        current = str(incumbent.version) if incumbent is not None else None
        against: Scores | None = None
        if current is None:
            d = decide(cand, None, reg, dims)
        elif current == baseline:
            against = score(current)
            d = decide(full_candidate(), against, reg, dims, candidate_catalog=mine, champion_catalog=catalog_of(first))
        else:
            # A racing promotion moved the champion since this candidate was scored.
            assert current is not None
            d = _decide_after_race(
                cfg, cand, baseline, current, score, full_candidate, mine, catalog_of(first), catalog_of(incumbent)
            )
            against = scored.get(current) or (scored.get(baseline) if baseline is not None else None)
        decision = with_changes(d, candidate_version=v, champion_version=current, scored_against=baseline or current)
        if against is not None and decision.champion_primary is None:
            cp = against.metrics.get(metric_key(reg.primary_dim))
            if cp is not None:
                decision = with_changes(decision, champion_primary=float(cp), saturated=is_saturated(float(cp)))
        try:
            tags = _decision_tags(decision)
            for k, val in tags.items():
                c.set_model_version_tag(name, v, k, val)
            c.update_model_version(name, v, description=tags["decision_line"])
            tracking.set_tags(run_id, {**tags, "registered_version": v})
            show_verdict(c, run_id, decision.label, tags["decision_line"], v)
            if against is not None:
                tracking.log_metrics(run_id, headline(against.metrics, reg.primary_dim, "champion"), prefix="champion_")
                _log_per_query(run_id, cand, against)
            if decision.promote:
                if incumbent is not None:
                    c.set_registered_model_alias(name, reg.previous_alias, str(incumbent.version))
                c.set_registered_model_alias(name, reg.champion_alias, v)
                if incumbent is not None:
                    was = c.get_model_version(name, str(incumbent.version)).description or ""
                    c.update_model_version(name, str(incumbent.version), description=superseded_line(was, v)[:4900])
                move_champion_tag(c, run_id, _version_run_id(incumbent) if incumbent is not None else None)
        except Exception as exc:
            from mlflow.exceptions import MlflowException

            if isinstance(exc, MlflowException):
                raise TrackingError(f"promotion of {name} version {v} failed: {exc.message}") from exc
            raise
    return decision


def _decide_after_race(
    cfg: PipelineConfig,
    cand: Scores,
    baseline: str | None,
    current: str,
    score: Callable[[str], Scores],
    full_candidate: Callable[[], Scores],
    cand_catalog: str | None,
    baseline_catalog: str | None,
    current_catalog: str | None,
) -> Decision:
    """The champion is ``current`` now, not ``baseline`` (None: there was none) as when the candidate
    was scored: pass the rule against ``baseline``, then beat ``current`` by point estimate."""
    reg = cfg.registry
    dims = tuple(cfg.evaluation.dims)
    if baseline is None:
        first = decide(cand, None, reg, dims)
    else:
        first = decide(
            full_candidate(),
            score(baseline),
            reg,
            dims,
            candidate_catalog=cand_catalog,
            champion_catalog=baseline_catalog,
        )
    if not first.promote:
        return with_changes(first, reason=f"{first.reason} (against version {baseline})")
    now = score(current)
    pk = metric_key(reg.primary_dim)
    mine, theirs = float(cand.metrics[pk]), float(now.metrics.get(pk, math.nan))
    deltas = {
        d: float(cand.metrics[metric_key(d)]) - float(now.metrics[metric_key(d)])
        for d in dims
        if metric_key(d) in now.metrics
    }
    was = f"version {baseline}" if baseline is not None else "no champion"
    if mine > theirs:
        return with_changes(
            first,
            deltas=deltas,
            reason=(
                f"{first.reason} (against {was}); version {current} was promoted meanwhile and this candidate "
                f"beats it by point estimate ({PRIMARY} {mine - theirs:+.4f})"
            ),
        )
    return with_changes(
        first,
        promote=False,
        deltas=deltas,
        reason=(
            f"passes against {was}, but version {current}, promoted meanwhile, is at least as good by point "
            f"estimate ({PRIMARY} {mine - theirs:+.4f})"
        ),
    )


def _log_per_query(run_id: str, candidate: Scores, champion: Scores) -> None:
    """The paired per-query average precision (candidate and re-scored champion) as a run artifact."""
    import pandas as pd

    data: dict[str, Any] = {}
    for prefix, s in (("candidate", candidate), ("champion", champion)):
        for d, ap in s.per_query_ap.items():
            data[f"{prefix}_ap_dim_{d}"] = np.asarray(ap, dtype=np.float64)
    if not data or len({len(v) for v in data.values()}) != 1:
        return
    with tempfile.TemporaryDirectory(prefix="recipe-embed-decision-") as tmp:
        path = Path(tmp) / "per_query_ap.parquet"
        pd.DataFrame(data).to_parquet(path, index=False)
        tracking.client().log_artifact(run_id, str(path), artifact_path="decision")


def champion(cfg: PipelineConfig) -> dict[str, Any] | None:
    """The current champion: version, run id, its run's metrics, the decision tags and the load line."""
    c = tracking.client(cfg)
    name = cfg.registry.model_name
    mv = get_alias(c, name, cfg.registry.champion_alias)
    if mv is None:
        return None
    metrics: dict[str, float] = {}
    run_id = (mv.tags or {}).get(RUN_ID_TAG) or mv.run_id
    if run_id:
        with contextlib.suppress(Exception):
            metrics = tracking.read_metrics(run_id, c=c)
    return {
        "name": name,
        "version": str(mv.version),
        "run_id": run_id,
        "source": mv.source,
        "metrics": metrics,
        "tags": dict(mv.tags or {}),
        "load": LOAD_LINE.format(name=name, alias=cfg.registry.champion_alias),
    }
