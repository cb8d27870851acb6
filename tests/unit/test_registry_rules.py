"""The promotion rule (pure): paired bootstrap on per-query average precision, ties on a newer
catalog, NaN never; decision serialization, key sanitizing and the file lock."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
from import_blocker import blocker_code

from pipelines.bootstrap import paired_bootstrap
from pipelines.config import RegistryConfig
from pipelines.locks import LockTimeoutError, file_lock
from pipelines.metrics import Scores
from pipelines.promotion import Decision, decide
from pipelines.tracking import sanitize, unsanitize

DIMS = (384, 256, 128, 64)
REG = RegistryConfig()  # margin 0, epsilon 0.005, primary 384, 2000 resamples, tie with newer catalog on
N = 400
_SHARED = np.random.default_rng(123).uniform(-0.3, 0.3, N)
_SHARED -= _SHARED.mean()


def scores(m384: float, others: float | None = None, noise: float = 0.0, seed: int = 0, **override: float) -> Scores:
    """Per-query AP = a query difficulty shared by every model + the model's level + its own noise."""
    own = np.random.default_rng(seed).normal(0.0, noise, N) if noise else np.zeros(N)
    own -= own.mean()
    metrics: dict[str, float] = {}
    per_query: dict[int, np.ndarray] = {}
    for d in DIMS:
        level = m384 if d == 384 or others is None else others
        per_query[d] = _SHARED + level + own
        metrics[f"dim_{d}_cosine_map@100"] = float(per_query[d].mean())
        metrics[f"dim_{d}_cosine_ndcg@10"] = 0.5
    metrics.update(override)
    return Scores(metrics, per_query)


def test_bootstrap_is_seeded_and_reproducible() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, 300), rng.uniform(0, 1, 300)
    one = paired_bootstrap(a, b, 1000, seed=7)
    assert one == paired_bootstrap(a, b, 1000, seed=7)
    assert one != paired_bootstrap(a, b, 1000, seed=8)
    assert one.delta == pytest.approx(float((a - b).mean()))
    assert one.low < one.delta < one.high


def test_bootstrap_interval_covers_the_true_delta() -> None:
    # Paired data whose true mean difference is 0.03: over 40 independent draws the 95% interval covers
    # it about 38 times; fewer than 33 would mean the interval is far too narrow.
    covered = 0
    for trial in range(40):
        rng = np.random.default_rng(1000 + trial)
        champ = rng.uniform(0, 1, 500)
        cand = champ + 0.03 + rng.normal(0, 0.1, 500)
        iv = paired_bootstrap(cand, champ, 1000, seed=trial)
        covered += iv.contains(0.03)
    assert covered >= 33


