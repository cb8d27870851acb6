"""The @task adapters: each calls its stage (via ``task.fn``); none hangs; training runs in a child."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines import childproc as tp
from pipelines import skip as skip_policy
from pipelines import stages
from pipelines.config import load_config
from pipelines.errors import TrainingError
from tasks import stages as t


@pytest.fixture
def cfg(tmp_path: Path):
    return load_config("smoke", overrides={"paths": {"data_dir": str(tmp_path / "data")}})


def _record(monkeypatch: pytest.MonkeyPatch, name: str, result: Any, module: Any = stages) -> list[tuple[tuple, dict]]:
    calls: list[tuple[tuple, dict]] = []

    def fake(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return result

    monkeypatch.setattr(module, name, fake)
    return calls


def test_each_task_calls_its_stage_with_its_arguments(cfg, monkeypatch) -> None:
    syn = _record(monkeypatch, "synthesize_stage", "/d")
    start = _record(monkeypatch, "start_run_stage", "run1")
    skip = _record(monkeypatch, "should_skip_training", "same champion", module=skip_policy)
    ev = _record(monkeypatch, "evaluate_stage", {"m": 0.5})
    lg = _record(monkeypatch, "log_stage", "models:/m/1")
    pr = _record(monkeypatch, "promote_stage", {"promote": True})
    end = _record(monkeypatch, "end_run_stage", None)

    assert t.synthesize.fn(cfg) == "/d" and syn == [((cfg,), {})]
    assert t.start_run.fn(cfg, run_name="n") == "run1" and start == [((cfg,), {"run_name": "n", "flow_run_id": None})]
    assert t.skip_check.fn(cfg) == "same champion" and skip == [((cfg,), {})]
    assert t.evaluate.fn(cfg, "m", "/d", "/o.json") == {"m": 0.5} and ev == [((cfg, "m", "/d", "/o.json"), {})]
    assert t.log_to_mlflow.fn(cfg, "run1", "/d", "/root", {"a": 1.0}, None) == "models:/m/1"
    assert lg == [((cfg, "run1", "/d", "/root", {"a": 1.0}, None), {})]
    lock = object()
    assert t.promote.fn(cfg, "run1", "models:/m/1", "/d", {"a": 1.0}, lock=lock, base={"b": 0.1}, model_root="/r") == {
        "promote": True
    }
    score = pr[0][1].pop("score")  # the champion is scored by the evaluate-champion task
    assert callable(score) and pr[0][1] == {"lock": lock, "base": {"b": 0.1}, "model_root": "/r"}
    t.end_run.fn("run1", "KILLED")
    assert end == [(("run1", "KILLED"), {})]


def test_no_task_can_hang_and_training_never_restarts() -> None:
    """What the flow relies on, not how each decorator is spelled: no stage blocks a run forever; a failed
    training is not re-run from scratch (hours of GPU time); the child's own deadline fires before the task's,
    so the child's process group is killed cleanly first (see pipelines.childproc)."""
    every = [t.synthesize, t.start_run, t.skip_check, t.train, t.evaluate, t.log_to_mlflow, t.promote, t.end_run]
    assert all(task.timeout_seconds and task.timeout_seconds > 0 for task in every)
    assert t.train.retries == 0
    assert t.train.timeout_seconds is not None and t.train.timeout_seconds > t.TRAIN_TIMEOUT_S


def test_dataset_cache_key_follows_dataset_key(cfg, monkeypatch) -> None:
    monkeypatch.setattr(stages, "dataset_key", lambda c: "aaa")
    k1 = t.dataset_cache_key(None, {"cfg": cfg})
    monkeypatch.setattr(stages, "dataset_key", lambda c: "bbb")
    k2 = t.dataset_cache_key(None, {"cfg": cfg})
    assert k1 != k2 and k1.endswith("aaa") and k2.endswith("bbb")


def test_result_storage_is_absolute_under_data_dir(cfg) -> None:
    storage = t.result_storage_for(cfg)
    assert storage.is_absolute() and storage.is_dir()
    assert storage == (cfg.paths.data_dir / "prefect-results").resolve()


# --- the training child process ------------------------------------------------------------------------


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_run_logged_writes_a_log_file_tails_it_and_returns_code(tmp_path: Path) -> None:
    lines: list[str] = []
    log_file = tmp_path / "logs" / "train.log"
    argv = _script(
        tmp_path,
        "import sys\nprint('one', flush=True)\nprint('two', file=sys.stderr, flush=True)\n"
        "sys.stdout.write('no newline')\nsys.exit(3)\n",
    )
    assert tp.run_logged(argv, log_file=log_file, log=lines.append) == 3
    assert lines == ["one", "two", "no newline"]
    assert log_file.read_text() == "one\ntwo\nno newline"


