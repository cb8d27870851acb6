"""The training child never outlives, nor blocks on, the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines import lifeline

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and prctl")

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    return lifeline.is_alive(pid)


def _wait_dead(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def _child_script(tmp_path: Path, pids: Path) -> Path:
    """The child (like ``recipe-embed train``): installs the lifeline, starts a grandchild, sleeps."""
    return _write(
        tmp_path / "child.py",
        f"""
        import os, subprocess, sys, time
        from pipelines import lifeline
        lifeline.install(poll_s=0.2)
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pids)!r} + ".tmp", "w").write(f"{{os.getpid()}} {{grandchild.pid}}")
        os.replace({str(pids)!r} + ".tmp", {str(pids)!r})
        while True:
            print("step", flush=True)
            time.sleep(0.05)
        """,
    )


def _parent_script(tmp_path: Path, argv: list[str], grace_s: float | None = None) -> Path:
    """The task's process: runs the child through ``run_logged`` (log file, own process group)."""
    grace = "" if grace_s is None else f", grace_s={grace_s!r}"
    return _write(
        tmp_path / "parent.py",
        f"""
        from tasks import training_proc as tp
        tp.run_logged({argv!r}, log_file={str(tmp_path / "train.log")!r}, log=lambda _l: None{grace})
        """,
    )


def _start_parent(tmp_path: Path, argv: list[str], grace_s: float | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(_parent_script(tmp_path, argv, grace_s))], env=env, cwd=ROOT)


def _read_pids(pids: Path, parent: subprocess.Popen[bytes]) -> list[int]:
    deadline = time.monotonic() + 60
    while not pids.exists():
        assert parent.poll() is None, "parent ended before the child started"
        assert time.monotonic() < deadline, "child never started"
        time.sleep(0.1)
    return [int(p) for p in pids.read_text().split()]


def test_child_and_its_children_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    parent = _start_parent(tmp_path, [sys.executable, str(_child_script(tmp_path, pids))])
    try:
        child, grandchild = _read_pids(pids, parent)
        assert _alive(child) and _alive(grandchild)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert _wait_dead([child, grandchild], 10) == []
    finally:
        parent.kill()
        for p in pids.read_text().split() if pids.exists() else []:
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(int(p), signal.SIGKILL)


def test_watchdog_alone_ends_the_child_when_pdeathsig_does_not_apply(tmp_path: Path) -> None:
    """Through a launcher (as torchrun would be) the death signal is not set: the watchdog must act."""
    pids = tmp_path / "pids"
    child = _child_script(tmp_path, pids)
    launcher = [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, {str(child)!r}])"]
    parent = _start_parent(tmp_path, launcher)
    try:
        child_pid, _grandchild = _read_pids(pids, parent)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert _wait_dead([child_pid], 10) == []
    finally:
        parent.kill()
        for p in pids.read_text().split() if pids.exists() else []:
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(int(p), signal.SIGKILL)


def test_a_reused_pid_is_not_the_parent() -> None:
    me = os.getpid()
    start = lifeline.process_start_time(me)
    assert start is not None
    assert lifeline.is_alive(me, start)
    assert not lifeline.is_alive(me, str(int(start) + 1))  # same pid, other start time: not the parent


def test_parent_variables_are_not_inherited_by_the_childs_children(tmp_path: Path) -> None:
    code = (
        "import os, json\nfrom pipelines import lifeline\n"
        "t = lifeline.install(poll_s=3600)\n"
        "print(json.dumps([t is not None, lifeline.PID_ENV in os.environ, lifeline.START_ENV in os.environ]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), **lifeline.parent_env()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[true, false, false]", out.stderr


def test_a_stuck_log_reader_does_not_block_a_chatty_child(tmp_path: Path) -> None:
    """1 MB of output (16 pipes' worth) while the logger blocks for good: the child still finishes."""
    import threading

    from tasks import training_proc as tp

    stuck = threading.Event()
    child = _write(tmp_path / "chatty.py", "import sys\nfor i in range(16384):\n    print('x' * 63)\n")
    started = time.monotonic()
    code = tp.run_logged([sys.executable, str(child)], log_file=tmp_path / "train.log", log=lambda _l: stuck.wait(3600))
    assert code == 0 and time.monotonic() - started < 30
    assert (tmp_path / "train.log").stat().st_size == 16384 * 64


def test_cancel_ends_a_child_that_ignores_sigterm_and_its_children_after_the_grace(tmp_path: Path) -> None:
    """A cancel interrupts the waiting thread (KeyboardInterrupt here): TERM, then KILL after the grace.

    A short grace (2 s; the default is ``TERM_GRACE_S``) keeps the check about the escalation, with room
    for a loaded machine: the 30 s bound would fail only if the KILL never came."""
    from tasks.training_proc import TERM_GRACE_S

    assert TERM_GRACE_S + 10 < 30  # the default grace plus the KILL wait still ends a cancel within 30 s
    pids = tmp_path / "pids"
    stubborn = _write(
        tmp_path / "stubborn.py",
        f"""
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        grandchild = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
        open({str(pids)!r} + ".tmp", "w").write(f"{{os.getpid()}} {{grandchild.pid}}")
        os.replace({str(pids)!r} + ".tmp", {str(pids)!r})
        time.sleep(120)
        """,
    )
    parent = _start_parent(tmp_path, [sys.executable, str(stubborn)], grace_s=2.0)
    try:
        child, grandchild = _read_pids(pids, parent)
        t0 = time.monotonic()
        parent.send_signal(signal.SIGINT)
        assert _wait_dead([child, grandchild], 30) == []
        assert 2.0 <= time.monotonic() - t0 < 30  # TERM was ignored: the KILL came after the grace
        parent.wait(10)
    finally:
        parent.kill()
        for p in pids.read_text().split() if pids.exists() else []:
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(int(p), signal.SIGKILL)
