"""Data-driven importance of feature maps, beside KSE: what the network's output loses without them.

Both scores rate, like KSE, every *input channel of every conv* (one "read" of a feature map),
so the targeting rules (max over consumers, coupled groups, frozen last layer) apply unchanged:

- ``"ablation"``: the RMS change of the model's output on the user's images when that input
  channel of that conv is zeroed (one forward pass per channel);
- ``"taylor"``: its first-order estimate ``|J_c a_i|`` from one forward and one backward pass.
  The output is projected on random Gaussian vectors ``v`` (one per image and probe), and
  ``(v . J_c a_i)^2 = (sum_positions grad_i * a_i)^2`` has expectation ``||J_c a_i||^2``; the
  score is the square root of its mean over images and probes.

Both are divided by the largest score in the network, so they lie in ``[0, 1]`` and one
threshold means the same output change in every layer (KSE is instead min-max normalised per
layer). Reads that come from no conv (the network input) get 1; a channel that carries nothing
scores exactly 0 under ablation.

``as_images`` turns what the user gives (tensor, dataset, list) into one checked batch; every
data-driven part of targeting (importance, threshold selection, the KSE-vs-random check)
reads images through it.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from tgd.targeting.geometry import CONV_TYPES
from tgd.targeting.rules import real_sources

MAX_IMAGES = 8


def _first_conv(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, CONV_TYPES):
            return m
    raise ValueError(f"{type(model).__name__} has no conv layer")


def as_images(images, model: nn.Module, max_images: int = MAX_IMAGES) -> torch.Tensor:
    """A float batch ``(N, C, *spatial)`` on the model's device from a tensor, a dataset (items
    are tensors or ``(input, target, ...)`` tuples: the input is used) or a list of tensors.

    At most ``max_images`` items are used: the first ones of a tensor, evenly spread ones of a
    dataset or list. Raises ``ValueError`` for no images,
    a wrong number of dims or channels, or non-finite values.
    """
    if images is None:
        raise ValueError(
            "no images: automatic threshold selection and the data-driven scores need "
            "unlabelled images of the new domain (images=a tensor (N, C, *spatial), a dataset "
            "or a list of tensors)"
        )
    if isinstance(images, torch.Tensor):
        batch = images[:max_images]
    else:
        try:
            n = len(images)
        except TypeError as err:
            raise ValueError(
                f"images must be a tensor, a dataset or a list, got {type(images).__name__}"
            ) from err
        items = []
        # evenly spread over the dataset (its first items may be the edge slices of a volume)
        picks = sorted({round(i * (n - 1) / max(min(n, max_images) - 1, 1))
                        for i in range(min(n, max_images))})
        for i in picks:
            item = images[i]
            if isinstance(item, (tuple, list)):
                item = item[0]
            if not isinstance(item, torch.Tensor):
                item = torch.as_tensor(item)
            items.append(item)
        if not items:
            raise ValueError("no images: the dataset or list of images is empty")
        shapes = {tuple(t.shape) for t in items}
        if len(shapes) > 1:
            raise ValueError(f"images differ in shape {sorted(shapes)}: give same-sized crops")
        batch = torch.stack(items)
    conv = _first_conv(model)
    dims = conv.weight.dim() - 2
    if batch.numel() == 0 or batch.shape[0] == 0:
        raise ValueError(f"no images: got an empty tensor of shape {tuple(batch.shape)}")
    if batch.dim() == dims + 1:
        batch = batch.unsqueeze(0)  # one image without the batch dim
    if batch.dim() != dims + 2:
        given = images.shape if isinstance(images, torch.Tensor) else batch.shape
        raise ValueError(
            f"images of shape {tuple(given)} do not fit a {dims}-D network: expected "
            f"(N, C, {', '.join('*' * dims)})"
        )
    if not batch.is_floating_point():
        batch = batch.float()
    if not torch.isfinite(batch).all():
        raise ValueError("images contain NaN or infinite values")
    p = next(model.parameters())
    return batch.to(device=p.device, dtype=p.dtype)


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Eval mode (batch-norm running statistics, no dropout) for the duration; restored after."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, t in modes.items():
            m.train(t)


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output on ``x``, with a clear error if the images do not fit the model."""
    try:
        out = model(x)
    except RuntimeError as err:
        raise ValueError(f"images of shape {tuple(x.shape)} do not fit the model: {err}") from err
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"the model returned {type(out).__name__}; data-driven targeting needs one tensor"
        )
    return out


