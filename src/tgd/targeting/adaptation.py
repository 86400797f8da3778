"""Save and load only what TGD retrained (an *adaptation*), and say how much that is.

Contract:

- ``save_adaptation(path, model, plan)`` writes ``PATH.safetensors`` with the **retrained
  entries** of the adapted model and nothing else, and ``PATH.json`` with the plan, a hash of
  the base network, the format (``tgd-adaptation/1``) and the tgd version. ``model`` may be
  attached or plain (detached after training).
- Which entries are retrained comes from the plan (:func:`retrained_entries`): the kernels and
  bias entries of the retrained output channels of every planned conv (for a forward conv these
  are the rows ``weight[mask]``; for a transposed conv the same per-output-channel entries), the
  affine weight/bias and running mean/variance of the retrained norm channels, and the
  ``num_batches_tracked`` counter of a norm with any retrained channel (TGD lets it count).
  Each stored tensor is named like the state-dict entry it belongs to and holds the selected
  entries as a 1-D tensor in row-major order of the entry mask; the masks themselves are not
  stored, they follow from the plan in the JSON.
- The base hash covers every base entry the adaptation does **not** replace (everything except
  the retrained entries), per state-dict key and overall. Those are exactly the values the
  result takes from the base, so equal hashes mean ``load_adaptation`` reproduces the adapted
  model bit for bit; a base that differs only in retrained entries gives the same result and
  the same hash. Without ``base_state`` the hash is read from the adapted model's non-retrained
  entries, which TGD keeps equal to the base's; with it, that equality is checked.
- ``load_adaptation(path, base_model)`` checks the files (JSON format, tensor file hash and
  size, readable safetensors), the plan against ``base_model``'s structure and, unless
  ``strict_base=False``, the base hash; it then writes the retrained entries into
  ``base_model`` in place and returns it, a plain model. Every failure is one line: a
  ``FileNotFoundError`` for a missing file, a ``ValueError`` for anything else.
- Nothing is ever unpickled; both files are written atomically, tensors first, so a pair from
  an interrupted save or a truncated file is detected on loading.

``plain_state_dict`` turns a state dict saved while TGD was attached (``parametrizations.*``
keys) into the plain model's state dict, for checkpoints that other code wrote.
``trainable_summary`` / ``print_trainable_parameters`` count what TGD retrains, from
``TGDPlan.parameter_counts``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from tgd.targeting.attach import effective_state_dict, is_attached
from tgd.targeting.geometry import output_channel_entries
from tgd.targeting.plan import TGDPlan

ADAPTATION_FORMAT = "tgd-adaptation/1"
_NORM_ENTRIES = ("weight", "bias", "running_mean", "running_var")


def tgd_version() -> str:
    """The installed tgd distribution's version ("unknown" when run from a bare source tree)."""
    try:
        return metadata.version("tgd")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---- which entries TGD retrains -------------------------------------------------------------


def retrained_entries(model: nn.Module, plan: TGDPlan) -> dict[str, torch.Tensor]:
    """``{state-dict key: bool mask of the entry's shape}``, True where TGD retrains the entry.

    Keys of ``model.state_dict()`` of the plain model (also valid while attached). Entries with
    nothing retrained are left out; a key not listed is kept whole from the base.
    """
    plan.check(model)
    modules = dict(model.named_modules())
    out: dict[str, torch.Tensor] = {}

    def add(module: nn.Module, key: str, attr: str, mask: torch.Tensor) -> None:
        # the effective tensor (a parametrized weight reads as its effective value)
        t = getattr(module, attr, None)
        if isinstance(t, torch.Tensor) and bool(mask.any()):
            out[f"{key}.{attr}"] = mask.to(t.device).expand_as(t).clone()

    for name, lp in plan.layers.items():
        if not lp.n_targeted:
            continue
        conv = modules[name]
        mask = lp.mask.to(conv.weight.device)
        add(conv, name, "weight", output_channel_entries(conv, mask))
        add(conv, name, "bias", mask)
    for name, npl in plan.norms.items():
        if not bool(npl.mask.any()):
            continue
        norm = modules[name]
        for attr in _NORM_ENTRIES:
            add(norm, name, attr, npl.mask)
        # the layer-wide counter keeps counting while any channel of the norm is retrained
        add(norm, name, "num_batches_tracked", torch.ones((), dtype=torch.bool))
    return out


