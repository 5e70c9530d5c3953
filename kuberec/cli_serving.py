"""CLI commands of the serving side (``serve``, ``replay``), registered by ``kuberec.cli``."""

from __future__ import annotations

import argparse
import sys


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the serving subcommands to the ``kuberec`` parser."""
    add_serve_command(commands)


def add_serve_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = commands.add_parser(
        "serve", help="serve a model over HTTP with BentoML (/recommend, /similar, ...)",
        description="Serve a run directory, a BentoML model tag (name[:version]) or an "
                    "exported artifact URI until interrupted.",
    )
    serve.add_argument("model", metavar="RUN_DIR|MODEL_TAG|ARTIFACT_URI")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (0.0.0.0 for every interface)")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from kuberec.errors import ConfigError
    from kuberec.serving.server import resolve_reference, start_server, stop_server

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port: must be in 1..65535, got {args.port}")
    resolved = resolve_reference(args.model)  # fails here, in one line, on a bad reference
    print(f"serving {resolved} on http://{args.host}:{args.port} (Ctrl-C stops)",
          file=sys.stderr)
    process = start_server(resolved, args.port, args.host, capture=False)
    try:
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(process)
