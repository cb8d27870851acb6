"""Data-parallel training on CPU: 2 gloo ranks under torchrun against one process at the same global batch.

The reference is :func:`pipelines.training.train` in this process with the same config (one process,
global batch 16); the 2-rank run is ``recipe-embed train --set training.nproc_per_node=2`` (8 pairs per
rank, candidates gathered across ranks). The base model is the bundled MiniLM with dropout turned off,
so both runs compute the same function and any difference is floating-point noise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import ModelConfig, TrainingConfig
from pipelines.training import TrainResult, train

ROOT = Path(__file__).resolve().parents[2]
GLOBAL_BATCH = 16
# 48 pairs with repeated positives, global batch 16: the no-duplicates sampler fills the first two
# batches in full and leaves the third short, which one process keeps and N ranks replace by a full one
# (every rank must gather equal slices). So compare the first two steps, with the same schedule.
SETTINGS: dict[str, Any] = {
    "global_batch_size": GLOBAL_BATCH,
    "max_steps": 2,
    "eval_batch_size": 64,
    "learning_rate": 1e-4,
    "warmup": 0,
    "optim": "adamw_torch",
    "logging_steps": 1,
    "save_total_limit": 1,
    "device": "cpu",
}
# Float32 noise only: the same 16 pairs are embedded as two batches of 8 instead of one of 16 (other
# padded lengths and matmul shapes: ~1e-7 relative on embeddings), then cosine x scale 20, a log-sum-exp
# over 16 candidates and a sum over 4 Matryoshka dims; the loss is ~7, so float32 rounding is ~1e-6
# (measured: 5e-7 at step 1, 1e-6 at step 2 after one AdamW update). 1e-4 is ~100x that noise and
# ~1000x below the gap to one process without the other rank's negatives (checked in the test).
FIRST_STEP_TOL = 1e-4
# Step 2 runs after one clipped AdamW update from the ranks' averaged gradients; a wrong gradient
# (not summed across ranks, or not averaged) moves it by far more than this.
LATER_STEP_TOL = 1e-4


def _no_dropout_model(src: str, dst: Path) -> Path:
    """The bundled model with dropout off: weights linked, config.json rewritten."""
    dst.mkdir(parents=True)
    for item in Path(src).iterdir():
        if item.name != "config.json":
            (dst / item.name).symlink_to(item, target_is_directory=item.is_dir())
    cfg = json.loads((Path(src) / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def _sets(base_model: Path, **extra: Any) -> list[str]:
    items = {f"training.{k}": v for k, v in {**SETTINGS, **extra}.items()}
    items.update({"model.base_model": str(base_model), "model.max_seq_length": 32})
    out: list[str] = []
    for k, v in items.items():
        out += ["--set", f"{k}={json.dumps(v) if isinstance(v, str) else v}"]  # quoted: YAML reads no as false
    return out


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "train", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _train_in_process(data: Path, out: Path, base: Path, **extra: Any) -> TrainResult:
    cfg = TrainingConfig(**{**SETTINGS, **extra})
    return train(data, out, ModelConfig(base_model=str(base), max_seq_length=32), cfg, progress=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, bundled_model_path: str) -> dict[str, Path]:
    from tests.conftest import make_recipe_pairs, write_dataset_dir

    root = tmp_path_factory.mktemp("ddp")
    pairs = make_recipe_pairs()
    data = write_dataset_dir(root / "data", pairs, pairs, pairs)
    return {"root": root, "data": data, "base": _no_dropout_model(bundled_model_path, root / "base")}


@pytest.fixture(scope="module")
def two_ranks(setup: dict[str, Path]) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = setup["root"] / "out-2"
    argv = _cli("--data", str(setup["data"]), "--out", str(out), *_sets(setup["base"], nproc_per_node=2))
    proc = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, out


@pytest.mark.slow
def test_two_ranks_optimize_the_one_process_objective(setup: dict[str, Path], two_ranks) -> None:  # type: ignore[no-untyped-def]
    _, out2 = two_ranks
    ddp = json.loads((out2 / "train_result.json").read_text())["loss_history"]
    one = _train_in_process(setup["data"], setup["root"] / "out-1", setup["base"]).loss_history
    assert [e["step"] for e in ddp] == [e["step"] for e in one] == [1, 2]
    # step 1: same parameters, same 16 pairs -> same loss; step 2: same averaged gradient -> same update
    assert ddp[0]["loss"] == pytest.approx(one[0]["loss"], abs=FIRST_STEP_TOL)
    print("loss per step, 2 ranks vs 1 process:", [(a["loss"], b["loss"]) for a, b in zip(ddp, one, strict=True)])
    assert ddp[1]["loss"] == pytest.approx(one[1]["loss"], abs=LATER_STEP_TOL)
    # The comparison can fail: one process at the per-rank batch (8, no cross-rank negatives) differs.
    local = _train_in_process(
        setup["data"], setup["root"] / "out-8", setup["base"], global_batch_size=GLOBAL_BATCH // 2, max_steps=1
    ).loss_history
    assert abs(local[0]["loss"] - ddp[0]["loss"]) > 100 * FIRST_STEP_TOL


@pytest.mark.slow
def test_two_ranks_write_one_model_and_record_world_size(two_ranks) -> None:  # type: ignore[no-untyped-def]
    proc, out = two_ranks
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "model", "train_result.json"]
    assert (out / "model" / "modules.json").is_file()
    result = json.loads((out / "train_result.json").read_text())
    assert result["world_size"] == 2
    assert result["settings"]["global_batch_size"] == GLOBAL_BATCH
    assert result["settings"]["per_device_batch_size"] == GLOBAL_BATCH // 2
    assert result["settings"]["pairs_seen"] == 2 * GLOBAL_BATCH  # both ranks' pairs, counted once
    assert result["global_step"] == 2
    assert json.loads((out / "checkpoints" / "world_size.json").read_text()) == {"world_size": 2}
    assert proc.stdout.count("model: ") == 1  # only rank 0 reports
    assert "(2 ranks)" in proc.stdout


@pytest.mark.slow
def test_resume_with_another_world_size_is_refused(two_ranks, setup: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    _, out = two_ranks
    argv = _cli("--data", str(setup["data"]), "--out", str(out), "--resume", *_sets(setup["base"]))
    proc = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "was written by 2 rank(s) and this run has 1" in lines[0], proc.stderr


def _proc_children() -> dict[int, list[int]]:
    """parent pid -> child pids, from /proc (Linux)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _rank_pids(root_pid: int) -> dict[int, int]:
    """rank -> pid of the training ranks below ``root_pid`` (processes whose environment has RANK)."""
    tree, todo, ranks = _proc_children(), [root_pid], {}
    while todo:
        for pid in tree.get(todo.pop(), []):
            todo.append(pid)
            try:
                env = dict(
                    item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
                )
            except OSError:
                continue
            if "LOCAL_RANK" in env and "RANK" in env:
                ranks[int(env["RANK"])] = pid
    return ranks


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks through /proc")
def test_a_killed_rank_fails_the_job_cleanly(setup: dict[str, Path]) -> None:
    out = setup["root"] / "out-killed"
    extra = {"nproc_per_node": 2, "max_steps": 200, "eval_strategy": "no"}
    argv = _cli("--data", str(setup["data"]), "--out", str(out), *_sets(setup["base"], **extra))
    proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen: list[str] = []
    ranks: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 600
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("step 2/"):  # the second progress line: both ranks are training
                ranks = _rank_pids(proc.pid)
                break
            assert time.monotonic() < deadline, "no training progress"
        assert sorted(ranks) == [0, 1], "".join(seen[-30:])
        os.kill(ranks[1], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stdout[-3000:] + stderr
    err = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(err) == 1, stderr
    assert err[0].startswith("recipe-embed: error: distributed training on 2 ranks failed: rank ")
    assert not (out / "model").exists() and not (out / "train_result.json").exists()
    deadline = time.monotonic() + 120  # the launcher has returned; its ranks go with it
    while [p for p in ranks.values() if _running(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in ranks.values() if _running(p)] == []  # no rank left behind


@pytest.mark.slow
def test_flow_training_task_reports_a_rank_error_in_one_line(tmp_path: Path) -> None:
    """The flow's child (``python -m pipelines.cli train --config CFG``) re-runs itself under torchrun."""
    from pipelines.childproc import train_in_subprocess
    from pipelines.config import load_config
    from pipelines.errors import TrainingError

    data = tmp_path / "empty-dataset"
    data.mkdir()  # exists (checked before launching) but holds no train.parquet: every rank fails on it
    cfg = load_config("smoke", overrides={"training": {"nproc_per_node": 2, "device": "cpu"}})
    with pytest.raises(TrainingError) as err:
        train_in_subprocess(cfg, data, tmp_path / "model")
    msg = str(err.value)
    assert "distributed training on 2 ranks failed:" in msg and "train.parquet" in msg, msg
    # the model root holds only the child's log (logs/train.log): no model, no result
    assert not (tmp_path / "model" / "model").exists() and not (tmp_path / "model" / "train_result.json").exists()
