"""Which conv layer's output channels feed which conv layer: the channel links TGD targets through.

A model is traced with ``torch.fx``. From every conv layer the trace is followed through
channel-preserving, per-channel operations (normalisation, activations, dropout, pooling,
up-sampling, padding) to the next conv layer, its *consumer*. Output channel ``n`` of the
producer is then input channel ``n`` of the consumer, so the consumer's KSE of input channel
``n`` judges the producer's kernel ``n``.

Sequential nets are supported (``nn.Sequential``, nested, and modules whose ``forward`` is a
chain, like DnCNN with its residual output). A conv whose output branches, or reaches another
conv through a residual addition, concatenation or any other multi-input operation, is an
arbitrary graph: ``UnsupportedModelError`` names the operation instead of returning a wrong plan.
A conv whose output never reaches another conv (the last layer) has no consumer.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

CONV_TYPES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
# Normalisation layers with one affine weight/bias (and running statistic) per channel.
PER_CHANNEL_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
# Per-channel affine parameters, but statistics shared within a group of channels.
GROUP_NORMS = (nn.GroupNorm,)
NORM_TYPES = PER_CHANNEL_NORMS + GROUP_NORMS

_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
)  # fmt: skip
_PASS_FUNCTIONS = {
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu,
    F.gelu, F.silu, F.mish, F.sigmoid, torch.sigmoid, F.tanh, torch.tanh, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.softplus, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.interpolate,
    F.pad,
}  # fmt: skip
_PASS_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous", "clone"}


class UnsupportedModelError(ValueError):
    """The model's graph cannot be planned safely (the message names the operation)."""


@dataclass
class ConvLink:
    """A conv layer, the norm layers its output passes through, and the conv that reads it."""

    producer: str
    consumer: str | None
    norms: list[str] = field(default_factory=list)


def _tensor_nodes(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda a: found.append(a))
    return found


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"module '{node.target}' ({type(modules[str(node.target)]).__name__})"
    if node.op == "call_function":
        name = getattr(node.target, "__name__", str(node.target))
        if node.target in (operator.add, operator.iadd, torch.add):
            name += " (a residual addition)"
        elif node.target is torch.cat:
            name += " (a concatenation)"
        return f"function '{name}'"
    return f"{node.op} '{node.target}'"


class _Tracer(fx.Tracer):
    """Keeps conv, norm and pass-through modules as leaves, whatever package they come from."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, CONV_TYPES + NORM_TYPES + _PASS_MODULES):
            return True
        return super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.Graph:
    try:
        return _Tracer().trace(model)
    except Exception as err:  # fx raises many types; all mean "cannot follow this forward".
        raise UnsupportedModelError(
            f"cannot trace {type(model).__name__} with torch.fx to find which conv layer feeds "
            f"which ({type(err).__name__}: {err}). TGD planning needs a traceable forward "
            "(no data-dependent control flow)."
        ) from err


def conv_links(model: nn.Module) -> dict[str, ConvLink]:
    """Map every conv layer called in ``model.forward`` (by module name) to its ``ConvLink``."""
    modules = dict(model.named_modules())
    graph = trace(model)
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    shared = [
        n for n, c in calls.items() if c > 1 and isinstance(modules[n], CONV_TYPES + NORM_TYPES)
    ]
    if shared:
        raise UnsupportedModelError(
            f"layers called more than once in forward (shared weights): {shared}; "
            "TGD needs one producer per feature map"
        )
    links: dict[str, ConvLink] = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules[str(node.target)], CONV_TYPES):
            links[str(node.target)] = _follow(node, modules)
    return links


def _reaches_conv(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_module" and isinstance(modules[str(n.target)], CONV_TYPES):
            return n
        stack.extend(n.users)
    return None


def _is_pass_through(node: fx.Node, prev: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if _tensor_nodes(node) != [prev] or not node.args or node.args[0] is not prev:
        return False
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    if node.op == "call_method":
        return node.target in _PASS_METHODS
    return False


def _follow(conv: fx.Node, modules: dict[str, nn.Module]) -> ConvLink:
    name = str(conv.target)
    link = ConvLink(producer=name, consumer=None)
    node = conv
    while True:
        users = list(node.users)
        if not users:
            return link
        if len(users) > 1:
            raise UnsupportedModelError(
                f"the output of conv '{name}' branches to "
                f"{', '.join(_describe(u, modules) for u in users)}; branching graphs are not "
                "supported by the sequential planner"
            )
        user = users[0]
        if user.op == "output":
            return link
        if user.op == "call_module":
            mod = modules[str(user.target)]
            if isinstance(mod, CONV_TYPES) and _tensor_nodes(user) == [node]:
                link.consumer = str(user.target)
                return link
            if isinstance(mod, NORM_TYPES) and _tensor_nodes(user) == [node]:
                link.norms.append(str(user.target))
                node = user
                continue
        if _is_pass_through(user, node, modules):
            node = user
            continue
        downstream = _reaches_conv(user, modules)
        if downstream is None:
            return link  # the output leaves the network (e.g. a residual output): no consumer
        raise UnsupportedModelError(
            f"the output of conv '{name}' reaches conv '{downstream.target}' through "
            f"{_describe(user, modules)}, which the sequential planner cannot map channel by "
            "channel"
        )
