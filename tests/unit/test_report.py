"""The run report renderer shared by ``recipe-embed run`` and the flow."""

from __future__ import annotations

from pipelines import report as rpt


def _report(decision: dict | None, skipped: str | None = None) -> dict:
    return {
        "profile": "smoke",
        "run_id": "abc",
        "dims": [384, 64],
        "skipped": skipped,
        "decision": decision,
        "tracking_uri": "sqlite:////tmp/x/mlflow.db",
        "metrics": {
            "candidate": {"dim_384_cosine_map@100": 0.9, "dim_64_cosine_map@100": 0.8},
            "champion": {"dim_384_cosine_map_at_100": 0.85},
            "base": None,
        },
    }


def test_promoted_line_names_the_candidate_version() -> None:
    d = {"promote": True, "reason": "beats champion", "candidate_version": "7", "champion_version": "6"}
    assert rpt.decision_line(_report(d)) == "PROMOTED (version 7): beats champion"


def test_rejected_line_names_the_kept_champion() -> None:
    d = {"promote": False, "reason": "worse at 384", "candidate_version": "7", "champion_version": "6"}
    assert rpt.decision_line(_report(d)) == "KEPT champion (version 6): worse at 384"


def test_skip_wins_over_decision() -> None:
    assert rpt.decision_line(_report(None, skipped="same inputs")).startswith("SKIPPED training: same inputs")


def test_text_table_reads_both_key_spellings_and_marks_missing() -> None:
    text = rpt.to_text(_report({"promote": True, "reason": "r", "candidate_version": "1"}))
    line_384 = next(line for line in text.splitlines() if line.strip().startswith("384  map@100"))
    assert line_384.split()[2:] == ["0.9000", "0.8500", "–"]
    assert "mlflow ui --backend-store-uri sqlite:////tmp/x/mlflow.db" in text
