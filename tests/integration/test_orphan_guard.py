"""The embedded stack's processes die with whatever started them (services/stack/orphan_guard)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from tests.support import eventually

PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-m", "services.stack.orphan_guard", str(os.getpid()), "sleep", "300"]
)
print(child.pid, flush=True)
time.sleep(300)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_guarded_command_dies_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        eventually(lambda: psutil.Process(child).name() == "sleep", what="the command exec'd")
        assert psutil.Process(child).ppid() == parent.pid  # the same process, now `sleep`
        parent.kill()
        parent.wait(10)
        eventually(lambda: _gone(child), what="the orphaned command gone")
    finally:
        parent.kill()
        if not _gone(child):
            psutil.Process(child).kill()


def test_a_command_whose_parent_is_already_gone_does_not_run(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    result = subprocess.run(
        [sys.executable, "-m", "services.stack.orphan_guard", "1", "touch", str(ran)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Its parent is not pid 1: the guard exits on its own, quietly (a crash, which also
    # exits 1, would leave a traceback), and the command never ran.
    assert (result.returncode, result.stderr, result.stdout) == (1, "", "")
    assert not ran.exists()
