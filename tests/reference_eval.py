"""sentence-transformers' own evaluator over the same eval set, the reference our fast path is measured
against: ``tests/unit/test_evaluation.py`` and ``tests/gpu`` compare the metrics of
:func:`pipelines.evaluation.evaluate_pairs` with it, ``bench/eval_speed.py`` times it. It serves only
them, so it lives beside the tests rather than in the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.errors import EvaluationError
from pipelines.evaluation import build_ir_data
from pipelines.metrics import dim_name
from pipelines.models import load_model

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def reference_evaluate(
    model: str | Path | SentenceTransformer,
    pairs: pd.DataFrame,
    dims: Sequence[int],
    batch_size: int = 256,
) -> dict[str, float]:
    """The same metrics through ``SequentialEvaluator([InformationRetrievalEvaluator(truncate_dim=d)])``.

    Re-encodes everything once per dimension. The returned dict is the library's, including its
    ``sequential_score`` key.
    """
    evaluator = build_reference_evaluator(pairs, dims, batch_size)
    n_queries = len(pairs)
    for sub in evaluator.evaluators:
        if len(sub.queries_ids) != n_queries:
            raise EvaluationError(f"{sub.name}: evaluates {len(sub.queries_ids)} queries, expected {n_queries}")
    st = load_model(model) if isinstance(model, str | Path) else model
    return dict(evaluator(st))


def build_reference_evaluator(pairs: pd.DataFrame, dims: Sequence[int], batch_size: int = 256) -> Any:
    """The library's ``SequentialEvaluator`` over one ``InformationRetrievalEvaluator`` per dim."""
    from sentence_transformers.base.evaluation.sequential import SequentialEvaluator
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    queries, corpus, relevant = build_ir_data(pairs)
    q: dict[str, Any] = dict(queries)
    c: dict[str, Any] = dict(corpus)
    return SequentialEvaluator(
        [
            InformationRetrievalEvaluator(
                queries=q,
                corpus=c,
                relevant_docs=relevant,
                name=dim_name(d),
                truncate_dim=d,
                batch_size=batch_size,
                write_csv=False,
            )
            for d in dims
        ]
    )
