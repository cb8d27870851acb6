"""How a train-and-evaluate run ends, as the Prefect UI tells it.

- the flow run's final state: Completed, named ``Promoted``, ``Rejected``, ``Skipped`` or ``Kept (tie)``,
  with the decision line as its message;
- the report artifact's key, one per deployment (``train-and-evaluate-nightly-report``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

STATE_NAMES = {"promoted": "Promoted", "rejected": "Rejected", "skipped": "Skipped", "tie": "Kept (tie)"}


def outcome(report: Mapping[str, Any]) -> str:
    """``promoted``, ``rejected``, ``skipped`` or ``tie`` (a rejection because the interval contains 0)."""
    if report.get("skipped"):
        return "skipped"
    decision = report.get("decision") or {}
    if decision.get("promote"):
        return "promoted"
    if str(decision.get("reason") or "").startswith("a tie"):
        return "tie"
    return "rejected"


def report_key(deployment: str | None) -> str:
    """``train-and-evaluate-<deployment>-report``; ``...-local-report`` for a run outside a deployment.

    Artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9-]+", "-", (deployment or "local").lower()).strip("-") or "local"
    return f"train-and-evaluate-{slug}-report"
