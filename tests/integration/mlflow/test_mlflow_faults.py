"""Faults around the registry: racing registrations and promotions, broken incumbents, dead owners."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow_test_helpers import alias_version, make_candidate, metrics, registered_versions

from pipelines import reconcile as rc
from pipelines import registry, tracking
from pipelines.config import PipelineConfig

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def _no_champion(uri: str) -> dict[str, float]:
    raise AssertionError(f"no champion expected, yet {uri} was re-evaluated")


# --- two processes register one run ------------------------------------------------------------


def _results_of(procs: list[Any], results: Any) -> list[Any]:
    """Start ``procs``, collect one result per process from the ``results`` queue, then reap them all."""
    for p in procs:
        p.start()
    try:
        return [results.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()


def _register(cfg_data: dict[str, Any], run_id: str, uri: str, barrier: Any, results: Any) -> None:
    from pipelines import registry, tracking
    from pipelines.config import PipelineConfig

    cfg = PipelineConfig.model_validate(cfg_data)
    tracking.connect(cfg)
    registry.find_version(tracking.client(cfg), cfg.registry.model_name, run_id)  # warm up
    barrier.wait(timeout=300)
    results.put(str(registry.register_version(cfg, run_id, uri).version))


@pytest.mark.mlflow_backends("embedded", "server")  # processes at once on one server
def test_two_processes_registering_one_run_make_one_version(mlflow_cfg: PipelineConfig, logged_model_uri: str) -> None:
    run_id = make_candidate(mlflow_cfg, metrics(0.5), logged_model_uri)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    data = mlflow_cfg.model_dump(mode="json")
    procs = [ctx.Process(target=_register, args=(data, run_id, logged_model_uri, barrier, results)) for _ in range(3)]
    got = _results_of(procs, results)
    assert len(set(got)) == 1, got
    assert registered_versions(mlflow_cfg) == got[:1]


# --- two promotions with different data dirs, one tracking URI -----------------------------------


def _promote_timed(
    cfg_data: dict[str, Any], run_id: str, uri: str, cand: dict[str, float], barrier: Any, results: Any
) -> None:
    from pipelines import registry, tracking
    from pipelines.config import PipelineConfig

    cfg = PipelineConfig.model_validate(cfg_data)
    tracking.connect(cfg)
    registry.get_alias(tracking.client(cfg), cfg.registry.model_name, cfg.registry.champion_alias)
    spans: list[tuple[float, float]] = []
    real_register = registry.register_version

    def timed_register(*args: Any, **kwargs: Any) -> Any:  # the first step inside the promotion lock
        start = time.time()
        time.sleep(1.5)
        out = real_register(*args, **kwargs)
        spans.append((start, time.time()))
        return out

    registry.register_version = timed_register  # type: ignore[assignment]

    from mlflow_test_helpers import scores

    def evaluate(model_uri: str) -> Any:  # per-query scores at the model's level (no noise)
        if model_uri == uri:
            return scores(cand["dim_384_cosine_map@100"])  # the candidate itself (its logged-model URI)
        _, name, version = model_uri.rsplit("/", 2)
        mv = tracking.client(cfg).get_model_version(name, version)
        return scores(tracking.read_metrics(mv.tags[registry.RUN_ID_TAG])["dim_384_cosine_map@100"])

    barrier.wait(timeout=300)
    d = registry.promote(cfg, run_id, uri, cand, evaluate)
    results.put((run_id, d.to_dict(), spans))


@pytest.mark.mlflow_backends("embedded", "server")  # processes at once on one server
def test_promotions_from_two_data_dirs_on_one_tracking_uri_exclude_each_other(
    mlflow_cfg: PipelineConfig, logged_model_uri: str, tmp_path: Path
) -> None:
    first = make_candidate(mlflow_cfg, metrics(0.5), logged_model_uri)
    assert registry.promote(mlflow_cfg, first, logged_model_uri, metrics(0.5), _no_champion).promote
    a, b = metrics(0.6), metrics(0.7)
    run_a = make_candidate(mlflow_cfg, a, logged_model_uri)
    run_b = make_candidate(mlflow_cfg, b, logged_model_uri)
    cfg_a = mlflow_cfg.model_copy(update={"paths": mlflow_cfg.paths.model_copy(update={"data_dir": tmp_path / "a"})})
    cfg_b = mlflow_cfg.model_copy(update={"paths": mlflow_cfg.paths.model_copy(update={"data_dir": tmp_path / "b"})})
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_promote_timed, args=(c.model_dump(mode="json"), r, logged_model_uri, m, barrier, results))
        for c, r, m in ((cfg_a, run_a, a), (cfg_b, run_b, b))
    ]
    out = _results_of(procs, results)
    spans = sorted(s for _, _, ss in out for s in ss)
    assert len(spans) == 2
    assert spans[0][1] <= spans[1][0], f"critical sections overlap: {spans}"  # no lost update
    champion = alias_version(mlflow_cfg, "champion")
    decisions = {d["candidate_version"]: d for _, d, _ in out}
    assert decisions[champion]["promote"] is True
    c = tracking.client(mlflow_cfg)
    assert c.get_model_version(mlflow_cfg.registry.model_name, champion).tags["decision"] == "promoted"
    # the later one compared with what the earlier one left, not with the stale champion
    later = max(out, key=lambda o: o[2][0][0])[1]
    earlier = min(out, key=lambda o: o[2][0][0])[1]
    expected = earlier["candidate_version"] if earlier["promote"] else earlier["champion_version"]
    assert later["champion_version"] == expected


# --- broken incumbents --------------------------------------------------------------------------


def test_alias_on_a_deleted_version_is_no_champion(mlflow_cfg: PipelineConfig, logged_model_uri: str) -> None:
    old = make_candidate(mlflow_cfg, metrics(0.5), logged_model_uri)
    registry.promote(mlflow_cfg, old, logged_model_uri, metrics(0.5), _no_champion)
    v = alias_version(mlflow_cfg, "champion")
    assert v is not None
    tracking.client(mlflow_cfg).delete_model_version(mlflow_cfg.registry.model_name, v)
    new = make_candidate(mlflow_cfg, metrics(0.4), logged_model_uri)
    d = registry.promote(mlflow_cfg, new, logged_model_uri, metrics(0.4), _no_champion)
    assert d.promote and d.reason == "no champion yet" and d.champion_version is None
    assert alias_version(mlflow_cfg, "champion") == d.candidate_version


def test_champion_lacking_the_metric_gives_a_clear_rejection(mlflow_cfg: PipelineConfig, logged_model_uri: str) -> None:
    old = make_candidate(mlflow_cfg, metrics(0.5), logged_model_uri)
    registry.promote(mlflow_cfg, old, logged_model_uri, metrics(0.5), _no_champion)
    champion = alias_version(mlflow_cfg, "champion")
    new = make_candidate(mlflow_cfg, metrics(0.6), logged_model_uri)
    partial = {k: v for k, v in metrics(0.5).items() if not k.startswith("dim_384_")}
    d = registry.promote(mlflow_cfg, new, logged_model_uri, metrics(0.6), lambda _uri: partial)
    assert d.promote is False and "lack dim_384_cosine_map@100" in d.reason
    assert alias_version(mlflow_cfg, "champion") == champion
    tags = tracking.client(mlflow_cfg).get_model_version(mlflow_cfg.registry.model_name, d.candidate_version).tags
    assert tags["decision"] == "rejected" and "lack" in tags["decision_reason"]


# --- reconciliation -----------------------------------------------------------------------------


def test_reconcile_tags_versions_left_without_a_decision(mlflow_cfg: PipelineConfig, logged_model_uri: str) -> None:
    c = tracking.client(mlflow_cfg)
    name = mlflow_cfg.registry.model_name
    run_a = make_candidate(mlflow_cfg, metrics(0.5), logged_model_uri)
    run_b = make_candidate(mlflow_cfg, metrics(0.6), logged_model_uri)
    va = str(registry.register_version(mlflow_cfg, run_a, logged_model_uri).version)  # died before tagging
    vb = str(registry.register_version(mlflow_cfg, run_b, logged_model_uri).version)
    c.set_registered_model_alias(name, "champion", va)  # died after the alias, before its tags
    found = rc.reconcile_versions(mlflow_cfg, dry_run=True)
    assert {f.id: f.action for f in found} == {va: "would tag", vb: "would tag"}
    assert "decision" not in c.get_model_version(name, vb).tags
    found = rc.reconcile_versions(mlflow_cfg)
    assert {f.id for f in found} == {va, vb}
    assert c.get_model_version(name, va).tags["decision"] == "promoted"
    tags_b = c.get_model_version(name, vb).tags
    assert tags_b["decision"] == "unknown" and f"recipe-embed promote --run-id {run_b}" in tags_b["decision_reason"]
    assert rc.reconcile_versions(mlflow_cfg) == []  # settled: nothing left to do


def _run_owned_by_a_process_that_dies(cfg: PipelineConfig) -> str:
    code = (
        "import os, sys\nfrom pipelines.config import PipelineConfig\nfrom pipelines import stages\n"
        "cfg = PipelineConfig.model_validate_json(sys.stdin.read())\n"
        "print(stages.start_run_stage(cfg, run_name='doomed'), flush=True)\nos._exit(9)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], input=cfg.model_dump_json(), capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 9, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_reconcile_ends_runs_whose_owner_is_gone(mlflow_cfg: PipelineConfig) -> None:
    from pipelines import stages

    tracking.connect(mlflow_cfg)
    dead = _run_owned_by_a_process_that_dies(mlflow_cfg)
    alive = stages.start_run_stage(mlflow_cfg, run_name="alive")  # owned by this live process
    crashed_flow = stages.start_run_stage(mlflow_cfg, run_name="flow", flow_run_id="fr-crashed")
    other_host = tracking.start_run(
        mlflow_cfg, run_name="elsewhere", tags={rc.HOST_TAG: "another-host", rc.PID_TAG: "1"}
    )
    states = {"fr-crashed": "CRASHED"}
    found = {f.id: f for f in rc.reconcile_runs(mlflow_cfg, flow_run_state=states.get)}
    assert found[dead].action == "ended" and "is gone" in found[dead].reason
    assert found[crashed_flow].action == "ended" and "crashed" in found[crashed_flow].reason
    assert found[alive].action == "kept" and found[other_host].action == "kept"
    c = tracking.client(mlflow_cfg)
    assert c.get_run(dead).info.status == "FAILED"
    assert "is gone" in c.get_run(dead).data.tags[rc.END_REASON_TAG]
    assert c.get_run(crashed_flow).info.status == "FAILED"
    assert c.get_run(alive).info.status == "RUNNING" and c.get_run(other_host).info.status == "RUNNING"
    for run_id in (alive, other_host):
        tracking.end_run(run_id)
