"""Networks: plain ``nn.Module``s, nothing TGD-specific inside them."""

from tgd.models.dncnn import DnCNN
from tgd.models.unet import UNet

__all__ = ["DnCNN", "UNet"]
