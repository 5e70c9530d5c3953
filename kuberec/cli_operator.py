"""CLI commands of the operator side (``crd``, ``operator``), registered by ``kuberec.cli``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the operator subcommands to the ``kuberec`` parser."""
    crd = commands.add_parser("crd", help="print the RecommenderJob CRD generated from the spec")
    crd.add_argument("-o", "--out", type=Path, help="write to a file instead of stdout")
    crd.set_defaults(handler=_crd)


def _crd(args: argparse.Namespace) -> int:
    from kuberec.operator.crd import crd_yaml

    text = crd_yaml()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
