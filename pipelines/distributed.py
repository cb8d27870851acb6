"""Data-parallel training over several processes: ``torch.distributed``, launched by ``torchrun``.

With ``training.nproc_per_node`` above 1, ``recipe-embed train`` re-runs itself as::

    python -m torch.distributed.run --standalone --nproc_per_node N -m pipelines.cli train ...

(``torch.distributed.run`` is ``torchrun`` from the same environment). Every rank then runs
:func:`pipelines.training.train`; this module holds what that needs:

* rank and world size from the environment ``torchrun`` sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``);
* the batch split: the config speaks in the *global* batch (``training.global_batch_size``, else
  ``per_device_batch_size`` x ranks); each step draws one global batch from the sampler and every rank
  takes an equal slice of it, so N ranks see the same batches as one process at that batch;
* collectives used by training (a NaN seen on any rank stops all ranks; whole-job pair counts);
* the world size written beside the checkpoints, so ``--resume`` refuses a different one;
* the launcher side: the torchrun argv and a runner that turns a failed rank into one error line.

Nothing here imports torch at module import time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines import childproc, lifeline
from pipelines.errors import InputError, TrainingError

TORCHRUN_MODULE = "torch.distributed.run"
"""``torchrun`` is this module's console script; ``python -m`` keeps it in the same interpreter."""

WORLD_FILE = "world_size.json"
"""Written by rank 0 beside the checkpoints: the world size that wrote them."""

ERROR_PREFIX = "recipe-embed: error: "


# --- the rank's view ----------------------------------------------------------------------------


def in_torchrun() -> bool:
    """True inside a process started by ``torchrun`` (or any launcher that sets the same variables)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1")) if in_torchrun() else 1


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if in_torchrun() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if in_torchrun() else 0


def is_main_process() -> bool:
    """Rank 0 (or no distributed run at all): the one process that writes files and prints results."""
    return rank() == 0


def backend_for(device: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.startswith("cuda") else "gloo"


def setup_rank(device: str) -> int:
    """Prepare this process as one rank; return the world size (1 outside torchrun).

    Pins the rank to its GPU (``cuda`` then means ``cuda:LOCAL_RANK``) and asks Linux to kill it if
    the torchrun agent dies, so a killed launcher leaves no rank holding a GPU.
    """
    n = world_size()
    if n <= 1:
        return 1
    if device == "mps":
        raise InputError("training.nproc_per_node > 1 needs CUDA or CPU ranks, not mps")
    lifeline.set_pdeathsig(signal.SIGKILL)
    if device.startswith("cuda"):
        import torch

        if local_rank() >= torch.cuda.device_count():
            raise InputError(
                f"rank {rank()} wants cuda:{local_rank()} but {torch.cuda.device_count()} GPU(s) are visible"
            )
        torch.cuda.set_device(local_rank())
    return n


def batch_split(global_batch_size: int | None, per_device_batch_size: int, world: int) -> tuple[int, int]:
    """(global batch, per-rank batch). ``global_batch_size`` None means ``per_device_batch_size`` x ranks."""
    total = global_batch_size if global_batch_size is not None else per_device_batch_size * world
    if total % world:
        raise InputError(f"training.global_batch_size {total} does not split evenly over {world} ranks")
    per_rank = total // world
    if per_rank < 1:
        raise InputError(f"training.global_batch_size {total} is smaller than the {world} ranks")
    return total, per_rank


def all_ranks_true(flag: Any) -> bool:
    """``flag`` (a bool tensor) holds on every rank; a collective, so every rank must call it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bool(flag)
    import torch

    t = flag.detach().to(dtype=torch.int32).reshape(1).clone()
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def sum_across_ranks(value: float, device: str) -> float:
    """Sum of ``value`` over all ranks (``value`` itself outside a distributed run)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    dev = f"cuda:{local_rank()}" if device.startswith("cuda") else "cpu"
    t = torch.tensor([float(value)], dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def broadcast_weights(model: Any) -> None:
    """Every rank takes rank 0's weights (a collective; nothing outside a distributed run)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Destroy the process group (if any) so the rank exits without a teardown warning."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


# --- checkpoints and resume ---------------------------------------------------------------------


def record_world_size(checkpoints_dir: Path, world: int) -> None:
    """Rank 0: note the world size beside the checkpoints (read back by :func:`check_resume`)."""
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    (checkpoints_dir / WORLD_FILE).write_text(json.dumps({"world_size": world}) + "\n", encoding="utf-8")


