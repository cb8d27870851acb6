"""Helpers shared by the MLflow tests and importable by spawned child processes."""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path
from typing import Any

from pipelines.config import PipelineConfig

DIMS = (384, 256, 128, 64)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics(map384: float, others: float | None = None, **override: float) -> dict[str, float]:
    """A candidate-style metric dict: map@100, ndcg@10, mrr@10 per dim (others default to map384)."""
    out: dict[str, float] = {}
    for d in DIMS:
        v = map384 if d == 384 or others is None else others
        out[f"dim_{d}_cosine_map@100"] = v
        out[f"dim_{d}_cosine_ndcg@10"] = min(1.0, v + 0.01) if math.isfinite(v) else v
        out[f"dim_{d}_cosine_mrr@10"] = v
    out.update(override)
    return out


def make_candidate(cfg: PipelineConfig, candidate: dict[str, float], model_uri: str) -> str:
    """A finished run with the candidate's metrics and model URI tag; returns its id."""
    from pipelines import tracking

    tracking.connect(cfg)
    run_id = tracking.start_run(cfg, run_name="candidate")
    tracking.log_metrics(run_id, candidate)
    tracking.set_tags(run_id, {tracking.MODEL_URI_TAG: model_uri})
    tracking.end_run(run_id)
    return run_id


def stored_metrics_evaluate(uri: str) -> dict[str, float]:
    """Fake re-evaluation: the metrics logged on the version's candidate run (after a short delay,
    ``FAKE_EVAL_DELAY_S``, which widens any race between concurrent promotions)."""
    from pipelines import registry, tracking

    _, name, version = uri.rsplit("/", 2)
    mv = tracking.client().get_model_version(name, version)
    time.sleep(float(os.environ.get("FAKE_EVAL_DELAY_S", "0")))
    return tracking.read_metrics(mv.tags[registry.RUN_ID_TAG])


def promote_worker(
    cfg_data: dict[str, Any],
    run_id: str,
    model_uri: str,
    candidate: dict[str, float],
    barrier: Any,
    delay_s: float,
    results: Any,
) -> None:
    """Child-process body: wait for the sibling, then promote with the default (file) lock."""
    import mlflow

    from pipelines import registry, tracking

    cfg = PipelineConfig.model_validate(cfg_data)
    os.environ["FAKE_EVAL_DELAY_S"] = "1.0"
    # Warm up (lazy imports, first connection) so the start skew below decides who comes first.
    tracking.connect(cfg)
    registry.get_alias(tracking.client(cfg), cfg.registry.model_name, cfg.registry.champion_alias)
    assert mlflow.register_model is not None
    barrier.wait(timeout=300)
    time.sleep(delay_s)
    decision = registry.promote(cfg, run_id, model_uri, candidate, stored_metrics_evaluate)
    results.put((run_id, decision.to_dict()))


def dataset_dir(root: Path) -> Path:
    """A tiny dataset directory: 8 train and 4 eval pairs, manifest with sha256 digests."""
    import pandas as pd

    from pipelines.io import sha256_file, write_json

    root.mkdir(parents=True)
    pairs = pd.DataFrame(
        {
            "anchor": [f"What can I cook with item{i} and thing{i}?" for i in range(12)],
            "positive": [f"Recipe {i}: item{i} and thing{i} stew" for i in range(12)],
            "intent": ["ingredient_pair"] * 12,
            "group_id": [f"g{i}" for i in range(12)],
        }
    )
    pairs.iloc[:8].to_parquet(root / "train.parquet", index=False)
    pairs.iloc[8:].to_parquet(root / "eval.parquet", index=False)
    digests = {n: sha256_file(root / n) for n in ("train.parquet", "eval.parquet")}
    files = {n: {"sha256": d} for n, d in digests.items()}
    manifest = {"counts": {"train": 8, "eval": 4}, "files": files, "digests": digests, "seed": 42}
    write_json(manifest, root / "manifest.json")
    return root
