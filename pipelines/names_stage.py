"""The names stage: before the question pairs, teach the base model that an ingredient's names are one thing.

A pass over the question pairs shows each of the thousands of name pairs (``aubergine`` / ``eggplant``,
``scallions`` / ``spring onions``) once or not at all, and a pair seen once is not learned in either
direction: after fine-tuning, "bonito flakes" was as close to "saffron" as to "katsuobushi". The names
stage trains on the dataset's ``names.parquet`` (every training name pair, both ways, with its synonym
class) for ``training.name_rounds`` rounds, with the same loss as the main stage. Name pairs are a few
tokens long (``training.name_max_seq_length``), so a round costs a fraction of a question pass.

Each round takes one pair from every synonym class (the next one, cycling through the class's pairs) in
shuffled order, cut into batches of ``training.name_batch_size``: no batch holds two names of one
class, so no in-batch negative is a synonym. The learning rate warms up over the first tenth of the
steps and follows a cosine to zero. The stage keeps no checkpoint of its own (it takes a minute on two
cores): a resumed run runs it again, the same seeded steps, since the base mix starts from its model;
the main stage's checkpoint then replaces the weights it trained.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.errors import TrainingError

NAMES_FILE = "names.parquet"


@dataclass(frozen=True)
class NamesStageResult:
    rounds: int
    pairs: int
    classes: int
    steps: int
    seconds: float
    first_loss: float
    last_loss: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "pairs": self.pairs,
            "classes": self.classes,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "first_loss": round(self.first_loss, 6),
            "last_loss": round(self.last_loss, 6),
        }


def load_names(data_dir: Path) -> pd.DataFrame | None:
    """``data_dir/names.parquet`` (``anchor``, ``positive``, ``group_id``), or None where the dataset has
    none (a dataset validated from a user's pairs file)."""
    from pipelines.io import read_table

    path = Path(data_dir) / NAMES_FILE
    if not path.exists():
        return None
    return read_table(path, required=["anchor", "positive", "group_id"])[["anchor", "positive", "group_id"]]


def round_batches(names: pd.DataFrame, rounds: int, batch_size: int, seed: int) -> list[list[int]]:
    """Row numbers of ``names``, batch by batch: per round one row of every class (round ``r`` takes each
    class's ``r``-th row, cycling, in a seeded order of its rows), classes in a fresh shuffled order,
    cut into batches of at most ``batch_size``. No batch holds two rows of one class."""
    rng = np.random.default_rng(seed)
    rows_of = [rng.permutation(ix) for ix in names.groupby("group_id", sort=True).indices.values()]
    batches: list[list[int]] = []
    for r in range(rounds):
        picked = [int(rows[r % len(rows)]) for rows in (rows_of[k] for k in rng.permutation(len(rows_of)))]
        batches += [picked[i : i + batch_size] for i in range(0, len(picked), batch_size)]
    return batches


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """The learning-rate factor at ``step`` (0-based): linear warmup over ``warmup`` steps, then a cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_names(
    model: Any,
    names: pd.DataFrame,
    loss_fn: Any,
    *,
    rounds: int,
    batch_size: int,
    max_seq_length: int,
    learning_rate: float,
    max_grad_norm: float,
    seed: int,
    device: str,
    autocast_dtype: Any = None,
    log_every: int = 10,
    log: Callable[[str], None] | None = None,
) -> NamesStageResult:
    """Train ``model`` in place on ``names`` with ``loss_fn`` (the main stage's loss, built on ``model``; see
    the module docstring); its ``max_seq_length`` is restored."""
    import torch

    batches = round_batches(names, rounds, batch_size, seed)
    if not batches:
        raise TrainingError("names stage: no name pairs to train on")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    warmup = max(1, round(0.1 * len(batches)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, len(batches), warmup))
    anchors, positives = names["anchor"].tolist(), names["positive"].tolist()
    torch.manual_seed(seed)
    was_length, was_training = model.max_seq_length, model.training
    model.max_seq_length = max_seq_length
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    try:
        for step, rows in enumerate(batches):
            features = [_features(model, [texts[i] for i in rows], device) for texts in (anchors, positives)]
            with _autocast(device, autocast_dtype):
                loss = loss_fn(features, None)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(
                    f"names stage diverged: loss is {value} at step {step + 1}; lower training.learning_rate"
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(value)
            if log and ((step + 1) % log_every == 0 or step + 1 == len(batches)):
                rate = sum(len(b) for b in batches[: step + 1]) / (time.perf_counter() - t0)
                log(f"names stage: step {step + 1}/{len(batches)} | loss {value:.4f} | {rate:.0f} pairs/s")
    finally:
        model.max_seq_length = was_length
        model.train(was_training)
    return NamesStageResult(
        rounds=rounds,
        pairs=len(names),
        classes=int(names["group_id"].nunique()),
        steps=len(batches),
        seconds=time.perf_counter() - t0,
        first_loss=losses[0],
        last_loss=losses[-1],
    )


def _features(model: Any, texts: list[str], device: str) -> dict[str, Any]:
    feats = model.preprocess(texts)
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in feats.items()}


def _autocast(device: str, dtype: Any) -> Any:
    import contextlib

    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)
