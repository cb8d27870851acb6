"""The hand-written ``human`` eval slice: the committed judgement is the judge's, and the judge reads
the catalog's fields as documented in pipelines/data/HUMAN_EVAL.md."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.catalog import load_catalog
from pipelines.config import CatalogConfig
from pipelines.errors import InputError
from pipelines.human_eval import dump_jsonl, judge, judged_records, load_dev_questions, load_judged, load_questions
from pipelines.schemas import normalize_text


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return load_catalog(CatalogConfig())


def test_committed_judgement_is_what_the_judge_writes(catalog: pd.DataFrame) -> None:
    questions = load_questions()
    assert len(questions) >= 300
    assert len({q["q"].lower() for q in questions}) == len(questions)
    assert dump_jsonl(judged_records(catalog, questions)) == dump_jsonl(load_judged())
    assert all(r["answers"] for r in load_judged())


def test_dev_questions_are_judged_and_written_apart_from_human(catalog: pd.DataFrame) -> None:
    """The ``human_dev`` validation questions: every one answerable from the catalog, none of them a ``human``
    question (normalized), none twice, and none asking for exactly what a ``human`` question asks."""
    dev, human = load_dev_questions(), load_questions()
    assert len(dev) >= 200
    assert all(judge(catalog, dev))  # an unknown name, group, cuisine or a question nobody answers raises
    keys = normalize_text(pd.Series([q["q"] for q in dev]))
    assert keys.is_unique and not keys.isin(set(normalize_text(pd.Series([q["q"] for q in human])))).any()

    def need(q: dict) -> str:
        return repr(sorted((k, sorted(v) if isinstance(v, list) else v) for k, v in q.items() if k != "q"))

    assert not {need(q) for q in dev} & {need(q) for q in human}


def _tiny() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["A's Pad Thai", "B's Pad Thai", "C's Tofu Curry", "D's Prawn Toast"],
            "cuisine": ["thai", "thai", "indian", "chinese"],
            "ingredients": [
                ["rice noodles", "shrimp", "peanuts"],
                ["rice noodles", "firm tofu"],
                ["firm tofu", "tomato", "coconut milk"],
                ["prawns", "baguette"],
            ],
            "diet_tags": [["dairy-free"], ["vegan", "dairy-free", "nut-free"], ["vegan", "nut-free"], ["nut-free"]],
            "total_time_min": [30, 20, 45, 15],
        }
    )


@pytest.mark.parametrize(
    ("question", "want"),
    [
        ({"q": "pad thai", "dish": "Pad Thai"}, [0, 1]),
        ({"q": "pad thai without peanuts", "dish": "Pad Thai", "not": ["peanuts"]}, [1]),
        ({"q": "prawns", "ing": ["@shrimp"]}, [0, 3]),
        ({"q": "tofu, no nuts, quick", "ing": ["firm tofu"], "tags": ["nut-free"], "max": 30}, [1]),
        ({"q": "slow thai", "cui": "thai", "min": 25}, [0]),
        ({"q": "coconut or peanuts", "any_of": ["coconut milk", "peanuts"]}, [0, 2]),
    ],
)
def test_judge_reads_each_constraint_from_the_catalog(question: dict, want: list[int]) -> None:
    assert judge(_tiny(), [question]) == [want]


@pytest.mark.parametrize(
    ("question", "error"),
    [
        ({"q": "x", "ing": ["unicorn"]}, "unknown ingredient 'unicorn'"),
        ({"q": "x", "ing": ["@nope"]}, "unknown ingredient group"),
        ({"q": "x", "cui": "martian"}, "unknown cuisine"),
        ({"q": "x", "tags": ["keto"]}, "unknown diet tag"),
        ({"q": "x", "dish": "Pizza"}, "unknown dish"),
        ({"q": "x", "max_time": 3}, "unknown key"),
        ({"q": "x", "ing": ["baguette"], "cui": "thai"}, "no catalog recipe meets it"),
    ],
)
def test_judge_refuses_what_it_cannot_judge(question: dict, error: str) -> None:
    with pytest.raises(InputError, match=error):
        judge(_tiny(), [question])
