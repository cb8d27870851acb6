"""Reconciliation: end runs whose process is gone, and settle registry versions left without a decision.

A run is *owned* by the process that started it. :func:`owner_tags` records, at run start:

- ``recipe_embed.host``, ``recipe_embed.pid`` and ``recipe_embed.pid_start`` (the process start time
  in clock ticks since boot, so a reused pid is not mistaken for the owner), for every run;
- ``recipe_embed.prefect_flow_run_id`` for a run started by the Prefect flow (the flow also labels
  its flow run with ``mlflow.run_id``).

:func:`reconcile` looks at every RUNNING run of the experiment and ends it FAILED, with the tags
``recipe_embed.end_reason`` and ``recipe_embed.reconciled_at``, when

- its Prefect flow run is in a final state (Completed, Failed, Crashed, Cancelled), as told by the
  ``flow_run_state`` callable (the flow passes one built on the Prefect client; the CLI one that asks
  ``$PREFECT_API_URL`` over HTTP, see :func:`prefect_http_state`), or
- its owner process ran on this host and is gone (pid missing, or reused by another process).

Runs owned by a live process, by another host (with no final Prefect state to prove the end), or
with no owner tags at all, are left alone and reported as such.

Registry versions of the model with no ``decision`` tag (a promotion interrupted between registering
and tagging) are settled under the promotion lock: the version holding the champion alias gets
``decision=promoted``; any other gets ``decision=unknown`` with a reason that says how to decide it
(``recipe-embed promote --run-id RUN``). Nothing is re-decided automatically: a decision needs the
champion re-evaluated on the candidate's eval set, which is the promote command's job.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import urllib.error
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipelines import lifeline, prefect_http

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig

HOST_TAG = "recipe_embed.host"
PID_TAG = "recipe_embed.pid"
PID_START_TAG = "recipe_embed.pid_start"
FLOW_RUN_TAG = "recipe_embed.prefect_flow_run_id"
END_REASON_TAG = "recipe_embed.end_reason"
RECONCILED_TAG = "recipe_embed.reconciled_at"

FINAL_PREFECT_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})

FlowRunState = Callable[[str], str | None]
"""Flow run id -> its Prefect state type (``RUNNING``, ``CRASHED`` ...), or None when unknown."""


@dataclass(frozen=True)
class Finding:
    kind: str  # "run", "flow run" or "version"
    id: str
    action: str  # "ended", "kept", "tagged", "crashed", "would end", "would tag", "would crash"
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def hostname() -> str:
    return socket.gethostname()


def owner_tags(flow_run_id: str | None = None) -> dict[str, str]:
    """The tags that let :func:`reconcile` tell whether this run's process is still alive."""
    pid = os.getpid()
    tags = {HOST_TAG: hostname(), PID_TAG: str(pid)}
    start = lifeline.process_start_time(pid)
    if start:
        tags[PID_START_TAG] = start
    if flow_run_id:
        tags[FLOW_RUN_TAG] = str(flow_run_id)
    return tags


def prefect_http_state(api_url: str | None = None, timeout_s: float = 10.0) -> FlowRunState | None:
    """A :data:`FlowRunState` that asks the Prefect REST API (``GET /flow_runs/{id}``), or None when no
    API is configured (``$PREFECT_API_URL``). Uses no Prefect import (:mod:`pipelines.prefect_http`)."""
    base = api_url or prefect_http.api_url()
    if not base:
        return None

    def state(flow_run_id: str) -> str | None:
        try:
            body = prefect_http.call(base, "GET", f"/flow_runs/{flow_run_id}", timeout_s=timeout_s)
        except urllib.error.HTTPError as exc:
            return "DELETED" if exc.code == 404 else None
        except (urllib.error.URLError, OSError, ValueError):
            return None
        st = (body or {}).get("state") or {}
        return str(st.get("type") or "") or None

    return state


