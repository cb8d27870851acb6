"""Ctrl-C says what happened: which MLflow run it ended KILLED and how to resume the training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.checkpoints import CHECKPOINTS_SUBDIR, last_complete_checkpoint, resume_hint
from pipelines.errors import interrupt_message, note_interrupt

ROOT = Path(__file__).resolve().parents[2]


def test_notes_read_outermost_first() -> None:
    exc = KeyboardInterrupt()
    assert interrupt_message(exc) == "interrupted"
    note_interrupt(exc, "resume with X")  # the training, inside
    note_interrupt(exc, "MLflow run R ended KILLED")  # the run guard, outside
    exc.add_note("an unrelated note")
    assert interrupt_message(exc) == "interrupted: MLflow run R ended KILLED; resume with X"


def test_resume_hint_names_the_last_complete_checkpoint_or_says_there_is_none(tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert "no checkpoint saved yet" in resume_hint(tmp_path / "ds", out)
    ckpt = out / CHECKPOINTS_SUBDIR / "checkpoint-4"
    ckpt.mkdir(parents=True)
    for name in ("trainer_state.json", "modules.json", "model.safetensors", "optimizer.pt"):
        (ckpt / name).write_text("x")
    (out / CHECKPOINTS_SUBDIR / "checkpoint-6").mkdir()  # a partial one is never offered
    hint = resume_hint(tmp_path / "ds", out)
    assert hint.startswith(f"resume with recipe-embed train --data {tmp_path / 'ds'} --out {out} --resume")
    assert "checkpoint-4" in hint


@pytest.mark.slow  # trains a model
@pytest.mark.timeout(600)
def test_ctrl_c_during_run_says_the_run_ended_killed_and_how_to_resume(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env.update(RECIPE_EMBED_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    # a checkpoint every step, and far more steps than the test waits for
    sets = ["training.eval_strategy=steps", "training.eval_steps=1", "training.max_steps=500", "training.device=cpu"]
    argv = [sys.executable, "-m", "pipelines.cli", "run", "--profile", "smoke"]
    for s in sets:
        argv += ["--set", s]
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        # SIGINT at its default in the child (Python's KeyboardInterrupt, as at a terminal) even when this
        # test runs under a shell that started it in the background, which ignores SIGINT for its children
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 420
        while not list((home / "models").glob(f"*/{CHECKPOINTS_SUBDIR}/checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, f"ended before a checkpoint:\n{stderr.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no checkpoint yet:\n{stdout.read_text()[-3000:]}"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err_text = stderr.read_text()
    assert code == 130, err_text[-3000:]
    assert "Traceback" not in err_text, err_text[-3000:]
    lines = [ln for ln in err_text.splitlines() if ln.startswith("interrupted")]
    assert len(lines) == 1, err_text[-3000:]
    run_id = next(ln.split()[2] for ln in stdout.read_text().splitlines() if ln.startswith("MLflow run "))
    model_root = next((home / "models").glob(f"*/{CHECKPOINTS_SUBDIR}")).parent
    last = last_complete_checkpoint(model_root / CHECKPOINTS_SUBDIR)
    assert last is not None
    assert lines[0].startswith(f"interrupted: MLflow run {run_id} ended KILLED; resume with recipe-embed train"), lines
    assert f"--out {model_root} --resume" in lines[0], lines[0]

    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    assert MlflowClient(tracking_uri=uri).get_run(run_id).info.status == "KILLED"
