"""The ``tgd`` command line: one sub-command per module in ``tgd.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

import tgd

# Each module defines ``add_parser(subparsers)``, which registers its sub-command and sets
# ``func`` (called with the parsed args, returns an exit code).
COMMANDS = [
    "tgd.commands.simulate",
    "tgd.commands.simulate_ct",
    "tgd.commands.train",
    "tgd.commands.train_segmenter",
    "tgd.commands.finetune",
    "tgd.commands.online",
    "tgd.commands.denoise",
    "tgd.commands.kse",
    "tgd.commands.reproduce",
    "tgd.commands.report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgd",
        description="Targeted Gradient Descent: fine-tune and online-adapt PET denoising ConvNets.",
    )
    parser.add_argument("--version", action="version", version=f"tgd {tgd.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"tgd {args.command}: error: {err}", file=sys.stderr)
        return 1  # 2 is argparse's, for usage errors


if __name__ == "__main__":
    sys.exit(main())
