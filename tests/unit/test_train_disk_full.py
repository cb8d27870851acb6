"""A full disk during ``recipe-embed train``: one line naming what could not be written, exit 1, no
partial checkpoint that ``--resume`` could pick up, the previous model kept; the flow's training task
reports the child's line word for word."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.checkpoints import CHECKPOINTS_SUBDIR, last_complete_checkpoint
from pipelines.errors import StorageError
from pipelines.training import _install_model

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "3m") -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``path`` (root only; skips with the reason where mount is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(r.stderr or r.stdout).strip() or r.returncode}); CI runs as root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.slow  # trains a model
@pytest.mark.timeout(600)
def test_full_disk_during_train_is_one_line_and_leaves_no_partial_checkpoint(tmp_path: Path, tiny_dataset_dir) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env.update(HF_HUB_OFFLINE="1")
    with tiny_tmpfs(tmp_path / "tiny") as tiny:
        out = tiny / "model"
        argv = [sys.executable, "-m", "pipelines.cli", "train", "--profile", "smoke", "--data", str(tiny_dataset_dir)]
        argv += ["--out", str(out), "--set", "training.max_steps=2", "--set", "training.device=cpu"]
        r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
        assert r.returncode == 1, r.stderr[-3000:]
        assert "Traceback" not in r.stderr, r.stderr[-3000:]
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("recipe-embed: error:")]
        assert len(errors) == 1, r.stderr[-3000:]
        assert errors[0].startswith(f"recipe-embed: error: cannot write {out}/"), errors[0]
        assert errors[0].endswith(": no space left on device"), errors[0]
        # nothing half-written is left where --resume would look, and no stray temp dir
        checkpoints = out / CHECKPOINTS_SUBDIR
        left = sorted(p.name for p in checkpoints.iterdir()) if checkpoints.exists() else []
        assert not [n for n in left if n.startswith("checkpoint-")], left
        assert last_complete_checkpoint(checkpoints) is None
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        resume = subprocess.run([*argv, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
        assert resume.returncode == 2 and "no complete checkpoint to resume from" in resume.stderr, resume.stderr


class _HalfSavingModel:
    """``save`` writes part of a weights file, then fails as safetensors does on a full disk."""

    def save(self, path: str) -> None:
        Path(path).mkdir(parents=True)
        (Path(path) / "model.safetensors").write_bytes(b"\0" * 1024)
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_failed_model_install_keeps_the_old_model_and_names_the_target(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "modules.json").write_text("[]")
    with pytest.raises(StorageError) as info:
        _install_model(_HalfSavingModel(), target)  # type: ignore[arg-type]
    assert str(info.value) == f"cannot write {target}: no space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp dir left
    assert (target / "modules.json").read_text() == "[]"


def test_training_task_reports_the_childs_write_error_line(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pipelines import childproc as tp
    from pipelines.config import load_config

    line = f"cannot write {tmp_path}/model/checkpoints/checkpoint-2: no space left on device"
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        from pipelines.childproc import record_error
        from pipelines.errors import StorageError
        print("step 1/2", flush=True)
        print({"recipe-embed: error: " + line!r}, file=sys.stderr, flush=True)
        record_error(StorageError({line!r}), 1)
        sys.exit(1)
        """)
    )
    monkeypatch.setattr(tp, "train_command", lambda d, o, c: [sys.executable, str(script)])
    with pytest.raises(StorageError) as info:
        tp.train_in_subprocess(load_config("smoke"), "/data", str(tmp_path / "model"))
    assert str(info.value) == line
