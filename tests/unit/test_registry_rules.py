"""The promotion rule (pure), decision serialization, key sanitizing and the file lock."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from pipelines.config import RegistryConfig
from pipelines.locks import LockTimeoutError, file_lock
from pipelines.registry import Decision, decide
from pipelines.tracking import sanitize, unsanitize

DIMS = (384, 256, 128, 64)
REG = RegistryConfig()  # margin 0, epsilon 0.005, primary 384


def maps(m384: float, m256: float | None = None, m128: float | None = None, m64: float | None = None) -> dict:
    vals = {384: m384, 256: m256 if m256 is not None else m384, 128: m128, 64: m64}
    out = {}
    for d in DIMS:
        v = vals[d] if vals[d] is not None else m384
        out[f"dim_{d}_cosine_map@100"] = v
        out[f"dim_{d}_cosine_ndcg@10"] = 0.5
    return out


def test_no_champion_promotes_a_finite_candidate() -> None:
    d = decide(maps(0.1), None, REG, DIMS)
    assert d.promote and d.reason == "no champion yet" and d.deltas == {}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_candidate_is_never_promoted(bad: float) -> None:
    cand = maps(0.9)
    cand["dim_128_cosine_ndcg@10"] = bad
    assert not decide(cand, None, REG, DIMS).promote
    d = decide(cand, maps(0.1), REG, DIMS)
    assert not d.promote and "non-finite" in d.reason and "dim_128_cosine_ndcg@10" in d.reason


def test_empty_or_incomplete_candidate_is_rejected() -> None:
    assert not decide({}, None, REG, DIMS).promote
    cand = maps(0.9)
    del cand["dim_64_cosine_map@100"]
    d = decide(cand, None, REG, DIMS)
    assert not d.promote and "dim_64_cosine_map@100" in d.reason


def test_better_primary_promotes_with_deltas() -> None:
    d = decide(maps(0.60), maps(0.50), REG, DIMS)
    assert d.promote
    assert d.deltas == pytest.approx({384: 0.10, 256: 0.10, 128: 0.10, 64: 0.10})


def test_equal_primary_is_not_enough_the_rule_is_strict() -> None:
    d = decide(maps(0.5), maps(0.5), REG, DIMS)
    assert not d.promote and "does not beat" in d.reason


def test_margin_must_be_exceeded() -> None:
    reg = RegistryConfig(margin=0.02)
    assert not decide(maps(0.52), maps(0.50), reg, DIMS).promote  # +0.02 is not > 0.02
    assert decide(maps(0.521), maps(0.50), reg, DIMS).promote


def test_worse_primary_is_rejected() -> None:
    d = decide(maps(0.4), maps(0.5), REG, DIMS)
    assert not d.promote and d.deltas[384] == pytest.approx(-0.1)


def test_a_drop_beyond_epsilon_at_another_dim_rejects() -> None:
    # better at 384, but 64 falls by 0.01 > epsilon 0.005
    d = decide(maps(0.6, 0.5, 0.5, 0.49), maps(0.5), REG, DIMS)
    assert not d.promote and "dim 64" in d.reason
    # a drop within epsilon is tolerated
    assert decide(maps(0.6, 0.5, 0.5, 0.496), maps(0.5), REG, DIMS).promote


def test_champion_missing_primary_metric_cannot_be_compared() -> None:
    champ = maps(0.5)
    del champ["dim_384_cosine_map@100"]
    d = decide(maps(0.9), champ, REG, DIMS)
    assert not d.promote and "champion metrics lack" in d.reason


def test_decision_serializes_to_json() -> None:
    d = Decision(False, "x", {384: math.nan, 64: -0.25}, "3", "2")
    data = json.loads(json.dumps(d.to_dict()))
    assert data["decision"] == "rejected" and data["deltas"] == {"384": "nan", "64": -0.25}
    assert data["candidate_version"] == "3" and data["champion_version"] == "2"


def test_metric_keys_are_sanitized_for_mlflow() -> None:
    keys = ["dim_384_cosine_map@100", "dim_64_cosine_accuracy@1", "train_loss"]
    assert [sanitize(k) for k in keys] == ["dim_384_cosine_map_at_100", "dim_64_cosine_accuracy_at_1", "train_loss"]
    assert [unsanitize(sanitize(k)) for k in keys] == keys


def _hold(path: str, seconds: float, ready: object) -> None:
    with file_lock(path, timeout_s=5):
        ready.set()  # type: ignore[attr-defined]
        time.sleep(seconds)


def test_file_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "x.lock"
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(path), 5.0, ready))
    holder.start()
    try:
        assert ready.wait(60)
        t0 = time.monotonic()
        with (
            pytest.raises(LockTimeoutError, match=r"could not take the lock .*x\.lock within 0\.3 s"),
            file_lock(path, timeout_s=0.3),
        ):
            pass
        assert time.monotonic() - t0 < 3
    finally:
        holder.join(30)
        if holder.is_alive():
            holder.kill()
    with file_lock(path, timeout_s=1):  # released when the holder ended
        pass
