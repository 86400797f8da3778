"""Checkpoints: tensors in ``NAME.safetensors``, everything else in ``NAME.json``.

Nothing is ever unpickled. Both files are written atomically
(:func:`tgd.data.io.atomic_write`: temporary file in the same folder, fsync, ``os.replace``),
the tensors first and the JSON last; the JSON records the SHA-256 and size of the tensor file,
so a pair from an interrupted save, a truncated file or a file from another save is detected on
loading instead of being used.

Optimizer state is flattened into the tensor file (``optim/<param index>/<key>``) with its
scalar structure (param groups, non-tensor state) in the JSON; RNG states likewise.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from tgd.data.io import atomic_write, to_jsonable

FORMAT = "tgd-checkpoint/1"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pair_paths(path: str | Path) -> tuple[Path, Path]:
    """``(NAME.safetensors, NAME.json)`` for a checkpoint given by either file, its stem, or a
    folder holding ``model.json``."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.json"
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``tensors`` (name -> tensor) and ``meta`` (the JSON object)."""

    tensors: dict[str, torch.Tensor]
    meta: dict
    path: Path

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors under ``prefix/`` with the prefix removed."""
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + "/")}


def save_checkpoint(
    path: str | Path, tensors: dict[str, torch.Tensor], meta: dict, *, overwrite: bool = False
) -> Path:
    """Write ``tensors`` and ``meta`` as a checkpoint pair; returns the JSON path."""
    st_path, js_path = pair_paths(path)
    if not overwrite:
        taken = [str(p) for p in (st_path, js_path) if p.exists()]
        if taken:
            raise FileExistsError(f"refusing to overwrite {', '.join(taken)} (use --overwrite)")
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = st_save(clean, metadata={"format": FORMAT})
    meta = dict(meta)
    meta["format"] = FORMAT
    meta["tensors"] = {"file": st_path.name, "sha256": _sha256(data), "bytes": len(data)}
    text = json.dumps(to_jsonable(meta, nonfinite="error"), indent=1, sort_keys=False,
                      allow_nan=False)
    atomic_write(st_path, lambda p: p.write_bytes(data))
    atomic_write(js_path, lambda p: p.write_bytes((text + "\n").encode()))
    return js_path


def read_meta(path: str | Path) -> dict:
    """The JSON half of a checkpoint, validated (no tensors read)."""
    _, js_path = pair_paths(path)
    if not js_path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (expected {js_path})")
    try:
        meta = json.loads(js_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint metadata {js_path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{js_path} is not a tgd checkpoint (expected format '{FORMAT}')")
    t = meta.get("tensors")
    if not isinstance(t, dict) or not {"file", "sha256", "bytes"} <= set(t):
        raise ValueError(f"{js_path}: missing or malformed 'tensors' entry")
    return meta


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and verify a checkpoint pair (never unpickles)."""
    _, js_path = pair_paths(path)
    meta = read_meta(path)
    st_path = js_path.with_name(meta["tensors"]["file"])
    if not st_path.is_file():
        raise FileNotFoundError(f"checkpoint tensor file {st_path} is missing")
    data = st_path.read_bytes()
    if len(data) != meta["tensors"]["bytes"] or _sha256(data) != meta["tensors"]["sha256"]:
        raise ValueError(
            f"{st_path} does not match its metadata {js_path.name} ({len(data)} bytes, expected "
            f"{meta['tensors']['bytes']}): the file is truncated, corrupt, or from another save"
        )
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise ValueError(f"{st_path} is not a readable safetensors file: {err}") from err
    return Checkpoint(tensors, meta, js_path)


# ---- optimizer and RNG state ----------------------------------------------------------------


def flatten_optimizer(state: dict, prefix: str = "optim") -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (``prefix/<param>/<key>``) and a JSON-able
    structure."""
    tensors: dict[str, torch.Tensor] = {}
    struct: dict = {"param_groups": state["param_groups"], "state": {}}
    for pid, st in state["state"].items():
        entry = {}
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                name = f"{prefix}/{pid}/{key}"
                tensors[name] = val
                entry[key] = {"tensor": name}
            else:
                entry[key] = {"value": val}
        struct["state"][str(pid)] = entry
    return tensors, struct


def unflatten_optimizer(tensors: dict[str, torch.Tensor], struct: dict) -> dict:
    """Inverse of :func:`flatten_optimizer`."""
    state = {}
    for pid, entry in struct["state"].items():
        st = {}
        for key, val in entry.items():
            if "tensor" in val:
                if val["tensor"] not in tensors:
                    raise ValueError(f"optimizer tensor {val['tensor']} missing from checkpoint")
                st[key] = tensors[val["tensor"]]
            else:
                st[key] = val["value"]
        state[int(pid)] = st
    # JSON turned tuples (Adam's betas) into lists
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in struct["param_groups"]]
    return {"state": state, "param_groups": groups}


def capture_rng() -> tuple[dict[str, torch.Tensor], dict]:
    """Global torch / numpy / Python RNG states as (tensors, JSON structure)."""
    np_state = np.random.get_state()  # noqa: NPY002 (user datasets may use the global RNG)
    tensors = {
        "rng/torch": torch.get_rng_state(),
        "rng/numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
    }
    py = random.getstate()
    struct = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py[0], list(py[1]), py[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = s
    return tensors, struct


def restore_rng(tensors: dict[str, torch.Tensor], struct: dict) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    kind, pos, has_gauss, cached = struct["numpy"]
    keys = tensors["rng/numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss = struct["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = sorted(k for k in tensors if k.startswith("rng/cuda"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
