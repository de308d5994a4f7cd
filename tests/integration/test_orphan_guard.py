"""The embedded stack's processes die with whatever started them (services/stack/orphan_guard)."""

from __future__ import annotations

import subprocess
import sys

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


def test_a_command_whose_parent_is_already_gone_does_not_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.stack.orphan_guard", "1", "sleep", "300"],
        timeout=60,
    )
    assert result.returncode == 1  # its parent is not pid 1: it never became `sleep 300`
