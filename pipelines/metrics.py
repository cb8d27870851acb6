"""The one owner of metric names and metric keys, and the per-query scores a decision is made on.

Keys follow sentence-transformers' ``InformationRetrievalEvaluator`` with a ``dim_<d>`` name:

- whole eval: ``dim_384_cosine_map@100``;
- one eval slice: ``slice_unseen_wording_dim_384_cosine_map@100``;
- one intent: ``intent_recipe_card_dim_384_cosine_map@100``;
- the size of a group: ``slice_unseen_wording_queries``.

MLflow rejects ``@``: :func:`mlflow_key` writes ``_at_`` instead (``slice_unseen_wording_dim_384_cosine_map_at_100``),
and the base model's and the champion's metrics carry a ``base_`` / ``champion_`` prefix on the same run, so
the Compare view lines the candidate, base and champion up key by key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ACCURACY_AT_K = (1, 3, 5, 10)
PRECISION_RECALL_AT_K = (1, 3, 5, 10)
NDCG_AT_K = (10,)
MRR_AT_K = (10,)
MAP_AT_K = (100,)
MAX_K = max(*ACCURACY_AT_K, *PRECISION_RECALL_AT_K, *NDCG_AT_K, *MRR_AT_K, *MAP_AT_K)

METRIC_NAMES: tuple[str, ...] = (
    *(f"accuracy@{k}" for k in ACCURACY_AT_K),
    *(f"precision@{k}" for k in PRECISION_RECALL_AT_K),
    *(f"recall@{k}" for k in PRECISION_RECALL_AT_K),
    *(f"ndcg@{k}" for k in NDCG_AT_K),
    *(f"mrr@{k}" for k in MRR_AT_K),
    *(f"map@{k}" for k in MAP_AT_K),
)
"""In the library's order (accuracy, precision, recall, ndcg, mrr, map), without the score function."""

SIMILARITY = "cosine"
PRIMARY = "map@100"
"""The metric promotion decides on (per query: average precision within the top 100)."""

SELECTION = "slice_mean_map@100"
"""Validation's score when it has slices (the synthesized questions and the hand-written ``human_dev``): map@100
averaged over its slices, so each weighs the same whatever its size. The checkpoint kept and the base mix are
chosen on it (``dim_384_cosine_slice_mean_map@100``); without slices they are chosen on map@100."""

SATURATION = 0.995
"""A champion at or above this primary metric on the eval leaves no room to tell models apart."""

GROUP_KINDS = ("slice", "intent")
"""Eval columns whose values get their own metrics (optional columns: older datasets lack them)."""

SLICES = ("seen_wording", "unseen_wording", "recipe_card", "human", "unseen_ingredient", "other_catalog")
"""The eval slices of a synthesized dataset, in the order reports show them (others, if any, follow sorted):
training wordings on new subjects, held-out wordings and alternate names, the recipe-card intent, the
hand-written ``human`` questions (``pipelines/data/HUMAN_EVAL.md``), ``unseen_ingredient`` (ingredients
none of whose alternate names is ever seen in training) and ``other_catalog`` (ingredient pairs asked of
a catalog that names things its own way, each answer among near-twins that share an ingredient)."""

LOAD_LINE = 'mlflow.sentence_transformers.load_model("models:/{name}@{alias}")'
"""How a user loads a registered alias (the card, ``recipe-embed champion``, the registry description)."""

_KEY = re.compile(r"^(?:(?P<kind>slice|intent)_(?P<group>.+?)_)?dim_(?P<dim>\d+)_(?P<sim>[a-z]+)_(?P<name>.+)$")


def group_prefix(kind: str | None = None, group: str | None = None) -> str:
    """``("slice", "recipe_card")`` -> ``"slice_recipe_card_"``; no group -> ``""``."""
    if kind is None or group is None:
        return ""
    return f"{kind}_{group}_"


def dim_name(dim: int) -> str:
    """The evaluator's name for one Matryoshka dim, ``dim_384``: the stem of every key at that dim."""
    return f"dim_{dim}"


def dim_prefix(dim: int) -> str:
    """``dim_384_``: what every whole-eval key at ``dim`` starts with (then the similarity and the name)."""
    return f"{dim_name(dim)}_"


