"""Champion/challenger promotion against the embedded sqlite store AND a real ``mlflow server``."""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
from mlflow_test_helpers import (
    alias_version,
    make_candidate,
    promote_worker,
    registered_versions,
    scores,
    stored_metrics_evaluate,
)

from pipelines import promotion, registry, tracking
from pipelines.config import PipelineConfig

pytestmark = pytest.mark.integration


def _never_called(uri: str) -> dict[str, float]:
    raise AssertionError(f"there is no champion to re-evaluate, yet evaluate({uri!r}) was called")


def _champion_of(cfg: PipelineConfig, uri: str, m, noise: float = 0.0, seed: int = 0) -> str:  # type: ignore[no-untyped-def]
    run_id = make_candidate(cfg, m, uri, noise=noise, seed=seed)
    d = registry.promote(cfg, run_id, uri, m, _never_called)
    assert d.promote, d.reason
    return run_id


def test_first_candidate_becomes_champion(mlflow_cfg: PipelineConfig, logged_model_uri: str) -> None:
    m = scores(0.5)
    run_id = make_candidate(mlflow_cfg, m, logged_model_uri)

    d = registry.promote(mlflow_cfg, run_id, logged_model_uri, m, _never_called)

    assert d.promote and d.champion_version is None and d.reason == "no champion yet"
    assert alias_version(mlflow_cfg, "champion") == d.candidate_version
    assert alias_version(mlflow_cfg, "previous-champion") is None
    c = tracking.client(mlflow_cfg)
    assert c.get_run(run_id).data.tags["decision"] == "promoted"
    assert c.get_run(run_id).data.tags["registered_version"] == d.candidate_version
    mv = c.get_model_version(mlflow_cfg.registry.model_name, str(d.candidate_version))
    assert mv.tags["decision"] == "promoted" and mv.tags[registry.RUN_ID_TAG] == run_id
    info = registry.champion(mlflow_cfg)
    assert info is not None and info["version"] == d.candidate_version and info["run_id"] == run_id
    assert info["metrics"]["dim_384_cosine_map@100"] == pytest.approx(0.5)
    name = mlflow_cfg.registry.model_name
    assert mv.description == d.line() == f"PROMOTED (version {d.candidate_version}): no champion yet"
    run = c.get_run(run_id)
    assert run.data.tags["mlflow.note.content"] == mv.description
    assert run.data.tags[registry.CHAMPION_TAG] == "true"
    assert run.info.run_name.startswith(f"promoted-v{d.candidate_version}")
    assert all(v for v in run.data.tags.values()) and "decision_champion_version" not in run.data.tags
    described = c.get_registered_model(name).description
    assert "recipe-embed" in described and f'load_model("models:/{name}@champion")' in described


