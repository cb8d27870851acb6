"""pipelines.distributed without training: the torchrun argv, rank counts, batch split, resume guard, failures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipelines import distributed as dd
from pipelines.config import ModelConfig, TrainingConfig, load_config
from pipelines.errors import InputError, TrainingError


def test_torchrun_command_wraps_the_module_and_leaves_one_process_alone() -> None:
    argv = ["/venv/bin/python", "-m", "pipelines.cli", "train", "--data", "d", "--out", "o"]
    assert dd.torchrun_command(argv, 1) == argv
    assert dd.torchrun_command(argv, 4) == [
        "/venv/bin/python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
        "-m", "pipelines.cli", "train", "--data", "d", "--out", "o",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        dd.torchrun_command(["python", "script.py"], 2)


def test_resolve_nproc(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dd.resolve_nproc("auto") == 1
    assert dd.resolve_nproc(1) == 1
    assert dd.resolve_nproc(3, "cpu") == 3  # gloo ranks on CPU
    with pytest.raises(InputError, match="not mps"):
        dd.resolve_nproc(2, "mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert dd.resolve_nproc("auto") == 4
    assert dd.resolve_nproc("auto", "cpu") == 1
    assert dd.resolve_nproc(2, "cuda") == 2
    with pytest.raises(InputError, match="only 4 GPU"):
        dd.resolve_nproc(8, "auto")


def test_nproc_per_node_config() -> None:
    assert load_config("smoke").training.nproc_per_node == 1
    assert load_config("smoke", sets=["training.nproc_per_node=auto"]).training.nproc_per_node == "auto"
    with pytest.raises(ValueError, match=r"training\.nproc_per_node"):
        load_config("smoke", sets=["training.nproc_per_node=0"])


def test_batch_split_speaks_in_the_global_batch() -> None:
    assert dd.batch_split(None, 32, 1) == (32, 32)
    assert dd.batch_split(None, 32, 4) == (128, 32)  # unset: per-device x ranks
    assert dd.batch_split(512, 32, 4) == (512, 128)  # set: the same objective at any world size
    assert dd.batch_split(512, 32, 1) == (512, 512)
    with pytest.raises(InputError, match="does not split evenly over 3 ranks"):
        dd.batch_split(512, 32, 3)


def test_backend() -> None:
    assert dd.backend_for("cuda") == "nccl" and dd.backend_for("cuda:1") == "nccl" and dd.backend_for("cpu") == "gloo"


def test_resume_refuses_another_world_size(tmp_path: Path) -> None:
    ck = tmp_path / "checkpoints"
    dd.check_resume(ck, 1)  # nothing written: one process
    dd.record_world_size(ck, 2)
    dd.check_resume(ck, 2)
    with pytest.raises(InputError, match=r"written by 2 rank\(s\) and this run has 1.*nproc_per_node=2"):
        dd.check_resume(ck, 1)


def test_train_resume_with_another_world_size_fails_before_loading_anything(
    tmp_path: Path, tiny_dataset_dir: Path
) -> None:
    from pipelines.training import train

    dd.record_world_size(tmp_path / "out" / "checkpoints", 4)
    with pytest.raises(InputError, match="written by 4 rank"):
        train(tiny_dataset_dir, tmp_path / "out", ModelConfig(), TrainingConfig(), resume=True, progress=False)


ROOT_CAUSE = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
pipelines.cli FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-27_18:20:01
  host      : box
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 4241)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 4241
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-27_18:20:01
  host      : box
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 4242)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================
"""


def test_failure_message() -> None:
    assert dd.failure_message(ROOT_CAUSE, 1) == ("rank 1 was killed by SIGKILL; all ranks were stopped", 1)
    with_error = "recipe-embed: error: x.parquet: no such file\n" + ROOT_CAUSE.replace("-9 (pid", "2 (pid")
    assert dd.failure_message(with_error, 1) == ("x.parquet: no such file", 2)
    assert dd.failure_message("garbage", 3) == ("torchrun exited with code 3", 1)


def test_run_torchrun_turns_a_failed_rank_into_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real torchrun (2 gloo-less ranks of a tiny module): rank 1 fails, rank 0 waits and is stopped."""
    (tmp_path / "fake_rank.py").write_text(
        "import os, sys, time\n"
        "if os.environ['RANK'] == '1':\n"
        "    print('recipe-embed: error: rank one cannot read its shard', file=sys.stderr)\n"
        "    sys.exit(2)\n"
        "time.sleep(120)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(TrainingError) as err:
        dd.run_torchrun([sys.executable, "-m", "fake_rank"], 2)
    assert str(err.value) == "distributed training on 2 ranks failed: rank one cannot read its shard"
    assert err.value.exit_code == 2


def test_cli_train_reruns_itself_under_torchrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    calls: list[tuple[list[str], int, dict[str, object]]] = []

    def fake_run(argv: list[str], n: int) -> None:  # reads the config file while it exists
        calls.append((list(argv), n, json.loads(Path(argv[argv.index("--config") + 1]).read_text())))

    monkeypatch.setattr(dd, "run_torchrun", fake_run)
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "d"
    data.mkdir()
    result = CliRunner().invoke(
        app, ["train", "--data", str(data), "--out", str(tmp_path / "o"), "--profile", "smoke",
              "--set", "training.nproc_per_node=2", "--set", "training.device=cpu", "--resume"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ((argv, n, cfg),) = calls
    assert n == 2
    assert argv[:8] == [
        sys.executable,
        "-m",
        "pipelines.cli",
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
    ]
    assert argv[8] == "--config" and argv[10:] == ["--resume"]
    assert not Path(argv[9]).exists()  # removed after the run
    expected = load_config("smoke", sets=["training.nproc_per_node=2", "training.device=cpu"])
    assert cfg == expected.model_dump(mode="json")  # the ranks get exactly the resolved config
    # inside torchrun the command trains instead of relaunching
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert dd.in_torchrun() and dd.world_size() == 2


def test_pipeline_train_stage_also_runs_under_torchrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import stages

    calls: list[tuple[list[str], int]] = []
    monkeypatch.setattr(dd, "run_torchrun", lambda argv, n: calls.append((list(argv), n)))
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cfg = load_config("smoke", sets=["training.nproc_per_node=3", "training.device=cpu"])
    assert stages.train_stage(cfg, str(tmp_path / "d"), str(tmp_path / "m")) == str(tmp_path / "m")
    ((argv, n),) = calls
    assert n == 3 and argv[3:8] == ["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "m")]


def test_world_file_is_json(tmp_path: Path) -> None:
    dd.record_world_size(tmp_path, 3)
    assert json.loads((tmp_path / dd.WORLD_FILE).read_text()) == {"world_size": 3}


def _broadcast_rank(rank: int, init_file: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # each rank starts from its own weights
        model = torch.nn.Linear(3, 2)
        dd.broadcast_weights(model)
        torch.save(model.state_dict(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_broadcast_weights_gives_every_rank_rank_0s_weights(tmp_path: Path) -> None:
    import torch
    import torch.multiprocessing as mp

    mp.spawn(_broadcast_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    rank0 = torch.nn.Linear(3, 2).state_dict()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert all(torch.equal(got[k], rank0[k]) for k in rank0)
    # outside a distributed run it changes nothing
    model = torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dd.broadcast_weights(model)
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)
