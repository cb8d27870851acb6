"""``recipe-embed search``: the top recipe cards of a catalog for a query, at a served (dim, precision).

The catalog is embedded once per model (full dimension, float32) and cached; each (dim, precision)
index is derived from that and cached beside it, keyed by the model, the catalog's sha256, the dim
and the precision. The search itself is exact brute force in numpy (see the README for the
measurement behind that choice): float32 and int8 by dot product, binary by Hamming distance, and
rescoring as in :mod:`pipelines.serving`.

int8 ranges come from the catalog's own document embeddings (the corpus being served; no eval text).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.errors import InputError
from pipelines.serving import (
    PRECISIONS,
    check_precision,
    int8_ranges,
    quantize,
    quantized_scores,
    rescore_values,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from pipelines.config import PipelineConfig

INDEX_DIR = "search-index"
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


@dataclass(frozen=True)
class ServedModel:
    """A model ready to load: its local directory, a cache key, the trained dims and the recommendation."""

    label: str
    path: Path
    key: str
    trained_dims: tuple[int, ...]
    recommendation: dict[str, Any]
    cache_dir: Path


def card_text(row: pd.Series) -> str:
    """``Name: cuisine, N min, tag, tag. Ingredients: a, b, c.``: the document a recipe is searched by."""
    tags = ", ".join(row["diet_tags"]) if len(row["diet_tags"]) else "no diet tags"
    return (
        f"{row['name']}: {row['cuisine']}, {int(row['total_time_min'])} min, {tags}. "
        f"Ingredients: {', '.join(row['ingredients'])}."
    )


def check_request(query: str, k: int, precision: str | None) -> None:
    """The checks that need no model: one line each (exit 2)."""
    if not query or not query.strip():
        raise InputError('empty query: give the words to search for, e.g. recipe-embed search "vegan thai dinner"')
    if k <= 0:
        raise InputError(f"-k must be a positive number of results, got {k}")
    if precision is not None:
        check_precision(precision)


def check_dim(dim: int, trained: Sequence[int]) -> int:
    if dim not in trained:
        raise InputError(f"dim {dim} was not trained (choose from: {', '.join(map(str, trained))})")
    return dim


def _run_facts(cfg: PipelineConfig, run_id: str | None) -> tuple[dict[str, str], dict[str, str]]:
    from pipelines import tracking

    if not run_id:
        return {}, {}
    run = tracking.client(cfg).get_run(run_id)
    return dict(run.data.tags), dict(run.data.params)


def resolve_model(cfg: PipelineConfig, model: str | None) -> ServedModel:
    """``None`` or ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``: download the registered version once
    under ``<data_dir>/serving/NAME/vVERSION/``; a local model: as is, its cache under ``<data_dir>/serving``."""
    from pipelines import tracking

    uri = model or f"models:/{cfg.registry.model_name}@{cfg.registry.champion_alias}"
    m = _VERSION_URI.match(uri)
    if m is None:
        from pipelines.models import resolve_model_path

        path = Path(resolve_model_path(uri))
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        cache = cfg.paths.data_dir / "serving" / f"local-{digest}"
        return ServedModel(uri, path, f"local-{digest}", tuple(cfg.training.matryoshka_dims), {}, cache)

    from pipelines.registry import get_alias

    tracking.connect(cfg)
    c = tracking.client(cfg)
    name = m["name"]
    if m["alias"]:
        mv = get_alias(c, name, m["alias"])
        if mv is None:
            raise InputError(
                f"no {m['alias']} yet for {name}: run `make run` (or `recipe-embed run`) first, or pass --model"
            )
    else:
        from mlflow.exceptions import MlflowException

        try:
            mv = c.get_model_version(name, m["version"])
        except MlflowException as exc:
            raise InputError(f"{uri}: no such model version ({exc.message.splitlines()[0]})") from exc
    tags, params = _run_facts(cfg, mv.run_id)
    trained = tuple(json.loads(params["training.matryoshka_dims"])) if "training.matryoshka_dims" in params else ()
    rec = {k: tags[f"serving_{k}"] for k in ("dim", "precision", "rescore") if f"serving_{k}" in tags}
    root = cfg.paths.data_dir / "serving" / name / f"v{mv.version}"
    local = root / "model"
    if not (local / "MLmodel").exists():
        import mlflow.artifacts

        root.mkdir(parents=True, exist_ok=True)
        tmp = root / "model.partial"
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(tmp))
        tmp.rename(local)
    key = f"{name}-v{mv.version}-{mv.run_id or ''}"
    return ServedModel(
        f"{name} version {mv.version}", local, key, trained or tuple(cfg.training.matryoshka_dims), rec, root
    )


def load_served(served: ServedModel) -> SentenceTransformer:
    """The SentenceTransformer itself (for a downloaded MLflow model: its flavor's data directory,
    ``model.sentence_transformer/``, loaded without importing the pyfunc machinery)."""
    from pipelines.models import load_model

    data = served.path / "model.sentence_transformer"
    if data.is_dir():
        return load_model(str(data))
    if (served.path / "MLmodel").exists():
        import mlflow.sentence_transformers

        return mlflow.sentence_transformers.load_model(str(served.path))
    return load_model(str(served.path))


@dataclass
class Index:
    """One (dim, precision) index over the catalog: the stored vectors, int8 ranges, and the cards."""

    dim: int
    precision: str
    vectors: np.ndarray
    ranges: np.ndarray | None
    cards: list[str]


def catalog_embeddings(
    st: SentenceTransformer, cards: list[str], cache_dir: Path, catalog_digest: str, batch_size: int = 64
) -> np.ndarray:
    """Full-dimension float32 document embeddings of the catalog, cached per model and catalog digest."""
    from pipelines.io import atomic_path

    path = cache_dir / INDEX_DIR / f"{catalog_digest[:16]}-full.npy"
    if path.exists():
        full = np.load(path)
        if full.shape[0] == len(cards):
            return full
    full = np.asarray(st.encode_document(cards, batch_size=batch_size, convert_to_numpy=True), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, full)
    return full


def _prepare(vectors: np.ndarray, dim: int, normalize: bool) -> np.ndarray:
    out = np.ascontiguousarray(vectors[:, :dim], dtype=np.float32)
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def build_index(
    full: np.ndarray, cards: list[str], dim: int, precision: str, cache_dir: Path, catalog_digest: str, normalize: bool
) -> Index:
    """The (dim, precision) index, from its cache file when there is one."""
    from pipelines.io import atomic_path

    path = cache_dir / INDEX_DIR / f"{catalog_digest[:16]}-d{dim}-{precision}.npz"
    if path.exists():
        with np.load(path) as z:
            ranges = z["ranges"] if "ranges" in z.files else None
            if z["vectors"].shape[0] == len(cards):
                return Index(dim, precision, z["vectors"], ranges, cards)
    docs = _prepare(full, dim, normalize)
    ranges = int8_ranges(docs) if precision == "int8" else None
    vectors = quantize(docs, precision, ranges)
    arrays = {"vectors": vectors, **({"ranges": ranges} if ranges is not None else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return Index(dim, precision, vectors, ranges, cards)


def search(
    index: Index, query_full: np.ndarray, k: int, normalize: bool, rescore: bool = False, multiplier: int = 4
) -> list[tuple[int, float]]:
    """``(catalog row, score)`` best first; ties by catalog order. Binary scores are minus the Hamming
    distance unless rescored."""
    q = _prepare(query_full.reshape(1, -1), index.dim, normalize)
    qq = quantize(q, index.precision, index.ranges)
    scores = quantized_scores(qq, index.vectors, index.precision)[0]
    if rescore and index.precision != "float32":
        take = min(len(scores), k * multiplier)
        cand = np.argsort(-scores, kind="stable")[:take]
        scores = np.full(scores.shape, -np.inf, dtype=np.float32)
        scores[cand] = rescore_values(index.vectors[cand], index.precision, index.ranges, index.dim) @ q[0]
    order = np.argsort(-scores, kind="stable")[: min(k, len(scores))]
    return [(int(i), float(scores[i])) for i in order]


__all__ = ["PRECISIONS", "Index", "ServedModel", "build_index", "card_text", "check_request", "search"]


def run_search(
    cfg: PipelineConfig,
    query: str,
    *,
    model: str | None = None,
    dim: int | None = None,
    precision: str | None = None,
    k: int = 5,
) -> list[str]:
    """Resolve the model and setting, build (or load) the index, search: the lines to print."""
    from pipelines.catalog import catalog_digest, load_catalog

    check_request(query, k, precision)
    served = resolve_model(cfg, model)
    rec = served.recommendation
    if dim is None:
        dim = int(rec.get("dim", max(served.trained_dims)))
    check_dim(dim, served.trained_dims)
    rescore = precision is None and rec.get("rescore") == "true"
    precision = check_precision(precision or rec.get("precision") or "float32")
    catalog = load_catalog(cfg.catalog)
    cards = [card_text(row) for _, row in catalog.iterrows()]
    digest = catalog_digest(cfg.catalog)
    st = load_served(served)
    normalize = st.similarity_fn_name == "cosine"
    full = catalog_embeddings(st, cards, served.cache_dir, digest)
    index = build_index(full, cards, dim, precision, served.cache_dir, digest, normalize)
    q = np.asarray(st.encode_query([query], convert_to_numpy=True), dtype=np.float32)
    hits = search(index, q[0], k, normalize, rescore=rescore, multiplier=cfg.serving.rescore_multiplier)
    how = precision + (" + rescoring" if rescore else "")
    label = "-hamming" if precision == "binary" and not rescore else "score"
    out = [f"{served.label}, {dim} dims {how}, {len(cards)} recipes: top {len(hits)} for {query!r}"]
    for rank, (i, score) in enumerate(hits, 1):
        out.append(f"{rank:>2}. [{label} {score:.4f}] {cards[i]}")
    return out