def test_better_candidate_promoted_and_old_champion_kept_as_previous(
    mlflow_cfg: PipelineConfig, logged_model_uri: str, tmp_path: Path
) -> None:
    old_run = _champion_of(mlflow_cfg, logged_model_uri, scores(0.5))
    old = alias_version(mlflow_cfg, "champion")
    better = scores(0.6)
    run_id = make_candidate(mlflow_cfg, better, logged_model_uri)
    calls: list[str] = []

    def evaluate(uri: str):  # type: ignore[no-untyped-def]
        calls.append(uri)
        return stored_metrics_evaluate(uri)

    d = registry.promote(mlflow_cfg, run_id, logged_model_uri, better, evaluate)

    assert calls == [f"models:/{mlflow_cfg.registry.model_name}/{old}"]  # scored once, reused under the lock
    assert d.promote and d.champion_version == old and d.scored_against == old
    assert d.deltas[384] == pytest.approx(0.1) and d.delta == pytest.approx(0.1)
    assert alias_version(mlflow_cfg, "champion") == d.candidate_version != old
    assert alias_version(mlflow_cfg, "previous-champion") == old
    c = tracking.client(mlflow_cfg)
    run = c.get_run(run_id)
    assert run.data.metrics["champion_dim_384_cosine_map_at_100"] == pytest.approx(0.5)
    assert json.loads(run.data.tags["decision_deltas"])["384"] == pytest.approx(0.1)
    assert float(run.data.tags["decision_delta"]) == pytest.approx(0.1)
    assert float(run.data.tags["decision_ci_low"]) <= 0.1 <= float(run.data.tags["decision_ci_high"])
    assert run.data.tags["eval_saturated"] == "false"
    assert run.data.tags["decision_line"].startswith(f"PROMOTED (version {d.candidate_version} over {old}): map@100")
    mv = c.get_model_version(mlflow_cfg.registry.model_name, str(d.candidate_version))
    assert mv.description == d.line()
    # the former champion's version says it was superseded; the champion tag moved to the new run
    was = c.get_model_version(mlflow_cfg.registry.model_name, str(old)).description
    assert was.startswith(f"SUPERSEDED by version {d.candidate_version} (") and f"PROMOTED (version {old})" in was
    assert run.data.tags[registry.CHAMPION_TAG] == "true"
    assert registry.CHAMPION_TAG not in c.get_run(old_run).data.tags
    # the paired per-query scores (candidate and re-scored champion) are kept
    import pandas as pd

    local = c.download_artifacts(run_id, "decision/per_query_ap.parquet", str(tmp_path))
    frame = pd.read_parquet(local)
    assert frame["champion_ap_dim_384"].mean() == pytest.approx(0.5)
    assert frame["candidate_ap_dim_384"].mean() == pytest.approx(0.6)


def test_decision_tags_are_written_before_the_alias_moves(mlflow_cfg: PipelineConfig, logged_model_uri: str) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipelines.errors import TrackingError

    m = scores(0.5)
    run_id = make_candidate(mlflow_cfg, m, logged_model_uri)

    def down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise MlflowException("registry went away")

    # a patch of its own: undoing the test's monkeypatch would also drop the fixtures' tracking URI
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MlflowClient, "set_registered_model_alias", down)
        with pytest.raises(TrackingError, match="registry went away"):
            registry.promote(mlflow_cfg, run_id, logged_model_uri, m, _never_called)
    c = tracking.client(mlflow_cfg)
    assert c.get_run(run_id).data.tags["decision"] == "promoted"  # recorded, though the alias never moved
    assert alias_version(mlflow_cfg, "champion") is None


def test_worse_candidate_rejected_and_alias_unchanged(mlflow_cfg: PipelineConfig, logged_model_uri: str) -> None:
    _champion_of(mlflow_cfg, logged_model_uri, scores(0.6))
    old = alias_version(mlflow_cfg, "champion")
    worse = scores(0.5)
    run_id = make_candidate(mlflow_cfg, worse, logged_model_uri)

    d = registry.promote(mlflow_cfg, run_id, logged_model_uri, worse, stored_metrics_evaluate)

    assert not d.promote and "worse than the champion" in d.reason
    assert d.delta == pytest.approx(-0.1) and d.ci_high is not None and d.ci_high < 0
    assert alias_version(mlflow_cfg, "champion") == old
    assert alias_version(mlflow_cfg, "previous-champion") is None
    c = tracking.client(mlflow_cfg)
    mv = c.get_model_version(mlflow_cfg.registry.model_name, str(d.candidate_version))
    assert mv.tags["decision"] == "rejected" and mv.tags["decision_reason"] == d.reason
    assert "rejection_reason" not in mv.tags
    assert json.loads(mv.tags["decision_deltas"])["384"] == pytest.approx(-0.1)
    assert mv.description.startswith(f"REJECTED: KEPT champion (version {old}): map@100 at 384 -0.1000")
    run = c.get_run(run_id)
    assert run.data.tags["decision"] == "rejected" and run.data.tags["mlflow.note.content"] == mv.description
    assert run.info.run_name.startswith(f"rejected-v{d.candidate_version}")
    assert registry.CHAMPION_TAG not in run.data.tags