def check_resume(checkpoints_dir: Path, world: int) -> None:
    """Refuse to resume checkpoints written by a different number of ranks (no file: one process)."""
    path = checkpoints_dir / WORLD_FILE
    written = 1
    if path.is_file():
        try:
            written = int(json.loads(path.read_text(encoding="utf-8"))["world_size"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: unreadable ({exc})") from exc
    if written != world:
        raise InputError(
            f"{checkpoints_dir} was written by {written} rank(s) and this run has {world}: resume with "
            f"training.nproc_per_node={written}, or train afresh without --resume"
        )


# --- the launcher side --------------------------------------------------------------------------


def resolve_nproc(value: int | str, device: str = "auto") -> int:
    """``training.nproc_per_node`` as a number: ``auto`` is every visible GPU (1 without CUDA).

    Raises :class:`InputError` when more processes than GPUs are asked for on a CUDA run, or for mps.
    """
    if value == "auto":
        if device in ("auto", "cuda"):
            import torch

            return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1
        return 1
    n = int(value)
    if n <= 1:
        return 1
    if device == "mps":
        raise InputError("training.nproc_per_node > 1 needs CUDA or CPU ranks, not mps")
    if device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available() and n > torch.cuda.device_count():
            raise InputError(
                f"training.nproc_per_node={n} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "use auto or a smaller number"
            )
    return n


def torchrun_command(argv: Sequence[str], nproc: int) -> list[str]:
    """``[python, -m, pipelines.cli, train, ...]`` -> the same module under ``torchrun --standalone``.

    ``nproc <= 1`` returns ``argv`` unchanged. ``argv`` must be ``[interpreter, "-m", module, *args]``.
    """
    argv = list(argv)
    if nproc <= 1:
        return argv
    if len(argv) < 3 or argv[1] != "-m":
        raise ValueError(f"expected [python, -m, module, ...], got {argv[:3]}")
    return [argv[0], "-m", TORCHRUN_MODULE, "--standalone", f"--nproc_per_node={nproc}", *argv[1:]]


def launch_env(nproc: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The ranks' environment: unbuffered output and a fair share of CPU threads per rank."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(nproc, 1))))
    return env


_ROOT_CAUSE = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*\d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)")
_SIGNAL = re.compile(r"Signal\s+\d+\s+\((SIG\w+)\)")


def failure_message(output: str, code: int) -> tuple[str, int]:
    """One line (and an exit code) for a failed torchrun from its output's tail.

    A rank's own ``recipe-embed: error: ...`` line wins (the same error on every rank shows once);
    else torchrun's root cause (which rank, its exit code or signal); else torchrun's exit code.
    """
    # torchrun lists the other failures (ranks it stopped) first, then the root cause
    cause_at = output.rfind("Root Cause")
    root = _ROOT_CAUSE.search(output, cause_at if cause_at >= 0 else 0)
    for line in output.splitlines():
        if line.startswith(ERROR_PREFIX):
            rank_code = int(root.group(2)) if root else code
            return line.removeprefix(ERROR_PREFIX).strip(), rank_code if rank_code > 0 else code
    if root:
        who, exitcode = int(root.group(1)), int(root.group(2))
        sig = _SIGNAL.search(output[root.start() :])
        how = f"was killed by {sig.group(1)}" if sig else f"exited with code {exitcode}"
        return f"rank {who} {how}; all ranks were stopped", 1
    return f"torchrun exited with code {code}", 1


def run_torchrun(argv: Sequence[str], nproc: int, *, grace_s: float = 30.0) -> None:
    """Run ``argv`` under torchrun with ``nproc`` ranks, echoing its output; raise on failure.

    The agent stays in this process group, so a group-wide SIGTERM/SIGKILL (a task timeout or a
    cancel) reaches it; it stops its ranks, which also die with it if it is killed. If this process
    alone is interrupted, the agent is asked to stop and waited for. A failed run raises the error the
    failing rank recorded, with its type (:mod:`pipelines.childproc`), else one :class:`TrainingError`.
    """
    with childproc.error_file() as err_file:
        env = {**launch_env(nproc), childproc.ERROR_FILE_ENV: str(err_file)}
        proc = childproc.start(torchrun_command(argv, nproc), stdout=subprocess.PIPE, env=env, die_with_parent=True)
        assert proc.stdout is not None
        tail = bytearray()
        out = sys.stdout.buffer

        def on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, on_term)
        try:
            while chunk := os.read(proc.stdout.fileno(), 65536):
                out.write(chunk)
                out.flush()
                tail += chunk
                del tail[:-65536]
            code = proc.wait()
        except KeyboardInterrupt:
            childproc.stop(proc, grace_s, group=False, first_wait_s=5.0)
            raise TrainingError(f"distributed training on {nproc} ranks was interrupted") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
            if proc.poll() is None:
                childproc.stop(proc, grace_s, group=False, first_wait_s=5.0)
        recorded = childproc.read_error(err_file) if code != 0 else None
    if code != 0:
        message, exit_code = failure_message(tail.decode("utf-8", errors="replace"), code)
        kind = type(recorded) if isinstance(recorded, TrainingError) else TrainingError
        err = kind(f"distributed training on {nproc} ranks failed: {message}")
        err.exit_code = exit_code
        raise err


def train_under_torchrun(
    cfg: Any, data_dir: str | Path, out_dir: str | Path, nproc: int, *, resume: bool = False, overwrite: bool = False
) -> None:
    """``recipe-embed train`` for the resolved config ``cfg`` as ``nproc`` ranks (see :func:`run_torchrun`).

    The config reaches the ranks as a temporary JSON file (``--config``), so every rank resolves exactly
    the caller's config; the file is removed afterwards.
    """
    with childproc.config_file(cfg) as cfg_file:
        run_torchrun(childproc.train_command(data_dir, out_dir, cfg_file, resume=resume, overwrite=overwrite), nproc)
