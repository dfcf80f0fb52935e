"""Peak resident memory of a fresh process, as ``/usr/bin/time -v`` reports it, under the
allocator ``tunelab train`` runs on (:func:`tunelab.allocator.launch_env`).

Linux keeps a process's high-water mark across ``exec``, so a child forked from a large
process (a test runner, the planner holding traced models) would report its parent's size.
The command therefore starts from a small launcher process, which waits for it and reports
its ``ru_maxrss``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tunelab.allocator import launch_env

_LAUNCHER = """
import os, subprocess, sys
with open(sys.argv[1], "w") as out:
    proc = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_measured(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> tuple[int, float]:
    """Run ``command`` (output to ``log``) with the allocator the ``tunelab`` command would
    restart itself with; its exit code and peak RSS in MB."""
    env = env or dict(os.environ)
    env = launch_env(env) or env
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(log), *command],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) != 2:
        return done.returncode or 1, float("nan")
    return int(fields[0]), int(fields[1]) / 1024
