"""The ``swiftcuda`` command line: one module per subcommand.

Every public module of this package is a subcommand: it defines ``register(subparsers)``, which adds
its parser and sets ``run=<function(args) -> int>`` as a default. Adding a subcommand is adding a
module; nothing here lists them. Errors a user can fix (:class:`SwiftcudaError`)
print as one line and exit with status 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from swiftcuda import __version__
from swiftcuda.errors import SwiftcudaError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def subcommand_modules() -> list[str]:
    """Names of the subcommand modules, alphabetically (private ``_`` modules are helpers)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swiftcuda", description="Real-time video object segmentation with SwiftNet."
    )
    parser.add_argument("--version", action="version", version=f"swiftcuda {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (to stderr)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in subcommand_modules():
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except SwiftcudaError as error:
        print(f"swiftcuda: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("swiftcuda: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
