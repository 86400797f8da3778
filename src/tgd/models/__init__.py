"""Networks: plain ``nn.Module``s, nothing TGD-specific inside them."""

from tgd.models.critic import Critic
from tgd.models.dncnn import DnCNN
from tgd.models.segmenters import SEGMENTER_ARCHS, Segmenter
from tgd.models.unet import UNet

__all__ = ["SEGMENTER_ARCHS", "Critic", "DnCNN", "Segmenter", "UNet"]
