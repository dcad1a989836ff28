"""emseg: the thesis pipeline on your own data, from the command line.

    emseg fetch vnc --dest data/
    emseg train --model unet2d --data stack.tif --labels labels.tif --out runs/mine
    emseg segment --checkpoint runs/mine/best.pt --data stack.tif --out seg.h5
    emseg segment --checkpoint runs/mine/best.pt --data volume.zarr/raw --out seg.zarr
    emseg postprocess --prob probabilities.h5 --out seg.h5
    emseg evaluate --seg seg.h5 --gt labels.tif
    emseg export --checkpoint runs/mine/best.pt --data stack.tif --out model.zip

Bad input, and an error of the environment while writing (disk full, permission denied),
ends with one line ``emseg: error: ...`` naming the file or flag and the fix, exit code 2;
Ctrl-C with one line ``emseg: interrupted; ...``, exit code 130. Outputs are written
atomically and never over an input; an existing output is replaced only with --overwrite.
One module per command (:mod:`.commands` builds the parser); :mod:`.common` holds the
arguments, checks and readers they share.

:func:`main` answers Ctrl-C from its start, also while the libraries load (a second or two:
this package imports none of them before), and runs the command with standard streams that
never fail (:mod:`.console`: a closed pipe, an unprintable file name).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from emseg_lib.cli.console import console_streams

#: exit codes
FAILED, BAD_INPUT, INTERRUPTED = 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``emseg`` command (:func:`~emseg_lib.cli.commands.run_command`); returns the
    exit code (0, 2 bad input, 130 interrupted)."""
    with console_streams():
        try:
            from emseg_lib.cli.commands import run_command  # numpy, torch ...: seconds

            return run_command(argv)
        except KeyboardInterrupt:  # one the command did not answer: while loading
            print("emseg: interrupted; nothing was written", file=sys.stderr, flush=True)
            return INTERRUPTED
