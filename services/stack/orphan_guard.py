"""Run a command that dies with the process that started it.

``python -m services.stack.orphan_guard PARENT_PID COMMAND [ARGS...]`` asks the kernel to send
SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG, which survives exec), checks that the
parent is still PARENT_PID (else it is already gone: exit), then replaces itself with
COMMAND. The embedded stack starts the broker, the databases and the services this way, so
none outlives a killed launcher or test run.

Done here, after the fork and exec, rather than in a ``preexec_fn``: code between fork and
exec in a threaded parent (gRPC's threads in a test run) can deadlock on a lock another
thread held at the fork, and did.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no guard, still run
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
