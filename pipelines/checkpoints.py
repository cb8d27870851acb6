"""Training checkpoints on disk: ``<out>/checkpoints/checkpoint-N`` directories, which of them are
complete, the last complete one to resume from, and what an interrupted training can do next."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipelines import distributed
from pipelines.errors import InputError

CHECKPOINTS_SUBDIR = "checkpoints"
CHECKPOINT_PREFIX = "checkpoint-"


def checkpoint_step(path: Path) -> int:
    """``N`` of a ``checkpoint-N`` directory (-1 for another name)."""
    try:
        return int(path.name.removeprefix(CHECKPOINT_PREFIX))
    except ValueError:
        return -1


def is_complete_checkpoint(path: Path) -> bool:
    """The trainer writes ``trainer_state.json`` last, after the model, optimizer and RNG state."""
    return (
        path.is_dir()
        and (path / "trainer_state.json").is_file()
        and (path / "modules.json").is_file()
        and (any(path.glob("*.safetensors")) or any(path.glob("*.bin")))
        and ((path / "optimizer.pt").is_file() or (path / "optimizer.bin").is_file())
    )


def last_complete_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The highest-step complete ``checkpoint-N`` under ``checkpoints_dir``, if any."""
    if not checkpoints_dir.is_dir():
        return None
    found = [
        p
        for p in checkpoints_dir.iterdir()
        if p.name.startswith(CHECKPOINT_PREFIX) and checkpoint_step(p) >= 0 and is_complete_checkpoint(p)
    ]
    return max(found, key=checkpoint_step) if found else None


def resume_hint(data_dir: Path, out_dir: Path) -> str:
    """What an interrupted training can do next: resume from its last complete checkpoint, if any."""
    last = last_complete_checkpoint(Path(out_dir) / CHECKPOINTS_SUBDIR)
    if last is None:
        return f"no checkpoint saved yet in {Path(out_dir) / CHECKPOINTS_SUBDIR}; start over with --overwrite"
    return (
        f"resume with recipe-embed train --data {data_dir} --out {out_dir} --resume "
        f"(from {last.name}, with the same --profile/--config/--set)"
    )


def resume_or_clear(checkpoints_dir: Path, resume: bool, world: int) -> Path | None:
    """The checkpoint to resume from (``resume``), else ``None`` after the main process removed stale
    checkpoints (and recorded the world size of a run over several ranks)."""
    if resume:
        distributed.check_resume(checkpoints_dir, world)
        resume_from = last_complete_checkpoint(checkpoints_dir)
        if resume_from is None:
            raise InputError(f"{checkpoints_dir}: no complete checkpoint to resume from")
        return resume_from
    if distributed.is_main_process():
        if checkpoints_dir.exists():
            shutil.rmtree(checkpoints_dir)
        if world > 1:
            distributed.record_world_size(checkpoints_dir, world)
    return None
