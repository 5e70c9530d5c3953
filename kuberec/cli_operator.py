"""CLI commands of the operator side (``operator``, ``crd``), registered by ``kuberec.cli``."""

from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the operator subcommands to the ``kuberec`` parser."""
