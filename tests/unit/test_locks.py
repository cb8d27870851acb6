"""One promotion lock per tracking URI, whatever the entry point or the data directory."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.locks import (
    PROMOTION_LOCK,
    LockTimeoutError,
    PrefectSlotError,
    file_lock,
    lock_path,
    normalize_uri,
    prefect_slot,
    promotion_lock,
)


def _cfg(data_dir: Path, uri: str | None, timeout_s: float = 120):  # type: ignore[no-untyped-def]
    return load_config(
        "smoke",
        overrides={
            "paths": {"data_dir": str(data_dir)},
            "tracking": {"tracking_uri": uri},
            "registry": {"lock_timeout_s": timeout_s},
        },
    )


def test_the_lock_file_depends_on_the_tracking_uri_not_on_the_data_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RECIPE_EMBED_LOCK_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    a, b = _cfg(tmp_path / "a", uri), _cfg(tmp_path / "b", uri)
    pa = lock_path(uri, a.registry.model_name)
    assert pa == lock_path(f"sqlite:///{tmp_path / 'store' / '.' / 'mlflow.db'}", b.registry.model_name)
    assert pa.parent == tmp_path / "store" / "mlflow.db.locks"  # beside the database every user opens
    remote = lock_path("http://MLflow.example:5000/", "recipe-embedder")
    assert remote == lock_path("http://mlflow.example:5000", "recipe-embedder")
    assert remote.parent == tmp_path / "cache" / "recipe-embed" / "locks"
    assert lock_path("http://other:5000", "recipe-embedder") != remote
    assert normalize_uri("HTTP://Host:1/x/") == "http://host:1/x"


def _hold(cfg_data: dict, entry: str, seconds: float, ready) -> None:  # type: ignore[no-untyped-def]
    from pipelines.config import PipelineConfig

    cfg = PipelineConfig.model_validate(cfg_data)
    if entry == "cli":
        factory = promotion_lock(cfg)
    else:
        from flows.train_and_evaluate import promotion_lock as flow_lock  # what the flow calls

        factory = flow_lock(cfg)
    with factory():
        ready.set()
        time.sleep(seconds)


@pytest.mark.parametrize(("holder", "taker"), [("cli", "flow"), ("flow", "cli")])
def test_flow_and_cli_locks_exclude_each_other_across_data_dirs(tmp_path, monkeypatch, holder, taker) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    held = ctx.Process(target=_hold, args=(_cfg(tmp_path / "one", uri).model_dump(mode="json"), holder, 4.0, ready))
    held.start()
    try:
        assert ready.wait(120)
        other = _cfg(tmp_path / "two", uri, timeout_s=0.5)
        if taker == "cli":
            factory = promotion_lock(other)
        else:
            from tasks.stages import promotion_lock as flow_lock

            factory = flow_lock(other)
        with pytest.raises(LockTimeoutError, match="could not take the lock"), factory():
            pass
    finally:
        held.join(60)
        if held.is_alive():
            held.kill()
    with promotion_lock(_cfg(tmp_path / "two", uri, timeout_s=5))():  # free once the holder is done
        pass


# --- the Prefect slot, over the REST API (a stub server: tests/unit/stub_prefect_api.py) ------------------


def _free(path: Path) -> bool:
    try:
        with file_lock(path, timeout_s=0):
            return True
    except LockTimeoutError:
        return False


def test_the_prefect_slot_is_taken_over_http_after_the_file_lock(tmp_path, monkeypatch) -> None:
    from stub_prefect_api import LIMITS, serve

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _cfg(tmp_path / "data", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with serve() as api:
        monkeypatch.setenv("PREFECT_API_URL", api.url)
        factory = promotion_lock(cfg)
        assert api.calls == []  # nothing asked before the lock is entered
        with factory() as path:
            assert not _free(path)  # the file lock first ...
            assert api.limits == {PROMOTION_LOCK: {"limit": 1, "active": 1}}  # ... then one slot of a 1-slot limit
        assert _free(path) and api.limits[PROMOTION_LOCK]["active"] == 0 and api.leases == {}
        assert api.calls == [
            ("GET", f"{LIMITS}/{PROMOTION_LOCK}"),  # missing: created
            ("POST", f"{LIMITS}/"),
            ("POST", f"{LIMITS}/increment-with-lease"),
            ("POST", f"{LIMITS}/decrement-with-lease"),
        ]
        with factory():  # the limit exists now: read, not created again
            pass
        assert api.paths("POST").count(f"{LIMITS}/") == 1 and api.limits[PROMOTION_LOCK]["active"] == 0
        with promotion_lock(cfg, slot=False)():  # the file lock alone (registry.default_lock)
            pass
        assert len(api.calls) == 7  # 4 + GET, increment, decrement: nothing for the file lock alone


def test_a_taken_prefect_slot_times_out_and_frees_the_file_lock(tmp_path, monkeypatch) -> None:
    from stub_prefect_api import serve

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _cfg(tmp_path / "data", f"sqlite:///{tmp_path / 'mlflow.db'}", timeout_s=0.5)
    with serve() as api:
        monkeypatch.setenv("PREFECT_API_URL", api.url)
        api.limits[PROMOTION_LOCK] = {"limit": 1, "active": 1}  # another host holds it
        start = time.monotonic()
        with (
            pytest.raises(LockTimeoutError, match="Prefect concurrency slot recipe-embedder-promotion"),
            promotion_lock(cfg)(),
        ):
            pass
        # it waited out its 0.5 s before giving up (a lower bound: a loaded machine only makes it longer),
        # retrying the lease while it waited; a hang would be the test's own timeout
        assert time.monotonic() - start >= 0.4
        assert api.paths("POST").count("/api/v2/concurrency_limits/increment-with-lease") > 1  # retried on 423
        assert _free(lock_path(f"sqlite:///{tmp_path / 'mlflow.db'}", cfg.registry.model_name))


def test_an_unreachable_prefect_api_is_one_clear_error(tmp_path, monkeypatch) -> None:
    from tests.conftest import free_ports

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (port,) = free_ports(1)
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{port}/api")
    cfg = _cfg(tmp_path / "data", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with (
        pytest.raises(PrefectSlotError, match=f"Prefect API http://127.0.0.1:{port}/api .*PREFECT_API_URL"),
        promotion_lock(cfg)(),
    ):
        pass
    assert _free(lock_path(f"sqlite:///{tmp_path / 'mlflow.db'}", cfg.registry.model_name))


def test_a_held_slot_renews_its_lease(tmp_path) -> None:
    from stub_prefect_api import serve

    with serve() as api:
        api.min_lease_s = 0.0
        with prefect_slot(api.url, "a-limit", timeout_s=5, lease_s=0.3) as lease:
            time.sleep(0.5)
        renewals = [p for p in api.paths("POST") if p.endswith("/renew")]
        assert renewals and all(lease in p for p in renewals)
        assert api.limits["a-limit"]["active"] == 0