def test_bootstrap_text_and_bad_input() -> None:
    iv = paired_bootstrap(np.full(10, 0.6), np.full(10, 0.5), 1000)
    assert iv.text() == "+0.1000 [0.1000, 0.1000]"
    from pipelines.errors import InputError

    with pytest.raises(InputError, match="shapes differ"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    nan = paired_bootstrap(np.array([0.5, math.nan]), np.array([0.4, 0.4]), 1000)
    assert not nan.finite


def test_no_champion_promotes_a_finite_candidate() -> None:
    d = decide(scores(0.1), None, REG, DIMS)
    assert d.promote and d.reason == "no champion yet" and d.deltas == {}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_candidate_is_never_promoted(bad: float) -> None:
    cand = scores(0.9, **{"dim_128_cosine_ndcg@10": bad})
    assert not decide(cand, None, REG, DIMS).promote
    d = decide(cand, scores(0.1), REG, DIMS)
    assert not d.promote and "non-finite" in d.reason and "dim_128_cosine_ndcg@10" in d.reason


def test_non_finite_per_query_score_is_never_promoted() -> None:
    cand = scores(0.9)
    cand.per_query_ap[384][3] = math.nan
    d = decide(cand, scores(0.1), REG, DIMS)
    assert not d.promote and "non-finite" in d.reason


def test_empty_or_incomplete_candidate_is_rejected() -> None:
    assert not decide({}, None, REG, DIMS).promote
    cand = scores(0.9)
    del cand.metrics["dim_64_cosine_map@100"]
    d = decide(cand, None, REG, DIMS)
    assert not d.promote and "dim_64_cosine_map@100" in d.reason


def test_clearly_better_candidate_promotes_with_its_interval() -> None:
    d = decide(scores(0.60, noise=0.05, seed=1), scores(0.50, noise=0.05, seed=2), REG, DIMS)
    assert d.promote, d.reason
    assert d.deltas == pytest.approx({384: 0.10, 256: 0.10, 128: 0.10, 64: 0.10})
    assert d.delta == pytest.approx(0.10) and d.ci_low is not None and d.ci_high is not None
    assert 0 < d.ci_low < 0.10 < d.ci_high
    assert f"+0.1000 [{d.ci_low:.4f}, {d.ci_high:.4f}]" in d.line()
    assert d.line().startswith("PROMOTED")


def test_clearly_worse_candidate_is_kept_out() -> None:
    d = decide(scores(0.40, noise=0.05, seed=1), scores(0.50, noise=0.05, seed=2), REG, DIMS)
    assert not d.promote and "worse" in d.reason
    assert d.delta == pytest.approx(-0.1) and d.ci_high is not None and d.ci_high < 0


def test_noisy_gain_is_not_enough() -> None:
    # +0.005 on average, but per-query noise of 0.3: the interval straddles 0 -> a tie, same catalog
    cand, champ = scores(0.505, noise=0.3, seed=1), scores(0.50, noise=0.3, seed=2)
    d = decide(cand, champ, REG, DIMS, candidate_catalog="c1", champion_catalog="c1")
    assert not d.promote and d.ci_low is not None and d.ci_low < 0 < (d.ci_high or 0)
    assert "tie" in d.reason and "same catalog" in d.reason
    d = decide(cand, champ, REG, DIMS)
    assert not d.promote and "catalog digests are unknown" in d.reason


def test_tie_on_a_newer_catalog_promotes_unless_switched_off() -> None:
    cand, champ = scores(0.50, noise=0.3, seed=1), scores(0.50, noise=0.3, seed=2)
    d = decide(cand, champ, REG, DIMS, candidate_catalog="new", champion_catalog="old")
    assert d.promote and d.reason == "not worse, newer catalog"
    off = RegistryConfig(promote_on_tie_with_newer_catalog=False)
    assert not decide(cand, champ, off, DIMS, candidate_catalog="new", champion_catalog="old").promote
    # a tie that loses more than epsilon at another dim is not "not worse"
    cand_drop = scores(0.50, others=0.49, noise=0.3, seed=1)
    d = decide(cand_drop, champ, REG, DIMS, candidate_catalog="new", champion_catalog="old")
    assert not d.promote and "epsilon" in d.reason
    # unknown catalogs are not "newer"
    assert not decide(cand, champ, REG, DIMS, candidate_catalog=None, champion_catalog="old").promote


def test_margin_applies_to_the_lower_bound() -> None:
    cand, champ = scores(0.60, noise=0.05, seed=1), scores(0.50, noise=0.05, seed=2)
    d = decide(cand, champ, REG, DIMS)
    assert d.ci_low is not None
    assert not decide(cand, champ, RegistryConfig(margin=d.ci_low + 0.001), DIMS).promote
    assert decide(cand, champ, RegistryConfig(margin=max(0.0, d.ci_low - 0.001)), DIMS).promote


def test_a_drop_beyond_epsilon_at_another_dim_rejects() -> None:
    # better at 384, but 64 falls by 0.01 > epsilon 0.005
    cand = scores(0.6, others=0.5, seed=1)
    cand.metrics["dim_64_cosine_map@100"] = 0.49
    d = decide(cand, scores(0.5), REG, DIMS)
    assert not d.promote and "dim 64" in d.reason
    cand.metrics["dim_64_cosine_map@100"] = 0.496  # a drop within epsilon is tolerated
    assert decide(cand, scores(0.5), REG, DIMS).promote


def test_champion_without_per_query_scores_or_another_eval_cannot_be_compared() -> None:
    champ = scores(0.5)
    d = decide(scores(0.9), Scores(champ.metrics), REG, DIMS)
    assert not d.promote and "no per-query scores" in d.reason
    short = Scores(champ.metrics, {d_: v[:-1] for d_, v in champ.per_query_ap.items()})
    d = decide(scores(0.9), short, REG, DIMS)
    assert not d.promote and "different eval sets" in d.reason
    del champ.metrics["dim_384_cosine_map@100"]
    assert "champion metrics lack" in decide(scores(0.9), champ, REG, DIMS).reason


def test_saturated_champion_is_flagged() -> None:
    d = decide(scores(0.999), scores(0.996), REG, DIMS)
    assert d.saturated and d.champion_primary == pytest.approx(0.996)
    assert not decide(scores(0.9), scores(0.99), REG, DIMS).saturated


def test_decision_serializes_to_json() -> None:
    d = Decision(False, "x", {384: math.nan, 64: -0.25}, "3", "2", delta=-0.25, ci_low=-0.3, ci_high=-0.2)
    data = json.loads(json.dumps(d.to_dict()))
    assert data["decision"] == "rejected" and data["deltas"] == {"384": "nan", "64": -0.25}
    assert data["candidate_version"] == "3" and data["champion_version"] == "2"
    assert d.line() == "KEPT champion (version 2): map@100 -0.2500 [-0.3000, -0.2000]: x"


def test_metric_keys_are_sanitized_for_mlflow() -> None:
    keys = ["dim_384_cosine_map@100", "dim_64_cosine_accuracy@1", "train_loss"]
    assert [sanitize(k) for k in keys] == ["dim_384_cosine_map_at_100", "dim_64_cosine_accuracy_at_1", "train_loss"]
    assert [unsanitize(sanitize(k)) for k in keys] == keys


def _hold(path: str, ready: object, release: object) -> None:
    with file_lock(path, timeout_s=5):
        ready.set()  # type: ignore[attr-defined]
        release.wait(300)  # type: ignore[attr-defined]


def test_file_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    """The waiter gives up on its own timeout while the holder still holds the lock (the holder lets go
    only once the test says so): a timeout, not a wait for the release."""
    path = tmp_path / "locks" / "x.lock"
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(120)
        with (
            pytest.raises(LockTimeoutError, match=r"could not take the lock .*x\.lock within 0\.3 s"),
            file_lock(path, timeout_s=0.3),
        ):
            pass
        assert holder.is_alive() and not release.is_set()  # still held when the waiter gave up
    finally:
        release.set()
        holder.join(120)
        if holder.is_alive():
            holder.kill()
    assert holder.exitcode == 0
    with file_lock(path, timeout_s=1):  # released when the holder ended
        pass


def test_a_drop_on_the_human_slice_keeps_a_better_candidate_out() -> None:
    key = "slice_human_dim_384_cosine_map@100"
    champ = scores(0.50, **{key: 0.40})
    # clearly better on the whole eval, but worse by more than epsilon on the hand-written questions
    d = decide(scores(0.60, **{key: 0.40 - 2 * REG.epsilon}), champ, REG, DIMS)
    assert not d.promote and "human slice" in d.reason
    # within epsilon, or a champion scored without the slice: the usual rule
    assert decide(scores(0.60, **{key: 0.40 - REG.epsilon / 2}), champ, REG, DIMS).promote
    assert decide(scores(0.60, **{key: 0.30}), scores(0.50), REG, DIMS).promote


def test_every_description_starts_with_its_verdict_said_once() -> None:
    from pipelines.promotion import run_name_for, superseded_line, verdict_line

    kept = Decision(False, "worse", {384: -0.1}, "2", "1", delta=-0.1, ci_low=-0.12, ci_high=-0.08, primary_dim=384)
    assert verdict_line(kept).startswith("REJECTED: KEPT champion (version 1): map@100 at 384 -0.1000")
    alone = Decision(False, "candidate has no metrics", candidate_version="1", primary_dim=384)
    assert verdict_line(alone).startswith("REJECTED (version 1, no champion)")
    won = Decision(True, "no champion yet", candidate_version="1", primary_dim=384)
    assert verdict_line(won) == "PROMOTED (version 1): no champion yet"
    once = superseded_line(verdict_line(won), "2")
    assert once.startswith("SUPERSEDED by version 2 (") and once.endswith("was PROMOTED (version 1): no champion yet")
    assert superseded_line(once, "3") == once
    assert run_name_for("promoted", "1", "witty-fox") == "promoted-v1-witty-fox"
    assert run_name_for("promoted", "1", "promoted-v1-witty-fox") == "promoted-v1-witty-fox"
    assert run_name_for("skipped", None, None) == "skipped"


_NO_MLFLOW = (
    blocker_code("mlflow")
    + """
import json
try:
    import mlflow
    blocked = False
except ModuleNotFoundError:
    blocked = True
from pipelines.config import RegistryConfig
from pipelines.metrics import Scores
from pipelines.promotion import decide
import numpy as np
ap = np.linspace(0.2, 0.8, 50)
d = decide(Scores({"dim_384_cosine_map@100": float(ap.mean() + 0.1)}, {384: ap + 0.1}),
           Scores({"dim_384_cosine_map@100": float(ap.mean())}, {384: ap}), RegistryConfig(), (384,))
print(json.dumps({"blocked": blocked, "promote": d.promote,
                  "mlflow_loaded": sorted(m for m in sys.modules if m.split(".")[0] == "mlflow")}))
"""
)


def test_the_rule_imports_and_decides_without_mlflow() -> None:
    """pipelines.promotion is the rule alone: it runs where mlflow cannot be imported at all."""
    import os
    import subprocess
    import sys

    env = {
        "HF_HUB_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run([sys.executable, "-c", _NO_MLFLOW], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"blocked": True, "promote": True, "mlflow_loaded": []}
