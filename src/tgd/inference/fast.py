"""Optional speed-ups of an inference forward pass: ``torch.compile`` with a graceful fallback to
eager, and bfloat16 autocast.

``compiled_forward(net)`` returns a callable that runs the compiled net and, if compiling is
unavailable or fails (no C++ compiler, an unsupported platform or op), warns once and runs the
eager net from then on, so a denoising run never fails because of the compiler. Compilation is
lazy: its cost falls on the first call (and on each new input shape).
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable

import torch
from torch import nn

AMP_DTYPES = {None: None, "bf16": torch.bfloat16}


def amp_dtype(amp: str | None) -> torch.dtype | None:
    """``None`` (float32) or ``"bf16"``: the autocast dtype; a clear error for anything else."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be None or 'bf16', got {amp!r}")
    return AMP_DTYPES[amp]


def autocast(device: torch.device | str, amp: str | None):
    """An autocast context for ``amp`` on ``device`` (a no-op for float32)."""
    dtype = amp_dtype(amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


_ATTR = "_tgd_compiled_forward"


def compiled_forward(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``net``'s forward through ``torch.compile``, falling back to eager on any failure.
    One compiled forward per net object, reused by later calls (no recompiling per volume)."""
    owner, fwd = net.__dict__.get(_ATTR, (None, None))
    if owner is None or owner() is not net:  # none yet, or copied over from another net
        fwd = _compile(net)
        net.__dict__[_ATTR] = (weakref.ref(net), fwd)
    return fwd


def _compile(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        fn = torch.compile(net, dynamic=False)
    except Exception as err:  # noqa: BLE001 - any compiler problem means: run eagerly
        warnings.warn(f"torch.compile unavailable ({err}); running eagerly", stacklevel=2)
        return net
    state = {"fn": fn}

    def forward(x: torch.Tensor) -> torch.Tensor:
        if state["fn"] is not net:
            try:
                return state["fn"](x)
            except Exception as err:  # noqa: BLE001
                warnings.warn(f"torch.compile failed ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); running eagerly",
                              stacklevel=2)
                state["fn"] = net
        return net(x)

    return forward
