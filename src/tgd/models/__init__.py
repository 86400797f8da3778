"""Networks: plain ``nn.Module``s, nothing TGD-specific inside them; the model protocol
(``traits``) and the registry that builds them by name or from a checkpoint's spec."""

from tgd.models.critic import Critic
from tgd.models.dncnn import DnCNN
from tgd.models.registry import (
    ARCHS,
    build_model,
    model_class,
    model_spec,
    new_model,
    register_model,
)
from tgd.models.segmenters import SEGMENTER_ARCHS, Segmenter
from tgd.models.traits import ModelTraits, example_input, model_traits
from tgd.models.unet import UNet

__all__ = [
    "ARCHS",
    "SEGMENTER_ARCHS",
    "Critic",
    "DnCNN",
    "ModelTraits",
    "Segmenter",
    "UNet",
    "build_model",
    "example_input",
    "model_class",
    "model_spec",
    "model_traits",
    "new_model",
    "register_model",
]
