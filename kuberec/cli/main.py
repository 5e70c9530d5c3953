"""The ``kuberec`` command. Every subcommand is a thin shell over a library function.

Errors a user can fix (``KuberecError``) print as one line on stderr and exit
with status 2; anything else is a bug and keeps its traceback. Each command group
lives in its own module and adds its subcommands to the parser built here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence

from rich.text import Text

from kuberec import __version__
from kuberec.cli import benchmark, cluster, data, features, jobs, serving, train
from kuberec.cli.options import Handler, err_console
from kuberec.errors import KuberecError

#: The command groups, in the order ``kuberec --help`` lists their commands.
GROUPS = (jobs, data, train, benchmark, features, serving, cluster)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_format, args.verbose)
    if not args.verbose:
        _hide_library_warnings()
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except KuberecError as exc:
        print_error(exc)
        return 2


def print_error(exc: BaseException) -> None:
    """One line on stderr, the message as plain text: brackets in paths or patterns stay as given.

    Rich markup in a message would be interpreted (``[/]`` even raises), and a
    multi-line message (a YAML parser's) would not be one line.
    """
    message = " ".join(str(exc).split())
    err_console.print(Text.assemble(("error:", "bold red"), " ", message),
                      highlight=False, soft_wrap=True)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kuberec", description="Recommendation-as-a-service on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"kuberec {__version__}")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    for group in GROUPS:
        group.add_commands(commands)
    return parser


def _hide_library_warnings() -> None:
    """Library deprecation chatter (Feast, ibis, pandas) is for their developers, not users.

    Feast resets warning filters when imported, so the display hook is wrapped
    instead of relying on filters alone.
    """
    hidden = (DeprecationWarning, FutureWarning, UserWarning)
    for category in hidden:
        warnings.filterwarnings("ignore", category=category)
    show = warnings.showwarning

    def showwarning(message, category, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not issubclass(category, hidden):
            show(message, category, *args, **kwargs)

    warnings.showwarning = showwarning


def _configure_logging(fmt: str, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonFormatter())
    else:
        from rich.logging import RichHandler

        handler = RichHandler(console=err_console, show_path=False)
    logging.basicConfig(level=level, handlers=[handler], force=True)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(payload)


if __name__ == "__main__":
    raise SystemExit(main())
