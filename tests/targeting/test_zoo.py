"""A small, fast subset of the MONAI zoo sweep (the full sweep is bench/zoo_coverage.py): each
network plans, its targeted-entry gradients in parameter mode equal plain training's, and AdamW
keeps every frozen value; a transformer hybrid is refused naming the operation."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import tgd
from tgd.targeting import UnsupportedModelError

nets = pytest.importorskip("monai.networks.nets")

_spec = importlib.util.spec_from_file_location(
    "zoo_coverage", Path(__file__).parents[2] / "bench" / "zoo_coverage.py"
)
zoo = sys.modules.setdefault("zoo_coverage", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(zoo)

SMALL = {
    # channel padding in the residual shortcut (ChannelPad: F.pad along dim 1)
    "HighResNet-2d": (
        lambda: nets.HighResNet(2, 1, 1, layer_params=(
            {"name": "conv_0", "n_features": 4, "kernel_size": 3},
            {"name": "res_1", "n_features": 4, "kernels": (3, 3), "repeat": 1},
            {"name": "res_2", "n_features": 8, "kernels": (3, 3), "repeat": 1},
            {"name": "res_3", "n_features": 16, "kernels": (3, 3), "repeat": 1},
            {"name": "conv_1", "n_features": 16, "kernel_size": 1},
            {"name": "conv_2", "kernel_size": 1},
        )),  # fmt: skip
        2, 16,
    ),
    # squeeze-and-excitation with 1x1 convs, depthwise convs, drop-connect residuals
    "EfficientNet-2d": (
        lambda: nets.EfficientNet(["r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25"],
                                  spatial_dims=2, in_channels=1, num_classes=2,
                                  width_coefficient=0.25, drop_connect_rate=0.0),  # fmt: skip
        2, 16,
    ),
    # spatial attention gates (x * sigmoid(psi)) on the skip connections
    "AttentionUnet-2d": (lambda: nets.AttentionUnet(2, 1, 1, (4, 8, 16), (2, 2)), 2, 16),
    # additive up-sampling: stack(split(x, C / 2), -1).sum(-1) couples channel pairs
    "LocalNet-2d": (lambda: nets.LocalNet(2, 1, 4, (0, 1, 2), out_channels=1), 2, 16),
    "DynUNet-3d": (
        lambda: nets.DynUNet(3, 1, 1, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 16]), 3, 8,
    ),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_zoo_network_plans_trains_and_matches_plain_gradients(name):
    build, dims, size = SMALL[name]
    torch.manual_seed(0)
    model = build()
    p = tgd.plan(model, 0.5)
    assert any(lp.n_targeted for lp in p.layers.values()), "nothing targeted"
    x = torch.randn(2, 1, *([size] * dims))
    assert zoo.targeted_gradients_match(model, p, x) > 0
    zoo.adamw_keeps_frozen(model, p, x)


def test_zoo_gates_are_frozen():
    build, _, _ = SMALL["EfficientNet-2d"]
    torch.manual_seed(0)
    model = build()
    p = tgd.plan(model, 0.5)
    se = [n for n in p.layers if "se_reduce" in n or "se_expand" in n]
    assert se and all(p.layers[n].role == "frozen" for n in se)


def test_zoo_transformer_hybrid_is_refused_naming_the_operation():
    pytest.importorskip("einops")
    model = nets.UNETR(1, 1, (16, 16), feature_size=4, hidden_size=32, mlp_dim=64,
                       num_heads=2, spatial_dims=2)  # fmt: skip
    with pytest.raises(UnsupportedModelError, match="mixed by the operation 'transpose'"):
        tgd.plan(model)