def rms(t: torch.Tensor) -> float:
    return float(t.double().pow(2).mean().sqrt())


def _scored_channels(flow, conv: str) -> list[int]:
    """Input channels of ``conv`` that some conv produces (the only reads the rules look at)."""
    return [i for i, ch in enumerate(flow.consumers[conv]) if real_sources(ch)]


def _zero_channel_hook(channel: int):
    def hook(module, args):
        x = args[0].clone()
        x[:, channel] = 0
        return (x, *args[1:])

    return hook


def ablation_scores(model: nn.Module, flow, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw RMS output change when each scored input channel of each conv is zeroed."""
    modules = dict(model.named_modules())
    with evaluating(model), torch.no_grad():
        ref = forward(model, x)
        out: dict[str, torch.Tensor] = {}
        for conv in flow.convs:
            s = torch.full((len(flow.consumers[conv]),), float("nan"), dtype=torch.float64)
            for i in _scored_channels(flow, conv):
                h = modules[conv].register_forward_pre_hook(_zero_channel_hook(i))
                try:
                    s[i] = rms(model(x) - ref)
                finally:
                    h.remove()
            out[conv] = s
    return out


def taylor_scores(
    model: nn.Module, flow, x: torch.Tensor, probes: int = 2, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Raw first-order estimate of the RMS output change of zeroing each scored input channel."""
    modules = dict(model.named_modules())
    reads: dict[str, torch.Tensor] = {}

    def capture(name):
        def hook(module, args):
            # a separate node per consumer: its gradient is the path through this conv only
            a = args[0] * 1
            a.retain_grad()
            reads[name] = a
            return (a, *args[1:])

        return hook

    xs = x.repeat(probes, *[1] * (x.dim() - 1)).requires_grad_(True)
    handles = [modules[c].register_forward_pre_hook(capture(c)) for c in flow.convs]
    try:
        with evaluating(model), torch.enable_grad():
            y = forward(model, xs)
            gen = torch.Generator(device="cpu").manual_seed(seed)
            v = torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device)
            (y * v).sum().backward()
    finally:
        for h in handles:
            h.remove()
    out: dict[str, torch.Tensor] = {}
    for conv in flow.convs:
        a = reads.get(conv)
        s = torch.full((len(flow.consumers[conv]),), float("nan"), dtype=torch.float64)
        if a is not None and a.grad is not None:
            dims = tuple(range(2, a.dim()))
            t = (a.grad.double() * a.detach().double()).sum(dims)  # (N * probes, C)
            est = t.pow(2).mean(0).div(y[0].numel()).sqrt().cpu()
            idx = _scored_channels(flow, conv)
            s[idx] = est[idx]
        elif _scored_channels(flow, conv):
            s[_scored_channels(flow, conv)] = 0.0
        out[conv] = s
    model.zero_grad(set_to_none=True)
    return out


def importance_scores(
    model: nn.Module, flow, images, score: str = "ablation", *, max_images: int = MAX_IMAGES
) -> dict[str, torch.Tensor]:
    """``{conv: float32 score per input channel}`` in ``[0, 1]`` (divided by the network's
    largest), from unlabelled ``images`` (see :func:`as_images`); unscored reads get 1."""
    x = as_images(images, model, max_images)
    if score == "ablation":
        raw = ablation_scores(model, flow, x)
    elif score == "taylor":
        raw = taylor_scores(model, flow, x)
    else:
        raise ValueError(f"importance score must be 'ablation' or 'taylor', got {score!r}")
    finite = [s[~s.isnan()] for s in raw.values()]
    top = max((float(s.max()) for s in finite if s.numel()), default=0.0)
    out = {}
    for conv, s in raw.items():
        s = s / top if top > 0 else torch.zeros_like(s)
        out[conv] = torch.where(s.isnan(), 1.0, s.clamp(0, 1)).float()
    return out
