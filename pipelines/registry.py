"""Champion/challenger promotion in the MLflow Model Registry.

Each candidate becomes a version of ``cfg.registry.model_name``. The incumbent is the version under
the ``champion`` alias, always read with ``get_model_version_by_alias`` (search results may carry
empty aliases). Under a lock, the incumbent is re-read and re-evaluated on the candidate's eval set
(through an injected ``evaluate`` callable), :func:`decide` applies the rule, and on promotion the
aliases move: ``champion`` -> candidate, ``previous-champion`` -> old champion.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines import tracking
from pipelines.errors import InputError, TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from pipelines.config import PipelineConfig, RegistryConfig

PRIMARY_METRIC = "cosine_map@100"
RUN_ID_TAG = "recipe_embed.run_id"
LOAD_LINE = 'mlflow.sentence_transformers.load_model("models:/{name}@{alias}")'

Evaluate = Callable[[str], Mapping[str, float]]
LockFactory = Callable[[], AbstractContextManager[Any]]


def map_key(dim: int, metric: str = PRIMARY_METRIC) -> str:
    return f"dim_{dim}_{metric}"


@dataclass(frozen=True)
class Decision:
    """The outcome of one comparison. ``deltas``: candidate minus champion map@100 per dim."""

    promote: bool
    reason: str
    deltas: dict[int, float] = field(default_factory=dict)
    candidate_version: str | None = None
    champion_version: str | None = None
    """The incumbent the candidate was compared with (None: there was none)."""

    @property
    def label(self) -> str:
        return "promoted" if self.promote else "rejected"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["decision"] = self.label
        d["deltas"] = {str(k): _json_float(v) for k, v in self.deltas.items()}
        return d


def _json_float(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    reg: RegistryConfig,
    dims: Sequence[int],
) -> Decision:
    """Pure rule: every candidate metric finite AND (no champion OR (candidate map@100 at the primary
    dim > champion + margin, strictly, AND no other dim's map@100 below the champion's by more than
    epsilon)).
    """
    if not candidate:
        return Decision(False, "candidate has no metrics")
    bad = sorted(k for k, v in candidate.items() if not _finite(v))
    if bad:
        shown = ", ".join(f"{k}={candidate[k]}" for k in bad[:3]) + (" ..." if len(bad) > 3 else "")
        return Decision(False, f"candidate has {len(bad)} non-finite metric(s): {shown}")
    missing = [map_key(d) for d in dims if map_key(d) not in candidate]
    if reg.primary_dim not in dims:
        missing.insert(0, map_key(reg.primary_dim))
    if missing:
        return Decision(False, f"candidate metrics lack {', '.join(missing)}")
    if champion is None:
        return Decision(True, "no champion yet")
    deltas = {d: float(candidate[map_key(d)]) - float(champion[map_key(d)]) for d in dims if map_key(d) in champion}
    pk = map_key(reg.primary_dim)
    if pk not in champion:
        return Decision(False, f"champion metrics lack {pk}; cannot compare", deltas)
    cand, champ = float(candidate[pk]), float(champion[pk])
    if not cand > champ + reg.margin:
        return Decision(
            False,
            f"dim {reg.primary_dim} map@100 {cand:.4f} does not beat the champion's {champ:.4f}"
            + (f" by more than the margin {reg.margin:g}" if reg.margin else ""),
            deltas,
        )
    worse = [d for d, delta in deltas.items() if d != reg.primary_dim and not delta >= -reg.epsilon]
    if worse:
        detail = ", ".join(f"dim {d} {deltas[d]:+.4f}" for d in worse)
        return Decision(False, f"map@100 drops by more than epsilon {reg.epsilon:g} at {detail}", deltas)
    return Decision(
        True,
        f"dim {reg.primary_dim} map@100 {cand:.4f} beats the champion's {champ:.4f} ({cand - champ:+.4f})",
        deltas,
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


def default_lock(cfg: PipelineConfig) -> AbstractContextManager[Any]:
    """The promotion lock keyed by the tracking URI (see :mod:`pipelines.locks`); a flow may inject
    a factory that also holds a distributed lock."""
    from pipelines.locks import registry_lock

    return registry_lock(cfg)()


def _decision_tags(decision: Decision) -> dict[str, str]:
    return {
        "decision": decision.label,
        "decision_reason": decision.reason[:4900],
        "decision_deltas": json.dumps(decision.to_dict()["deltas"]),
        "decision_champion_version": decision.champion_version or "",
        "decision_candidate_version": decision.candidate_version or "",
    }


def promote(
    cfg: PipelineConfig,
    run_id: str,
    model_uri: str,
    candidate_metrics: Mapping[str, float],
    evaluate: Evaluate,
    lock: LockFactory | None = None,
) -> Decision:
    """Register the candidate, then under the lock compare it with the freshly re-evaluated champion.

    ``evaluate("models:/<name>/<version>")`` must return the champion's metrics on the candidate's
    eval set (same keys as ``candidate_metrics``). Promotion moves ``champion`` to the candidate and
    ``previous-champion`` to the old one; a rejection tags the version with the reason. Either way
    the decision, reason and deltas become tags on the run and the version, and the champion's
    metrics are logged on the run as ``champion_*``.
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
    with lock() if lock is not None else default_lock(cfg):
        version = register_version(cfg, run_id, model_uri)
        v = str(version.version)
        incumbent = get_alias(c, name, reg.champion_alias)
        if incumbent is not None and str(incumbent.version) == v:
            return Decision(True, f"version {v} is already the champion", {}, v, v)
        champion_metrics: dict[str, float] | None = None
        if incumbent is not None:
            champion_metrics = {k: float(val) for k, val in evaluate(f"models:/{name}/{incumbent.version}").items()}
        d = decide(candidate_metrics, champion_metrics, reg, dims)
        decision = Decision(d.promote, d.reason, d.deltas, v, str(incumbent.version) if incumbent is not None else None)
        try:
            if decision.promote:
                if incumbent is not None:
                    c.set_registered_model_alias(name, reg.previous_alias, str(incumbent.version))
                c.set_registered_model_alias(name, reg.champion_alias, v)
            else:
                c.set_model_version_tag(name, v, "rejection_reason", decision.reason[:4900])
            tags = _decision_tags(decision)
            for k, val in tags.items():
                c.set_model_version_tag(name, v, k, val)
            tracking.set_tags(run_id, {**tags, "registered_version": v})
            if champion_metrics:
                tracking.log_metrics(run_id, champion_metrics, prefix="champion_")
        except Exception as exc:
            from mlflow.exceptions import MlflowException

            if isinstance(exc, MlflowException):
                raise TrackingError(f"promotion of {name} version {v} failed: {exc.message}") from exc
            raise
    return decision


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
