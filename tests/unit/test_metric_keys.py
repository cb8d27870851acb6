"""How many MLflow metric keys one run logs: the headline stays under the budget, and the full table keeps
every metric computed."""

from __future__ import annotations

import pytest

from pipelines.metrics import (
    MAX_METRIC_KEYS,
    METRIC_NAMES,
    SELECTION,
    SLICES,
    headline,
    headline_key,
    metric_key,
    mlflow_key,
    size_key,
    table_rows,
)
from pipelines.synthesis import INTENTS
from pipelines.tracking.model_log import TRAIN_METRIC_KEYS
from pipelines.tracking.report import headline_figures

DIMS = (384, 256, 128, 64)
PRIMARY_DIM = 384
MORE_SLICES = ("human", "unseen_ingredient", "one_more_slice")


def _metrics(slices: tuple[str, ...], intents: tuple[str, ...], value: float = 0.5) -> dict[str, float]:
    """What an evaluation returns: every metric at every dim on the whole eval, per slice and per intent."""
    out: dict[str, float] = {}
    groups = [(None, None)] + [("slice", s) for s in slices] + [("intent", i) for i in intents]
    for kind, group in groups:
        for d in DIMS:
            for name in METRIC_NAMES:
                out[metric_key(d, name, kind, group)] = value
        if kind and group:
            out[size_key(kind, group)] = 100.0
    return out


def _run_keys(slices: tuple[str, ...], intents: tuple[str, ...]) -> set[str]:
    """The metric keys of a run that trained a candidate and met a champion (the most a run logs)."""
    full = _metrics(slices, intents)
    validation = _metrics(("seen_wording", "human_dev"), ())  # the synthesized and the hand-written questions
    validation |= {metric_key(d, SELECTION): 0.5 for d in DIMS}
    keys = {mlflow_key(k) for k in headline(full, PRIMARY_DIM)}
    keys |= {"base_" + mlflow_key(k) for k in headline(full, PRIMARY_DIM, "base")}
    keys |= {"champion_" + mlflow_key(k) for k in headline(full, PRIMARY_DIM, "champion")}
    keys |= {"validation_" + mlflow_key(k) for k in headline(validation, PRIMARY_DIM, "validation")}
    keys |= set(TRAIN_METRIC_KEYS)
    decision = {"delta": 0.01, "ci_low": 0.0, "ci_high": 0.02}
    keys |= set(headline_figures(PRIMARY_DIM, full, full, decision))
    return keys


@pytest.mark.parametrize("slices", [SLICES, SLICES + MORE_SLICES[:2], SLICES + MORE_SLICES], ids=["3", "5", "6"])
def test_a_run_logs_at_most_the_key_budget(slices: tuple[str, ...]) -> None:
    keys = _run_keys(slices, INTENTS)
    assert len(keys) <= MAX_METRIC_KEYS, f"{len(keys)} metric keys with {len(slices)} slices"


def test_the_headline_keeps_the_primary_metric_and_it_sorts_first() -> None:
    keys = _run_keys(SLICES, INTENTS)
    primary = mlflow_key(metric_key(PRIMARY_DIM))
    assert primary in keys and "base_" + primary in keys and "champion_" + primary in keys
    assert sorted(keys)[0] == headline_key()
    for d in DIMS:  # the decision reads map@100 at every dim
        assert mlflow_key(metric_key(d)) in keys


def test_the_table_holds_every_metric_computed() -> None:
    full = _metrics(SLICES + MORE_SLICES, INTENTS)
    rows = table_rows({"candidate": full, "base": full, "champion": None})
    assert len(rows) == 2 * len(full)
    assert {r["key"] for r in rows if r["model"] == "base"} == set(full)
    sizes = [r for r in rows if r["metric"] == "queries"]
    assert {(r["scope"], r["group"]) for r in sizes} >= {("slice", "human"), ("intent", INTENTS[0])}
    primary = next(r for r in rows if r["key"] == metric_key(PRIMARY_DIM, kind="slice", group="human"))
    assert (primary["scope"], primary["group"], primary["dim"], primary["metric"]) == ("slice", "human", 384, "map@100")


def test_validation_logs_its_score_and_map_at_100_per_slice_at_every_dim() -> None:
    keys = _run_keys(SLICES, INTENTS)
    for d in DIMS:
        assert "validation_" + mlflow_key(metric_key(d, SELECTION)) in keys
        for s in ("seen_wording", "human_dev"):
            assert "validation_" + mlflow_key(metric_key(d, "map@100", "slice", s)) in keys
            assert "validation_" + mlflow_key(metric_key(d, "ndcg@10", "slice", s)) not in keys
