"""The night's outcome in the Prefect UI and in alerts, on the real stack (infra/up.sh).

One test, so the slow deployment runs serve both checks: a small HTTP receiver on a free loopback port is the
alert webhook; then the smoke deployment runs twice (Promoted, then Skipped), smoke-worse once (Rejected), a
run fails (its data dir cannot be created) and a nightly run is killed with its worker (Crashed). Each run's
state name and message are read through the Prefect API and seen in the Prefect UI's runs list (headless
Chromium), as is the latest report artifact per deployment, and the receiver gets exactly one message per run,
in order, naming the run and its deployment. The runs use their own registered model and experiment, so they do
not depend on what other tests did to the stack's champion.

The crash is the suite's one host-crash scenario (the automation waits for missed heartbeats: 90 s as applied,
narrowed to 45 s while this test's crash runs): besides its alert, it checks that the crash frees the nightly deployment's concurrency slot, so
the next nightly run runs. Without a browser the UI check is skipped last, after every other check has run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.browser import browser_missing, chromium, require_browser, wait_text
from tests.integration.prefect.test_deployments import ENDED, _cancel, kill_host

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]


class Receiver:
    """Records each JSON body POSTed to it, with the time it arrived."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with received.lock:
                    received.messages.append((time.time(), json.loads(body or b"{}")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_count(self, n: int, timeout_s: float) -> list[tuple[float, dict[str, Any]]]:
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                got = list(self.messages)
            if len(got) >= n:
                return got
            assert time.monotonic() < deadline, f"{len(got)} of {n} messages after {timeout_s}s: {got}"
            time.sleep(1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()


def _end_time(fr: dict[str, Any]) -> float:
    return datetime.fromisoformat(fr["state"]["timestamp"].replace("Z", "+00:00")).timestamp()


def _latest_report(stack, key: str) -> dict[str, Any]:
    (art,) = stack.post(
        "/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}
    )
    return dict(art)


def _task_names(stack, flow_run_id: str) -> set[str]:
    runs = stack.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200})
    return {tr["name"] for tr in runs}


CRASH_AUTOMATION = "recipe-embed-crash-zombie-flow-runs"
CRASH_WINDOW_S = 45
"""The crash automation's window while this test's crash runs: one missed 30 s heartbeat (Prefect's shortest)
and a margin, instead of three (90 s): the same automation, a minute sooner."""


@contextlib.contextmanager
def _crash_window(stack, within_s: int) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The crash automation as up.sh applied it (90 s), with its window narrowed to ``within_s``; restored after."""
    (auto,) = [a for a in stack.post("/automations/filter", {}) if a["name"] == CRASH_AUTOMATION]
    assert auto["trigger"]["within"] == 90 and auto["enabled"], auto["trigger"]
    keys = ("name", "description", "enabled", "tags", "trigger", "actions", "actions_on_trigger", "actions_on_resolve")

    def put(within: int) -> None:
        spec = {k: auto[k] for k in keys if k in auto}
        spec["trigger"] = {**auto["trigger"], "within": within}
        stack.put(f"/automations/{auto['id']}", spec)  # a busy sqlite server's 503 is asked again

    put(within_s)
    try:
        yield
    finally:
        put(90)


def test_states_reports_and_one_alert_per_run(stack, receiver, tmp_path) -> None:
    stack.ensure_worker()
    # the alert automations point at the receiver (what an operator does: export the URL, rerun up.sh)
    with_hook = dataclasses.replace(stack, env={**stack.env, "RECIPE_EMBED_WEBHOOK_URL": receiver.url})
    up = with_hook.script("up.sh", "--no-deploy")
    assert up.returncode == 0, up.stderr[-3000:]
    assert "automation recipe-embed-alert-outcomes" in up.stderr + up.stdout, up.stderr[-2000:]
    assert receiver.url not in up.stderr + up.stdout  # the webhook URL is a secret: never logged

    # the nightly's guard, visible: description, timezone, a readable concurrency-limit name
    nightly = stack.get("/deployments/name/train-and-evaluate/nightly")
    assert "CANCEL_NEW" in nightly["description"] and "concurrency limit 1" in nightly["description"]
    assert nightly["schedules"][0]["schedule"]["timezone"] == "UTC"
    assert nightly["global_concurrency_limit"]["name"] == "train-and-evaluate nightly: 1 run at a time, CANCEL_NEW"

    tag = uuid.uuid4().hex[:8]
    own = {"registry": {"model_name": f"recipe-embedder-alerts-{tag}"}, "tracking": {"experiment": f"alerts-{tag}"}}
    cpu = {**own, "training": {"device": "cpu"}}
    runs: list[tuple[str, str, str, str]] = []  # (expected message word, deployment, flow run id, flow run name)

    def run(deployment: str, parameters: dict[str, Any], word: str, state_type: str, timeout_s: float = 900) -> dict:
        fr = stack.run_deployment(deployment, parameters)
        done = stack.wait_state(fr, ENDED, timeout_s)
        assert done["state"]["type"] == state_type, done["state"]
        runs.append((word, deployment.split("/")[1], fr, done["name"]))
        got = receiver.wait_count(len(runs), 180)  # each run's message before the next run starts: the order
        print(f"{word}: message {got[-1][0] - _end_time(done):.1f}s after the run ended: {got[-1][1]['text']}")
        return done

    promoted = run("train-and-evaluate/smoke", {"profile": "smoke", "overrides": cpu}, "PROMOTED", "COMPLETED")
    skipped = run("train-and-evaluate/smoke", {"profile": "smoke", "overrides": cpu}, "SKIPPED", "COMPLETED")
    rejected = run("train-and-evaluate/manual", {"profile": "smoke-worse", "overrides": cpu}, "REJECTED", "COMPLETED")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bad = {**cpu, "paths": {"data_dir": str(blocker / "data")}}
    failed = run("train-and-evaluate/manual", {"profile": "smoke", "overrides": bad}, "FAILED", "FAILED", 300)

    # the state is the outcome, the decision line its message, and the report says the same
    for done, name, head in (
        (promoted, "Promoted", "PROMOTED (version 1)"),
        (skipped, "Skipped", "SKIPPED training: "),
        (rejected, "Rejected", "KEPT champion (version 1): map@100 at 384 -"),
    ):
        state = done["state"]
        assert state["name"] == name and (state["message"] or "").startswith(head), state
        (art,) = stack.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [done["id"]]}}})
        assert f"**Decision:** {state['message']}" in art["data"]
    assert "promotion" not in (failed["state"]["message"] or "") and "a-file" in (failed["state"]["message"] or "")
    smoke_card = _latest_report(stack, "train-and-evaluate-smoke-report")
    assert smoke_card["flow_run_id"] == skipped["id"]
    assert smoke_card["description"].startswith("Skipped") and skipped["state"]["message"] in smoke_card["description"]
    manual_card = _latest_report(stack, "train-and-evaluate-manual-report")
    assert manual_card["description"].startswith("Rejected")
    assert {"evaluate-candidate", "evaluate-base"} <= _task_names(stack, promoted["id"])
    assert {"evaluate-candidate", "evaluate-base", "evaluate-champion"} <= _task_names(stack, rejected["id"])

    # the Prefect UI's runs list shows the outcomes by name, as a person sees them (headless Chromium);
    # without a browser this is skipped at the end, so the crash below is still checked
    no_browser = browser_missing()
    if not no_browser:
        with chromium() as driver:
            driver.get(stack.api.removesuffix("/api") + "/runs")
            for done in (promoted, skipped, rejected):
                wait_text(driver, done["name"])  # the flow run's name, then its state name beside it
            for state_name in ("Promoted", "Skipped", "Rejected"):
                wait_text(driver, state_name)

    # A host crash: the worker and the flow-run process (and its training child) die with SIGKILL while a
    # nightly run trains. Its heartbeats stop; the automation of infra/automations/ marks it Crashed once
    # they stop (90 s after the last one as up.sh applies it; narrowed here, see _crash_window), which
    # releases the nightly deployment's concurrency slot.
    long = {"profile": "smoke", "overrides": {**own, "training": {"device": "cpu", "seed": 11, "epochs": 20}}}
    with _crash_window(stack, CRASH_WINDOW_S):
        fr = stack.run_deployment("train-and-evaluate/nightly", long)
        stack.wait_label(fr, "mlflow.run_id", 600)
        assert stack.flow_run(fr)["state"]["type"] == "RUNNING"
        kill_host(stack, fr)
        crashed = stack.wait_state(fr, ENDED, 300)
    assert crashed["state"]["type"] == "CRASHED", crashed["state"]
    assert "heartbeat" in (crashed["state"].get("message") or ""), crashed["state"]
    runs.append(("CRASHED", "nightly", fr, crashed["name"]))
    got = receiver.wait_count(len(runs), 180)
    last_message = got[-1][0]
    print(f"CRASHED: message {last_message - _end_time(crashed):.1f}s after the run ended: {got[-1][1]['text']}")

    # up.sh brings the worker back (its PID file names a dead process); the next nightly is not refused
    up = stack.script("up.sh", "--no-deploy")
    assert up.returncode == 0, up.stderr[-3000:]
    nxt = stack.run_deployment("train-and-evaluate/nightly", long)
    state = stack.wait_state(nxt, {"RUNNING", *ENDED}, 300)["state"]
    assert state["type"] == "RUNNING", state
    _cancel(stack, nxt)

    # exactly one message per run, in order, each naming its run and deployment; a late duplicate would
    # show here (at least 10 s after the last message)
    time.sleep(max(0.0, 10 - (time.time() - last_message)))
    texts = [m["text"] for _, m in receiver.messages]
    print("received:\n" + "\n".join(texts))
    assert len(texts) == len(runs), texts
    for text, (word, deployment, _, name) in zip(texts, runs, strict=True):
        assert re.match(rf"recipe-embed {deployment} \d{{4}}-\d{{2}}-\d{{2}}: ", text), text
        assert word in text and name in text, (word, name, text)
    assert "no champion yet" in texts[0] and "/#/experiments/" in texts[0]
    assert re.search(
        r"REJECTED v2, champion v1 kept \(-\d\.\d{3} \[-\d\.\d{3}, -?\d\.\d{3}\] eval map@100 at 384", texts[2]
    )
    if no_browser:
        require_browser()  # skipped here (failed in CI) only after everything else was checked
