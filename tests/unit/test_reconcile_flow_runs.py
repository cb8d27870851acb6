"""``reconcile`` sets Crashed, through the Prefect REST API, the Running flow runs whose process is gone
(a stub API here; the real server and a database outage are in
tests/integration/prefect/test_db_outage.py)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipelines import reconcile as rc
from pipelines import tracking
from pipelines.config import PipelineConfig, load_config


class StubPrefect:
    """``POST /api/flow_runs/filter`` answers ``flow_runs``; ``POST .../set_state`` is recorded and accepted."""

    def __init__(self) -> None:
        self.flow_runs: list[dict[str, Any]] = []
        self.filters: list[dict[str, Any]] = []
        self.set_states: list[tuple[str, dict[str, Any]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
                if self.path == "/api/flow_runs/filter":
                    stub.filters.append(body)
                    answer: Any = stub.flow_runs
                elif self.path.startswith("/api/flow_runs/") and self.path.endswith("/set_state"):
                    stub.set_states.append((self.path.split("/")[3], body))
                    answer = {"status": "ACCEPT", "state": body["state"]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(answer).encode()
                self.send_response(200 if "filter" in self.path else 201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"


@pytest.fixture
def prefect_api() -> Iterator[StubPrefect]:
    stub = StubPrefect()
    thread = threading.Thread(target=stub.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()


@pytest.fixture
def cfg(tmp_path: Path) -> PipelineConfig:
    return load_config(
        "smoke",
        overrides={
            "paths": {"data_dir": str(tmp_path / "data")},
            "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        },
    )


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_running_flow_runs_whose_process_is_gone_are_set_crashed(cfg: PipelineConfig, prefect_api: StubPrefect) -> None:
    tracking.connect(cfg)
    dead_owner = {rc.HOST_TAG: rc.hostname(), rc.PID_TAG: str(_dead_pid()), rc.PID_START_TAG: "1"}
    dead = tracking.start_run(cfg, run_name="dead", tags={**dead_owner, rc.FLOW_RUN_TAG: "fr-dead"})
    tracking.end_run(dead, "FAILED")  # reconcile ended the MLflow run already; the flow run is still Running
    alive = tracking.start_run(cfg, run_name="alive", tags=rc.owner_tags("fr-alive"))
    elsewhere = tracking.start_run(
        cfg, run_name="elsewhere", tags={rc.HOST_TAG: "another-host", rc.PID_TAG: "1", rc.FLOW_RUN_TAG: "fr-far"}
    )
    prefect_api.flow_runs = [
        {"id": "fr-dead", "labels": {rc.RUN_ID_LABEL: dead}},
        {"id": "fr-alive", "labels": {}},  # found by its MLflow run's tag
        {"id": "fr-far", "labels": {rc.RUN_ID_LABEL: elsewhere}},
        {"id": "fr-new", "labels": {}},  # no MLflow run yet (e.g. the flow run calling reconcile)
    ]

    planned = {f.id: f for f in rc.reconcile_flow_runs(cfg, prefect_api.url, dry_run=True)}
    assert planned["fr-dead"].action == "would crash" and prefect_api.set_states == []

    found = {f.id: f for f in rc.reconcile_flow_runs(cfg, prefect_api.url)}
    assert found["fr-dead"].action == "crashed" and "is gone" in found["fr-dead"].reason
    assert found["fr-alive"].action == "kept" and "alive" in found["fr-alive"].reason
    assert found["fr-far"].action == "kept" and "another host" in found["fr-far"].reason
    assert found["fr-new"].action == "kept" and "no MLflow run" in found["fr-new"].reason
    [(flow_run, body)] = prefect_api.set_states
    assert flow_run == "fr-dead" and body["force"] is True
    assert body["state"]["type"] == "CRASHED"
    assert "recipe-embed reconcile" in body["state"]["message"] and dead in body["state"]["message"]
    asked = prefect_api.filters[-1]
    assert asked["flows"]["name"]["any_"] == [rc.FLOW_NAME]
    assert asked["flow_runs"]["state"]["type"]["any_"] == ["RUNNING"]
    tracking.end_run(alive)
    tracking.end_run(elsewhere)


def test_reconcile_asks_prefect_only_when_an_api_is_set(
    cfg: PipelineConfig, prefect_api: StubPrefect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert rc.reconcile_flow_runs(cfg) == []
    monkeypatch.setenv("PREFECT_API_URL", prefect_api.url)
    tracking.connect(cfg)
    assert rc.reconcile_flow_runs(cfg) == [] and len(prefect_api.filters) == 1  # asked; nothing Running
