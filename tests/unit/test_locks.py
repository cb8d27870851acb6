"""One promotion lock per tracking URI, whatever the entry point or the data directory."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.locks import LockTimeoutError, lock_path, normalize_uri, registry_lock


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
        from pipelines.cli._common import promotion_lock

        factory = promotion_lock(cfg)
    else:
        from tasks.locks import promotion_lock as flow_lock

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
            from pipelines.cli._common import promotion_lock

            factory = promotion_lock(other)
        else:
            from tasks.locks import promotion_lock as flow_lock

            factory = flow_lock(other)
        with pytest.raises(LockTimeoutError, match="could not take the lock"), factory():
            pass
    finally:
        held.join(60)
        if held.is_alive():
            held.kill()
    with registry_lock(_cfg(tmp_path / "two", uri, timeout_s=5))():  # free once the holder is done
        pass