def test_child_output_is_a_file_not_a_pipe(tmp_path: Path) -> None:
    """A pipe blocks a chatty child once its reader stops; the child's stdout must be a regular file."""
    import stat as st

    out = tmp_path / "mode"
    argv = _script(tmp_path, f"import os, stat\nopen({str(out)!r}, 'w').write(str(os.fstat(1).st_mode))\n")
    assert tp.run_logged(argv, log_file=tmp_path / "train.log", log=lambda _l: None) == 0
    assert st.S_ISREG(int(out.read_text()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); count it as dead
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    argv = _script(
        tmp_path,
        f"""
        import os, subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{grandchild.pid}}")
        print("started", flush=True)
        time.sleep(600)
        """,
    )
    # the child would sleep for 10 minutes: run_logged raising the timeout at all shows it stopped
    # waiting at its deadline, and the child and grandchild ending shows the group was killed
    with pytest.raises(tp.TrainingTimeout, match="timeout"):
        tp.run_logged(argv, log_file=tmp_path / "t.log", log=lambda _l: None, timeout_s=2.0, grace_s=2.0)
    child, grandchild = map(int, pids.read_text().split())
    deadline = time.monotonic() + 120
    while (_alive(child) or _alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child) and not _alive(grandchild)


def test_train_in_subprocess_passes_resolved_config_and_cleans_up(cfg, tmp_path, monkeypatch) -> None:
    seen = tmp_path / "seen.json"
    script = _script(
        tmp_path,
        f"""
        import json, shutil, sys
        cfg_path = sys.argv[sys.argv.index("--config") + 1]
        shutil.copy(cfg_path, {str(seen)!r})
        print("training...", flush=True)
        """,
    )
    config_files: list[Path] = []

    def command(d: str, o: str, c: Path) -> list[str]:
        config_files.append(Path(c))
        return [*script, "--data", str(d), "--out", str(o), "--config", str(c)]

    monkeypatch.setattr(tp, "train_command", command)
    out = tp.train_in_subprocess(cfg, "/data", str(tmp_path / "model"))
    assert out == str(tmp_path / "model")
    assert json.loads(seen.read_text()) == cfg.model_dump(mode="json")
    assert len(config_files) == 1 and not config_files[0].exists()


def test_train_in_subprocess_raises_with_last_line_on_failure(cfg, tmp_path, monkeypatch) -> None:
    script = _script(tmp_path, "import sys\nprint('loss is nan at step 3', flush=True)\nsys.exit(1)\n")
    monkeypatch.setattr(tp, "train_command", lambda d, o, c: script)
    with pytest.raises(TrainingError, match=r"code 1: loss is nan at step 3 \(full log: .*train\.log\)"):
        tp.train_in_subprocess(cfg, "/data", str(tmp_path / "model"))


def test_train_command_is_the_cli_under_this_interpreter() -> None:
    argv = tp.train_command("/d", "/m", "/c.json")
    assert argv == [
        sys.executable,
        "-m",
        "pipelines.cli",
        "train",
        "--data",
        "/d",
        "--out",
        "/m",
        "--config",
        "/c.json",
    ]


def test_config_file_is_accepted_by_load_config(cfg, tmp_path) -> None:
    path = tp.write_config_file(cfg, tmp_path)
    try:
        assert load_config(file=path) == cfg
    finally:
        path.unlink()


def test_mlflow_retry_delays_come_from_the_environment() -> None:
    """RECIPE_EMBED_MLFLOW_RETRY_DELAYS sets the MLflow tasks' retries (one per delay); 2, 10, 30 s by default."""
    import os
    import subprocess
    import sys

    code = "import tasks.stages as t; print(t.MLFLOW_RETRIES, t.MLFLOW_RETRY_DELAYS, t.log_to_mlflow.retries)"
    env = {k: v for k, v in os.environ.items() if k != "RECIPE_EMBED_MLFLOW_RETRY_DELAYS"}
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert default.stdout.split("\n")[0] == "3 [2.0, 10.0, 30.0] 3", default.stderr[-2000:]
    env["RECIPE_EMBED_MLFLOW_RETRY_DELAYS"] = "1, 4"
    quick = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert quick.stdout.split("\n")[0] == "2 [1.0, 4.0] 2", quick.stderr[-2000:]
