"""Model checkpoints (plain state-dict keys, so ``safetensors.torch.load_file`` +
``load_state_dict`` works without tgd) and the EWC Fisher file stored beside them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import torch
from torch import nn

import tgd
from tgd.models.registry import build_model, model_spec
from tgd.training.checkpoint import Checkpoint, load_checkpoint, pair_paths, save_checkpoint
from tgd.training.methods import load_state_strict


def save_model(path, model: nn.Module, meta: dict, *, state: dict | None = None,
               overwrite: bool = False) -> Path:
    """Write a model checkpoint: every parameter and buffer (batch-norm statistics included)."""
    state = model.state_dict() if state is None else state
    full = {
        "kind": "model",
        "tgd_version": tgd.__version__,
        "torch_version": torch.__version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": model_spec(model),
        **meta,
    }
    return save_checkpoint(path, state, full, overwrite=overwrite)


def load_model(path) -> tuple[nn.Module, Checkpoint]:
    """Rebuild a model from a tgd checkpoint (weights and buffers); never unpickles."""
    ckpt = load_checkpoint(path)
    if ckpt.meta.get("kind") != "model":
        raise ValueError(f"{ckpt.path} is a {ckpt.meta.get('kind')!r} checkpoint, not a model")
    if not isinstance(ckpt.meta.get("model"), dict):
        raise ValueError(f"{ckpt.path} has no 'model' entry describing the architecture")
    model = build_model(ckpt.meta["model"])
    load_state_strict(model, ckpt.tensors, str(ckpt.path))
    return model, ckpt


def fisher_path(model_path) -> Path:
    _, js = pair_paths(model_path)
    return js.with_name(js.stem + ".fisher.json")


def save_fisher(model_path, fisher: dict, anchor: dict, meta: dict, *,
                overwrite: bool = False) -> Path:
    """Store the diagonal Fisher and its anchor weights next to a model checkpoint."""
    tensors = {f"fisher/{k}": v for k, v in fisher.items()}
    tensors.update({f"anchor/{k}": v for k, v in anchor.items()})
    return save_checkpoint(fisher_path(model_path).with_suffix(""), tensors,
                           {"kind": "ewc-fisher", **meta}, overwrite=overwrite)


def load_fisher(model_path) -> tuple[dict, dict, dict] | None:
    """``(fisher, anchor, meta)`` stored next to a model checkpoint, or None if there is none."""
    p = fisher_path(model_path)
    if not p.exists():
        return None
    ck = load_checkpoint(p)
    if ck.meta.get("kind") != "ewc-fisher":
        raise ValueError(f"{p} is not an EWC Fisher file")
    return ck.group("fisher"), ck.group("anchor"), ck.meta