def _hash_tensor(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def _kept_hashes(state: Mapping[str, torch.Tensor], retrained: dict) -> dict[str, str]:
    """Per key: SHA-256 of dtype, full shape and the entries not retrained."""
    out = {}
    with torch.no_grad():
        for key in sorted(state):
            t = state[key]
            h = hashlib.sha256(f"{t.dtype}:{tuple(t.shape)};".encode())
            _hash_tensor(h, t if key not in retrained else t[~retrained[key].to(t.device)])
            out[key] = h.hexdigest()
    return out


def _combined(hashes: dict[str, str]) -> str:
    h = hashlib.sha256()
    for key in sorted(hashes):
        h.update(f"{key}:{hashes[key]}\n".encode())
    return h.hexdigest()


def _differences(saved: dict[str, str], now: dict[str, str], limit: int = 5) -> str:
    """One line naming the keys that are missing, extra or different."""

    def names(keys):
        keys = sorted(keys)
        more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    missing = set(saved) - set(now)
    extra = set(now) - set(saved)
    changed = [k for k in saved.keys() & now.keys() if saved[k] != now[k]]
    parts = [
        f"entries that differ: {names(changed)}" if changed else "",
        f"missing entries: {names(missing)}" if missing else "",
        f"unexpected entries: {names(extra)}" if extra else "",
    ]
    return "; ".join(filter(None, parts))


# ---- files ----------------------------------------------------------------------------------


def adaptation_paths(path: str | Path) -> tuple[Path, Path]:
    """``(PATH.safetensors, PATH.json)`` for an adaptation given by either file or its stem."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _atomic_write(path: Path, data: bytes) -> None:
    # Same recipe as tgd.data.io.atomic_write (the TGD core may not import other tgd layers):
    # a temporary file in the same folder, fsync, then os.replace, so a reader never sees a
    # half-written file under the final name.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _state_of(base: Mapping[str, torch.Tensor] | nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(base, nn.Module):
        return effective_state_dict(base)
    if not isinstance(base, Mapping):
        raise TypeError(f"base_state must be a state dict or a module, got {type(base).__name__}")
    return dict(base)


def save_adaptation(
    path: str | Path,
    model: nn.Module,
    plan: TGDPlan,
    base_state: Mapping[str, torch.Tensor] | nn.Module | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write the retrained entries of ``model`` to ``PATH.safetensors`` and the plan, base hash
    and versions to ``PATH.json``; returns the JSON path.

    ``model`` is the adapted model (attached or plain). ``base_state`` (the pre-trained state
    dict, or the pre-trained module) is optional: when given, the base hash is computed from it
    and the adapted model must agree with it on every entry outside the retrained ones
    (``ValueError`` naming the entries otherwise). Existing files are not overwritten unless
    ``overwrite=True``.
    """
    if not isinstance(plan, TGDPlan):
        raise TypeError(f"expected a TGDPlan from tgd.plan(), got {type(plan).__name__}")
    st_path, js_path = adaptation_paths(path)
    if not overwrite:
        taken = [str(p) for p in (st_path, js_path) if p.exists()]
        if taken:
            raise FileExistsError(f"refusing to overwrite {', '.join(taken)} (overwrite=True)")
    retrained = retrained_entries(model, plan)
    state = effective_state_dict(model)
    kept = _kept_hashes(state, retrained)
    if base_state is not None:
        base_kept = _kept_hashes(_state_of(base_state), retrained)
        if base_kept != kept:
            raise ValueError(
                "the model differs from base_state outside the entries TGD retrains ("
                + _differences(base_kept, kept)
                + "): base_state is not this model's base, or the frozen values were changed"
            )
    tensors = {
        key: state[key][mask.to(state[key].device)].cpu().contiguous()
        for key, mask in retrained.items()
    }
    data = st_save(tensors, metadata={"format": ADAPTATION_FORMAT})
    meta = {
        "format": ADAPTATION_FORMAT,
        "tgd_version": tgd_version(),
        "tensors": {"file": st_path.name, "sha256": hashlib.sha256(data).hexdigest(),
                    "bytes": len(data)},
        "entries": {
            key: {
                "shape": list(state[key].shape),
                "dtype": str(state[key].dtype).removeprefix("torch."),
                "retrained": int(t.numel()),
                "kind": "parameter" if key.endswith((".weight", ".bias")) else "buffer",
            }
            for key, t in tensors.items()
        },
        "base_sha256": _combined(kept),
        "base_entries": kept,
        "plan": plan.to_dict(),
    }
    text = json.dumps(meta, indent=1)  # as TGDPlan.to_json
    _atomic_write(st_path, data)
    _atomic_write(js_path, (text + "\n").encode())
    return js_path


def read_adaptation(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The verified JSON metadata and stored tensors of an adaptation (never unpickles)."""
    _, js_path = adaptation_paths(path)
    if not js_path.is_file():
        raise FileNotFoundError(f"no TGD adaptation at {path} (expected {js_path})")
    try:
        meta = json.loads(js_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{js_path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != ADAPTATION_FORMAT:
        raise ValueError(f"{js_path} is not a TGD adaptation (expected format "
                         f"'{ADAPTATION_FORMAT}')")
    files = meta.get("tensors")
    need = ("tensors", "base_sha256", "base_entries", "plan", "entries")
    lacking = [k for k in need if k not in meta]
    if not lacking:
        types = {"tensors": dict, "base_sha256": str, "base_entries": dict, "plan": dict,
                 "entries": dict}
        lacking = [k for k, kind in types.items() if not isinstance(meta[k], kind)]
    if lacking or not {"file", "sha256", "bytes"} <= set(files):
        raise ValueError(f"{js_path}: malformed TGD adaptation (missing or invalid "
                         f"{', '.join(lacking) or 'tensors'})")
    st_path = js_path.with_name(str(files["file"]))
    if not st_path.is_file():
        raise FileNotFoundError(f"the adaptation's tensor file {st_path} is missing")
    data = st_path.read_bytes()
    if len(data) != files["bytes"] or hashlib.sha256(data).hexdigest() != files["sha256"]:
        raise ValueError(
            f"{st_path} does not match {js_path.name} ({len(data)} bytes, expected "
            f"{files['bytes']}): the file is truncated, corrupt, or from another save"
        )
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise ValueError(f"{st_path} is not a readable safetensors file: {err}") from err
    return meta, tensors


def load_adaptation(path: str | Path, base_model: nn.Module, *, strict_base: bool = True
                    ) -> nn.Module:
    """Apply the adaptation at ``path`` to ``base_model`` (in place) and return it, plain.

    The plan must fit ``base_model``'s structure. With ``strict_base`` (the default) the base
    hash must match: ``ValueError`` naming the entries that differ otherwise; pass
    ``strict_base=False`` to apply the retrained entries to another base anyway.
    """
    meta, tensors = read_adaptation(path)
    _, js_path = adaptation_paths(path)
    if is_attached(base_model):
        raise ValueError("TGD is attached to base_model; load an adaptation into a plain model")
    try:
        plan = TGDPlan.from_dict(meta["plan"])
    except ValueError as err:
        raise ValueError(f"{js_path}: {err}") from err
    retrained = retrained_entries(base_model, plan)
    state = base_model.state_dict(keep_vars=True)
    if strict_base:
        now = _kept_hashes(state, retrained)
        if _combined(now) != meta["base_sha256"]:
            raise ValueError(
                f"base_model is not the base network of {js_path.name} ("
                + (_differences(meta["base_entries"], now) or "base hash differs")
                + "); pass strict_base=False to apply it anyway"
            )
    if set(tensors) != set(retrained):
        raise ValueError(
            f"{js_path.name}: the stored entries do not match what the plan retrains ("
            + _differences(dict.fromkeys(retrained, ""), dict.fromkeys(tensors, "")) + ")"
        )
    for key, mask in retrained.items():
        t, v = state[key], tensors[key]
        if v.dim() != 1 or v.numel() != int(mask.sum()) or v.dtype != t.dtype:
            raise ValueError(
                f"{js_path.name}: entry '{key}' holds {v.numel()} {v.dtype} values, the plan "
                f"retrains {int(mask.sum())} of a {t.dtype} tensor"
            )
    with torch.no_grad():
        for key, mask in retrained.items():
            t = state[key]
            t[mask.to(t.device)] = tensors[key].to(t.device)
    return base_model


# ---- state dicts written while TGD was attached ---------------------------------------------


def plain_state_dict(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict:
    """A TGD-attached model's ``state_dict()`` as the plain model's state dict.

    Each ``P.parametrizations.NAME.original`` with its ``...NAME.0.mask`` and
    ``...NAME.0.pretrained`` becomes ``P.NAME = where(mask, original, pretrained)``, the value
    the parameter has after ``detach``; every other entry is copied. Keys come in the plain
    model's order. Only keys starting with ``prefix`` are resolved. A parametrization that is
    not TGD's (other buffers, or more than one parametrization on a tensor) is a ``ValueError``.
    """
    marker = "parametrizations."
    resolved: dict[str, dict[str, torch.Tensor]] = {}  # module prefix -> {name: value}
    consumed = set()
    for key in state:
        if not key.startswith(prefix) or not key.endswith(".original"):
            continue
        head, sep, rest = key.rpartition(marker)
        if not sep or (head and not head.endswith(".")):
            continue
        name = rest.removesuffix(".original")
        base = f"{head}{marker}{name}."
        mine = [k for k in state if k.startswith(base)]
        expected = {base + "original", base + "0.mask", base + "0.pretrained"}
        if set(mine) != expected:
            raise ValueError(
                f"'{head}{name}' carries a parametrization that is not TGD's "
                f"(entries {sorted(k.removeprefix(base) for k in mine)})"
            )
        with torch.no_grad():
            value = torch.where(state[base + "0.mask"], state[key], state[base + "0.pretrained"])
        resolved.setdefault(head, {})[name] = value
        consumed |= expected
    out: dict[str, torch.Tensor] = {}
    opened = set()

    def open_module(module_prefix: str) -> None:
        # plain order: a module's own parameters come before its buffers and its children
        parts = module_prefix.split(".")[:-1] if module_prefix else []
        for i in range(len(parts) + 1):
            p = "".join(f"{x}." for x in parts[:i])
            if p not in opened:
                opened.add(p)
                for name, value in resolved.get(p, {}).items():
                    out[p + name] = value

    for key, value in state.items():
        if key in consumed:
            open_module(key.rpartition(marker)[0])
            continue
        open_module(key.rpartition(".")[0] + "." if "." in key else "")
        out[key] = value
    return out


# ---- how much TGD retrains ------------------------------------------------------------------


def trainable_summary(model: nn.Module, plan: TGDPlan, mode: str | None = None) -> dict:
    """What TGD retrains in ``model`` under ``plan``, from ``plan.parameter_counts``.

    Keys: ``trainable`` and ``total`` parameters, ``fraction`` (``plan.trainable_fraction``),
    ``convs_retrained`` / ``convs`` (planned convs with any retrained channel / all),
    ``norms_retrained`` / ``norms``, ``mode`` (as given; None if unknown) and ``text``, the
    one-line form of :func:`print_trainable_parameters`.
    """
    counts = plan.parameter_counts(model)
    trainable = sum(t for t, _ in counts.values())
    total = sum(p.numel() for p in model.parameters())
    summary = {
        "trainable": trainable,
        "total": total,
        "fraction": plan.trainable_fraction(model),
        "convs_retrained": sum(1 for lp in plan.layers.values() if lp.n_targeted),
        "convs": len(plan.layers),
        "norms_retrained": sum(1 for n in plan.norms.values() if bool(n.mask.any())),
        "norms": len(plan.norms),
        "mode": mode,
    }
    text = (
        f"TGD retrains {trainable:,} of {total:,} parameters ({100 * summary['fraction']:.2f} %)"
        f" in {summary['convs_retrained']} of {summary['convs']} convs"
    )
    summary["text"] = text + (f"; mode {mode}" if mode else "")
    return summary


def print_trainable_parameters(model: nn.Module, plan: TGDPlan, mode: str | None = None) -> str:
    """Print (and return) one line like PEFT's: how many parameters TGD retrains, in how many
    convs."""
    line = trainable_summary(model, plan, mode)["text"]
    print(line)
    return line
