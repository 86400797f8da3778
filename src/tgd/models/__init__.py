"""Networks: plain ``nn.Module``s, nothing TGD-specific inside them."""

from tgd.models.dncnn import DnCNN

__all__ = ["DnCNN"]
