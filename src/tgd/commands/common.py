"""Shared pieces of the commands: options generated from the option dataclasses, TOML configs.

A command's options are an ``OptionSet`` (``tgd.training.options``): :func:`add_options` turns
its fields into argparse options (flag, type, choices and help with the default, all read from
the field), and :func:`parse` resolves the parsed flags over a ``--config`` TOML file (keys are
the option names, ``-`` or ``_``; tables are flattened) over the defaults. Flags are registered
with ``argparse.SUPPRESS`` defaults, so only the flags given on the command line override the
file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from tgd.training.driver import resolve_options
from tgd.training.options import (
    OBJECTIVE,
    OPTIMISATION,
    DataOptions,
    OptionSet,
    OutputOptions,
)

S = argparse.SUPPRESS
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def add_config_option(p) -> None:
    p.add_argument("--config", metavar="TOML", default=S,
                   help="TOML file with any of these options (flags override it)")


def add_options(g, options: OptionSet, names, *, positional: tuple[str, ...] = ()) -> None:
    """Add the options ``names`` of ``options`` to the parser or group ``g`` (``positional``:
    those taken as positional arguments)."""
    for name in names:
        _add_option(g, name, options.fields[name], options.defaults[name], name in positional)


def _add_option(g, name: str, f: dataclasses.Field, default, positional: bool) -> None:
    md = f.metadata
    base, many = _field_type(f)
    if positional:
        g.add_argument(name, help=_help(md, default))
        return
    flag = md.get("flag", name.replace("_", "-"))
    kw: dict = {"default": S, "help": _help(md, default)}
    if base is bool:
        if default:
            flag = "no-" + flag
        kw["action"] = "store_false" if default else "store_true"
    else:
        parse = md.get("parse", base)
        if parse is not str:
            kw["type"] = parse
        if many:
            kw["nargs"] = "+"
        for key in ("choices", "metavar", "required"):
            if key in md:
                kw[key] = md[key]
    if flag != name.replace("_", "-"):
        kw["dest"] = name
    g.add_argument(f"--{flag}", *md.get("aliases", ()), **kw)


def _field_type(f: dataclasses.Field) -> tuple[type, bool]:
    """(element type, is a list) of a field annotated ``T``, ``T | None`` or ``list[T] | None``
    with T one of int, float, str, bool; any other ``T`` needs a ``parse`` function."""
    text = str(f.type).replace(" | None", "").strip()
    many = text.startswith("list[")
    if many:
        text = text[len("list["):-1]
    if text not in _TYPES and "parse" in f.metadata:  # the option's own parser reads the text
        return str, many
    if text not in _TYPES:
        raise TypeError(f"option {f.name}: no command-line type for {f.type!r}")
    return _TYPES[text], many


def _help(md, default) -> str:
    text = md.get("help", "")
    if isinstance(default, bool) or md.get("show_default") is False:
        pass
    elif default is None:
        if "none" in md:
            text += f" (default: {md['none']})"
    else:
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else default
        text += f" (default {shown})"
    return text.replace("%", "%%")


def parse(args: argparse.Namespace, options: OptionSet) -> dict:
    """The command's options: defaults < the ``--config`` file < the flags given."""
    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "config")}
    return resolve_options(options, given, vars(args).get("config"))


def add_training_groups(p, options: OptionSet, *, data: bool = True,
                        objective: bool = True) -> None:
    """The objective, data, optimisation and output groups of the training commands, and
    ``--config``."""
    if objective:
        add_options(p.add_argument_group("objective (docs/tod.md)"), options,
                    ("segmenter", *OBJECTIVE))
    if data:
        add_options(p.add_argument_group("data (datalist manifests of "
                                         "input/target pairs)"), options, field_names(DataOptions))
    add_options(p.add_argument_group("optimisation"), options, (*OPTIMISATION, "threads"))
    add_options(p.add_argument_group("output"), options,
                [n for n in field_names(OutputOptions) if n != "threads"])
    add_config_option(p)


def field_names(cls) -> list[str]:
    """The option names of an option dataclass, in its order."""
    return [f.name for f in dataclasses.fields(cls)]


# ----------------------------------------------------------------------------- early checks
# Run before any long work (model loading, simulation, training), so a bad output location or
# checkpoint fails in a second with the flag named, not after the run (or half-way through it).

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_writable(path, flag: str, *, folder: bool = False) -> Path:
    """Check that ``path`` (given by ``flag``) can be written: a file (``folder=False``: not an
    existing folder) or a folder (``folder=True``: not an existing file), whose first existing
    ancestor is a folder this process may write to. Raises NotADirectoryError, ValueError or
    PermissionError naming the flag; returns ``path`` as a Path."""
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise NotADirectoryError(f"{flag} {p}: is an existing file; it must be a folder (or "
                                 "not exist yet)")
    if not folder and p.is_dir():
        raise ValueError(f"{flag} {p}: is an existing folder; it must be a file path")
    base = (p if folder else p.parent).absolute()
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise NotADirectoryError(f"{flag} {p}: {base} is a file, not a folder, so nothing can "
                                 "be written under it")
    if not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {p}: the folder {base} is not writable")
    return p


def check_checkpoint(path, flag: str) -> None:
    """Refuse a PyTorch pickle (``.pt``, ``.pth``, ``.ckpt``...) given as a checkpoint."""
    if path and Path(path).suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"{flag} {path}: not a tgd checkpoint; tgd checkpoints are "
                         "model.safetensors + model.json (give their folder or the .json), and "
                         "tgd never unpickles files (.pt/.pth/.ckpt)")


def check_out_folder(opts: dict, flag: str = "--out") -> None:
    """``check_writable`` on the ``out`` folder of a training command, when given."""
    if opts.get("out"):
        check_writable(opts["out"], flag, folder=True)


UNITS_KEYS = ("units", "suv_applied", "suv_factor_g_per_bq", "suv_note")


def units_meta(volume) -> dict:
    """The units conversion of an input volume read from DICOM (``units``, ``suv_applied``,
    ``suv_factor_g_per_bq``, ``suv_note`` of its ``meta``), for the sidecar of an output
    computed from it, which is in the same units."""
    meta = getattr(volume, "meta", None) or {}
    return {k: meta[k] for k in UNITS_KEYS if k in meta}
