"""run_all.sh's watchdog: a command that ends passes its exit code on; one that hangs past
its limit has its Python stack printed, its whole process group stopped, and exit 124."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from emseg_lib.infra.watchdog import TIMED_OUT

#: a parent that starts a child and both block for an hour (papermill and its kernel)
HANGING = textwrap.dedent("""
    import subprocess, sys, time

    def kernel_stuck_here():
        time.sleep(3600)

    child = subprocess.Popen([sys.executable, "-c",
                              "import time\\ndef child_stuck_here():\\n time.sleep(3600)\\n"
                              "child_stuck_here()"])
    print(child.pid, flush=True)
    kernel_stuck_here()
""")


def _watchdog(limit: float, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emseg_lib.infra.watchdog", "--limit", str(limit),
                           "--what", "the test command", "--", *command],
                          capture_output=True, text=True, timeout=600)


def test_a_command_that_ends_keeps_its_exit_code():
    result = _watchdog(600, sys.executable, "-c", "import sys; sys.exit(3)")
    assert result.returncode == 3
    assert "watchdog" not in result.stderr


def test_a_hang_prints_the_stacks_and_stops_the_whole_group():
    # 20 s: the parent and child reach their sleeps long before, even on a loaded machine
    result = _watchdog(20, sys.executable, "-c", HANGING)
    assert result.returncode == TIMED_OUT
    child = int(result.stdout.split()[0])
    assert "watchdog: the test command still running after 20 s" in result.stderr
    assert "kernel_stuck_here" in result.stderr and "child_stuck_here" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("watchdog: stopped the test")
    try:
        os.kill(child, 0)
    except ProcessLookupError:
        pass
    else:  # killed but not yet reaped by init: a zombie
        with open(f"/proc/{child}/stat") as stat:
            assert stat.read().split(") ")[1][0] == "Z", "the child was left running"


def test_refuses_a_missing_command():
    result = _watchdog(5)
    assert result.returncode == 2 and "a command after --" in result.stderr
