"""``python -m emseg_lib.models --kinds``: the trainable network kinds, one a line.

``run_all.sh`` runs notebook 01 once per kind this prints
(:func:`~emseg_lib.models.trainable_kinds`), so that a network registered in
:data:`~emseg_lib.models.MODELS` is trained there without a second list of names.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from emseg_lib.models import trainable_kinds


def main(argv: Sequence[str] | None = None) -> int:
    """Print what the arguments ask for; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m emseg_lib.models",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", action="store_true", required=True,
                        help="print the kinds emseg train --model accepts, one a line")
    parser.parse_args(argv)
    print("\n".join(trainable_kinds()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
