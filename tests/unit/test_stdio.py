"""A process whose stdout/stderr lost their reader (its worker was killed) still evaluates a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import stdio

ROOT = Path(__file__).resolve().parents[2]


def test_broken_pipe_is_detected_and_detached(tmp_path: Path) -> None:
    code = (
        "import os, sys\nfrom pipelines import stdio\n"
        "r, w = os.pipe(); os.close(r); os.dup2(w, 2)\n"
        "before = stdio.is_broken(2); changed = stdio.detach_broken_stdio()\n"
        "os.write(2, b'fine')\n"
        f"open({str(tmp_path / 'out')!r}, 'w').write(f'{{before}} {{changed}} {{stdio.is_broken(2)}}')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=60, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_text() == "True True False"
    assert not stdio.is_broken(os.open(os.devnull, os.O_WRONLY))


@pytest.mark.skipif(not hasattr(os, "pipe"), reason="needs pipes")
def test_evaluation_survives_a_dead_reader_of_its_output(tmp_path: Path, tiny_dataset_dir: Path) -> None:
    out = tmp_path / "metrics.json"
    code = f"""
import json, sys, time
time.sleep(1.0)  # the parent closes its read ends first
from pipelines.config import load_config
from pipelines.stages import evaluate_stage
cfg = load_config("smoke")
metrics = evaluate_stage(cfg, "bundled:all-MiniLM-L6-v2", {str(tiny_dataset_dir)!r})
open({str(out)!r}, "w").write(json.dumps(metrics))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the worker that read our output is gone
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0
    metrics = json.loads(out.read_text())
    assert any(k.endswith("map@100") for k in metrics)
