"""flows.outcome: state names, report keys, alert lines and events of a finished run (no Prefect API)."""

from __future__ import annotations

from typing import Any

import pytest

from flows import outcome as out
from pipelines.config import load_config


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


def test_message_reads_like_the_decision_line() -> None:
    msg = out.message(_report(**PROMOTED), "nightly")
    assert msg.startswith("recipe-embed nightly 20")
    assert ": PROMOTED v7 over v6 (+0.012 [0.008, 0.017] eval map@100 at 384; better than the champion)" in msg
    assert msg.endswith("flow run quiet-fox, run http://mlflow.example/#/experiments/1/runs/r1")
    worse = out.message(_report(**WORSE), "smoke")
    assert "REJECTED v8, champion v7 kept (-0.020 [-0.030, -0.010] eval map@100 at 384; worse" in worse
    assert "KEPT v7 (tie with v9)" in out.message(_report(**TIE), "manual")
    skipped = out.message({**_report(), "skipped": "champion v7 has these inputs"}, None)
    assert "recipe-embed local " in skipped and "SKIPPED training (champion v7 has these inputs)" in skipped


def test_events_carry_resource_related_run_and_version() -> None:
    cfg = load_config("smoke")
    (ev,) = out.events(cfg, _report(**PROMOTED), "nightly", champion_age_days=None)
    assert ev["event"] == "recipe-embed.candidate.promoted"
    assert ev["resource"]["prefect.resource.id"] == "recipe-embed.model.recipe-embedder"
    related = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in ev["related"]}
    assert related == {"mlflow-run": "mlflow.run.r1", "model-version": "mlflow.model-version.recipe-embedder.7"}
    payload = ev["payload"]
    assert (payload["delta"], payload["ci_low"], payload["ci_high"], payload["version"]) == (0.0123, 0.0081, 0.017, "7")
    assert payload["decision_line"].startswith("PROMOTED (version 7 over 6)")
    assert payload["mlflow_url"].endswith("/runs/r1")


def test_a_tie_is_a_rejected_event_and_saturation_and_staleness_add_warnings() -> None:
    cfg = load_config("smoke", overrides={"notify": {"stale_after_days": 3}})
    tie = _report(**TIE, saturated=True, champion_primary=0.9971)
    names = [e["event"] for e in out.events(cfg, tie, "nightly", champion_age_days=4.2)]
    assert names == ["recipe-embed.candidate.rejected", "recipe-embed.eval.saturated", "recipe-embed.champion.stale"]
    evs = out.events(cfg, tie, "nightly", champion_age_days=4.2)
    assert "eval map@100 0.9971 >= 0.995" in evs[1]["payload"]["message"]
    assert "4 days old (notify.stale_after_days 3)" in evs[2]["payload"]["message"]
    # a young champion, or a promotion, is not stale
    assert len(out.events(cfg, _report(**WORSE), "nightly", champion_age_days=2.9)) == 1
    assert len(out.events(cfg, _report(**PROMOTED), "nightly", champion_age_days=30)) == 1


def test_stale_after_days_must_be_positive() -> None:
    from pipelines.config import ConfigError

    assert load_config("smoke").notify.stale_after_days == 7
    with pytest.raises(ConfigError, match="stale_after_days"):
        load_config("smoke", overrides={"notify": {"stale_after_days": 0}})
