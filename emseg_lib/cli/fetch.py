"""``emseg fetch``: download training data, verified against pinned SHA-256."""

from __future__ import annotations

import argparse
from pathlib import Path

from emseg_lib.errors import EmsegInputError
from emseg_lib.fetch import CREMI_BASE_URL, CREMI_SAMPLES, DATASETS, fetch_cremi, fetch_dataset


def run(args: argparse.Namespace) -> int:
    """Fetch one dataset into ``args.dest``."""
    if args.dataset == "cremi":
        if args.sample is None:
            raise EmsegInputError("fetch cremi needs --sample A, B or C")
        path = fetch_cremi(args.sample, args.dest, base_url=args.base_url or CREMI_BASE_URL,
                           insecure=args.insecure)
    elif args.sample is not None:
        raise EmsegInputError(f"--sample applies to 'fetch cremi' only, not to "
                              f"'fetch {args.dataset}'; leave it out")
    else:
        path = fetch_dataset(args.dataset, args.dest, base_url=args.base_url,
                             insecure=args.insecure)
    print(f"{path}: verified ({path.stat().st_size:,} bytes, sha256 in {path.name}.sha256)")
    if args.dataset in DATASETS:
        print(DATASETS[args.dataset].citation)
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``fetch``."""
    fetch = commands.add_parser("fetch", help="download training data (verified SHA-256)")
    fetch.add_argument("dataset", choices=["cremi", *DATASETS],
                       help="cremi (needs --sample), vnc (ssTEM) or fibsem (FIB-SEM)")
    fetch.add_argument("--sample", choices=CREMI_SAMPLES, help="CREMI sample (cremi only)")
    fetch.add_argument("--dest", type=Path, default=Path("data"),
                       help="folder for the downloaded file (default data/)")
    fetch.add_argument("--base-url", help=argparse.SUPPRESS)
    fetch.add_argument("--insecure", action="store_true",
                       help="do not verify the server's TLS certificate (the file is still "
                            "checked against its pinned SHA-256)")
    fetch.set_defaults(run=run)
