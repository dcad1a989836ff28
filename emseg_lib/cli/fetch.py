"""``emseg fetch``: download training data, verified against pinned SHA-256."""

from __future__ import annotations

import argparse
from pathlib import Path

from emseg_lib.cli.common import check_writable_location, environment_errors
from emseg_lib.errors import EmsegInputError
from emseg_lib.fetch import CREMI_BASE_URL, CREMI_SAMPLES, DATASETS, fetch_cremi, fetch_dataset


def run(args: argparse.Namespace) -> int:
    """Fetch one dataset into ``args.dest``."""
    if args.dataset == "cremi" and args.sample is None:
        raise EmsegInputError("fetch cremi needs --sample A, B or C")
    if args.dataset != "cremi" and args.sample is not None:
        raise EmsegInputError(f"--sample applies to 'fetch cremi' only, not to "
                              f"'fetch {args.dataset}'; leave it out")
    check_writable_location(args.dest)
    with environment_errors(args.dest, "download stopped (run the same command again to "
                                       "resume)"):
        if args.dataset == "cremi":
            path = fetch_cremi(args.sample, args.dest,
                               base_url=args.base_url or CREMI_BASE_URL, insecure=args.insecure)
        else:
            path = fetch_dataset(args.dataset, args.dest, base_url=args.base_url,
                                 insecure=args.insecure)
    print(f"{path}: verified ({path.stat().st_size:,} bytes, sha256 in {path.name}.sha256)")
    if args.dataset in DATASETS:
        print(DATASETS[args.dataset].citation)
    return 0


def interrupted(args: argparse.Namespace, err: KeyboardInterrupt) -> str:
    """The Ctrl-C line of ``fetch``: partial downloads are kept and resumed."""
    return (f"emseg: interrupted; partial downloads in {args.dest} are kept, run the same "
            "command again to resume")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``fetch``."""
    fetch = commands.add_parser("fetch", help="download training data (verified SHA-256)")
    fetch.add_argument("dataset", choices=["cremi", *DATASETS],
                       help="cremi (needs --sample), vnc (ssTEM), fibsem (FIB-SEM) or snemi "
                            "(ATUM serial-section SEM, mouse cortex)")
    fetch.add_argument("--sample", choices=CREMI_SAMPLES, help="CREMI sample (cremi only)")
    fetch.add_argument("--dest", type=Path, default=Path("data"),
                       help="folder for the downloaded file (default data/)")
    fetch.add_argument("--base-url", help=argparse.SUPPRESS)
    fetch.add_argument("--insecure", action="store_true",
                       help="do not verify the server's TLS certificate (the file is still "
                            "checked against its pinned SHA-256)")
    fetch.set_defaults(run=run, interrupted=interrupted)