def test_champion_is_reevaluated_not_read_from_old_metrics(mlflow_cfg: PipelineConfig, logged_model_uri: str) -> None:
    # The champion logged 0.9 on older data; on today's eval set it scores 0.4.
    _champion_of(mlflow_cfg, logged_model_uri, scores(0.9))
    cand = scores(0.5)
    run_id = make_candidate(mlflow_cfg, cand, logged_model_uri)

    d = registry.promote(mlflow_cfg, run_id, logged_model_uri, cand, lambda uri: scores(0.4))

    assert d.promote and d.deltas[384] == pytest.approx(0.1)
    assert alias_version(mlflow_cfg, "champion") == d.candidate_version


def test_nan_candidate_never_promoted(mlflow_cfg: PipelineConfig, logged_model_uri: str) -> None:
    nan_first = scores(0.9, **{"dim_128_cosine_ndcg@10": math.nan})
    run_id = make_candidate(mlflow_cfg, nan_first, logged_model_uri)
    d = registry.promote(mlflow_cfg, run_id, logged_model_uri, nan_first, _never_called)
    assert not d.promote and "non-finite" in d.reason
    assert alias_version(mlflow_cfg, "champion") is None  # not even as the first model

    _champion_of(mlflow_cfg, logged_model_uri, scores(0.5))
    old = alias_version(mlflow_cfg, "champion")
    nan_better = scores(0.99, **{"dim_64_cosine_map@100": math.nan})
    run_id = make_candidate(mlflow_cfg, nan_better, logged_model_uri)
    d = registry.promote(mlflow_cfg, run_id, logged_model_uri, nan_better, stored_metrics_evaluate)
    assert not d.promote and alias_version(mlflow_cfg, "champion") == old


def test_rerun_after_crash_registers_no_duplicate_version(mlflow_cfg: PipelineConfig, logged_model_uri: str) -> None:
    m = scores(0.5)
    run_id = make_candidate(mlflow_cfg, m, logged_model_uri)
    # A promotion that died after registering, before any alias was set:
    first = registry.register_version(mlflow_cfg, run_id, logged_model_uri)
    assert alias_version(mlflow_cfg, "champion") is None

    d1 = registry.promote(mlflow_cfg, run_id, logged_model_uri, m, _never_called)
    d2 = registry.promote(mlflow_cfg, run_id, logged_model_uri, m, _never_called)

    assert registered_versions(mlflow_cfg) == [str(first.version)]
    assert d1.candidate_version == d2.candidate_version == str(first.version)
    assert d1.promote and d2.promote and "already the champion" in d2.reason
    assert alias_version(mlflow_cfg, "champion") == str(first.version)


# Both beat the champion (0.5) clearly; "best" beats "good" by point estimate (+0.02) but not clearly (a
# tie on the same catalog): the rule alone, applied against whoever is champion when the lock is taken,
# would leave the FIRST of the two as champion.
NOISE = 0.25
CHAMP, GOOD, BEST = (0.50, 3), (0.60, 1), (0.62, 2)


def _race_setup(cfg: PipelineConfig, uri: str):  # type: ignore[no-untyped-def]
    _champion_of(cfg, uri, scores(CHAMP[0], noise=NOISE, seed=CHAMP[1]), noise=NOISE, seed=CHAMP[1])
    good = scores(GOOD[0], noise=NOISE, seed=GOOD[1])
    best = scores(BEST[0], noise=NOISE, seed=BEST[1])
    # the test discriminates: best vs good alone is not a promotion
    assert not promotion.decide(best, good, cfg.registry, cfg.evaluation.dims).promote
    good_run = make_candidate(cfg, good, uri, noise=NOISE, seed=GOOD[1])
    best_run = make_candidate(cfg, best, uri, noise=NOISE, seed=BEST[1])
    return (good_run, good), (best_run, best)


