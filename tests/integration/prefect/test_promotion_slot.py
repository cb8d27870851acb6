"""The promotion lock's Prefect slot, taken over the REST API (no Prefect import in pipelines/), on the
stack's real Prefect server: it excludes a second holder, Prefect's own ``concurrency()`` sees it taken,
and it is free again after release."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.locks import PROMOTION_LOCK, LockTimeoutError, prefect_slot, promotion_lock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_the_promotion_slot_over_http_excludes_other_holders(stack, tmp_path: Path, monkeypatch) -> None:
    from prefect.concurrency.sync import concurrency
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", stack.api)  # read by promotion_lock
    name = f"promotion-slot-test-{uuid.uuid4().hex[:8]}"  # a limit of its own: flows of other tests use the real one
    with prefect_slot(stack.api, name, timeout_s=30):
        limit = stack.get(f"/v2/concurrency_limits/{name}")
        assert (limit["limit"], limit["active_slots"]) == (1, 1)  # created with one slot, and held
        with (
            pytest.raises(LockTimeoutError, match=f"Prefect concurrency slot {name} within 1 s"),
            prefect_slot(stack.api, name, timeout_s=1),
        ):
            pass
        with (
            temporary_settings({PREFECT_API_URL: stack.api}),  # Prefect's settings were read at its import
            pytest.raises(TimeoutError),  # Prefect's own concurrency() sees the same slot taken
            concurrency(name, occupy=1, timeout_seconds=1, strict=True),
        ):
            pass
    assert stack.get(f"/v2/concurrency_limits/{name}")["active_slots"] == 0
    with prefect_slot(stack.api, name, timeout_s=5):  # free again
        pass

    # the entry points' lock: the file lock, then a slot of the real limit, freed on exit
    cfg = load_config(
        "smoke",
        overrides={
            "paths": {"data_dir": str(tmp_path / "data")},
            "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            "registry": {"lock_timeout_s": 120},
        },
    )
    with promotion_lock(cfg)():
        assert stack.get(f"/v2/concurrency_limits/{PROMOTION_LOCK}")["limit"] == 1
    assert stack.get(f"/v2/concurrency_limits/{PROMOTION_LOCK}")["active_slots"] == 0
