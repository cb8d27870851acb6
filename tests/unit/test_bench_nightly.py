"""bench/nightly_time.py runs end to end on CPU with the smoke profile (3 steps) and prints its table and total."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # trains a smoke model (bench/nightly_time.py)
def test_nightly_time_smoke(tmp_path: Path) -> None:
    work = tmp_path / "work"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "bench/nightly_time.py",
            "--profile",
            "smoke",
            "--work-dir",
            str(work),
            "--no-progress",
            "--set",
            "training.max_steps=3",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^core nightly total: \d+\.\d s \(goal < 180 s: (met|not met)\)$", out, re.M), out
    for dim in (384, 256, 128, 64):
        assert re.search(rf"^map@100 dim {dim}: candidate \d\.\d{{4}}, base \d\.\d{{4}}", out, re.M), out
    assert "profile: smoke" in out
    assert re.search(r"\| train +\| +\d+\.\d \| 3 steps;", out), out  # --set reached the training config
    assert "data: pipelines.datasets.build_dataset" in out
    assert "Prefect orchestration and MLflow" in out
    assert (work / "models" / "candidate" / "model").is_dir()  # --work-dir is kept