@pytest.mark.parametrize("best_first", [True, False], ids=["best-first", "best-last"])
def test_racing_promotions_end_on_the_better_candidate_in_either_order(
    mlflow_cfg: PipelineConfig, logged_model_uri: str, best_first: bool
) -> None:
    """Deterministic race: the second promotion scores the champion, then, while it waits for the lock,
    the first one takes it and finishes."""
    (good_run, good), (best_run, best) = _race_setup(mlflow_cfg, logged_model_uri)
    stale = alias_version(mlflow_cfg, "champion")
    first, second = ((best_run, best), (good_run, good)) if best_first else ((good_run, good), (best_run, best))
    seen: dict[str, promotion.Decision] = {}

    @contextlib.contextmanager
    def racing_lock():  # type: ignore[no-untyped-def]
        seen["first"] = registry.promote(mlflow_cfg, first[0], logged_model_uri, first[1], stored_metrics_evaluate)
        yield

    late = registry.promote(
        mlflow_cfg, second[0], logged_model_uri, second[1], stored_metrics_evaluate, lock=racing_lock
    )
    early = seen["first"]
    assert early.promote and early.champion_version == stale
    assert late.scored_against == stale and late.champion_version == early.candidate_version
    best_version = (early if best_first else late).candidate_version
    assert alias_version(mlflow_cfg, "champion") == best_version
    assert late.promote is (not best_first)
    assert "meanwhile" in late.reason


@pytest.mark.mlflow_backends("embedded", "server")  # processes at once on one server
@pytest.mark.parametrize("best_first", [True, False], ids=["best-first", "best-last"])
def test_concurrent_promotions_end_on_the_best_version(
    mlflow_cfg: PipelineConfig, logged_model_uri: str, best_first: bool
) -> None:
    (good_run, good), (best_run, best) = _race_setup(mlflow_cfg, logged_model_uri)
    stale = alias_version(mlflow_cfg, "champion")
    # Start order (the second starts 0.5 s later); the lock decides the real order.
    order = [(best_run, best), (good_run, good)] if best_first else [(good_run, good), (best_run, best)]

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    cfg_data = mlflow_cfg.model_dump(mode="json")
    procs = [
        ctx.Process(
            target=promote_worker,
            args=(cfg_data, run_id, logged_model_uri, m, barrier, 0.5 * i, results),
        )
        for i, (run_id, m) in enumerate(order)
    ]
    for p in procs:
        p.start()
    try:
        outcome = dict(results.get(timeout=300) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0, 0]

    best_version = outcome[best_run]["candidate_version"]
    good_version = outcome[good_run]["candidate_version"]
    # whoever took the lock first, the better candidate ends as champion
    assert alias_version(mlflow_cfg, "champion") == best_version
    assert outcome[best_run]["promote"] is True
    if outcome[good_run]["promote"]:  # good went first, then lost the title to best
        assert alias_version(mlflow_cfg, "previous-champion") == good_version
    else:
        assert alias_version(mlflow_cfg, "previous-champion") == stale


@pytest.mark.mlflow_backends("embedded", "server")  # downloads through the artifact proxy
def test_champion_loads_from_registry_and_encodes(mlflow_cfg: PipelineConfig, saved_model_dir: Path) -> None:
    import mlflow.sentence_transformers
    from sentence_transformers import SentenceTransformer

    tracking.connect(mlflow_cfg)
    run_id = tracking.start_run(mlflow_cfg, run_name="candidate")
    with tracking.run_guard(run_id):
        uri = tracking.log_model(run_id, saved_model_dir, mlflow_cfg)
        m = scores(0.5)
        tracking.log_metrics(run_id, m.metrics)
        d = registry.promote(mlflow_cfg, run_id, uri, m, _never_called)
    assert d.promote

    info = registry.champion(mlflow_cfg)
    assert info is not None
    assert info["load"] == (
        f'mlflow.sentence_transformers.load_model("models:/{mlflow_cfg.registry.model_name}@champion")'
    )
    model = mlflow.sentence_transformers.load_model(f"models:/{mlflow_cfg.registry.model_name}@champion")
    texts = ["What can I cook with chickpeas and spinach?", "Vegan curry with chickpeas"]
    got = model.encode(texts)
    want = SentenceTransformer(str(saved_model_dir), device="cpu").encode(texts)
    assert got.shape == (2, 384)
    np.testing.assert_allclose(got, want, atol=1e-5)
