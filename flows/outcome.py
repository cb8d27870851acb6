"""How a train-and-evaluate run ends, as the Prefect UI and the alerts tell it.

- the flow run's final state: Completed, named ``Promoted``, ``Rejected``, ``Skipped`` or ``Kept (tie)``,
  with the decision line as its message;
- the report artifact's key, one per deployment (``train-and-evaluate-nightly-report``, ...);
- the Prefect events (``recipe-embed.candidate.promoted`` ...) that the automations of
  ``infra/automations/`` turn into messages, each carrying one ready-to-send line.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipelines.config import PipelineConfig
from pipelines.metrics import PRIMARY, SATURATION
from pipelines.report import decision_line

log = logging.getLogger(__name__)

STATE_NAMES = {"promoted": "Promoted", "rejected": "Rejected", "skipped": "Skipped", "tie": "Kept (tie)"}
EVENT_PREFIX = "recipe-embed"
"""Events: recipe-embed.candidate.{promoted,rejected,skipped}, recipe-embed.eval.saturated,
recipe-embed.champion.stale; resource recipe-embed.model.<registered model name>."""


def outcome(report: Mapping[str, Any]) -> str:
    """``promoted``, ``rejected``, ``skipped`` or ``tie`` (a rejection because the interval contains 0)."""
    if report.get("skipped"):
        return "skipped"
    decision = report.get("decision") or {}
    if decision.get("promote"):
        return "promoted"
    if str(decision.get("reason") or "").startswith("a tie"):
        return "tie"
    return "rejected"


def report_key(deployment: str | None) -> str:
    """``train-and-evaluate-<deployment>-report``; ``...-local-report`` for a run outside a deployment.

    Artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9-]+", "-", (deployment or "local").lower()).strip("-") or "local"
    return f"train-and-evaluate-{slug}-report"


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def interval(decision: Mapping[str, Any]) -> str | None:
    """``+0.012 [0.008, 0.017] eval map@100 at 384``, or None without a delta."""
    delta = _finite(decision.get("delta"))
    if delta is None:
        return None
    where = f"eval {PRIMARY} at {decision.get('primary_dim')}"
    low, high = _finite(decision.get("ci_low")), _finite(decision.get("ci_high"))
    if low is None or high is None:
        return f"{delta:+.3f} {where}"
    return f"{delta:+.3f} [{low:.3f}, {high:.3f}] {where}"


def headline(report: Mapping[str, Any]) -> str:
    """``PROMOTED v7 over v6 (+0.012 [0.008, 0.017] eval map@100 at 384)`` and the like."""
    kind = outcome(report)
    if kind == "skipped":
        return f"SKIPPED training ({report.get('skipped')})"
    decision = report.get("decision") or {}
    cand, champ = decision.get("candidate_version"), decision.get("champion_version")
    detail = [p for p in (interval(decision), str(decision.get("reason") or "")) if p]
    if kind == "promoted":
        head = f"PROMOTED v{cand}" + (f" over v{champ}" if champ not in (None, cand) else "")
    elif kind == "tie":
        head = f"KEPT v{champ} (tie with v{cand})"
    else:
        head = f"REJECTED v{cand}" + (f", champion v{champ} kept" if champ is not None else "")
    return f"{head} ({'; '.join(detail)})" if detail else head


def message(report: Mapping[str, Any], deployment: str | None, text: str | None = None) -> str:
    """``recipe-embed nightly 2026-12-03: PROMOTED v7 (...), flow run <name>, run <MLflow URL>``."""
    day = datetime.now(UTC).date().isoformat()
    run = report.get("mlflow_url") or f"MLflow run {report.get('run_id')}"
    return (
        f"recipe-embed {deployment or 'local'} {day}: {text or headline(report)}, "
        f"flow run {report.get('flow_run')}, run {run}"
    )