def metric_key(
    dim: int, name: str = PRIMARY, kind: str | None = None, group: str | None = None, similarity: str = SIMILARITY
) -> str:
    """``metric_key(384)`` -> ``dim_384_cosine_map@100``; with ``kind="slice", group="recipe_card"`` ->
    ``slice_recipe_card_dim_384_cosine_map@100``."""
    return f"{group_prefix(kind, group)}{dim_prefix(dim)}{similarity}_{name}"


def size_key(kind: str, group: str) -> str:
    """The number of eval queries in a group: ``slice_recipe_card_queries``."""
    return f"{group_prefix(kind, group)}queries"


def primary_metric_key(dims: Sequence[int], similarity: str = SIMILARITY) -> str:
    """The metric checkpoint selection maximizes: map@100 at the largest dim."""
    return metric_key(max(dims), PRIMARY, similarity=similarity)


def selection_key(dims: Sequence[int], similarity: str = SIMILARITY, sliced: bool = False) -> str:
    """The validation metric the checkpoint is chosen on: :data:`SELECTION` at the largest dim when the
    validation split has slices (``sliced``), else :func:`primary_metric_key`."""
    return metric_key(max(dims), SELECTION, similarity=similarity) if sliced else primary_metric_key(dims, similarity)


def mlflow_key(key: str) -> str:
    """The spelling MLflow accepts: ``@`` -> ``_at_``."""
    return key.replace("@", "_at_")


def from_mlflow_key(key: str) -> str:
    """Inverse of :func:`mlflow_key` for our keys."""
    return key.replace("_at_", "@")


def parse_key(key: str) -> tuple[str | None, str | None, int, str] | None:
    """``slice_x_dim_64_cosine_map@100`` -> ``("slice", "x", 64, "map@100")``; not a metric key -> None."""
    m = _KEY.match(from_mlflow_key(key))
    if not m:
        return None
    return m["kind"], m["group"], int(m["dim"]), m["name"]


def lookup(
    values: Mapping[str, float] | None, dim: int, name: str = PRIMARY, kind: str | None = None, group: str | None = None
) -> float | None:
    """A metric in either spelling (``...map@100`` or MLflow's ``...map_at_100``), or None."""
    if not values:
        return None
    key = metric_key(dim, name, kind, group)
    for k in (key, mlflow_key(key)):
        if k in values and values[k] is not None:
            return float(values[k])
    return None


def groups_in(values: Mapping[str, float] | None, kind: str) -> list[str]:
    """The groups of ``kind`` that ``values`` has metrics for; slices in :data:`SLICES` order."""
    found: set[str] = set()
    for k in values or {}:
        parsed = parse_key(k)
        if parsed and parsed[0] == kind and parsed[1]:
            found.add(parsed[1])
    if kind == "slice":
        return [s for s in SLICES if s in found] + sorted(found - set(SLICES))
    return sorted(found)


