"""Channel flow of an arbitrary ConvNet: which conv output channels make up every conv's input.

The model runs once on an example input (eval mode, no grad) under a ``TorchFunctionMode``.
Conv and norm modules are observed as whole calls; every other torch function on the way is
interpreted by what it does to the channel dimension (dim 1):

- per-channel operations (activations, dropout, pooling, interpolation, spatial reductions)
  keep each channel's sources;
- data movement (reshapes, permutes, slicing and indexing, padding, roll, flip, repeat, expand,
  cat, split, pixel shuffles, in-place ``x[i] = y``) is replayed on a tensor of channel ids: the
  output channel ``c`` gets the sources of the input channels whose values it holds (none for
  constant padding). Where several input channels land in one output channel, the call is
  opaque, except for ``pixel_shuffle`` and ``stack``, whose merged channels are *coupled*;
- elementwise operations of two tensors (residual additions) give channel ``c`` the union of
  both operands' sources for ``c`` (broadcasting a one-channel operand), and the sources
  summed into one channel are *coupled*;
- ``x * g`` with a *gate* ``g`` (computed from a global pooling, or one channel against
  several) keeps x's sources: the gate multiplies channel ``c`` only. The convs that make a
  gate or read a global pooling are listed in ``ChannelFlow.gates`` (planned as frozen);
- anything else (flattening channels into features, linear layers, attention, channel
  shuffles) is *opaque*: the channels it reads leave the analysis. If an opaque result later
  reaches a conv, the plan is refused with ``UnsupportedModelError`` naming the operation.

A *source* is ``(conv name, output channel)``. The channels of an opaque result hold an
:class:`Opaque` marker instead. Sources that reach the model's output, or an opaque operation
whose result reaches no conv, *leave the network*.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from tgd.targeting.geometry import (
    CONV_TYPES,
    NORM_TYPES,
    UnsupportedModelError,
    conv_output_shape,
)
from tgd.targeting.kse import one_thread

Source = tuple[str, int]  # (conv name, output channel)


@dataclass(frozen=True, order=True)
class Opaque:
    """Marks the channels of an opaque operation's result (in place of their sources).

    ``index`` numbers the opaque calls of one trace in call order; ``op`` names the operation
    that first mixed the channels (an opaque call on opaque results inherits its name).
    """

    index: int
    op: str


Prov = tuple[frozenset[Source | Opaque], ...]  # the sources of each channel of a tensor
_NO_SOURCE: frozenset = frozenset()  # immutable, so one instance serves every channel


class _Unmappable(Exception):
    """A rule cannot map this call's channels: the call is treated as opaque."""

_UNARY = {
    "relu", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "selu", "celu", "gelu", "silu",
    "mish", "sigmoid", "tanh", "hardtanh", "hardswish", "hardsigmoid", "softplus", "softsign",
    "logsigmoid", "threshold", "dropout", "dropout1d", "dropout2d", "dropout3d",
    "alpha_dropout", "feature_alpha_dropout", "abs", "neg", "exp", "log", "sqrt", "rsqrt",
    "square", "reciprocal", "sign", "clamp", "clip", "clamp_min", "clamp_max", "contiguous",
    "clone", "as_tensor", "to", "float", "double", "half", "bfloat16", "type", "detach",
    "nan_to_num",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
    "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "lp_pool1d", "lp_pool2d", "lp_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d_with_indices", "interpolate",
    "upsample", "upsample_nearest", "upsample_bilinear", "grid_sample", "batch_norm",
    "instance_norm", "group_norm",
}  # fmt: skip
_BINARY = {
    "add", "sub", "rsub", "mul", "div", "true_divide", "floor_divide", "maximum", "minimum",
    "pow", "where", "addcmul", "addcdiv", "lerp",
}  # fmt: skip
# Pure data movement: the output holds input values, moved, repeated or dropped (plus constant
# padding). Their channel map is found by replaying the call on channel ids (see ``_replay``).
_MOVE = {
    "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose",
    "movedim", "moveaxis", "swapaxes", "swapdims", "t", "expand", "expand_as", "view_as",
    "reshape_as", "broadcast_to", "flip", "fliplr", "flipud", "roll", "rot90", "repeat",
    "repeat_interleave", "tile", "narrow", "select", "index_select", "gather",
    "take_along_dim", "getitem", "setitem", "unfold", "pixel_shuffle", "pixel_unshuffle",
    "channel_shuffle", "pad", "split", "chunk", "tensor_split", "unbind", "cat", "concat",
    "concatenate", "stack",
}  # fmt: skip
# Data movement that legitimately puts several input channels into one output channel: those
# channels are coupled (judged and retrained together), as channels summed together are.
_GATHER = {"pixel_shuffle", "stack"}
_SHAPE_ONLY = {"expand_as", "view_as", "reshape_as"}  # the second tensor only lends its shape
_REDUCE = {"mean", "sum", "amax", "amin", "std", "var", "norm", "max", "min", "logsumexp"}
_GLOBAL_POOLS = {
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d_with_indices",
}  # fmt: skip
# New tensors that take only a shape (and dtype) from a traced one: constants, no producer.
_CONSTANT = {
    "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
    "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor",
}  # fmt: skip
# Properties and queries that return no tensor data flow worth tracking.
_IGNORE = {"size", "dim", "numel", "shape", "dtype", "device", "is_contiguous", "__get__"}

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
    leaving: set[Source] = field(default_factory=set)  # reach the output / opaque sinks
    gates: dict[str, str] = field(default_factory=dict)  # conv making a gate -> why frozen


class _Tracer(TorchFunctionMode):
    def __init__(self, modules: dict[nn.Module, str], conv_shapes_only: bool = False):
        super().__init__()
        self.names = modules
        self.conv_shapes_only = conv_shapes_only
        self.prov: dict[int, Prov] = {}
        self.keep: list[torch.Tensor] = []  # keep traced tensors alive so ids stay unique
        self.flow = ChannelFlow()
        self.opaque_inputs: dict[Opaque, frozenset[Source]] = {}  # the sources it consumed
        self.opaque_parents: dict[Opaque, set[Opaque]] = {}  # the opaque results it read
        self.opaque_used: set[Opaque] = set()
        self.pooled: set[int] = set()  # ids of tensors computed from a global pooling
        self.depth = 0  # > 0 inside a conv/norm module call
        self.counter = itertools.count()

    # ---- bookkeeping ------------------------------------------------------------------------
    def get(self, t: torch.Tensor) -> Prov:
        p = self.prov.get(id(t))
        if p is None:
            n = t.shape[1] if t.dim() >= 2 else 0
            p = (_NO_SOURCE,) * n
        return p

    def set(self, t, p: Prov) -> None:
        if isinstance(t, torch.Tensor):
            self.prov[id(t)] = p
            self.keep.append(t)

    def set_pooled(self, inputs, outputs) -> None:
        """Outputs computed only from globally pooled tensors are pooled too."""
        inputs = [t for t in inputs if id(t) in self.prov]
        if inputs and all(id(t) in self.pooled for t in inputs):
            for t in outputs:
                if isinstance(t, torch.Tensor):
                    self.pooled.add(id(t))

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
            if id(x) in self.pooled:
                self.flow.gates.setdefault(name, "reads a global pooling (gate path)")
            self.set(out, tuple(frozenset({(name, n)}) for n in range(out.shape[1])))
        else:
            if name in self.flow.norms:
                raise UnsupportedModelError(f"norm '{name}' is called more than once in forward")
            inp = self.get(x)
            self._check_not_opaque(inp, f"norm '{name}'")
            self.flow.norms[name] = inp
            self.set(out, inp)
        self.set_pooled([x], [out])

    def _check_not_opaque(self, p: Prov, what: str) -> None:
        for ch in p:
            for s in ch:
                if isinstance(s, Opaque) and self.opaque_inputs.get(s):
                    raise UnsupportedModelError(
                        f"{what} reads channels mixed by the operation '{s.op}', which the "
                        "channel analysis cannot map channel by channel"
                    )
                if isinstance(s, Opaque):
                    self._use_opaque(s)

    def _use_opaque(self, op: Opaque) -> None:
        """An opaque result is read on (by a conv, or as a gate): its inputs do not leave."""
        stack = [op]
        while stack:
            o = stack.pop()
            if o not in self.opaque_used:
                self.opaque_used.add(o)
                stack.extend(self.opaque_parents.get(o, ()))

    # ---- functions --------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth > 0:
            if self.conv_shapes_only and _name(func) in _CONV_FUNCS:
                return _zeros_like_result(func, args, kwargs)
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        name = _name(func)
        if name in _IGNORE or name in _CONSTANT:
            return out
        tensors = [a for a in _flat(args, kwargs) if isinstance(a, torch.Tensor)]
        if not tensors or not any(id(t) in self.prov for t in tensors):
            return out  # no traced channel flow through (constants, the raw input, ...)
        result = args[0] if name == "setitem" else out  # setitem changes its target in place
        try:
            self._propagate(func, name, args, kwargs, tensors, result)
        except _Unmappable:
            self._opaque(name, tensors, result)
        data = [args[0]] if name in _SHAPE_ONLY else tensors
        self.set_pooled(data, list(_flat(result, {})))
        return out

    def _propagate(self, func, name, args, kwargs, tensors, out):
        """Record the channel sources of ``out``; a call no rule maps is recorded as opaque.

        Raises ``_Unmappable`` where a rule finds out only by trying (same effect).
        """
        x = args[0] if args and isinstance(args[0], torch.Tensor) else tensors[0]
        # one result with a channel dim, the only kind the per-channel rules map
        channels_out = isinstance(out, torch.Tensor) and out.dim() >= 2 and x.dim() >= 2
        if name in ("cat", "concat", "concatenate"):  # the common case, without a replay
            seq = args[0] if args else kwargs["tensors"]
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            if (
                isinstance(dim, int)
                and all(t.dim() >= 2 for t in seq)
                and _dim(dim, seq[0].dim()) == 1
            ):
                self.set(out, tuple(itertools.chain.from_iterable(self.get(t) for t in seq)))
                return
        if name in _MOVE:
            if self._replay(func, name, args, kwargs, out):
                return
        elif name in _UNARY or (name in _BINARY and len(tensors) == 1):
            if channels_out and out.shape[:2] == x.shape[:2]:
                self.set(out, self.get(x))
                if name in _GLOBAL_POOLS and all(s == 1 for s in out.shape[2:]):
                    self.pooled.add(id(out))
                return
        elif name in _BINARY:
            operands = [t for t in tensors if t.dim() >= 2]
            if isinstance(out, torch.Tensor) and out.dim() >= 2 and operands:
                if name == "mul" and self._gate(operands, out):
                    return
                self.set(out, self._union([self.get(t) for t in operands], out, couple=True))
                return
        elif name in _REDUCE:
            res = out[0] if isinstance(out, tuple) else out
            dims = _reduced_dims(args, kwargs, x.dim())
            if (
                isinstance(res, torch.Tensor)
                and res.dim() >= 2
                and res.shape[:2] == x.shape[:2]
                and dims
                and min(dims) > 1
            ):
                self.set(res, self.get(x))
                if set(dims) >= set(range(2, x.dim())):
                    self.pooled.add(id(res))
                return
        self._opaque(name, tensors, out)

    def _gate(self, operands, out) -> bool:
        """``x * g`` where ``g`` is a gate: channel ``c`` of the product is channel ``c`` of x.

        ``g`` is a gate if it was computed from a global pooling (squeeze-and-excitation,
        channel attention: one value per channel) or has one channel against x's several
        (spatial attention). The gate depends on many channels, but multiplies channel ``c``
        of x only; the convs that make the gate are frozen (``ChannelFlow.gates``).
        """
        if len(operands) != 2:
            return False
        a, b = operands
        pooled_a, pooled_b = id(a) in self.pooled, id(b) in self.pooled
        if pooled_a != pooled_b:
            x, g = (b, a) if pooled_a else (a, b)
        elif a.shape[1] == 1 and b.shape[1] > 1:
            x, g = b, a
        elif b.shape[1] == 1 and a.shape[1] > 1:
            x, g = a, b
        else:
            return False
        if g.shape[1] not in (1, x.shape[1]) or out.shape[1] != x.shape[1]:
            return False
        for ch in self.get(g):
            for s in ch:
                if isinstance(s, Opaque):
                    self._use_opaque(s)
                else:
                    self.flow.gates[s[0]] = "makes a gate"
        self.set(out, self.get(x))
        return True

    def _replay(self, func, name, args, kwargs, out) -> bool:
        """Map channels by running the same call on channel ids; False if it mixes channels.

        Every floating-point tensor argument is replaced by a tensor of its shape holding, at
        every element, the id of the channel it belongs to (``1 + offset + c``; untraced
        tensors hold 0, "no producer"); padding is done with 0. The result's channel ``c``
        then holds the ids of the input channels its values came from, wherever they moved.
        """
        table: list[frozenset] = []
        subs: dict[int, torch.Tensor] = {}

        def sub(a):
            if not isinstance(a, torch.Tensor) or not a.is_floating_point():
                return a
            if id(a) not in subs:
                if id(a) in self.prov and a.dim() >= 2:
                    shape = [1] * a.dim()
                    shape[1] = a.shape[1]
                    ids = torch.arange(len(table) + 1, len(table) + 1 + a.shape[1],
                                       dtype=torch.float32, device=a.device)  # fmt: skip
                    table.extend(self.get(a))
                    subs[id(a)] = ids.view(shape).expand(a.shape).clone()
                else:
                    subs[id(a)] = torch.zeros(a.shape, dtype=torch.float32, device=a.device)
            return subs[id(a)]

        def walk(a):
            if isinstance(a, (list, tuple)):
                return type(a)(walk(v) for v in a)
            return sub(a)

        r_args = [walk(a) for a in args]
        r_kwargs = {k: walk(v) for k, v in kwargs.items()}
        if name == "pad":  # constant padding adds channels with no producer
            if len(r_args) > 3:
                r_args[3] = 0.0
            elif "value" in r_kwargs or r_kwargs.get("mode", "constant") == "constant":
                r_kwargs["value"] = 0.0
        try:
            with torch.no_grad():
                r_out = func(*r_args, **r_kwargs)
        except (RuntimeError, TypeError, ValueError, IndexError) as err:
            # the call does not accept the channel-id stand-ins (an integer-only operation,
            # a mode the replay cannot reproduce): its channels cannot be mapped this way
            raise _Unmappable(name) from err
        if name == "setitem":  # in place: the target's ids now show what was written where
            r_out = r_args[0]
        results = list(_flat(out, {})) if isinstance(out, (list, tuple)) else [out]
        r_results = list(_flat(r_out, {})) if isinstance(r_out, (list, tuple)) else [r_out]
        if len(results) != len(r_results):
            return False
        mapped = []
        for res, r_res in zip(results, r_results, strict=True):
            if not isinstance(res, torch.Tensor):
                continue
            if not isinstance(r_res, torch.Tensor) or res.dim() < 2 or res.shape != r_res.shape:
                return False
            prov = self._channels_from_ids(r_res, table, couple=name in _GATHER)
            if prov is None:
                return False
            mapped.append((res, prov))
        for res, prov in mapped:
            self.set(res, prov)
        return True

    def _channels_from_ids(self, ids: torch.Tensor, table, couple: bool) -> Prov | None:
        n = ids.shape[1]
        flat = ids.detach().transpose(0, 1).reshape(n, -1).round().long().cpu()
        if flat.shape[1] == 0:
            return (_NO_SOURCE,) * n
        hi = flat.amax(1)
        lo = torch.where(flat > 0, flat, hi[:, None]).amin(1)
        if torch.equal(lo, hi):  # the common case: one input channel (or none) per channel
            return tuple(table[i - 1] if i else frozenset() for i in hi.tolist())
        width = len(table) + 1
        pairs = torch.unique(torch.arange(n)[:, None] * width + flat)
        found: list[list[int]] = [[] for _ in range(n)]
        for key in pairs.tolist():
            c, i = divmod(key, width)
            if i:
                found[c].append(i - 1)
        chans = []
        for ids_c in found:
            parts = {table[i] for i in ids_c if table[i]}
            merged = frozenset().union(*parts)
            if len(parts) > 1:
                if not couple:
                    return None  # several channels folded into one: not a channel map
                self.flow.couplings.append(merged)
            chans.append(merged)
        return tuple(chans)

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
                    raise _Unmappable("channel broadcast")
            merged = frozenset().union(*parts)
            if couple and sum(1 for part in parts if part) > 1:
                self.flow.couplings.append(merged)
            chans.append(merged)
        return tuple(chans)

    def _opaque(self, name, tensors, out):
        consumed = frozenset().union(*(ch for t in tensors for ch in self.get(t)))
        real = frozenset(s for s in consumed if not isinstance(s, Opaque))
        inherited = frozenset()
        parents = {s for s in consumed if isinstance(s, Opaque)}
        for parent in parents:  # opaque of opaque: inherit
            inherited |= self.opaque_inputs.get(parent, frozenset())
        # name the operation that first mixed the channels, not the last one
        op = Opaque(next(self.counter), min(parents).op if parents else name)
        self.opaque_inputs[op] = real | inherited
        self.opaque_parents[op] = parents
        marker = frozenset({op})
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
                        self._leave(s)
        for op, consumed in self.opaque_inputs.items():
            if op not in self.opaque_used:
                for s in consumed:
                    self._leave(s)
        return flow

    def _leave(self, s: Source | Opaque) -> None:
        if isinstance(s, Opaque):
            for src in self.opaque_inputs.get(s, ()):
                self._leave(src)
            return
        self.flow.leaving.add(s)


_CONV_FUNCS = {
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
}  # fmt: skip


def _zeros_like_result(func, args, kwargs) -> torch.Tensor:
    """Zeros shaped like ``func``'s result, the shape found on the meta device (no arithmetic)."""

    def meta(a):
        if isinstance(a, torch.Tensor):
            return a.to("meta")
        if isinstance(a, (list, tuple)):
            return type(a)(meta(v) for v in a)
        return a

    x = args[0]
    try:
        shape = conv_output_shape(_name(func), *args, **kwargs)
    except (TypeError, ValueError):  # an unusual call: let the meta kernel say
        shape = func(*meta(list(args)), **{k: meta(v) for k, v in kwargs.items()}).shape
    return torch.zeros(shape, dtype=x.dtype, device=x.device)


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


def _reduced_dims(args, kwargs, ndim) -> list[int]:
    """The dims a reduction call reduces (empty if not given as integers)."""
    dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
    dims = [dims] if isinstance(dims, int) else dims
    if not isinstance(dims, (list, tuple)) or not all(isinstance(d, int) for d in dims):
        return []
    return [_dim(d, ndim) for d in dims]


def trace_channels(
    model: nn.Module, example_input, *, conv_shapes_only: bool = False
) -> ChannelFlow:
    """Run ``model`` once on ``example_input`` and return its ``ChannelFlow``.

    ``conv_shapes_only``: the convs inside conv modules return zeros of the right shape instead
    of computing (most of a forward's cost); for inputs whose values do not matter.
    """
    names = {}
    for name, mod in model.named_modules():
        if isinstance(mod, CONV_TYPES + NORM_TYPES):
            names[mod] = name
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    tracer = _Tracer(names, conv_shapes_only)
    hooks = []
    for mod in names:
        hooks.append(mod.register_forward_pre_hook(tracer.pre_hook))
        hooks.append(mod.register_forward_hook(tracer.post_hook))
    was_training = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), one_thread(), tracer:  # tiny tensors: one thread is faster
            for t in inputs:
                tracer.set(t, (_NO_SOURCE,) * (t.shape[1] if t.dim() >= 2 else 0))
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


# Spatial sizes tried, smallest first, for the default example input: the trace's cost grows with
# the input, and the channel flow does not depend on it.
EXAMPLE_SIZES = (4, 8, 16, 32, 64)


def example_input_for(model: nn.Module, size: int = 32) -> torch.Tensor:
    """A zero input for a model whose first conv says the channels and spatial dims.

    One sample, ``size`` pixels per spatial dim, on the model's device and dtype.
    """
    first = next((m for m in model.modules() if isinstance(m, CONV_TYPES)), None)
    if first is None:
        raise ValueError(f"{type(model).__name__} has no conv layer: there is nothing to target")
    param = first.weight
    dims = param.dim() - 2
    shape = (1, first.in_channels, *([size] * dims))
    return torch.zeros(shape, device=param.device, dtype=param.dtype)


def trace_smallest(model: nn.Module) -> ChannelFlow:
    """``trace_channels`` on the smallest default example input the model accepts.

    Tries ``EXAMPLE_SIZES`` pixels per spatial dim in turn (a U-Net needs its size multiple,
    an instance norm more than one pixel at the bottom); a model that accepts none of them
    must be planned with ``example_input``. The error names the failure at 32 pixels. The
    input is zeros, so its values carry nothing: the convs only say their output shapes.
    """
    errors = {}
    for size in EXAMPLE_SIZES:
        try:
            return trace_channels(model, example_input_for(model, size), conv_shapes_only=True)
        except UnsupportedModelError as err:
            if not isinstance(err.__cause__, Exception):
                raise  # the model ran: the refusal is about its graph, not the input size
            errors[size] = err
    raise errors[32]
