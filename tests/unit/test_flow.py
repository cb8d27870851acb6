"""The train-and-evaluate flow on a temporary Prefect API, with every pipeline stage monkeypatched."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from flows import train_and_evaluate as fte
from pipelines import report as rpt
from pipelines import skip, stages
from pipelines.config import ConfigError
from pipelines.promotion import Decision
from tasks import stages as t

DIMS = (384, 256, 128, 64)


def _metrics(value: float) -> dict[str, float]:
    return {f"dim_{d}_cosine_{m}": value + d / 10_000 for d in DIMS for m in ("map@100", "ndcg@10")}


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


class FakeStages:
    """Stand-ins for pipelines.stages that record calls; promote_stage really takes the lock."""

    def __init__(self, tmp_path: Path, key: str = "k1", skip: str | None = None, fail_train: bool = False):
        self.tmp_path, self.key, self.skip, self.fail_train = tmp_path, key, skip, fail_train
        self.calls: list[str] = []
        self.synth_runs = 0
        self.ended: list[tuple[str, str]] = []
        self.lock_held = False
        self.marked: list[tuple[str, str]] = []
        self.flow_run_ids: list[str | None] = []
        self.reconciled: list[tuple[Any, Any]] = []
        self.fail_reconcile = False

    def install(self, mp: pytest.MonkeyPatch) -> None:
        mp.setattr(stages, "dataset_key", lambda cfg: self.key)
        mp.setattr(stages, "synthesize_stage", self.synthesize)
        mp.setattr(stages, "synthesize_or_reuse", self.synthesize_or_reuse)
        mp.setattr(stages, "dataset_is_complete", lambda p: (Path(p) / "manifest.json").exists())
        mp.setattr(stages, "start_run_stage", self.start_run)
        mp.setattr("pipelines.reconcile.reconcile", self.reconcile)
        mp.setattr(skip, "should_skip_training", lambda cfg: self._call("skip_check", self.skip))
        mp.setattr(skip, "mark_skipped_stage", lambda cfg, run_id, reason: self.marked.append((run_id, reason)))
        mp.setattr(stages, "default_model_root", lambda cfg: self.tmp_path / "models" / "m1")
        mp.setattr(t, "train_in_subprocess", self.train)
        mp.setattr(stages, "evaluate_stage", self.evaluate)
        mp.setattr(stages, "log_stage", lambda *a, **k: self._call("log", "models:/recipe-embedder/2"))
        mp.setattr(stages, "promote_stage", self.promote)
        mp.setattr(stages, "end_run_stage", lambda run_id, status="FINISHED": self.ended.append((run_id, status)))
        mp.setattr(stages, "tracking_ui_url", lambda cfg, run_id: f"http://mlflow.test/#/runs/{run_id}")
        mp.setattr("pipelines.tracking.connect", lambda cfg: "sqlite://")

    def start_run(self, cfg, run_name=None, flow_run_id=None) -> str:
        self.flow_run_ids.append(flow_run_id)
        return self._call("start", "run-123")

    def reconcile(self, cfg, flow_run_state=None, lock=None, dry_run=False):
        self.reconciled.append((flow_run_state, lock))
        if self.fail_reconcile:
            raise RuntimeError("tracking store unreachable")
        return []

    def _call(self, name: str, result: Any) -> Any:
        self.calls.append(name)
        return result

    def synthesize(self, cfg) -> str:
        self.synth_runs += 1
        out = self.tmp_path / "datasets" / self.key
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text("{}")
        return self._call("synthesize", str(out))

    def synthesize_or_reuse(self, cfg) -> tuple[str, bool]:
        reused = stages.dataset_is_complete(self.tmp_path / "datasets" / self.key)  # the fake installed above
        return self.synthesize(cfg), reused

    def train(self, cfg, data_dir, out_dir, **kw) -> str:
        self.calls.append("train")
        if self.fail_train:
            raise RuntimeError("boom in training")
        Path(out_dir, "model").mkdir(parents=True, exist_ok=True)
        return str(out_dir)

    def evaluate(self, cfg, model, data_dir, out_json=None) -> dict[str, float]:
        self.calls.append(f"evaluate:{'base' if model == cfg.model.base_model else 'candidate'}")
        return _metrics(0.30 if model == cfg.model.base_model else 0.60)

    def promote(self, cfg, run_id, model_uri, data_dir, candidate, lock=None, base=None, model_root=None, score=None):
        assert lock is not None
        with lock():
            self.lock_held = True
        self.calls.append("promote")
        # the real stage's shape: Decision.to_dict() plus the champion's re-scored metrics
        decision = Decision(
            True,
            "better than the champion (lower bound above the margin 0)",
            {384: 0.1, 256: 0.1, 128: 0.1, 64: 0.1},
            candidate_version="2",
            champion_version="1",
            delta=0.1,
            ci_low=0.08,
            ci_high=0.12,
            primary_dim=384,
        )
        return {**decision.to_dict(), "line": decision.line(), "champion_metrics": _metrics(0.50)}


def _overrides(tmp_path: Path) -> dict[str, Any]:
    return {"paths": {"data_dir": str(tmp_path / "data")}}


def test_full_run_report_artifact_and_cached_rerun(prefect_api, tmp_path, monkeypatch) -> None:
    fake = FakeStages(tmp_path)
    fake.install(monkeypatch)
    report = fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path))

    assert fake.calls == [
        "start", "synthesize", "skip_check", "train", "evaluate:candidate", "evaluate:base", "log", "promote"
    ]  # fmt: skip
    assert fake.lock_held and fake.ended == [("run-123", "FINISHED")]
    assert report["synthesis"] == "computed" and report["decision"]["promote"] is True
    assert report["metrics"]["champion"] == _metrics(0.50)
    assert report["mlflow_url"] == "http://mlflow.test/#/runs/run-123"
    json.dumps(report)  # the flow's result is plain data

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=5)
    md = next(a for a in artifact if a.key == fte.REPORT_KEY).data
    assert "| 384 | map@100 | 0.6384 | 0.5384 | 0.3384 |" in md and "run-123" in md
    assert "PROMOTED (version 2 over 1): map@100 at 384 +0.1000 [0.0800, 0.1200]" in md
    assert "dim 384 +0.1000, dim 256 +0.1000, dim 128 +0.1000, dim 64 +0.1000" in md

    # same inputs: synthesis comes from the cache and the stage is not run again
    again = fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path))
    assert again["synthesis"] == "cached" and fake.synth_runs == 1

    # a changed input (another dataset key) is computed again
    fake.key = "k2"
    changed = fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path))
    assert changed["synthesis"] == "computed" and fake.synth_runs == 2


def test_deleted_cached_dataset_is_rebuilt(prefect_api, tmp_path, monkeypatch) -> None:
    fake = FakeStages(tmp_path, key="k-del")
    fake.install(monkeypatch)
    fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path))
    (tmp_path / "datasets" / "k-del" / "manifest.json").unlink()
    report = fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path))
    assert report["synthesis"] == "computed" and fake.synth_runs == 2


def test_skip_when_champion_has_the_same_inputs(prefect_api, tmp_path, monkeypatch) -> None:
    fake = FakeStages(tmp_path, skip="champion v1 was trained on the same inputs")
    fake.install(monkeypatch)
    report = fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path))
    assert "train" not in fake.calls and "promote" not in fake.calls
    assert report["skipped"] == "champion v1 was trained on the same inputs"
    assert fake.marked == [("run-123", "champion v1 was trained on the same inputs")]  # decision=skipped
    assert fake.ended == [("run-123", "FINISHED")]
    assert "SKIPPED training" in rpt.to_markdown(report)


def test_failure_ends_the_mlflow_run_failed(prefect_api, tmp_path, monkeypatch) -> None:
    fake = FakeStages(tmp_path, fail_train=True)
    fake.install(monkeypatch)
    with pytest.raises(RuntimeError, match="boom in training"):
        fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path))
    assert fake.ended == [("run-123", "FAILED")]


def test_flow_reconciles_first_and_tags_its_run_with_the_flow_run_id(prefect_api, tmp_path, monkeypatch) -> None:
    fake = FakeStages(tmp_path, key="k-rec")
    fake.install(monkeypatch)
    fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path))
    assert len(fake.reconciled) == 1
    state_fn, lock = fake.reconciled[0]
    assert state_fn is t.prefect_flow_run_state and callable(lock)
    assert fake.flow_run_ids and fake.flow_run_ids[0]  # the Prefect flow run id reaches the MLflow run's tags
    assert t.prefect_flow_run_state(str(fake.flow_run_ids[0])) == "COMPLETED"  # what reconcile reads
    assert t.prefect_flow_run_state(str(uuid.uuid4())) == "DELETED"


def test_a_failing_reconcile_does_not_fail_the_flow(prefect_api, tmp_path, monkeypatch) -> None:
    fake = FakeStages(tmp_path, key="k-rec2")
    fake.fail_reconcile = True
    fake.install(monkeypatch)
    report = fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path))
    assert report["decision"]["promote"] is True and fake.ended == [("run-123", "FINISHED")]


@pytest.mark.parametrize("hook", [fte.on_failure, fte.on_crashed, fte.on_cancellation])
def test_hooks_never_raise_when_mlflow_is_down(hook, monkeypatch, caplog) -> None:
    from prefect.client.schemas.objects import FlowRun

    def down(*_a, **_k):  # type: ignore[no-untyped-def]
        raise ConnectionError("MLflow tracking server at http://127.0.0.1:1 is unreachable")

    monkeypatch.setattr(fte, "_RUN_IDS", {})
    run = FlowRun(flow_id=uuid.uuid4(), labels={fte.RUN_ID_LABEL: "abc"}, parameters={"profile": "smoke"})
    monkeypatch.setattr("pipelines.tracking.connect", down)
    with caplog.at_level(logging.WARNING):
        hook(None, run, None)  # must not raise
    assert "could not end the MLflow run" in caplog.text and "reconcile" in caplog.text


def test_bad_override_fails_with_one_line(prefect_api, tmp_path, monkeypatch) -> None:
    fake = FakeStages(tmp_path)
    fake.install(monkeypatch)
    with pytest.raises(ConfigError, match=r"invalid flow parameters: training\.epochz: unknown key"):
        fte.train_and_evaluate(profile="smoke", overrides={"training": {"epochz": 1}})
    assert fake.calls == []


def test_parameter_schema_is_a_form() -> None:
    schema = fte.train_and_evaluate.parameters.model_dump()
    props = schema["properties"]
    assert set(props) == {"profile", "overrides", "run_name"}
    assert "smoke" in json.dumps(props["profile"]) and "auto" in json.dumps(props["profile"])


def test_main_rejects_bad_set_before_running(capsys) -> None:
    assert fte.main(["--profile", "smoke", "--set", "training.epochz=1"]) == 2
    assert "training.epochz: unknown key" in capsys.readouterr().err


def test_text_report_shows_table_decision_and_mlflow_hint() -> None:
    report = {
        "dims": [384],
        "metrics": {"candidate": _metrics(0.6), "champion": None, "base": _metrics(0.3)},
        "decision": {"promote": False, "reason": "no gain", "champion_version": "3"},
        "run_id": "r1",
        "mlflow_url": None,
        "synthesis": "cached",
        "tracking_uri": "sqlite:////srv/recipes/mlflow.db",
    }
    text = rpt.to_text(report)
    assert "0.6384" in text and "0.3384" in text and "–" in text
    assert "KEPT champion (version 3): no gain" in text
    assert "mlflow ui --backend-store-uri sqlite:////srv/recipes/mlflow.db" in text


def _flow_run(flow_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def test_final_state_is_named_after_the_outcome_with_the_decision_line(prefect_api, tmp_path, monkeypatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    from flows import outcome as out

    fake = FakeStages(tmp_path, key="k-state")
    fake.install(monkeypatch)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(out, "emit", sent.extend)
    state = fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path), return_state=True)
    report = state.result()
    line = rpt.decision_line(report)
    assert line.startswith("PROMOTED (version 2 over 1)")
    stored = _flow_run(state.state_details.flow_run_id).state
    assert (stored.type.value, stored.name, stored.message) == ("COMPLETED", "Promoted", line)

    with get_client(sync_client=True) as client:
        flow_run_id = state.state_details.flow_run_id
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    (art,) = [a for a in arts if a.key == "train-and-evaluate-local-report"]
    assert art.description.startswith("Promoted") and line in art.description
    assert "eval split" in art.data
    assert {"evaluate-candidate", "evaluate-base"} <= {tr.name for tr in tasks}
    assert [e["event"] for e in sent] == ["recipe-embed.candidate.promoted"]
    assert sent[0]["payload"]["version"] == "2" and "PROMOTED v2 over v1" in sent[0]["payload"]["message"]

    fake.skip = "champion v2 was trained on the same inputs"
    sent.clear()
    state = fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path), return_state=True)
    stored = _flow_run(state.state_details.flow_run_id).state
    assert (stored.name, stored.message) == ("Skipped", "SKIPPED training: champion v2 was trained on the same inputs")
    assert sent and sent[0]["event"] == "recipe-embed.candidate.skipped"


def test_a_failing_promotion_fails_the_run_with_the_reason(prefect_api, tmp_path, monkeypatch) -> None:
    fake = FakeStages(tmp_path, key="k-promo-fail")
    fake.install(monkeypatch)

    def broken(*_a: Any, **_k: Any) -> dict[str, Any]:
        raise ConnectionError("registry unreachable")

    monkeypatch.setattr(stages, "promote_stage", broken)
    monkeypatch.setattr(t.promote, "retries", 0)
    state = fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path), return_state=True)
    stored = _flow_run(state.state_details.flow_run_id).state
    assert stored.type.value == "FAILED"
    assert "promotion failed: ConnectionError: registry unreachable" in (stored.message or "")
    assert fake.ended == [("run-123", "FAILED")]


@pytest.mark.parametrize("skip_reason", [None, "champion v1 was trained on the same inputs"])
def test_the_flow_and_recipe_embed_run_call_the_same_stage_sequence(
    prefect_api, tmp_path, monkeypatch, skip_reason
) -> None:
    """Both entry points hand their runner to the one ``sequence.run_stages``, and the stages they reach,
    in order, are the same: reconcile first, the skip check before training, the same report."""
    from typer.testing import CliRunner

    from pipelines import sequence
    from pipelines.cli import app

    runners: list[sequence.Runner] = []
    real = sequence.run_stages

    def spy(cfg, runner, **kwargs):  # type: ignore[no-untyped-def]
        runners.append(runner)
        return real(cfg, runner, **kwargs)

    monkeypatch.setattr(sequence, "run_stages", spy)
    flow = FakeStages(tmp_path / "flow", skip=skip_reason)
    flow.install(monkeypatch)
    flow_report = fte.train_and_evaluate(profile="smoke", overrides=_overrides(tmp_path / "flow"))

    cli = FakeStages(tmp_path / "cli", skip=skip_reason)
    cli.install(monkeypatch)
    monkeypatch.setattr(
        stages, "train_stage", lambda cfg, data_dir, out_dir=None, resume=False: cli.train(cfg, data_dir, out_dir)
    )
    r = CliRunner().invoke(app, ["run", "-p", "smoke", "--set", f"paths.data_dir={tmp_path / 'cli' / 'data'}"])
    assert r.exit_code == 0, r.output

    assert runners == [t.FLOW_RUNNER, runners[1]] and isinstance(runners[1], sequence.Runner)
    assert cli.calls == flow.calls and len(cli.reconciled) == len(flow.reconciled) == 1
    assert cli.marked == flow.marked and cli.ended == flow.ended == [("run-123", "FINISHED")]
    if skip_reason:
        assert "train" not in cli.calls and "SKIPPED training" in r.output
        assert flow_report["skipped"] == skip_reason
    else:
        assert cli.calls[-1] == "promote" and "PROMOTED (version 2 over 1)" in r.output
