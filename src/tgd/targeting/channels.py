"""Channel flow of an arbitrary ConvNet: which conv output channels make up every conv's input.

The model runs once on an example input (eval mode, no grad) under a ``TorchFunctionMode``.
Conv and norm modules are observed as whole calls; every other torch function on the way is
interpreted by what it does to the channel dimension (dim 1):

- per-channel operations (activations, dropout, pooling, up-sampling, padding, spatial
  reductions and reshapes that keep ``(N, C)``) keep each channel's sources;
- elementwise operations of two tensors (residual additions, gating products) give channel ``c``
  the union of both operands' sources for ``c`` (broadcasting a one-channel operand), and the
  sources summed into one channel are *coupled*;
- concatenation along dim 1 concatenates the channel lists (channel ranges map to different
  producers); slicing, ``split`` and ``chunk`` along dim 1 take ranges;
- anything else (flattening channels into features, linear layers, attention, channel
  shuffles) is *opaque*: the channels it reads leave the analysis. If an opaque result later
  reaches a conv, the plan is refused with ``UnsupportedModelError`` naming the operation.

A *source* is ``(conv name, output channel)``. Sources that reach the model's output, or an
opaque operation whose result reaches no conv, *leave the network*.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from tgd.targeting.layers import CONV_TYPES, NORM_TYPES, UnsupportedModelError

Source = tuple[str, int]
Prov = tuple[frozenset, ...]  # the sources of each channel of a tensor

_UNARY = {
    "relu", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "selu", "celu", "gelu", "silu",
    "mish", "sigmoid", "tanh", "hardtanh", "hardswish", "hardsigmoid", "softplus", "softsign",
    "logsigmoid", "threshold", "dropout", "dropout1d", "dropout2d", "dropout3d",
    "alpha_dropout", "feature_alpha_dropout", "abs", "neg", "exp", "log", "sqrt", "rsqrt",
    "square", "reciprocal", "sign", "clamp", "clip", "clamp_min", "clamp_max", "contiguous",
    "clone", "to", "float", "double", "half", "bfloat16", "type", "detach", "nan_to_num",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
    "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "lp_pool1d", "lp_pool2d", "lp_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d_with_indices", "interpolate",
    "upsample", "upsample_nearest", "upsample_bilinear", "pad", "grid_sample", "batch_norm",
    "instance_norm", "group_norm",
}  # fmt: skip
_BINARY = {
    "add", "sub", "rsub", "mul", "div", "true_divide", "floor_divide", "maximum", "minimum",
    "pow", "where", "addcmul", "addcdiv", "lerp",
}  # fmt: skip
_RESHAPE = {
    "view", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose", "movedim",
    "expand", "expand_as", "view_as", "reshape_as", "flip", "roll",
}  # fmt: skip
_REDUCE = {"mean", "sum", "amax", "amin", "std", "var", "norm", "max", "min", "logsumexp"}
_CAT = {"cat", "concat", "concatenate"}
_SPLIT = {"split", "chunk", "tensor_split", "unbind"}
# Properties and queries that return no tensor data flow worth tracking.
_IGNORE = {"size", "dim", "numel", "shape", "dtype", "device", "is_contiguous", "__get__"}

_OPAQUE_PREFIX = "<opaque>"


def _name(func) -> str:
    """``add`` for ``torch.add``, ``Tensor.add_``, ``Tensor.__add__``, ``__radd__``..."""
    name = getattr(func, "__name__", str(func))
    if name == "__get__":  # attribute access such as ``tensor.shape``
        return name
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name[:1] in "ri" and name[1:] in _BINARY:
            name = name[1:]
    return name.rstrip("_")


@dataclass
class ChannelFlow:
    """The result of tracing: see the module docstring."""

    convs: list[str] = field(default_factory=list)  # call order
    consumers: dict[str, Prov] = field(default_factory=dict)  # conv -> sources per input channel
    norms: dict[str, Prov] = field(default_factory=dict)  # norm -> sources per channel
    couplings: list[frozenset] = field(default_factory=list)  # sources summed together
    leaving: set = field(default_factory=set)  # sources that reach the output / opaque sinks
    leave_reasons: dict = field(default_factory=dict)  # source -> why it leaves


class _Tracer(TorchFunctionMode):
    def __init__(self, modules: dict[nn.Module, str]):
        super().__init__()
        self.names = modules
        self.prov: dict[int, Prov] = {}
        self.keep: list[torch.Tensor] = []  # keep traced tensors alive so ids stay unique
        self.flow = ChannelFlow()
        self.opaque_inputs: dict[str, frozenset] = {}  # opaque op id -> sources it consumed
        self.opaque_used: set[str] = set()
        self.depth = 0  # > 0 inside a conv/norm module call
        self.counter = itertools.count()

    # ---- bookkeeping ------------------------------------------------------------------------
    def get(self, t: torch.Tensor) -> Prov:
        p = self.prov.get(id(t))
        if p is None:
            n = t.shape[1] if t.dim() >= 2 else 0
            p = tuple(frozenset() for _ in range(n))
        return p

    def set(self, t, p: Prov) -> None:
        if isinstance(t, torch.Tensor):
            self.prov[id(t)] = p
            self.keep.append(t)

    # ---- module calls -----------------------------------------------------------------------
    def pre_hook(self, module, args):
        self.depth += 1

    def post_hook(self, module, args, out):
        self.depth -= 1
        name = self.names[module]
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not isinstance(out, torch.Tensor):
            raise UnsupportedModelError(f"'{name}' was not called with one tensor input")
        if isinstance(module, CONV_TYPES):
            if name in self.flow.consumers:
                raise UnsupportedModelError(
                    f"conv '{name}' is called more than once in forward (shared weights); TGD "
                    "needs one producer per feature map"
                )
            inp = self.get(x)
            self._check_not_opaque(inp, f"conv '{name}'")
            self.flow.convs.append(name)
            self.flow.consumers[name] = inp
            self.set(out, tuple(frozenset({(name, n)}) for n in range(out.shape[1])))
        else:
            if name in self.flow.norms:
                raise UnsupportedModelError(f"norm '{name}' is called more than once in forward")
            inp = self.get(x)
            self._check_not_opaque(inp, f"norm '{name}'")
            self.flow.norms[name] = inp
            self.set(out, inp)

    def _check_not_opaque(self, p: Prov, what: str) -> None:
        for ch in p:
            for s in ch:
                if s[0] == _OPAQUE_PREFIX and self.opaque_inputs.get(s[1]):
                    op = s[1].split("#")[0]
                    raise UnsupportedModelError(
                        f"{what} reads channels mixed by the operation '{op}', which the "
                        "channel analysis cannot map channel by channel"
                    )
                if s[0] == _OPAQUE_PREFIX:
                    self.opaque_used.add(s[1])

    # ---- functions --------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth > 0:
            return out
        name = _name(func)
        if name in _IGNORE:
            return out
        tensors = [a for a in _flat(args, kwargs) if isinstance(a, torch.Tensor)]
        if not tensors or not any(id(t) in self.prov for t in tensors):
            return out  # no traced channel flows through (constants, the raw input, ...)
        try:
            self._propagate(name, args, kwargs, tensors, out)
        except UnsupportedModelError:
            raise
        except Exception:  # a rule that does not fit this call: treat the call as opaque
            self._opaque(name, tensors, out)
        return out

    def _propagate(self, name, args, kwargs, tensors, out):
        x = args[0] if args and isinstance(args[0], torch.Tensor) else tensors[0]
        if name in _CAT:
            seq = args[0] if args else kwargs["tensors"]
            dim = _dim(args[1] if len(args) > 1 else kwargs.get("dim", 0), seq[0].dim())
            if dim == 1:
                self.set(out, tuple(itertools.chain.from_iterable(self.get(t) for t in seq)))
            elif dim == 0 or dim > 1:
                self.set(out, self._union([self.get(t) for t in seq], out))
            return
        if name in _UNARY or (name in _BINARY and len(tensors) == 1):
            if out.dim() >= 2 and out.shape[1] == x.shape[1] and out.shape[0] == x.shape[0]:
                self.set(out, self.get(x))
                return
        elif name in _BINARY:
            provs = [self.get(t) for t in tensors if t.dim() >= 2]
            self.set(out, self._union(provs, out, couple=True))
            return
        elif name in _RESHAPE or name in _REDUCE:
            res = out[0] if isinstance(out, tuple) else out
            if (
                isinstance(res, torch.Tensor)
                and res.dim() >= 2
                and res.shape[:2] == x.shape[:2]
                and _keeps_channel_axis(name, args, kwargs, x.dim())
            ):
                self.set(res, self.get(x))
                return
        elif name == "getitem":
            p = _index_channels(self.get(x), args[1], x.dim())
            if p is not None:
                self.set(out, p)
                return
        elif name in _SPLIT:
            dim = _dim(kwargs.get("dim", args[2] if len(args) > 2 else 0), x.dim())
            if name == "unbind":
                dim = _dim(kwargs.get("dim", args[1] if len(args) > 1 else 0), x.dim())
            start = 0
            for piece in out:
                if dim == 1:
                    self.set(piece, self.get(x)[start : start + piece.shape[1]])
                    start += piece.shape[1]
                elif dim > 1:
                    self.set(piece, self.get(x))
                else:
                    break
            else:
                return
        self._opaque(name, tensors, out)

    def _union(self, provs: list[Prov], out, couple=False) -> Prov:
        n = out.shape[1]
        chans = []
        for c in range(n):
            parts = []
            for p in provs:
                if len(p) == n:
                    parts.append(p[c])
                elif len(p) == 1:
                    parts.append(p[0])
                elif len(p) != 0:
                    raise ValueError("channel broadcast")
            merged = frozenset().union(*parts)
            if couple and sum(1 for part in parts if part) > 1:
                self.flow.couplings.append(merged)
            chans.append(merged)
        return tuple(chans)

    def _opaque(self, name, tensors, out):
        op = f"{name}#{next(self.counter)}"
        consumed = frozenset().union(*(ch for t in tensors for ch in self.get(t)))
        real = frozenset(s for s in consumed if s[0] != _OPAQUE_PREFIX)
        self.opaque_inputs[op] = real
        for s in consumed:
            if s[0] == _OPAQUE_PREFIX:  # opaque of opaque: inherit
                self.opaque_inputs[op] |= self.opaque_inputs.get(s[1], frozenset())
        roots = sorted(s[1] for s in consumed if s[0] == _OPAQUE_PREFIX)
        if roots:  # name the operation that first mixed the channels, not the last one
            op_root = roots[0].split("#")[0]
            self.opaque_inputs[f"{op_root}#{op.split('#')[1]}"] = self.opaque_inputs.pop(op)
            op = f"{op_root}#{op.split('#')[1]}"
        marker = frozenset({(_OPAQUE_PREFIX, op)})
        for res in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(res, torch.Tensor):
                n = res.shape[1] if res.dim() >= 2 else 1
                self.set(res, tuple(marker for _ in range(n)))

    def finish(self, output) -> ChannelFlow:
        flow = self.flow
        for t in _flat(output, {}):
            if isinstance(t, torch.Tensor):
                for ch in self.get(t):
                    for s in ch:
                        self._leave(s, "reaches the model output")
        for op, consumed in self.opaque_inputs.items():
            if op not in self.opaque_used:
                for s in consumed:
                    self._leave(s, f"read by '{op.split('#')[0]}' (not a conv)")
        return flow

    def _leave(self, s, why):
        if s[0] == _OPAQUE_PREFIX:
            for src in self.opaque_inputs.get(s[1], ()):
                self._leave(src, f"reaches the model output through '{s[1].split('#')[0]}'")
            return
        self.flow.leaving.add(s)
        self.flow.leave_reasons.setdefault(s, why)


def _flat(args, kwargs):
    stack = [*args, *kwargs.values()] if isinstance(args, (tuple, list)) else [args]
    while stack:
        a = stack.pop()
        if isinstance(a, (list, tuple)):
            stack.extend(a)
        elif isinstance(a, dict):
            stack.extend(a.values())
        else:
            yield a


def _dim(d, ndim: int) -> int:
    return d + ndim if d < 0 else d


def _keeps_channel_axis(name, args, kwargs, ndim) -> bool:
    if name in ("permute",):
        dims = args[1:] if len(args) > 2 or not isinstance(args[1], (tuple, list)) else args[1]
        return [_dim(d, ndim) for d in dims][:2] == [0, 1]
    if name in ("transpose", "movedim"):
        a, b = (_dim(int(d), ndim) for d in args[1:3])
        return 0 not in (a, b) and 1 not in (a, b)
    if name in ("flip", "roll"):
        dims = kwargs.get("dims", args[-1] if len(args) > 1 else None)
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        return all(_dim(d, ndim) > 1 for d in dims)
    if name in _REDUCE:
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dims is None:
            return False
        dims = [dims] if isinstance(dims, int) else list(dims)
        return all(_dim(d, ndim) > 1 for d in dims)
    return True  # view/reshape/...: the caller checked that (N, C) is unchanged


def _index_channels(p: Prov, index, ndim: int) -> Prov | None:
    if not isinstance(index, tuple):
        index = (index,)
    if any(i is None or i is Ellipsis for i in index[:2]):
        return None
    if len(index) < 2:
        i0 = index[0]
        return p if isinstance(i0, slice) and i0 == slice(None) else None
    i0, i1 = index[0], index[1]
    if not (isinstance(i0, slice) and i0 == slice(None)):
        return None
    if isinstance(i1, slice):
        return p[i1]
    return None


def trace_channels(model: nn.Module, example_input) -> ChannelFlow:
    """Run ``model`` once on ``example_input`` and return its ``ChannelFlow``."""
    names = {}
    for name, mod in model.named_modules():
        if isinstance(mod, CONV_TYPES + NORM_TYPES):
            names[mod] = name
    tracer = _Tracer(names)
    hooks = []
    for mod in names:
        hooks.append(mod.register_forward_pre_hook(tracer.pre_hook))
        hooks.append(mod.register_forward_hook(tracer.post_hook))
    was_training = {m: m.training for m in model.modules()}
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        model.eval()
        with torch.no_grad(), tracer:
            for t in inputs:
                tracer.set(t, tuple(frozenset() for _ in range(t.shape[1] if t.dim() >= 2 else 0)))
            out = model(*inputs)
        return tracer.finish(out)
    except UnsupportedModelError:
        raise
    except Exception as err:
        raise UnsupportedModelError(
            f"running {type(model).__name__} on the example input failed "
            f"({type(err).__name__}: {err}); pass an example_input the model accepts"
        ) from err
    finally:
        for h in hooks:
            h.remove()
        for m, flag in was_training.items():
            m.train(flag)


def example_input_for(model: nn.Module) -> torch.Tensor:
    """A zero input for a model whose first conv says the channels and spatial dims.

    One sample, 32 pixels per spatial dim (enough for four 2x down-samplings), on the model's
    device and dtype. Models that need another size must be planned with ``example_input``.
    """
    first = next((m for m in model.modules() if isinstance(m, CONV_TYPES)), None)
    if first is None:
        raise ValueError(f"{type(model).__name__} has no conv layer: there is nothing to target")
    param = first.weight
    dims = param.dim() - 2
    return torch.zeros(1, first.in_channels, *([32] * dims), device=param.device, dtype=param.dtype)
