"""Disk and file-system errors: one line with the path and the cause, exit 1, nothing partial looks complete."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines import io
from pipelines.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]

CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
}


def _one_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def _fail_on_nth_parquet(monkeypatch: pytest.MonkeyPatch, n: int, code: int) -> None:
    """The ``n``-th ``DataFrame.to_parquet`` call of the run raises ``OSError(code)`` (the write layer)."""
    real = pd.DataFrame.to_parquet
    calls = {"n": 0}

    def to_parquet(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == n:
            real(self, path, *args, **kwargs)  # a half-written file is on disk when the error comes
            raise OSError(code, os.strerror(code))
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)


@pytest.mark.parametrize("code", sorted(CAUSES))
def test_synthesize_disk_error_is_one_line_and_leaves_no_partial_dataset(tmp_path, monkeypatch, code) -> None:
    out = tmp_path / "ds"
    _fail_on_nth_parquet(monkeypatch, 2, code)  # train.parquet written, validation.parquet fails
    r = runner.invoke(app, ["synthesize", "--out", str(out), "--profile", "smoke"])
    assert r.exit_code == 1
    line = _one_line(r)
    assert line.startswith("recipe-embed: error: cannot write ") and str(out / "validation.parquet") in line
    assert CAUSES[code] in line
    assert sorted(p.name for p in out.iterdir()) == []  # no train.parquet without a manifest, no temp file


def test_a_failed_rewrite_keeps_the_previous_complete_dataset(tmp_path, monkeypatch) -> None:
    from pipelines.stages import dataset_is_complete

    out = tmp_path / "ds"
    assert runner.invoke(app, ["synthesize", "--out", str(out), "--profile", "smoke"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _fail_on_nth_parquet(monkeypatch, 3, errno.ENOSPC)
    r = runner.invoke(app, ["synthesize", "--out", str(out), "--profile", "smoke", "--seed", "5"])
    assert r.exit_code == 1 and "no space left on device" in _one_line(r)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert dataset_is_complete(out)


def test_output_under_a_regular_file_is_one_line_for_synthesize_validate_train_and_run(
    tmp_path, tiny_dataset_dir
) -> None:
    """A real file-system error (no injection): a path whose parent is a regular file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("anchor,positive\nhow do I make pancakes,mix flour eggs and milk then fry\n")
    cases = {
        "synthesize": ["synthesize", "--out", str(blocker / "ds"), "-p", "smoke"],
        "validate": ["validate", str(pairs), "--out", str(blocker / "ds"), "-p", "smoke"],
        "train": ["train", "--data", str(tiny_dataset_dir), "--out", str(blocker / "m"), "-p", "smoke"],
        "run": ["run", "-p", "smoke", "--set", f"paths.data_dir={blocker / 'data'}"],
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    for name, args in cases.items():
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, env=env, timeout=300
        )
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "recipe-embed: error:" in ln]
        assert proc.returncode == 1, (name, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (name, proc.stderr[-2000:])
        assert len(lines) == 1 and str(blocker) in lines[0], (name, proc.stderr[-2000:])
        assert "not a directory" in lines[0], (name, lines)


def test_atomic_files_keep_the_umask_mode_and_leave_no_temp(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        target = io.write_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_write_error_names_the_target_not_the_temp_file(tmp_path, monkeypatch) -> None:
    from pipelines.errors import StorageError

    def boom(*_a, **_k):  # type: ignore[no-untyped-def]
        raise OSError(errno.EROFS, "Read-only file system", "/x/.x.json.123.tmp")

    monkeypatch.setattr(io, "_flush_file", boom)
    with pytest.raises(StorageError, match=r"cannot write .*/x\.json: read-only file system$"):
        io.write_json({"a": 1}, tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []
