"""Out of memory: a clear one-line error with the batch-size hint, and no retry."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.errors import OutOfMemoryError, TrainingError, is_out_of_memory, out_of_memory

runner = CliRunner()


@pytest.fixture
def cfg(tmp_path: Path):  # type: ignore[no-untyped-def]
    from pipelines.config import load_config

    return load_config("smoke", overrides={"paths": {"data_dir": str(tmp_path / "data")}})


@pytest.mark.parametrize(
    "exc",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
        RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"),
    ],
)
def test_cli_train_maps_out_of_memory_to_one_line_with_a_hint(tmp_path, tiny_dataset_dir, monkeypatch, exc) -> None:
    """What training raises for each (test_out_of_memory_inside_training_is_an_out_of_memory_error) reaches
    the command line as one line with the hint, and the parent of a training child as its type."""
    import pipelines.training
    from pipelines.childproc import ERROR_FILE_ENV, read_error

    def boom(*_a, **_k):  # type: ignore[no-untyped-def]
        raise out_of_memory(exc, 16) from exc

    monkeypatch.setattr(pipelines.training, "train", boom)
    monkeypatch.setenv(ERROR_FILE_ENV, str(tmp_path / "error.json"))
    r = runner.invoke(app, ["train", "--data", str(tiny_dataset_dir), "--out", str(tmp_path / "m"), "-p", "smoke"])
    assert r.exit_code == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "out of memory during training" in lines[0]
    assert "training.per_device_batch_size=" in lines[0] and "not retried" in lines[0]
    recorded = read_error(tmp_path / "error.json")
    assert isinstance(recorded, OutOfMemoryError) and lines[0].endswith(str(recorded))


def test_other_runtime_errors_are_not_out_of_memory() -> None:
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(TrainingError("loss is nan"))
    assert is_out_of_memory(out_of_memory(MemoryError(), 64))


def test_child_out_of_memory_becomes_out_of_memory_error_in_the_task(cfg, tmp_path, monkeypatch) -> None:
    from pipelines import childproc as tp

    script = tmp_path / "child.py"
    script.write_text(  # what the CLI does on an OutOfMemoryError: its line, and the record of its type
        "import sys\nfrom pipelines.childproc import record_error\nfrom pipelines.errors import OutOfMemoryError\n"
        "print('step 1', flush=True)\n"
        "exc = OutOfMemoryError('out of memory during training (CUDA out of memory); lower the batch size')\n"
        "print(f'recipe-embed: error: {exc}', file=sys.stderr, flush=True)\nrecord_error(exc, 1)\nsys.exit(1)\n"
    )
    monkeypatch.setattr(tp, "train_command", lambda d, o, c: [sys.executable, str(script)])
    with pytest.raises(OutOfMemoryError, match=r"exited with code 1: out of memory during training"):
        tp.train_in_subprocess(cfg, "/data", str(tmp_path / "model"))


def test_prefect_tasks_do_not_retry_out_of_memory() -> None:
    from prefect.states import Failed

    from tasks import stages as t

    assert t.train.retries == 0 and t.train.retry_condition_fn is None  # training is never retried
    assert t.evaluate.retry_condition_fn is t.retry_unless_out_of_memory
    oom = Failed(data=OutOfMemoryError("out of memory during evaluation"))
    other = Failed(data=TrainingError("connection reset"))
    assert t.retry_unless_out_of_memory(t.evaluate, None, oom) is False
    assert t.retry_unless_out_of_memory(t.evaluate, None, other) is True


def test_out_of_memory_hint_halves_the_batch() -> None:
    assert "per_device_batch_size=32" in str(out_of_memory(MemoryError(), 64))


def test_out_of_memory_keeps_the_message_of_an_out_of_memory_error() -> None:
    first = out_of_memory(torch.OutOfMemoryError("CUDA out of memory"), 64)
    again = out_of_memory(first, 16)  # a caller wrapping what training raised says it once
    assert isinstance(again, OutOfMemoryError) and str(again) == str(first)


@pytest.mark.slow
@pytest.mark.parametrize(
    "exc",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"),
    ],
)
def test_out_of_memory_inside_training_is_an_out_of_memory_error(
    tmp_path: Path, tiny_dataset_dir: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    from pipelines.config import ModelConfig, TrainingConfig
    from pipelines.training import train

    def boom(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise exc

    monkeypatch.setattr(MatryoshkaLoss, "forward", boom)
    cfg = TrainingConfig(epochs=1, per_device_batch_size=16, optim="adamw_torch", device="cpu")
    with pytest.raises(OutOfMemoryError) as info:
        train(tiny_dataset_dir, tmp_path / "out", ModelConfig(max_seq_length=32), cfg, progress=False)
    assert info.value.__cause__ is exc
    message = str(info.value)
    assert message.startswith(f"out of memory during training ({str(exc).splitlines()[0]})"), message
    assert "training.per_device_batch_size=8" in message and "not retried" in message
    assert not (tmp_path / "out" / "model").exists()


def test_out_of_memory_in_evaluation_is_an_out_of_memory_error(cfg, tiny_dataset_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Evaluation goes through the same one check as training, so its task does not retry it either."""
    import pipelines.evaluation
    from pipelines import stages

    def boom(*_a, **_k):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(pipelines.evaluation, "score_pairs", boom)
    with pytest.raises(OutOfMemoryError, match=r"out of memory during evaluation \(CUDA out of memory"):
        stages.evaluate_stage(cfg, "bundled:all-MiniLM-L6-v2", str(tiny_dataset_dir))