def is_saturated(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= SATURATION


@dataclass(frozen=True)
class Scores:
    """A model's metrics on one eval set, plus what a paired comparison needs: the average precision
    (``map@100`` per query) at each dim, in eval row order."""

    metrics: dict[str, float]
    per_query_ap: dict[int, np.ndarray] = field(default_factory=dict)
    serving: dict[str, Any] | None = None
    """The serving grid (:mod:`pipelines.serving`) when the evaluation computed one."""

    def ap(self, dim: int) -> np.ndarray | None:
        return self.per_query_ap.get(dim)


# --- what a run logs as MLflow metrics (the headline) and what goes to the full table --------------

HEADLINE_PREFIX = "0_"
"""The verdict keys at a glance: a digit sorts before every letter, so Compare and the chart search list
them first (``0_map_at_100``, then ``0_map_at_100_delta_vs_base``, ``..._delta_vs_champion``, ``..._ci_low``,
``..._ci_high``)."""

PRIMARY_VALUE = "value"
PRIMARY_DELTA_BASE = "delta_vs_base"
PRIMARY_DELTA_CHAMPION = "delta_vs_champion"
PRIMARY_CI_LOW = "ci_low"
PRIMARY_CI_HIGH = "ci_high"


def headline_key(what: str = PRIMARY_VALUE) -> str:
    """``0_map_at_100`` (the candidate's primary metric at ``registry.primary_dim``) or
    ``0_map_at_100_<what>`` (``delta_vs_base``, ``delta_vs_champion`` on the same eval, ``ci_low``, ``ci_high``)."""
    stem = HEADLINE_PREFIX + mlflow_key(PRIMARY)
    return stem if what == PRIMARY_VALUE else f"{stem}_{what}"


GROUP_METRICS_PRIMARY_DIM = ("map@100", "ndcg@10", "mrr@10", "recall@10")
"""Per slice and per intent, logged as metrics at the primary dim (every dim: :data:`GROUP_METRICS_EVERY_DIM`)."""

GROUP_METRICS_EVERY_DIM = ("map@100",)

OTHER_MODEL_METRICS = ("map@100", "ndcg@10")
"""The base model's and the re-scored champion's metrics logged as metrics: these per dim on the whole eval,
and at the primary dim per slice."""

VALIDATION_METRICS = ("map@100", SELECTION)
"""Validation (checkpoint selection) metrics logged per dim, map@100 per slice too; the rest is in the full table."""

MAX_METRIC_KEYS = 250
"""The most metric keys one run may have, so Compare and the charts stay readable."""


def is_headline(key: str, primary_dim: int, model: str = "candidate") -> bool:
    """Whether ``key`` (either spelling, without a model prefix) is logged as an MLflow metric for ``model``
    ("candidate", "base", "champion" or "validation"); every other key lives only in the full table.

    - candidate: every metric at every dim on the whole eval; per slice and intent
      :data:`GROUP_METRICS_PRIMARY_DIM` at the primary dim and :data:`GROUP_METRICS_EVERY_DIM` at every dim;
    - base and champion: :data:`OTHER_MODEL_METRICS` per dim on the whole eval and at the primary dim per slice;
    - validation: :data:`VALIDATION_METRICS` per dim on the whole split, and map@100 per dim per slice.
    """
    parsed = parse_key(key)
    if parsed is None:
        return False
    kind, _group, dim, name = parsed
    if model == "validation":
        return _plain(name, VALIDATION_METRICS) if kind is None else kind == "slice" and name == PRIMARY
    if model == "candidate":
        if kind is None:
            return True
        return _plain(name, GROUP_METRICS_EVERY_DIM) or (dim == primary_dim and _plain(name, GROUP_METRICS_PRIMARY_DIM))
    if kind is None:
        return _plain(name, OTHER_MODEL_METRICS)
    return kind == "slice" and dim == primary_dim and _plain(name, OTHER_MODEL_METRICS)


def _plain(name: str, names: Sequence[str]) -> bool:
    return name in names


def headline(values: Mapping[str, float] | None, primary_dim: int, model: str = "candidate") -> dict[str, float]:
    """The part of ``values`` that :func:`is_headline` keeps for ``model``."""
    return {k: v for k, v in (values or {}).items() if is_headline(k, primary_dim, model)}


TABLE_COLUMNS = ("model", "split", "scope", "group", "dim", "metric", "value", "key")
"""The full metrics table (one row per model, split, whole eval / slice / intent, dim and metric)."""


def table_rows(models: Mapping[str, Mapping[str, float] | None], split: str = "eval") -> list[dict[str, object]]:
    """Every metric of every model as rows of :data:`TABLE_COLUMNS`; group sizes (``slice_x_queries``) are
    rows with metric ``queries`` and no dim; other keys keep their name as the metric."""
    rows: list[dict[str, object]] = []
    for model, values in models.items():
        for key, value in sorted((values or {}).items()):
            parsed = parse_key(key)
            kind: str | None
            group: str | None
            dim: int | None
            if parsed is not None:
                kind, group, dim, name = parsed
            else:
                m = re.match(r"^(slice|intent)_(.+)_queries$", key)
                kind, group, dim, name = (m[1], m[2], None, "queries") if m else (None, None, None, key)
            rows.append(
                {
                    "model": model,
                    "split": split,
                    "scope": kind or "all",
                    "group": group or "",
                    "dim": dim,
                    "metric": from_mlflow_key(name),
                    "value": _table_value(value),
                    "key": from_mlflow_key(key),
                }
            )
    return rows


def _table_value(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
