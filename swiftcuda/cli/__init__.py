"""The ``swiftcuda`` command line: one module per subcommand.

Every public module of this package is a subcommand: it defines ``register(subparsers)``, which adds
its parser and sets ``run=<function(args) -> int>`` as a default. Adding a subcommand is adding a
module; nothing here lists them. Errors a user can fix (:class:`SwiftcudaError`)
print as one line and exit with status 2; nothing prints a traceback for them. So do the parser's
own errors (an unknown option, a bad value, a missing argument): one line naming the subcommand,
with a pointer to its ``--help`` instead of the usage block.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import NoReturn

from swiftcuda import __version__
from swiftcuda.errors import SwiftcudaError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def subcommand_modules() -> list[str]:
    """Names of the subcommand modules, alphabetically (private ``_`` modules are helpers)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2.

    ``add_subparsers`` makes the subcommands' parsers of the same class, so every subcommand
    reports its errors this way too.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="swiftcuda", description="Real-time video object segmentation with SwiftNet.")
    parser.add_argument("--version", action="version", version=f"swiftcuda {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (to stderr)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in subcommand_modules():
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, with an unknown option blamed on the subcommand it was given to
    (argparse would report it as the top-level parser's)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        subcommand = _subparsers(parser).choices.get(getattr(args, "command", None), parser)
        subcommand.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parse_arguments(build_parser(), argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except SwiftcudaError as error:
        print(f"swiftcuda: error: {error.command_line_message()}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("swiftcuda: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
