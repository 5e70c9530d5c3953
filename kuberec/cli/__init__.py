"""The ``kuberec`` command: :mod:`.main` builds the parser, one module per command group.

``jobs`` (run, status, stop, compile), ``data``, ``train`` (train, recommend, evaluate),
``benchmark``, ``features``, ``serving`` (serve, replay) and ``cluster`` (crd, operator run).
"""

from __future__ import annotations

from kuberec.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
