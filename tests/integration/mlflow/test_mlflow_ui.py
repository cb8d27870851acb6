"""The real MLflow UI, in headless Chromium, on a store made by two real smoke runs (a promoted one and a
rejected one): the runs page shows the verdicts, the run page its decision line, Compare the plot.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (the dev extra). Without
them the test is skipped with the reason, and fails in CI (``CI=true``), where ``.ci/run`` installs them.
``RECIPE_EMBED_UI_SCREENSHOTS=DIR`` also saves the pages it opens as PNGs into DIR.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow_test_helpers import free_port

from pipelines.config import PipelineConfig, load_config
from tests.integration.browser import PAGE_TIMEOUT_S, chromium, require_browser, wait_text
from tests.integration.conftest import _mlflow_cmd, running_server

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 1800.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    with chromium() as driver:
        yield driver


def _recipe_embed(home: Path, profile: str, *sets: str) -> None:
    exe = Path(sys.executable).with_name("recipe-embed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env.update(RECIPE_EMBED_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    out = subprocess.run(
        [str(exe), "run", "--profile", profile, *[a for s in sets for a in ("--set", s)]],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert out.returncode == 0, (
        f"recipe-embed run --profile {profile} failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}"
    )


def _store_uri(cfg: PipelineConfig) -> str:
    """The runs' own sqlite store. Not ``tracking.resolve_tracking_uri``: that prefers ``$MLFLOW_TRACKING_URI``,
    which ``mlflow.set_tracking_uri`` in an earlier test of the session may have left pointing elsewhere."""
    return f"sqlite:///{Path(cfg.paths.mlflow_db).resolve()}"


def _client(cfg: PipelineConfig) -> Any:
    from mlflow import MlflowClient

    uri = _store_uri(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineConfig, list[str]]:
    """Two trained runs, the first promoted, the second (smoke-worse) rejected; their run ids, oldest first."""
    require_browser()  # the runs take minutes: not without a browser to look at them
    home = tmp_path_factory.mktemp("recipe-embed-ui-home")
    _recipe_embed(home, "smoke")
    _recipe_embed(home, "smoke-worse")
    cfg = load_config("smoke", overrides={"paths": {"data_dir": str(home)}})
    c = _client(cfg)
    exp = c.get_experiment_by_name(cfg.tracking.experiment)
    assert exp is not None
    runs = c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    return cfg, [r.info.run_id for r in runs]


@pytest.fixture(scope="module")
def ui(store: tuple[PipelineConfig, list[str]]) -> Iterator[str]:
    """``mlflow server`` on a free loopback port against the store; its URL."""
    cfg, _ = store
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    root = Path(cfg.paths.data_dir)
    cmd = [*_mlflow_cmd(), "server", "--backend-store-uri", _store_uri(cfg)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with running_server(
        cmd, ready_url=url + "/health", log_path=root / "ui-server.log", env=env, cwd=root, what="mlflow server",
        timeout_s=PAGE_TIMEOUT_S,
    ):  # fmt: skip
        yield url


def _screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("RECIPE_EMBED_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_runs_page_shows_verdicts_and_compare_shows_the_plot(
    browser: Any, ui: str, store: tuple[PipelineConfig, list[str]]
) -> None:
    cfg, run_ids = store
    assert len(run_ids) == 2
    c = _client(cfg)
    first, second = (c.get_run(r) for r in run_ids)
    exp_id = first.info.experiment_id
    assert first.data.tags["mlflow.note.content"].startswith("PROMOTED")
    assert second.data.tags["mlflow.note.content"].startswith("REJECTED")

    browser.get(f"{ui}/#/experiments/{exp_id}/runs")  # the experiment's own page is a GenAI overview
    wait_text(browser, first.info.run_name)
    wait_text(browser, second.info.run_name)
    assert first.info.run_name.startswith("promoted-v1") and second.info.run_name.startswith("rejected-v2")
    _screenshot(browser, "runs-list")

    browser.get(f"{ui}/#/experiments/{exp_id}/runs/{second.info.run_id}")
    wait_text(browser, "REJECTED: KEPT champion (version 1)")

    ids = ",".join(f'"{r}"' for r in run_ids)
    browser.get(f'{ui}/#/compare-runs?runs=[{ids}]&experiments=["{exp_id}"]')
    wait_text(browser, "Artifacts")
    wait_text(browser, "metrics.png")
    _screenshot(browser, "compare")

    browser.get(f"{ui}/#/models/{cfg.registry.model_name}/versions/2")
    wait_text(browser, "REJECTED")
    _screenshot(browser, "version")
