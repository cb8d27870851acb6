"""pipelines/ is the Prefect-free core: it imports (every submodule) with prefect made unimportable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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

_BLOCKER = """
import importlib.abc, sys
class _BlockPrefect(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "prefect" or fullname.startswith("prefect."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by test_layering)")
        return None
sys.meta_path.insert(0, _BlockPrefect())
"""


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
