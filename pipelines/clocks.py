"""Where a training's time goes, and the one progress line per logging step that reports it.

:class:`StepClocks` adds up the seconds spent waiting for batches, in evaluations and in checkpoint
saves (the trainer, :mod:`pipelines.trainer`, times those blocks); :class:`LoopClock` keeps
``loop_seconds`` current at every step end: the training loop alone (steps and waits for data, without
evaluations and checkpoint saves), which pairs/s of the loop divides by. :class:`LineProgress` prints
step, loss, pairs/s and ETA on one line per logging step, and one line per evaluation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback


@dataclass
class StepClocks:
    """Seconds spent in each part of the training loop, as they add up."""

    data_wait_seconds: float = 0.0
    evaluate_seconds: float = 0.0
    checkpoint_seconds: float = 0.0
    loop_started: float | None = None
    loop_seconds: float = 0.0

    @contextlib.contextmanager
    def timing(self, attr: str) -> Iterator[None]:
        """Adds the time spent in the block to the float attribute ``attr``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, attr, getattr(self, attr) + time.perf_counter() - t0)

    def start_loop(self) -> None:
        """The loop starts at its first batch fetch (later calls keep that start)."""
        if self.loop_started is None:
            self.loop_started = time.perf_counter()

    def update_loop(self) -> None:
        """``loop_seconds``: the wall time since the first batch fetch, less evaluations and saves."""
        if self.loop_started is not None:
            outside = self.evaluate_seconds + self.checkpoint_seconds
            self.loop_seconds = time.perf_counter() - self.loop_started - outside


class LoopClock(TrainerCallback):  # type: ignore[misc]
    """Keeps ``clocks.loop_seconds`` current at every step end (:meth:`StepClocks.update_loop`).

    On CUDA the clock waits for the GPU (``synchronize``) where the trainer is about to wait anyway (a
    logging, evaluation or save step) and at the last step, so queued GPU work is never left out.
    """

    def __init__(self, clocks: StepClocks, device: str) -> None:
        self.clocks = clocks
        self.cuda = device.startswith("cuda")

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        last = state.max_steps > 0 and state.global_step >= state.max_steps
        if self.cuda and (last or control.should_log or control.should_evaluate or control.should_save):
            import torch

            torch.cuda.synchronize()
        self.clocks.update_loop()


class LineProgress(TrainerCallback):  # type: ignore[misc]
    """One line per logging step (step, loss, pairs/s, ETA) and one per evaluation, on stdout.

    Replaces the trainer's tqdm bar, whose redraws a log collector (a pipe, the Prefect log) would
    record as a stream of near-identical lines. ``pairs_per_step``: the whole job's pairs per optimizer
    step (the global batch, split over the ranks, x gradient accumulation).
    """

    def __init__(self, primary_metric: str, pairs_per_step: int) -> None:
        self.primary_metric = primary_metric
        self.pairs_per_step = pairs_per_step
        self.t0 = self.last_t = time.perf_counter()
        self.start_step = self.last_step = 0
        self.eval_s = self.eval_s_since_log = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.t0 = self.last_t = time.perf_counter()
        self.start_step = self.last_step = int(state.global_step)
        self.eval_s = self.eval_s_since_log = 0.0

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        now = time.perf_counter()
        key = f"eval_{self.primary_metric}"
        if "loss" in logs:
            step, total = int(state.global_step), int(state.max_steps)
            interval = max(now - self.last_t - self.eval_s_since_log, 1e-9)
            pairs_s = (step - self.last_step) * self.pairs_per_step / interval
            done = step - self.start_step
            per_step = (now - self.t0 - self.eval_s) / done if done > 0 else 0.0
            eta = hms(per_step * max(total - step, 0))
            print(
                f"step {step}/{total} | epoch {float(state.epoch or 0):.2f} | loss {float(logs['loss']):.4f} "
                f"| {pairs_s:,.0f} pairs/s | ETA {eta}",
                flush=True,
            )
            self.last_t, self.last_step, self.eval_s_since_log = now, step, 0.0
        elif key in logs:
            seconds = float(logs.get("eval_runtime", 0.0) or 0.0)
            self.eval_s += seconds
            self.eval_s_since_log += seconds
            print(
                f"evaluation at step {int(state.global_step)} (epoch {float(state.epoch or 0):.2f}): "
                f"validation {self.primary_metric} {float(logs[key]):.4f} ({seconds:.1f} s)",
                flush=True,
            )


def hms(seconds: float) -> str:
    """``H:MM:SS`` of a number of seconds, rounded."""
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