def _related(cfg: PipelineConfig, report: Mapping[str, Any], version: Any) -> list[dict[str, str]]:
    related = [
        {
            "prefect.resource.id": f"mlflow.run.{report.get('run_id')}",
            "prefect.resource.role": "mlflow-run",
            "prefect.resource.name": str(report.get("run_id")),
        }
    ]
    if version is not None:
        name = cfg.registry.model_name
        related.append(
            {
                "prefect.resource.id": f"mlflow.model-version.{name}.{version}",
                "prefect.resource.role": "model-version",
                "prefect.resource.name": f"{name} v{version}",
            }
        )
    return related


def events(
    cfg: PipelineConfig,
    report: Mapping[str, Any],
    deployment: str | None,
    champion_age_days: float | None = None,
) -> list[dict[str, Any]]:
    """The events of a finished run, as ``emit_event`` keyword arguments (pure: no Prefect call)."""
    name = cfg.registry.model_name
    resource = {"prefect.resource.id": f"{EVENT_PREFIX}.model.{name}", "prefect.resource.name": name}
    kind = outcome(report)
    decision = report.get("decision") or {}
    version = decision.get("candidate_version")
    base_payload: dict[str, Any] = {
        "deployment": deployment,
        "flow_run": report.get("flow_run"),
        "mlflow_run_id": report.get("run_id"),
        "mlflow_url": report.get("mlflow_url"),
        "decision_line": decision_line(report),
    }
    out: list[dict[str, Any]] = [
        {
            "event": f"{EVENT_PREFIX}.candidate.{'rejected' if kind == 'tie' else kind}",
            "resource": resource,
            "related": _related(cfg, report, version),
            "payload": {
                **base_payload,
                "message": message(report, deployment),
                "outcome": kind,
                "version": version,
                "champion_version": decision.get("champion_version"),
                "delta": decision.get("delta"),
                "ci_low": decision.get("ci_low"),
                "ci_high": decision.get("ci_high"),
                "primary_dim": decision.get("primary_dim"),
            },
        }
    ]
    champ = decision.get("champion_version")
    if decision.get("saturated"):
        value = _finite(decision.get("champion_primary"))
        shown = f" {value:.4f}" if value is not None else ""
        text = (
            f"EVAL SATURATED: champion v{champ} scores eval {PRIMARY}{shown} >= {SATURATION} at "
            f"{decision.get('primary_dim')}; this eval set cannot separate models any more"
        )
        out.append(
            {
                "event": f"{EVENT_PREFIX}.eval.saturated",
                "resource": resource,
                "related": _related(cfg, report, champ),
                "payload": {**base_payload, "message": message(report, deployment, text), "version": champ},
            }
        )
    stale_after = cfg.notify.stale_after_days
    if kind != "promoted" and champion_age_days is not None and champion_age_days > stale_after:
        text = (
            f"CHAMPION STALE: the champion is {champion_age_days:.0f} days old (notify.stale_after_days "
            f"{stale_after:g}) and this run {kind} instead of replacing it"
        )
        out.append(
            {
                "event": f"{EVENT_PREFIX}.champion.stale",
                "resource": resource,
                "related": _related(cfg, report, champ),
                "payload": {
                    **base_payload,
                    "message": message(report, deployment, text),
                    "age_days": champion_age_days,
                },
            }
        )
    return out


def champion_age_days(cfg: PipelineConfig) -> float | None:
    """Days since the current champion version was registered, or None (no champion, store unreachable)."""
    try:
        from pipelines import registry, tracking

        mv = registry.get_alias(tracking.client(cfg), cfg.registry.model_name, cfg.registry.champion_alias)
    except Exception as exc:  # an alert input, never a reason to fail the run
        log.warning("could not read the champion's age: %s", exc)
        return None
    if mv is None or not mv.creation_timestamp:
        return None
    return (datetime.now(UTC).timestamp() * 1000 - float(mv.creation_timestamp)) / 86_400_000


def emit(events_: list[dict[str, Any]]) -> None:
    """Send the events to the Prefect API; a failure is logged, never raised (the run has finished)."""
    from prefect.events import emit_event

    for kwargs in events_:
        try:
            emit_event(**kwargs)
        except Exception as exc:
            log.warning("could not emit %s: %s", kwargs.get("event"), exc)
