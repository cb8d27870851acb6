"""Fine-tuning on a tiny fixed set: learns, keeps the validation-best checkpoint, resumes, fails on NaN."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.checkpoints import last_complete_checkpoint
from pipelines.config import ModelConfig, TrainingConfig
from pipelines.errors import InputError, TrainingError
from pipelines.evaluation import evaluate_pairs
from pipelines.training import TrainResult, load_train_result, train

MODEL_CFG = ModelConfig(max_seq_length=32)
# 48 pairs, batch 16 -> 3 steps an epoch.
TRAIN_CFG = TrainingConfig(
    epochs=2,
    per_device_batch_size=16,
    eval_batch_size=64,
    learning_rate=1e-4,
    optim="adamw_torch",
    logging_steps=1,
    save_total_limit=1,
    base_interpolation=(),  # the checkpoint the trainer chose, as is: tests/unit/test_interpolation.py mixes
)


class _Interrupt(Exception):
    pass


def _interrupt_after(step: int) -> Any:
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step >= step:
                raise _Interrupt(f"simulated crash before step {step + 1}")

    return Interrupt()


def _step_counter() -> Any:
    from transformers import TrainerCallback

    class Counter(TrainerCallback):
        steps: list[int]

        def __init__(self) -> None:
            self.steps = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.steps.append(state.global_step)

    return Counter()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Path, Path]:
    from tests.conftest import make_recipe_pairs, write_dataset_dir

    root = tmp_path_factory.mktemp("train")
    pairs = make_recipe_pairs()
    data = write_dataset_dir(root / "data", pairs, pairs, pairs)
    (data / "eval.parquet").write_bytes(b"not parquet: training must never read the eval split")
    out = root / "out"
    return train(data, out, MODEL_CFG, TRAIN_CFG, progress=False), data, out


@pytest.mark.slow
def test_training_lowers_loss_and_beats_base(trained, bundled_model_path: str) -> None:  # type: ignore[no-untyped-def]
    result, data, out = trained
    assert result.model_dir == out / "model"
    assert (out / "model" / "modules.json").is_file()
    assert result.global_step == 6
    losses = pd.DataFrame(result.loss_history)
    assert losses["step"].tolist() == list(range(1, 7))
    first_epoch = losses[losses["step"] <= 3]["loss"].mean()
    last_epoch = losses[losses["step"] > 3]["loss"].mean()
    assert last_epoch < first_epoch

    pairs = pd.read_parquet(data / "validation.parquet")
    base = evaluate_pairs(bundled_model_path, pairs, (384, 64), batch_size=64)
    tuned = evaluate_pairs(result.model_dir, pairs, (384, 64), batch_size=64)
    assert tuned["dim_384_cosine_map@100"] > base["dim_384_cosine_map@100"] + 0.03
    assert tuned["dim_64_cosine_map@100"] > base["dim_64_cosine_map@100"] + 0.03


@pytest.mark.slow
def test_saved_model_is_the_validation_best_checkpoint(trained) -> None:  # type: ignore[no-untyped-def]
    result, data, out = trained
    assert result.best_checkpoint is not None
    assert Path(result.best_checkpoint).parent == out / "checkpoints"
    state = json.loads((Path(result.best_checkpoint) / "trainer_state.json").read_text())
    evals = [e for e in state["log_history"] if "eval_dim_384_cosine_map@100" in e]
    assert len(evals) == 2  # one evaluation per epoch
    assert state["best_metric"] == max(e["eval_dim_384_cosine_map@100"] for e in evals)
    # The installed model reproduces the validation metrics recorded for the best checkpoint.
    pairs = pd.read_parquet(data / "validation.parquet")
    again = evaluate_pairs(result.model_dir, pairs, TRAIN_CFG.matryoshka_dims, batch_size=64)
    again = {k: v for k, v in again.items() if k.startswith("dim_")}  # per-intent keys come on top
    assert set(again) == set(result.validation_metrics)
    for key, value in result.validation_metrics.items():
        assert again[key] == pytest.approx(value, abs=1e-6), key
    assert result.validation_metrics["dim_384_cosine_map@100"] == pytest.approx(state["best_metric"])
    # checkpoints skip the library's generated README; the installed model keeps its model card
    assert not (Path(result.best_checkpoint) / "README.md").exists()
    assert (result.model_dir / "README.md").is_file()
    assert (Path(result.best_checkpoint) / "model.safetensors").is_file()


@pytest.mark.slow
def test_train_result_json_round_trips(trained) -> None:  # type: ignore[no-untyped-def]
    result, _, out = trained
    saved = load_train_result(out)
    assert saved == json.loads(json.dumps(result.to_dict()))
    assert saved["train_pairs"] == 48
    assert saved["device"] == "cpu"
    assert saved["pairs_per_second"] > 0
    # NO_DUPLICATES may leave a batch short: count the pairs that really went through the loss.
    seen = saved["settings"]["pairs_seen"]
    assert 2 * 40 <= seen <= 6 * 16
    train_seconds = saved["seconds"] - saved["eval_seconds"]
    assert saved["pairs_per_second"] == pytest.approx(seen / train_seconds, rel=0.01)


@pytest.mark.slow
def test_the_loop_clock_leaves_out_evaluations_and_checkpoint_saves(trained) -> None:  # type: ignore[no-untyped-def]
    """pairs/s of the training loop divides by steps and waits for data only: the two validation
    evaluations and the checkpoint saves (one per epoch) fall outside it, and everything fits in the
    wall time of ``trainer.train()``."""
    result, _, _ = trained
    s = result.settings
    loop, saves = s["loop_seconds"], s["checkpoint_seconds"]
    assert 0 < s["data_wait_seconds"] <= loop
    assert saves > 0 and result.eval_seconds > 0
    assert loop + saves + result.eval_seconds <= result.seconds + 0.01
    assert s["loop_pairs_per_second"] == pytest.approx(s["pairs_seen"] / loop, rel=0.01)
    assert s["loop_pairs_per_second"] >= result.pairs_per_second


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(_Interrupt):
        train(tiny_dataset_dir, out, MODEL_CFG, TRAIN_CFG, progress=False, callbacks=[_interrupt_after(4)])
    assert not (out / "model").exists()
    checkpoint = last_complete_checkpoint(out / "checkpoints")
    assert checkpoint is not None and checkpoint.name == "checkpoint-3"

    counter = _step_counter()
    result = train(tiny_dataset_dir, out, MODEL_CFG, TRAIN_CFG, resume=True, progress=False, callbacks=[counter])
    assert result.resumed_from == str(checkpoint)
    assert counter.steps == [4, 5, 6]  # only the second epoch ran again
    assert result.global_step == 6
    assert [e["step"] for e in result.loss_history] == list(range(1, 7))  # history kept across the crash
    assert (out / "model" / "modules.json").is_file()


def test_resume_without_checkpoint_is_an_input_error(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    with pytest.raises(InputError, match="no complete checkpoint"):
        train(tiny_dataset_dir, tmp_path / "out", MODEL_CFG, TRAIN_CFG, resume=True, progress=False)


def test_missing_dataset_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such dataset directory"):
        train(tmp_path / "absent", tmp_path / "out", MODEL_CFG, TRAIN_CFG, progress=False)


@pytest.mark.slow
def test_nan_loss_fails_at_once_and_writes_no_model(
    tmp_path: Path, tiny_dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    real_forward = MatryoshkaLoss.forward
    calls: list[int] = []

    def nan_on_second_step(self: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = real_forward(self, *args, **kwargs)
        calls.append(1)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(MatryoshkaLoss, "forward", nan_on_second_step)
    out = tmp_path / "out"
    with pytest.raises(TrainingError, match=r"loss is nan at step 2"):
        train(tiny_dataset_dir, out, MODEL_CFG, TRAIN_CFG, progress=False)
    assert len(calls) == 2  # stopped at the bad step, not at the next log or epoch end
    assert not (out / "model").exists()
    assert not (out / "train_result.json").exists()


def test_triplets_feed_the_loss_when_the_split_has_a_negative(tmp_path: Path) -> None:
    from pipelines.training import load_split
    from tests.conftest import make_recipe_pairs, write_dataset_dir

    pairs = make_recipe_pairs()
    shuffled = np.roll(pairs["positive"].to_numpy(), 1)
    triplets = pd.DataFrame({"anchor": pairs["anchor"], "positive": pairs["positive"], "negative": shuffled})
    data = write_dataset_dir(tmp_path / "data", triplets.assign(intent="t", group_id="g"), pairs, pairs)
    assert list(load_split(data, "train").columns) == ["anchor", "positive", "negative"]
    assert list(load_split(data, "validation").columns) == ["anchor", "positive"]
    seen: list[list[str]] = []
    import pipelines.training as tr

    real = tr._build_loss

    def spy_loss(model: Any, cfg: Any, *args: Any) -> Any:
        loss = real(model, cfg, *args)
        forward = loss.forward

        def wrapped(sentence_features: Any, labels: Any = None) -> Any:
            seen.append([str(len(sentence_features))])
            return forward(sentence_features, labels)

        loss.forward = wrapped
        return loss

    mp = pytest.MonkeyPatch()
    mp.setattr(tr, "_build_loss", spy_loss)
    try:
        cfg = TRAIN_CFG.model_copy(update={"max_steps": 1})
        train(data, tmp_path / "out", MODEL_CFG, cfg, progress=False)
    finally:
        mp.undo()
    assert seen and seen[0] == ["3"]  # anchor, positive, negative


def _scripted_validation(monkeypatch: pytest.MonkeyPatch, scores: list[float]) -> None:
    """The validation evaluator reports ``scores`` (map@100 at every dim), one per evaluation."""
    from pipelines import evaluation

    left = list(scores)

    def fake(model, ir, dims, batch_size, slices=None):  # type: ignore[no-untyped-def]
        value = left.pop(0)
        return {f"dim_{d}_cosine_map@100": value for d in dims}

    monkeypatch.setattr(evaluation, "score_validation", fake)


def _weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize(("scores", "best"), [([0.9, 0.5, 0.4], 1), ([0.4, 0.5, 0.9], 3)])
def test_the_installed_model_holds_the_best_checkpoints_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_dataset_dir: Path, scores: list[float], best: int
) -> None:
    """Best at step 1 of 3: read back from its checkpoint. Best at the last step: those are the weights
    in memory, kept without reading them back. Either way the installed model is that checkpoint."""
    import torch

    _scripted_validation(monkeypatch, scores)
    cfg = TRAIN_CFG.model_copy(
        update={"eval_strategy": "steps", "eval_steps": 1, "max_steps": 3, "save_total_limit": 5, "learning_rate": 1e-3}
    )
    result = train(tiny_dataset_dir, tmp_path / "out", MODEL_CFG, cfg, progress=False)
    assert result.best_checkpoint is not None and Path(result.best_checkpoint).name == f"checkpoint-{best}"
    installed, chosen = _weights(result.model_dir), _weights(Path(result.best_checkpoint))
    last = _weights(tmp_path / "out" / "checkpoints" / "checkpoint-3")
    assert all(torch.equal(installed[k], chosen[k]) for k in chosen)
    if best != 3:  # the test can tell the two apart: the last step moved the weights
        assert not all(torch.equal(installed[k], last[k]) for k in last)


@pytest.mark.slow
def test_a_best_checkpoint_that_cannot_be_read_fails_the_training(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_dataset_dir: Path
) -> None:
    """The library would log the error and install the last weights as if they were the best."""
    from transformers import TrainerCallback

    class BreakFirstCheckpoint(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 3:  # training is over: spoil the best (first) checkpoint's weights
                (Path(args.output_dir) / "checkpoint-1" / "model.safetensors").write_bytes(b"not safetensors")

    _scripted_validation(monkeypatch, [0.9, 0.5, 0.4])
    cfg = TRAIN_CFG.model_copy(
        update={"eval_strategy": "steps", "eval_steps": 1, "max_steps": 3, "save_total_limit": 5}
    )
    with pytest.raises(TrainingError, match="cannot load the best checkpoint"):
        train(tiny_dataset_dir, tmp_path / "out", MODEL_CFG, cfg, progress=False, callbacks=[BreakFirstCheckpoint()])
    assert not (tmp_path / "out" / "model").exists()
