"""``python -m emseg_lib.cli`` runs the ``emseg`` command."""

import sys

from emseg_lib.cli import main

sys.exit(main())
