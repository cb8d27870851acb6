"""The run report renderer shared by ``recipe-embed run`` and the flow."""

from __future__ import annotations

from pipelines import report as rpt
from pipelines.promotion import Decision


def _report(decision: dict | None, skipped: str | None = None, metrics: dict | None = None) -> dict:
    return {
        "profile": "smoke",
        "run_id": "abc",
        "dims": [384, 64],
        "primary_dim": 384,
        "skipped": skipped,
        "decision": decision,
        "tracking_uri": "sqlite:////tmp/x/mlflow.db",
        "metrics": metrics
        or {
            "candidate": {"dim_384_cosine_map@100": 0.9, "dim_64_cosine_map@100": 0.8},
            "champion": {"dim_384_cosine_map_at_100": 0.85},
            "base": None,
        },
    }


def test_promoted_line_names_the_candidate_version() -> None:
    d = {"promote": True, "reason": "beats champion", "candidate_version": "7", "champion_version": "6"}
    assert rpt.decision_line(_report(d)) == "PROMOTED (version 7 over 6): beats champion"


def test_rejected_line_names_the_kept_champion_and_the_interval() -> None:
    d = Decision(False, "worse", {384: -0.02}, "7", "6", delta=-0.0213, ci_low=-0.031, ci_high=-0.0125, primary_dim=384)
    assert rpt.decision_line(_report(d.to_dict())) == (
        "KEPT champion (version 6): map@100 at 384 -0.0213 [-0.0310, -0.0125]: worse"
    )


def test_rejection_without_a_champion_does_not_claim_one() -> None:
    d = Decision(False, "candidate has 1 non-finite metric(s): x=nan", {}, "1", None).to_dict()
    line = rpt.decision_line(_report(d))
    assert line.startswith("REJECTED (version 1, no champion)") and "KEPT" not in line


def test_skip_wins_over_decision() -> None:
    assert rpt.decision_line(_report(None, skipped="same inputs")).startswith("SKIPPED training: same inputs")


def test_text_table_reads_both_key_spellings_and_marks_missing() -> None:
    text = rpt.to_text(_report({"promote": True, "reason": "r", "candidate_version": "1"}))
    line_384 = next(line for line in text.splitlines() if line.strip().startswith("384  map@100"))
    assert line_384.split()[2:] == ["0.9000", "0.8500", "–"]
    assert "mlflow ui --backend-store-uri sqlite:////tmp/x/mlflow.db" in text


def test_deltas_sort_by_dim_as_numbers() -> None:
    d = {"promote": False, "reason": "r", "champion_version": "1", "deltas": {"128": 0.01, "384": 0.03, "64": -0.02}}
    md = rpt.to_markdown(_report(d))
    assert "dim 384 +0.0300, dim 128 +0.0100, dim 64 -0.0200" in md


def test_slices_and_intents_show_in_the_report_and_saturation_warns() -> None:
    cand = {
        "dim_384_cosine_map@100": 0.9,
        "slice_unseen_wording_dim_384_cosine_map@100": 0.61,
        "slice_seen_wording_dim_384_cosine_map@100": 0.99,
        "slice_seen_wording_dim_64_cosine_map@100": 0.97,
        "intent_recipe_card_dim_384_cosine_map@100": 0.55,
    }
    champ = {"slice_unseen_wording_dim_384_cosine_map_at_100": 0.58}
    d = {"promote": False, "reason": "r", "champion_version": "1", "saturated": True, "champion_primary": 0.996}
    report = _report(d, metrics={"candidate": cand, "champion": champ, "base": None})
    md = rpt.to_markdown(report)
    # slices in their fixed order, intents at the primary dim only
    assert md.index("| seen_wording | 384 | 0.9900 |") < md.index("| unseen_wording | 384 | 0.6100 | 0.5800 |")
    assert "| recipe_card | 384 | 0.5500 |" in md
    assert "eval saturated" in md and "0.9960" in md
    text = rpt.to_text(report)
    assert "unseen_wording" in text and "WARNING: eval saturated" in text


def test_ui_hint_uses_the_runs_own_store() -> None:
    assert (
        rpt.ui_hint({"tracking_uri": "sqlite:////srv/x/mlflow.db"})
        == "mlflow ui --backend-store-uri sqlite:////srv/x/mlflow.db"
    )
    assert rpt.ui_hint({"tracking_uri": "http://mlflow:5000"}) == "open http://mlflow:5000"
    assert "data/" not in rpt.ui_hint({})
