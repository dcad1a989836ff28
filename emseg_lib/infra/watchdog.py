"""A time limit for a command that can hang (a notebook under papermill), failing loudly.

``python -m emseg_lib.infra.watchdog --limit S --what NAME -- COMMAND ...`` runs ``COMMAND`` in a
process group of its own and waits for it. Its exit code is passed on. If it is still running
after ``S`` seconds, the Python stack of every process of the group (papermill and its kernel)
is printed with ``py-spy dump``, the group is killed, and the watchdog says what it waited for
and exits with 124 (as ``timeout`` does). Ctrl-C or SIGTERM stops the whole group (exit 130 /
143), so no kernel is left behind. ``run_all.sh`` wraps every notebook in it. With ``--record
FILE`` it appends a JSON line to ``FILE`` when the command ends: its wall time, exit code and
the peak resident memory of its largest process (:mod:`emseg_lib.infra.work_record`).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from emseg_lib.infra.work_record import append_record, peak_host_mb

TIMED_OUT = 124


def group_members(pgid: int) -> list[int]:
    """Process ids of the process group ``pgid`` (empty where ``ps`` cannot tell)."""
    try:
        listing = subprocess.run(["ps", "-A", "-o", "pid=,pgid="], capture_output=True,
                                 text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    members = []
    for line in listing.splitlines():
        pid, group = (int(field) for field in line.split())
        if group == pgid:
            members.append(pid)
    return sorted(members)


def stacks(pids: Sequence[int]) -> str:
    """``py-spy dump`` of each process (its command line first), or why there is none."""
    spy = shutil.which("py-spy")
    if spy is None:
        return "(no stacks: py-spy is not installed)\n"
    parts = []
    for pid in pids:
        try:
            dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True,
                                  text=True, timeout=60)
            parts.append(dump.stdout if dump.returncode == 0 else
                         f"process {pid}: py-spy could not read its stack: "
                         f"{dump.stderr.strip() or dump.stdout.strip()}\n")
        except (OSError, subprocess.SubprocessError) as error:
            parts.append(f"process {pid}: py-spy failed: {error}\n")
    return "\n".join(parts)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_with_limit(command: Sequence[str], limit_s: float, what: str) -> int:
    """Run ``command``; on a hang past ``limit_s`` seconds print the stacks, kill it and
    return :data:`TIMED_OUT`. Returns the command's exit code otherwise."""
    process = subprocess.Popen(list(command), start_new_session=True)

    def stop(signum: int, _frame: object) -> None:
        _kill_group(process.pid)
        process.wait()
        sys.exit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return process.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        members = group_members(process.pid) or [process.pid]
        print(f"watchdog: {what} still running after {limit_s:.0f} s; the Python stacks of "
              f"its processes {members} follow, then it is stopped", file=sys.stderr)
        print(stacks(members), file=sys.stderr, flush=True)
        _kill_group(process.pid)
        process.wait()
        print(f"watchdog: stopped {what}: it ran past its limit of {limit_s:.0f} s (a hang, "
              f"or a machine much slower than the profile's limit allows)", file=sys.stderr)
        return TIMED_OUT
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emseg_lib.infra.watchdog", description=__doc__)
    parser.add_argument("--limit", type=float, required=True, help="seconds before it is a hang")
    parser.add_argument("--what", required=True, help="what runs, for the messages")
    parser.add_argument("--record", default=None,
                        help="append wall time, exit code and peak memory to this file")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.limit <= 0:
        parser.error("give a positive --limit and a command after --")
    started = time.perf_counter()
    status = run_with_limit(command, args.limit, args.what)
    if args.record:
        append_record({"notebook": args.what, "status": status,
                       "seconds": round(time.perf_counter() - started, 1),
                       "peak_host_mb": round(peak_host_mb(resource.RUSAGE_CHILDREN), 1)},
                      args.record)
    return status


if __name__ == "__main__":
    sys.exit(main())
