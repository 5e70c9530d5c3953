"""The serving side of the CLI (``serve``, ``replay``): one of the groups of kuberec/cli/main.py."""

from __future__ import annotations

import argparse
import signal
import sys


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the serving subcommands to the ``kuberec`` parser."""
    add_serve_command(commands)
    _add_replay(commands)


def add_serve_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = commands.add_parser(
        "serve",
        help="serve a model over HTTP with BentoML (/recommend, /similar, ...)",
        description="Serve a run directory, a BentoML model tag (name[:version]) or an "
        "exported artifact URI until interrupted.",
    )
    serve.add_argument("model", metavar="RUN_DIR|MODEL_TAG|ARTIFACT_URI")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)"
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from kuberec.errors import ConfigError
    from kuberec.serving.server import resolve_reference, start_server, stop_server

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port: must be in 1..65535, got {args.port}")
    resolved = resolve_reference(args.model)  # fails here, in one line, on a bad reference
    print(f"serving {resolved} on http://{args.host}:{args.port} (Ctrl-C stops)", file=sys.stderr)
    process = start_server(resolved, args.port, args.host, capture=False)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server too, not only Ctrl-C
    try:
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(process)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _add_replay(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``kuberec replay URL --interactions FILE --rate N``: held-out visits as live traffic."""
    from pathlib import Path

    replay = commands.add_parser(
        "replay", help="replay held-out interactions as /recommend requests with feedback",
        description="One /recommend per user visit at --rate requests/s; an item the user "
                    "really took (in the file) is sent back as a click, every shown item as "
                    "an impression: the online signal a canary is judged on.",
    )  # fmt: skip
    replay.add_argument("url", help="a server or the canary router, e.g. http://127.0.0.1:3000")
    replay.add_argument(
        "--interactions",
        type=Path,
        required=True,
        help="held-out CSV/Parquet with user_id,item_id[,timestamp]",
    )
    replay.add_argument("--rate", type=float, required=True, help="requests per second")
    replay.add_argument("--k", type=int, default=10)
    replay.add_argument("--limit", type=int, help="visits to send (default: each user once)")
    replay.add_argument("--impressions", choices=["item", "list"], default="item",
                        help="item: an impression per shown item (default); list: one per "
                             "answer and at most one click")  # fmt: skip
    replay.add_argument(
        "--synthetic",
        action="store_true",
        help="mark the traffic synthetic (canary analysis): served and "
        "counted, never pushed to features nor stored for training",
    )

    def run(args: argparse.Namespace) -> int:
        import json

        from kuberec.errors import ConfigError
        from kuberec.serving.canary.replay import read_held_out
        from kuberec.serving.canary.replay import replay as send

        if args.limit is not None and args.limit < 1:
            raise ConfigError(f"--limit: must be >= 1, got {args.limit}")
        held_out = read_held_out(args.interactions)
        report = send(args.url, held_out, rate=args.rate, k=args.k, limit=args.limit,
                      impressions=args.impressions, synthetic=args.synthetic)  # fmt: skip
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.requests > report.errors else 1

    replay.set_defaults(handler=run)