def judge_run(tags: dict[str, str], flow_run_state: FlowRunState | None, this_host: str) -> tuple[bool, str]:
    """(end it?, why) for one RUNNING run, from its owner tags."""
    flow_run = tags.get(FLOW_RUN_TAG)
    if flow_run and flow_run_state is not None:
        state = flow_run_state(flow_run)
        if state in FINAL_PREFECT_STATES or state == "DELETED":
            return True, f"its Prefect flow run {flow_run} is {state.lower()}"
    host, pid_text = tags.get(HOST_TAG), tags.get(PID_TAG)
    if host and pid_text:
        if host != this_host:
            why = f"owned by pid {pid_text} on another host ({host})"
            return False, why + (f"; flow run {flow_run} not final or unknown" if flow_run else "")
        try:
            pid = int(pid_text)
        except ValueError:
            return False, f"unreadable pid tag {pid_text!r}"
        if lifeline.is_alive(pid, tags.get(PID_START_TAG)):
            return False, f"its process {pid} on {host} is alive"
        return True, f"its process {pid} on {host} is gone"
    if flow_run:
        return False, f"flow run {flow_run}: no Prefect API to ask (set PREFECT_API_URL)"
    return False, "no owner tags (started before reconciliation existed); end it by hand if it is dead"


def reconcile_runs(
    cfg: PipelineConfig, flow_run_state: FlowRunState | None = None, dry_run: bool = False
) -> list[Finding]:
    """End FAILED every RUNNING run of ``cfg.tracking.experiment`` whose owner is gone."""
    from pipelines import tracking

    c = tracking.client(cfg)
    exp = c.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return []
    runs = c.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000)
    this_host = hostname()
    out: list[Finding] = []
    for run in runs:
        run_id = str(run.info.run_id)
        end, why = judge_run(dict(run.data.tags), flow_run_state, this_host)
        if not end:
            out.append(Finding("run", run_id, "kept", why))
            continue
        if dry_run:
            out.append(Finding("run", run_id, "would end", why))
            continue
        reason = f"ended FAILED by reconcile: {why}"
        c.set_tag(run_id, END_REASON_TAG, reason)
        c.set_tag(run_id, RECONCILED_TAG, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        c.set_terminated(run_id, status="FAILED")
        out.append(Finding("run", run_id, "ended", why))
    return out


FLOW_NAME = "train-and-evaluate"
RUN_ID_LABEL = "mlflow.run_id"
"""The flow labels its flow run with its MLflow run id (``flows/train_and_evaluate.py``)."""


def _mlflow_run_of(c: Any, exp_id: str | None, flow_run: dict[str, Any]) -> Any:
    """The MLflow run a flow run started (its label, else the run tagged with its id), or None."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    run_id = (flow_run.get("labels") or {}).get(RUN_ID_LABEL)
    if run_id:
        try:
            return c.get_run(str(run_id))
        except MlflowException:
            pass
    if exp_id is None:
        return None
    found = c.search_runs(
        [exp_id], filter_string=f"tags.`{FLOW_RUN_TAG}` = '{flow_run['id']}'", run_view_type=ViewType.ALL, max_results=1
    )
    return found[0] if found else None


def reconcile_flow_runs(cfg: PipelineConfig, api_url: str | None = None, dry_run: bool = False) -> list[Finding]:
    """Set Crashed every Running flow run of ``train-and-evaluate`` whose process is gone.

    The crash automation needs the flow run's heartbeat events; a database outage can lose them and
    end the flow-run process without a final state, leaving it Running for ever and holding the
    nightly deployment's concurrency slot. Its MLflow run records the host, pid and start time of that
    process: when it ran on this host and is gone, the flow run is set Crashed through the Prefect REST
    API (``$PREFECT_API_URL``), with a message saying why, which releases the slot. A flow run with no
    MLflow run yet, or one owned by another host, is left alone.
    """
    from pipelines import tracking

    api = api_url or prefect_http.api_url()
    if not api:
        return []
    body = {
        "flows": {"name": {"any_": [FLOW_NAME]}},
        "flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}},
        "limit": 200,
    }
    try:
        flow_runs = prefect_http.call(api, "POST", "/flow_runs/filter", body)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return [Finding("flow run", "-", "kept", f"Prefect API {api} not reachable ({exc})")]
    c = tracking.client(cfg)
    exp = c.get_experiment_by_name(cfg.tracking.experiment)
    exp_id = str(exp.experiment_id) if exp is not None else None
    this_host = hostname()
    out: list[Finding] = []
    for fr in flow_runs or []:
        fr_id = str(fr["id"])
        run = _mlflow_run_of(c, exp_id, fr)
        if run is None:
            out.append(Finding("flow run", fr_id, "kept", "no MLflow run yet: its process cannot be told"))
            continue
        tags = {k: v for k, v in dict(run.data.tags).items() if k != FLOW_RUN_TAG}  # judge by the process
        end, why = judge_run(tags, None, this_host)
        if not end:
            out.append(Finding("flow run", fr_id, "kept", why))
            continue
        message = (
            f"Crashed by recipe-embed reconcile: still Running, but {why} (MLflow run {run.info.run_id}, "
            f"status {run.info.status})"
        )
        if dry_run:
            out.append(Finding("flow run", fr_id, "would crash", why))
            continue
        state = {"type": "CRASHED", "name": "Crashed", "message": message}
        try:
            result = prefect_http.call(api, "POST", f"/flow_runs/{fr_id}/set_state", {"state": state, "force": True})
        except (urllib.error.URLError, OSError, ValueError) as exc:
            out.append(Finding("flow run", fr_id, "kept", f"{why}; setting it Crashed failed: {exc}"))
            continue
        status = str((result or {}).get("status", "")).upper()
        if status != "ACCEPT":
            details = (result or {}).get("details") or {}
            out.append(Finding("flow run", fr_id, "kept", f"{why}; Prefect answered {status}: {details.get('reason')}"))
            continue
        out.append(Finding("flow run", fr_id, "crashed", why))
    return out


def reconcile_versions(
    cfg: PipelineConfig, lock: Callable[[], AbstractContextManager[Any]] | None = None, dry_run: bool = False
) -> list[Finding]:
    """Give every version of the model that has no ``decision`` tag one (under the promotion lock)."""
    from mlflow.exceptions import MlflowException

    from pipelines import registry, tracking
    from pipelines.locks import promotion_lock

    c = tracking.client(cfg)
    name = cfg.registry.model_name
    try:
        versions = c.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if registry._not_found(exc):
            return []
        raise
    if not any("decision" not in (v.tags or {}) for v in versions):
        return []
    out: list[Finding] = []
    with (lock or promotion_lock(cfg, slot=False))():
        champion = registry.get_alias(c, name, cfg.registry.champion_alias)
        champ_v = str(champion.version) if champion is not None else None
        for v in sorted(c.search_model_versions(f"name = '{name}'"), key=lambda m: int(m.version)):
            tags = dict(v.tags or {})
            if "decision" in tags:
                continue
            version = str(v.version)
            run_id = tags.get(registry.RUN_ID_TAG) or v.run_id or "?"
            if version == champ_v:
                label = "promoted"
                reason = "set by reconcile: holds the champion alias, but its promotion ended before the decision tags"
            else:
                label = "unknown"
                reason = (
                    "set by reconcile: the promotion ended before a decision; "
                    f"decide with `recipe-embed promote --run-id {run_id}`"
                )
            if dry_run:
                out.append(Finding("version", version, "would tag", f"decision={label}: {reason}"))
                continue
            c.set_model_version_tag(name, version, "decision", label)
            c.set_model_version_tag(name, version, "decision_reason", reason)
            out.append(Finding("version", version, "tagged", f"decision={label}: {reason}"))
    return out


def reconcile(
    cfg: PipelineConfig,
    flow_run_state: FlowRunState | None = None,
    lock: Callable[[], AbstractContextManager[Any]] | None = None,
    dry_run: bool = False,
    prefect_api: str | None = None,
) -> list[Finding]:
    """:func:`reconcile_runs`, :func:`reconcile_flow_runs` (when a Prefect API is set: ``prefect_api``
    or ``$PREFECT_API_URL``), then :func:`reconcile_versions`."""
    return [
        *reconcile_runs(cfg, flow_run_state, dry_run),
        *reconcile_flow_runs(cfg, prefect_api, dry_run),
        *reconcile_versions(cfg, lock, dry_run),
    ]
