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
WAIT_S = 120.0
"""A generous deadline for a condition (a process ends, a file appears) on a loaded machine."""


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
        from pipelines import childproc as tp
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


def test_a_stuck_log_reader_does_not_block_stop_even_before_the_first_read(tmp_path: Path) -> None:
    """The child ended before the tail's first read (a loaded machine): what is left is read in the tail's
    own thread, so a stuck ``log`` never blocks the caller of ``stop``."""
    import threading

    from pipelines import childproc as tp

    stuck = threading.Event()
    log_file = tmp_path / "train.log"
    tail = tp.LogTail(log_file, lambda _line: stuck.wait(3600), poll_s=3600).start()
    log_file.write_text("one line\nand a last one without a newline")
    stopper = threading.Thread(target=tail.stop, daemon=True)
    stopper.start()
    stopper.join(WAIT_S)
    assert not stopper.is_alive(), f"stop still waiting on the stuck log after {WAIT_S:.0f} s"


def test_a_stuck_log_reader_does_not_block_a_chatty_child(tmp_path: Path) -> None:
    """1 MB of output (16 pipes' worth) while the logger blocks for good: the child still finishes.

    ``run_logged`` runs in a thread; it must return while the logger is still stuck in its first line
    (a child writing to a pipe would block on its 64 KiB buffer and never end)."""
    import threading

    from pipelines import childproc as tp

    stuck = threading.Event()
    logged = threading.Event()

    def stuck_log(_line: str) -> None:
        logged.set()
        stuck.wait(3600)

    child = _write(tmp_path / "chatty.py", "import sys\nfor i in range(16384):\n    print('x' * 63)\n")
    codes: list[int] = []
    runner = threading.Thread(
        target=lambda: codes.append(
            tp.run_logged([sys.executable, str(child)], log_file=tmp_path / "train.log", log=stuck_log)
        ),
        daemon=True,
    )
    runner.start()
    try:
        runner.join(WAIT_S)
        assert not runner.is_alive(), f"run_logged still waiting after {WAIT_S:.0f} s"
        assert logged.is_set() and not stuck.is_set()  # the reader was stuck the whole time
        assert codes == [0]
        assert (tmp_path / "train.log").stat().st_size == 16384 * 64
    finally:
        stuck.set()


def _events(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_cancel_ends_a_child_that_ignores_sigterm_and_its_children_after_the_grace(tmp_path: Path) -> None:
    """A cancel interrupts the waiting thread (KeyboardInterrupt here): TERM to the child's group, then,
    as the child and its child both ignore TERM, KILL once the grace has passed; both are gone after.

    Checked through the mechanism, not a clock: the parent records each signal it sends to the group
    (with whether the child was still alive) and each wait for the child that runs out its timeout (the
    grace), the children record each TERM they receive, all in one append-only events file. The KILL
    waits, besides the grace, until both TERMs are recorded, so a loaded machine cannot reorder the
    events (under load a handler may run late, never not at all)."""
    from pipelines.childproc import TERM_GRACE_S

    assert TERM_GRACE_S + 10 < 30  # the default grace plus the KILL wait end a cancel within 30 s
    pids, events = tmp_path / "pids", tmp_path / "events"
    events.write_text("")
    ignore_term = (
        "import os, signal\n"
        f"def on_term(_s, _f):\n    with open({str(events)!r}, 'a') as fh: fh.write(f'got TERM {{os.getpid()}}\\n')\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
    )
    (tmp_path / "ignore_term.py").write_text(ignore_term)
    stubborn = _write(
        tmp_path / "stubborn.py",
        f"""
        import os, subprocess, sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        import ignore_term
        grandchild = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, {str(tmp_path)!r}); import ignore_term; print('ready', flush=True); time.sleep(600)"], stdout=subprocess.PIPE)
        grandchild.stdout.readline()  # its TERM handler is in place
        open({str(pids)!r} + ".tmp", "w").write(f"{{os.getpid()}} {{grandchild.pid}}")
        os.replace({str(pids)!r} + ".tmp", {str(pids)!r})
        while True:
            time.sleep(600)
        """,
    )
    # the parent records each signal it sends; a KILL after a TERM waits (60 s at most) for both TERMs
    recorder = f"""
        import os, signal, time
        from pipelines import lifeline
        from pipelines import childproc as tp
        _killpg = os.killpg
        def killpg(pgid, sig):
            deadline = time.monotonic() + 60
            while sig == signal.SIGKILL and time.monotonic() < deadline:
                seen = open({str(events)!r}).read()
                if "sent SIGTERM" not in seen or seen.count("got TERM") >= 2:
                    break
                time.sleep(0.1)
            with open({str(events)!r}, "a") as fh:
                fh.write(f"sent {{signal.Signals(sig).name}} {{pgid}} {{'alive' if lifeline.is_alive(pgid) else 'gone'}}\\n")
            _killpg(pgid, sig)
        tp.os.killpg = killpg
        _wait = tp.subprocess.Popen.wait
        def wait(self, timeout=None):
            try:
                return _wait(self, timeout)
            except tp.subprocess.TimeoutExpired:
                with open({str(events)!r}, "a") as fh:
                    fh.write(f"waited {{timeout}} {{self.pid}}\\n")
                raise
        tp.subprocess.Popen.wait = wait
    """
    parent_py = _parent_script(tmp_path, [sys.executable, str(stubborn)], grace_s=1.0)
    parent_py.write_text(textwrap.dedent(recorder) + parent_py.read_text())
    # SIGINT at its default in the parent (so Python turns it into KeyboardInterrupt) even when this test
    # runs under a shell that started it in the background, which ignores SIGINT for its children
    parent = subprocess.Popen(
        [sys.executable, str(parent_py)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        child, grandchild = _read_pids(pids, parent)
        parent.send_signal(signal.SIGINT)
        assert parent.wait(WAIT_S) != 0  # the interrupt ends the parent, after it stopped the child
        assert _wait_dead([child, grandchild], WAIT_S) == []
        got = _events(events)
        assert got[0] == ["sent", "SIGTERM", str(child), "alive"], got
        # both got the TERM; the wait for the child's exit ran out the 1 s grace (the handlers may write
        # before or after that)
        between = [["got", "TERM", str(child)], ["got", "TERM", str(grandchild)], ["waited", "1.0", str(child)]]
        assert sorted(got[1:4]) == sorted(between), got
        assert got[4] == ["sent", "SIGKILL", str(child), "alive"], got  # TERM ignored: the KILL was needed
        assert got[5:] == [], got  # one TERM, one KILL, nothing more
    finally:
        parent.kill()
        for p in pids.read_text().split() if pids.exists() else []:
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(int(p), signal.SIGKILL)
