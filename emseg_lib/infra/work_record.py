"""Records of long work for ``./run_all.sh --dry-run``: what ran, for how long, at what peak
memory.

When ``EMSEG_RECORD_FILE`` names a file, every finished progress bar
(:func:`~emseg_lib.infra.progress.progress_bar` in log mode, as ``run_all.sh`` runs the notebooks)
appends one JSON line to it: ``{"desc", "items", "seconds", "peak_host_mb", "peak_gpu_mb"}``
(peaks of the process so far). The watchdog that runs each notebook appends the notebook's own
line (wall time, the peak resident memory of its largest process). Nothing is recorded when
the variable is unset.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

RECORD_ENV = "EMSEG_RECORD_FILE"


def peak_host_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MiB of this process (``RUSAGE_SELF``) or of its largest
    finished child (``RUSAGE_CHILDREN``; Linux reports KiB)."""
    return resource.getrusage(who).ru_maxrss / 1024


def peak_gpu_mb() -> float | None:
    """Peak GPU memory allocated by this process in MiB, or None when it used no GPU."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return max(torch.cuda.max_memory_allocated(device) for device in
               range(torch.cuda.device_count())) / 2 ** 20


def append_record(record: dict[str, Any], path: str | Path | None = None) -> None:
    """Append ``record`` as one JSON line to ``path`` (default: ``$EMSEG_RECORD_FILE``; nothing
    when neither is set)."""
    target = path or os.environ.get(RECORD_ENV)
    if not target:
        return
    with open(target, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


def record_work(desc: str, items: int, seconds: float) -> None:
    """One finished piece of work (a progress bar) with this process's peak memory so far."""
    if not os.environ.get(RECORD_ENV):
        return
    host = max(peak_host_mb(), peak_host_mb(resource.RUSAGE_CHILDREN))
    append_record({"desc": desc, "items": items, "seconds": round(seconds, 3),
                   "peak_host_mb": round(host, 1), "peak_gpu_mb": peak_gpu_mb()})


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of one file (empty when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
