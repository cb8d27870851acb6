"""Fast per-dimension IR evaluation: equal to the library's evaluator, strict about bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import evaluation
from pipelines.errors import EvaluationError, InputError
from pipelines.evaluation import (
    _metrics_from_hits,
    build_ir_data,
    evaluate_ir,
    evaluate_pairs,
    load_pairs,
    per_query_path,
    read_per_query,
    score_pairs,
    score_validation,
    validation_slices,
    write_per_query,
)
from tests.reference_eval import reference_evaluate

DIMS = (384, 256, 128, 64)


@pytest.fixture(scope="module")
def model(bundled_model_path: str):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(bundled_model_path, device="cpu")
    m.max_seq_length = 48
    return m


def _assert_same_as_library(ours: dict[str, float], ref: dict[str, float], dims: tuple[int, ...]) -> None:
    # The whole-eval keys (per-intent / per-slice keys come on top when the pairs have those columns).
    ours = {k: v for k, v in ours.items() if k.startswith("dim_")}
    # The library's SequentialEvaluator adds one key, a copy of the last evaluator's ndcg@10.
    assert set(ref) - set(ours) == {"sequential_score"}
    assert list(ours) == [k for k in ref if k != "sequential_score"]
    assert len(ours) == 15 * len(dims)
    for key, value in ours.items():
        assert value == pytest.approx(ref[key], abs=1e-6), key


def test_equals_library_on_recipe_pairs(model, recipe_pairs: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    queries, corpus, _ = build_ir_data(recipe_pairs)
    assert len(corpus) < len(queries)  # the set has repeated positives: de-duplication is exercised
    ours = evaluate_pairs(model, recipe_pairs, DIMS, batch_size=16)
    ref = reference_evaluate(model, recipe_pairs, DIMS, batch_size=16)
    _assert_same_as_library(ours, ref, DIMS)
    # Not a degenerate set: the base model is imperfect and dims differ.
    assert 0.2 < ours["dim_384_cosine_map@100"] < 0.95
    assert len({round(ours[f"dim_{d}_cosine_map@100"], 9) for d in DIMS}) > 1


def test_equals_library_with_tied_scores_and_tiny_corpus(model) -> None:  # type: ignore[no-untyped-def]
    # MiniLM is uncased: these distinct positives embed identically, so their scores tie and the
    # library's tie-break (ascending corpus id) decides the ranking. Corpus < 10 docs: k > corpus.
    pairs = pd.DataFrame(
        {
            "anchor": [
                "What can I cook with kale and feta?",
                "Give me a recipe that uses kale and feta.",
                "What recipes can be made using bacon and honey?",
                "Something with honey and bacon please",
                "What can I make with chickpeas?",
            ],
            "positive": [
                "Try Midnight Skillet.",
                "try midnight skillet.",
                "No recipes found with these bacon and honey!",
                "NO RECIPES FOUND WITH THESE BACON AND HONEY!",
                "Try Midnight Skillet.",
            ],
        }
    )
    ours = evaluate_pairs(model, pairs, (384, 32), batch_size=4)
    ref = reference_evaluate(model, pairs, (384, 32), batch_size=4)
    _assert_same_as_library(ours, ref, (384, 32))
    # The tie costs the lower-id twin its first place: precision@1 is not perfect.
    assert ours["dim_384_cosine_precision@1"] < 1.0


def test_build_ir_data_deduplicates_corpus() -> None:
    pairs = pd.DataFrame({"anchor": ["q a", "q b", "q c", "q d"], "positive": ["same", "other", "same", "third"]})
    queries, corpus, relevant = build_ir_data(pairs)
    assert list(queries.values()) == ["q a", "q b", "q c", "q d"]
    assert sorted(corpus.values()) == ["other", "same", "third"]
    by_text = {text: cid for cid, text in corpus.items()}
    assert relevant == {
        "q0": {by_text["same"]},
        "q1": {by_text["other"]},
        "q2": {by_text["same"]},
        "q3": {by_text["third"]},
    }


def test_ids_sort_in_insertion_order() -> None:
    pairs = pd.DataFrame({"anchor": [f"q{i}" for i in range(12)], "positive": [f"p{i}" for i in range(12)]})
    queries, corpus, _ = build_ir_data(pairs)
    assert list(corpus) == sorted(corpus)
    assert list(queries) == sorted(queries)


def test_metrics_from_hits_by_hand() -> None:
    # q0: relevant at rank 2 (of 3); q1: relevant at ranks 1 and 3 (two relevant docs); q2: none found.
    hits = np.array([[0, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=bool)
    n_rel = np.array([1, 2, 1])
    m = _metrics_from_hits(hits, n_rel)
    assert m["accuracy@1"] == pytest.approx(1 / 3)
    assert m["accuracy@3"] == pytest.approx(2 / 3)
    assert m["precision@1"] == pytest.approx((0 + 1 + 0) / 3)
    assert m["precision@3"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert m["recall@3"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    ndcg_q0 = (1 / np.log2(3)) / 1.0
    ndcg_q1 = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg_q0 + ndcg_q1 + 0) / 3)
    assert m["map@100"] == pytest.approx((1 / 2 + (1 + 2 / 3) / 2 + 0) / 3)


def test_query_without_relevant_doc_is_an_error(model) -> None:  # type: ignore[no-untyped-def]
    queries = {"q0": "kale and feta?", "q1": "bacon and honey?"}
    corpus = {"c0": "Try Midnight Skillet.", "c1": "No recipes found."}
    with pytest.raises(EvaluationError, match=r"q1.*no relevant"):
        evaluate_ir(model, queries, corpus, {"q0": {"c0"}, "q1": set()}, (64,))
    with pytest.raises(EvaluationError, match=r"q1.*no relevant"):
        evaluate_ir(model, queries, corpus, {"q0": {"c0"}}, (64,))
    with pytest.raises(EvaluationError, match="not in the corpus"):
        evaluate_ir(model, queries, corpus, {"q0": {"c0"}, "q1": {"c9"}}, (64,))


def test_query_count_mismatch_is_an_error(model, recipe_pairs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = evaluation.build_ir_data

    def drops_one(pairs: pd.DataFrame):  # type: ignore[no-untyped-def]
        queries, corpus, relevant = real(pairs)
        dropped = next(iter(queries))
        queries.pop(dropped)
        relevant.pop(dropped)
        return queries, corpus, relevant

    monkeypatch.setattr(evaluation, "build_ir_data", drops_one)
    with pytest.raises(EvaluationError, match="queries"):
        evaluate_pairs(model, recipe_pairs, (64,))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pd.DataFrame({"anchor": [], "positive": []}), "no rows"),
        (pd.DataFrame({"anchor": ["a"]}), "missing column"),
        (pd.DataFrame({"anchor": ["a", " "], "positive": ["b", "c"]}), "'anchor'.*empty"),
        (pd.DataFrame({"anchor": ["a", "b"], "positive": ["b", None]}), "'positive'.*empty"),
    ],
)
def test_bad_pairs_are_input_errors(frame: pd.DataFrame, match: str) -> None:
    with pytest.raises(InputError, match=match):
        build_ir_data(frame)


def test_dims_beyond_model_are_input_errors(model, recipe_pairs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="outside"):
        evaluate_pairs(model, recipe_pairs.head(4), (512,))


def test_load_pairs_reads_formats_and_rejects_bad_files(tmp_path: Path, recipe_pairs: pd.DataFrame) -> None:
    recipe_pairs.to_csv(tmp_path / "p.csv", index=False)
    recipe_pairs.to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    assert load_pairs(tmp_path / "p.csv")["anchor"].tolist() == recipe_pairs["anchor"].tolist()
    assert len(load_pairs(tmp_path / "p.jsonl")) == len(recipe_pairs)
    (tmp_path / "bad.csv").write_text("question,answer\nx,y\n")
    with pytest.raises(InputError, match="missing column"):
        load_pairs(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="no such file"):
        load_pairs(tmp_path / "absent.parquet")


def test_metrics_table_has_a_column_per_dim_and_model() -> None:
    from pipelines.cli.model import rich_metrics_table

    base = {f"dim_{d}_cosine_{m}": 0.5 for d in (384, 64) for m in evaluation.METRIC_NAMES}
    tuned = {k: 0.75 for k in base}
    table = rich_metrics_table({"base": base, "fine-tuned": tuned}, (384, 64))
    assert len(table.columns) == 1 + 2 * 2
    assert table.row_count == 15
    cells = list(table.columns[2].cells)
    assert cells[0] == "0.7500"


def test_per_slice_and_per_intent_metrics_equal_the_whole_eval_restricted_to_the_group(  # type: ignore[no-untyped-def]
    model, recipe_pairs: pd.DataFrame, tmp_path: Path
) -> None:
    pairs = recipe_pairs.copy()
    pairs["slice"] = ["seen_wording", "unseen_wording", "recipe_card"] * (len(pairs) // 3)
    dims = (384, 64)
    scores = score_pairs(model, pairs, dims, batch_size=16)
    queries, corpus, relevant = build_ir_data(pairs)
    qids = list(queries)
    groups = [("slice", s) for s in ("seen_wording", "unseen_wording", "recipe_card")]
    groups += [("intent", i) for i in ("ingredient_pair", "recipe_ingredients")]
    for kind, group in groups:
        rows = [i for i, v in enumerate(pairs[kind]) if v == group]
        keep = [qids[i] for i in rows]
        # the same queries, each still searching the whole corpus, evaluated on their own
        alone = evaluate_ir(model, {q: queries[q] for q in keep}, corpus, {q: relevant[q] for q in keep}, dims, 16)
        for key, value in alone.items():
            assert scores.metrics[f"{kind}_{group}_{key}"] == pytest.approx(value, abs=1e-9), (kind, group, key)
        assert scores.metrics[f"{kind}_{group}_queries"] == len(rows)
        for d in dims:
            restricted = scores.per_query_ap[d][rows].mean()
            assert scores.metrics[f"{kind}_{group}_dim_{d}_cosine_map@100"] == pytest.approx(restricted)
    # whole eval: the per-query average precision averages to map@100, and equals evaluate_pairs
    assert evaluate_pairs(model, pairs, dims, 16) == scores.metrics
    for d in dims:
        assert scores.per_query_ap[d].mean() == pytest.approx(scores.metrics[f"dim_{d}_cosine_map@100"])
    # the groups differ (not a copy of the whole), and round-trip through the per-query file
    assert len({round(scores.metrics[f"slice_{s}_dim_384_cosine_map@100"], 6) for _, s in groups[:3]}) > 1
    path = write_per_query(scores, per_query_path(tmp_path / "eval_metrics.json"), pairs)
    assert path.name == "eval_metrics.per_query.parquet"
    back = read_per_query(path)
    assert set(back) == set(dims) and np.array_equal(back[384], scores.per_query_ap[384])
    assert list(pd.read_parquet(path)["slice"]) == list(pairs["slice"])


def test_validation_with_slices_scores_each_and_their_mean(model, recipe_pairs: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """The validation score weighs each slice the same: 12 hand-written rows count as much as 36 synthesized."""
    from pipelines.metrics import SELECTION, metric_key
    from pipelines.trainer import ValidationIREvaluator

    pairs = recipe_pairs.copy()
    pairs["slice"] = ["seen_wording"] * 36 + ["human_dev"] * (len(pairs) - 36)
    dims = (384, 64)
    ir = queries, corpus, relevant = build_ir_data(pairs)
    slices = validation_slices(pairs)
    metrics = score_validation(model, ir, dims, 16, slices)
    whole = evaluate_ir(model, queries, corpus, relevant, dims, 16)
    assert {k: metrics[k] for k in whole} == whole
    for d in dims:
        per_slice = [metrics[metric_key(d, "map@100", "slice", s)] for s in ("seen_wording", "human_dev")]
        assert metrics[metric_key(d, SELECTION)] == pytest.approx(sum(per_slice) / 2)
        assert per_slice[0] != pytest.approx(per_slice[1])  # else the test could not tell mean from whole
    # one slice, or none: the whole split's metrics only, and the checkpoint is chosen on map@100
    one = score_validation(model, ir, dims, 16, {"seen_wording": slices["seen_wording"]})
    assert one == whole
    assert ValidationIREvaluator(pairs, dims, 16, "cosine").primary_metric == metric_key(384, SELECTION)
    plain = ValidationIREvaluator(pairs.drop(columns=["slice"]), dims, 16, "cosine")
    assert plain.primary_metric == metric_key(384)


def test_an_eval_without_group_columns_has_only_whole_eval_keys(model, recipe_pairs: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    pairs = recipe_pairs.drop(columns=["intent"])
    metrics = evaluate_pairs(model, pairs, (64,), 16)
    assert all(k.startswith("dim_64_cosine_") for k in metrics) and len(metrics) == 15


def test_build_ir_data_takes_every_relevant_text() -> None:
    pairs = pd.DataFrame(
        {
            "anchor": ["q0", "q1", "q2"],
            "positive": ["a", "b", "c"],
            "relevant": [["a", "c"], [], None],
        }
    )
    _, corpus, relevant = build_ir_data(pairs)
    cid = {text: c for c, text in corpus.items()}
    assert relevant["q0"] == {cid["a"], cid["c"]} and relevant["q1"] == {cid["b"]} and relevant["q2"] == {cid["c"]}
    # a relevant text that is no row's positive joins the corpus, after the positives
    pairs.at[1, "relevant"] = ["zz"]
    _, corpus, relevant = build_ir_data(pairs)
    assert list(corpus.values()) == ["a", "b", "c", "zz"] and relevant["q1"] == {"c1", "c3"}
