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


def alias_version(cfg: PipelineConfig, alias: str) -> str | None:
    """The registry version ``alias`` points to, or None."""
    from pipelines import registry, tracking

    mv = registry.get_alias(tracking.client(cfg), cfg.registry.model_name, alias)
    return None if mv is None else str(mv.version)


def registered_versions(cfg: PipelineConfig) -> list[str]:
    """Every version of the registered model, as sorted strings."""
    from pipelines import tracking

    found = tracking.client(cfg).search_model_versions(f"name = '{cfg.registry.model_name}'")
    return sorted(str(v.version) for v in found)


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


N_QUERIES = 300


def _per_query(m: dict[str, float], noise: float, seed: int) -> dict[int, Any]:
    """Per-query AP = a query difficulty every model shares + the model's map@100 + its own noise."""
    import numpy as np

    shared = np.random.default_rng(12345).uniform(-0.3, 0.3, N_QUERIES)
    shared -= shared.mean()
    own = np.random.default_rng(seed).normal(0.0, noise, N_QUERIES) if noise else np.zeros(N_QUERIES)
    own -= own.mean()
    return {d: shared + m[f"dim_{d}_cosine_map@100"] + own for d in DIMS}


def scores(map384: float, others: float | None = None, noise: float = 0.0, seed: int = 0, **override: float) -> Any:
    """:class:`Scores` whose per-query AP averages to the metrics; ``noise`` per query, seeded."""
    from pipelines.metrics import Scores

    m = metrics(map384, others, **override)
    return Scores(m, _per_query(m, noise, seed))


def make_candidate(
    cfg: PipelineConfig, candidate: Any, model_uri: str, noise: float = 0.0, seed: int = 0, catalog: str = "cat-1"
) -> str:
    """A finished run with the candidate's metrics, model URI and catalog tags; returns its id.

    ``noise`` / ``seed`` are the ones ``candidate`` was built with, so the fake evaluation can
    rebuild the same per-query scores."""
    from pipelines import registry, tracking

    m = candidate.metrics if hasattr(candidate, "metrics") else candidate
    tracking.connect(cfg)
    run_id = tracking.start_run(cfg, run_name="candidate")
    tracking.log_metrics(run_id, m)
    tracking.set_tags(
        run_id,
        {
            tracking.MODEL_URI_TAG: model_uri,
            registry.CATALOG_DIGEST_TAG: catalog,
            "test.noise": str(noise),
            "test.seed": str(seed),
        },
    )
    tracking.end_run(run_id)
    return run_id


def stored_metrics_evaluate(uri: str) -> Any:
    """Fake re-scoring: the metrics logged on the version's candidate run, and the same per-query
    scores it was built with (after a short delay, ``FAKE_EVAL_DELAY_S``, which widens any race between
    concurrent promotions)."""
    from pipelines import registry, tracking
    from pipelines.metrics import Scores

    _, name, version = uri.rsplit("/", 2)
    mv = tracking.client().get_model_version(name, version)
    time.sleep(float(os.environ.get("FAKE_EVAL_DELAY_S", "0")))
    run_id = mv.tags[registry.RUN_ID_TAG]
    m = tracking.read_metrics(run_id)
    tags = tracking.client().get_run(run_id).data.tags
    return Scores(m, _per_query(m, float(tags.get("test.noise", 0)), int(tags.get("test.seed", 0))))


def promote_worker(
    cfg_data: dict[str, Any],
    run_id: str,
    model_uri: str,
    candidate: Any,
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
