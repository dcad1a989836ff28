"""The ``emseg`` commands: the parser (each command's module registers its subcommand) and
the one line that a refusal or Ctrl-C inside a command becomes (:func:`run_command`).
Imported by :func:`emseg_lib.cli.main` once it can answer Ctrl-C itself.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from tqdm.auto import tqdm

import emseg_lib.cli as package
from emseg_lib import __version__
from emseg_lib.blockwise import BlockFailed
from emseg_lib.cli import BAD_INPUT, FAILED, INTERRUPTED, evaluate, export, fetch, segment, train
from emseg_lib.cli.common import report_error
from emseg_lib.errors import EmsegInputError


class Parser(argparse.ArgumentParser):
    """argparse whose errors (a missing flag, an invalid value) are one ``emseg: error:``
    line and exit code 2, like every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_INPUT, f"emseg: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``emseg`` argument parser (its subcommands' parsers are :class:`Parser` too)."""
    parser = Parser(prog="emseg", description=package.__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"emseg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (fetch, train, segment, evaluate, export):
        module.add_parsers(commands)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a warning as the line ``emseg: warning: MESSAGE`` on stderr, on a line of its own
    also while a progress bar is drawn there."""
    tqdm.write(f"emseg: warning: {' '.join(str(message).split())}", file=sys.stderr)
    sys.stderr.flush()


def run_command(argv: Sequence[str] | None = None) -> int:
    """Run one ``emseg`` command; returns the exit code (0, 1 a blockwise worker died, 2 bad
    input, 130 interrupted).
    Warnings are one line each, ``emseg: warning: ...``, on stderr."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.run(args)
    except EmsegInputError as err:
        lines = (line.strip() for line in str(err).splitlines())
        report_error(f"emseg: error: {' '.join(line for line in lines if line)}")
        return BAD_INPUT
    except KeyboardInterrupt as err:  # TrainingInterrupted included
        report_error(args.interrupted(args, err))
        return INTERRUPTED
    except BlockFailed as err:  # a worker died: not the input's fault, and resumable
        report_error(f"emseg: error: {err}")
        return FAILED
