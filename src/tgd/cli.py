"""The ``tgd`` command line: the library's sub-commands (``tgd.commands.COMMANDS``) and those
other installed packages register in the entry-point group ``tgd.commands`` (the reproduction's:
``tgd.repro.commands.COMMANDS``).

Only the module of the command being run is imported: ``tgd --help`` and ``tgd --version``
import neither torch nor any command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import entry_points

import tgd
from tgd.commands import COMMANDS as LIBRARY_COMMANDS

ENTRY_POINTS = "tgd.commands"


def commands(extra: dict | None = None) -> dict[str, tuple[str, str]]:
    """Every sub-command: ``name -> (module, help)``, the library's first, then ``extra`` (a
    package running the CLI with its own commands, e.g. ``python -m tgd.repro`` from a checkout
    that is not installed), then the entry points'."""
    out = {**LIBRARY_COMMANDS, **(extra or {})}
    for ep in sorted(entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
        try:
            table = ep.load()
        except ImportError as err:  # a broken plugin must not take the library's commands down
            print(f"tgd: warning: commands of {ep.value} not loaded: {err}", file=sys.stderr)
            continue
        for name, spec in table.items():
            out.setdefault(name, spec)
    return out


def _base_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(
        prog="tgd",
        description="Targeted Gradient Descent: fine-tune and online-adapt denoising ConvNets.",
    )
    parser.add_argument("--version", action="version", version=f"tgd {tgd.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, sub


def build_parser(command: str | None = None, extra: dict | None = None, *,
                 table: dict | None = None) -> argparse.ArgumentParser:
    """The parser of ``command`` (its module imported), or of the command list alone;
    ``table``: :func:`commands`' result when the caller has it already."""
    table = commands(extra) if table is None else table
    parser, sub = _base_parser()
    if command in table:
        importlib.import_module(table[command][0]).add_parser(sub)
    else:
        for name, (_, help_text) in table.items():
            sub.add_parser(name, help=help_text)
    return parser


def _command_of(argv: list[str], names) -> str | None:
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in names else None
    return None


def main(argv: list[str] | None = None, extra: dict | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    table = commands(extra)  # the entry points are read once per run
    parser = build_parser(_command_of(argv, table), table=table)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError,
            PermissionError) as err:
        print(f"tgd {args.command}: error: {err}", file=sys.stderr)
        return 1  # 2 is argparse's, for usage errors


if __name__ == "__main__":
    sys.exit(main())
