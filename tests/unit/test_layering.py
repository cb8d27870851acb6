"""pipelines/ is the Prefect-free core: it imports (every submodule) with prefect made unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from import_blocker import blocker_code

_WALK = """
import importlib, pkgutil, sys, json
import pipelines
walked = pkgutil.walk_packages(pipelines.__path__, "pipelines.")
# __main__ modules run the CLI when imported: they are entry points, not library modules.
names = ["pipelines"] + sorted(m.name for m in walked if not m.name.endswith("__main__"))
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:  # report every module, not just the first
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"modules": names, "failed": failed,
                  "prefect_loaded": sorted(m for m in sys.modules if m.split(".")[0] == "prefect")}))
"""

_BLOCKER = blocker_code("prefect")


def _run(code: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_blocker_really_blocks_prefect() -> None:
    out = _run(
        _BLOCKER + "\ntry:\n    import prefect\n    print('{\"blocked\": false}')\n"
        "except ModuleNotFoundError:\n    print('{\"blocked\": true}')\n"
    )
    assert out == {"blocked": True}


def test_every_pipelines_module_imports_without_prefect() -> None:
    out = _run(_BLOCKER + _WALK)
    assert "pipelines.datasets" in out["modules"] and "pipelines.cli.data" in out["modules"]
    assert out["failed"] == {}


def test_importing_pipelines_does_not_import_prefect() -> None:
    out = _run(_WALK)  # prefect installed and importable here
    assert out["failed"] == {}
    assert out["prefect_loaded"] == []


# --- at run time: a real CLI command down to the promotion lock, with prefect and tasks unimportable ----

_CLI_BLOCKED = (
    blocker_code("prefect", "tasks")
    + """
import atexit, json, os
def _report():
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("prefect", "tasks"))
    with open(os.environ["LAYERING_REPORT"], "w") as f:
        json.dump({"attempts": blocked_attempts, "loaded": loaded}, f)
atexit.register(_report)
from pipelines.cli import main
main(sys.argv[1:])
"""
)


def test_a_cli_command_takes_the_promotion_lock_and_its_prefect_slot_without_prefect_or_tasks(tmp_path) -> None:
    """``recipe-embed reconcile`` with ``PREFECT_API_URL`` set settles a version with no decision under
    the promotion lock: the file lock, then the Prefect slot over HTTP (a stub API), with prefect and
    ``tasks`` blocked for the whole run (an import of either, even one caught, fails the test)."""
    from mlflow import MlflowClient
    from stub_prefect_api import LIMITS, serve

    from pipelines.locks import PROMOTION_LOCK

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    c.create_registered_model("layering-model")
    (tmp_path / "model").mkdir()
    c.create_model_version("layering-model", str(tmp_path / "model"))  # interrupted: no decision tag
    report = tmp_path / "layering.json"
    with serve() as api:
        env = {
            "HF_HUB_OFFLINE": "1",
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "PREFECT_API_URL": api.url,
            "LAYERING_REPORT": str(report),
        }
        proc = subprocess.run(
            [sys.executable, "-c", _CLI_BLOCKED, "reconcile", "--profile", "smoke", "--json",
             "--set", f"tracking.tracking_uri={uri}", "--set", "registry.model_name=layering-model",
             "--set", f"paths.data_dir={tmp_path / 'data'}"],
            capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(report.read_text()) == {"attempts": [], "loaded": []}
    findings = json.loads(proc.stdout)
    assert [(f["kind"], f["id"], f["action"]) for f in findings] == [("version", "1", "tagged")], findings
    assert c.get_model_version("layering-model", "1").tags["decision"] == "unknown"
    posts = api.paths("POST")
    assert f"{LIMITS}/increment-with-lease" in posts and f"{LIMITS}/decrement-with-lease" in posts
    assert api.limits == {PROMOTION_LOCK: {"limit": 1, "active": 0}} and api.leases == {}
