"""The ``hrrkit`` command line: one module per subcommand, each with ``register(subparsers)``.

A subcommand module defines ``register(subparsers) -> None`` that adds its parser and sets
``func=<callable(args) -> int>`` as the parser default; the returned int is the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import hrrkit

# Subcommand modules under hrrkit.cli, in the order `hrrkit --help` lists them.
SUBCOMMANDS: list[str] = [
    "demo",
    "train",
    "eval",
    "detect",
    "zero_shot",
    "app",
    "retrospect",
    "data",
    "bench",
    "env",
    "kernels",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrrkit",
        description="hrrkit: detect generated images with Hierarchical Retrospection Refinement (HRR).",
    )
    parser.add_argument("--version", action="version", version=f"hrrkit {hrrkit.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"hrrkit.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `hrrkit ... | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
