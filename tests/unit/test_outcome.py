"""flows.outcome: state names, report keys, of a finished run (no Prefect API)."""

from __future__ import annotations

from typing import Any

import pytest

from flows import outcome as out


def _report(**decision: Any) -> dict[str, Any]:
    return {
        "run_id": "r1",
        "flow_run": "quiet-fox",
        "mlflow_url": "http://mlflow.example/#/experiments/1/runs/r1",
        "skipped": None,
        "decision": {"primary_dim": 384, **decision} if decision else None,
    }


PROMOTED = {"promote": True, "candidate_version": "7", "champion_version": "6", "delta": 0.0123,
            "ci_low": 0.0081, "ci_high": 0.017, "reason": "better than the champion"}  # fmt: skip
WORSE = {"promote": False, "candidate_version": "8", "champion_version": "7", "delta": -0.02,
         "ci_low": -0.03, "ci_high": -0.01, "reason": "worse than the champion (the whole interval is below 0)"}  # fmt: skip
TIE = {"promote": False, "candidate_version": "9", "champion_version": "7", "delta": 0.0,
       "ci_low": -0.01, "ci_high": 0.01, "reason": "a tie (the interval contains 0) on the same catalog"}  # fmt: skip


@pytest.mark.parametrize(
    ("report", "kind", "state"),
    [
        (_report(**PROMOTED), "promoted", "Promoted"),
        (_report(**WORSE), "rejected", "Rejected"),
        (_report(**TIE), "tie", "Kept (tie)"),
        ({**_report(), "skipped": "champion v7 has these inputs"}, "skipped", "Skipped"),
    ],
)
def test_outcome_and_state_name(report: dict[str, Any], kind: str, state: str) -> None:
    assert out.outcome(report) == kind
    assert out.STATE_NAMES[kind] == state


def test_report_key_per_deployment() -> None:
    assert out.report_key("nightly") == "train-and-evaluate-nightly-report"
    assert out.report_key("smoke") == "train-and-evaluate-smoke-report"
    assert out.report_key(None) == "train-and-evaluate-local-report"
    assert out.report_key("My Deploy_2") == "train-and-evaluate-my-deploy-2-report"
