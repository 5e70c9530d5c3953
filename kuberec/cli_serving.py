"""CLI commands of the serving side (``serve``, ``replay``), registered by ``kuberec.cli``."""

from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the serving subcommands to the ``kuberec`` parser."""
