"""Progress of long work: tqdm bars, or plain log lines for consoles that cannot show bars.

``run_all.sh`` executes the notebooks with papermill, whose console only counts cells: it
would sit at "cell 4/10" for many minutes. With ``EMSEG_PROGRESS=log`` (set by ``run_all.sh``)
every :func:`progress_bar` writes a line instead — at the start, then at most every
``EMSEG_PROGRESS_SECONDS`` (default 30) and at the end — with the count, the time spent and
the estimated time left, to stderr or, when ``EMSEG_PROGRESS_FILE`` names a file, appended to
that file (``run_all.sh`` shows it on the console as it grows). Nested bars (``leave=False``)
stay silent then. A finished bar is also recorded when ``EMSEG_RECORD_FILE`` is set
(:mod:`emseg_lib.infra.work_record`, for ``run_all.sh --dry-run``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

from emseg_lib.infra.work_record import record_work


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class LogBar:
    """A tqdm stand-in that prints ``desc: n/total (p %), spent, ~left left, postfix`` lines."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None,
                 desc: str = "", initial: int = 0, interval: float = 30.0) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable) + initial  # type: ignore[arg-type]
        self.total, self.desc, self.n, self.initial = total, desc, initial, initial
        self.interval = interval
        self.started = time.perf_counter()
        self.last_line = float("-inf")
        self.postfix = ""
        self.closed = False
        self._line(force=True)

    def _line(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_line < self.interval:
            return
        self.last_line = now
        spent = now - self.started
        done = self.n - self.initial
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f} %)"
        parts.append(f"{_format_seconds(spent)} spent")
        if self.total and done > 0 and self.n < self.total:
            left = spent / done * (self.total - self.n)
            parts.append(f"~{_format_seconds(left)} left")
        if self.postfix:
            parts.append(self.postfix)
        line = ", ".join(parts)
        target = os.environ.get("EMSEG_PROGRESS_FILE")
        if target:
            with open(target, "a", encoding="utf-8") as log:
                log.write(f"  {line}\n")
        else:
            print(line, file=sys.stderr, flush=True)

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:  # type: ignore[union-attr]
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done."""
        self.n += n
        self._line(force=self.total is not None and self.n >= self.total)

    def set_postfix(self, **values: Any) -> None:
        """Values shown at the end of the next line, e.g. ``loss=0.31``."""
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        """Record the finished work (:mod:`emseg_lib.infra.work_record`; the last line was printed
        by :meth:`update`)."""
        if not self.closed:
            self.closed = True
            record_work(self.desc, self.n - self.initial, time.perf_counter() - self.started)


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None,
                 desc: str = "", initial: int = 0, disable: bool = False, leave: bool = True,
                 **tqdm_options: Any) -> Any:
    """A tqdm bar, or a :class:`LogBar` when ``EMSEG_PROGRESS=log`` (see the module)."""
    if os.environ.get("EMSEG_PROGRESS") != "log":
        return tqdm(iterable, total=total, desc=desc, initial=initial, disable=disable,
                    leave=leave, **tqdm_options)
    if disable or not leave:
        return tqdm(iterable, total=total, disable=True)
    interval = float(os.environ.get("EMSEG_PROGRESS_SECONDS", "30"))
    return LogBar(iterable, total=total, desc=desc, initial=initial, interval=interval)
