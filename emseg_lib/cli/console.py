"""The ``emseg`` command's standard streams: a closed pipe or an unprintable file name never
stops a run.

``emseg segment ... | head -1`` closes stdout after one line; ``LC_ALL=C`` makes stdout
ASCII, and a file name can hold bytes of another encoding. :func:`console_streams` gives the
command a stdout and a stderr on which a write never fails: what cannot be encoded is
printed with backslash escapes, and once the reader has gone the stream is sent to
``/dev/null`` so that the run completes its outputs and exits as it would have.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class _Console:
    """A text stream whose writes never fail (see the module docstring)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if self._gone:
            return len(text)
        try:
            try:
                return self._stream.write(text)
            except UnicodeEncodeError:
                encoding = self._stream.encoding or "utf-8"
                escaped = text.encode(encoding, "backslashreplace").decode(encoding)
                return self._stream.write(escaped)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self) -> None:
        if self._gone:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        """Send what is still buffered, and every later write, to ``/dev/null``."""
        self._gone = True
        try:
            descriptor = self._stream.fileno()
        except (AttributeError, OSError, ValueError):  # a stream without a file (tests)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, descriptor)
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def console_streams() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` whose writes never fail, for the ``with`` block."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Console(sys.stdout), _Console(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
