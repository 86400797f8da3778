"""tgd's soft Dice loss (kept so that the library's task loss runs without MONAI) equals MONAI's
DiceLoss with the same options, where MONAI is installed."""

import pytest
import torch

from tgd.losses import soft_dice_loss

monai_losses = pytest.importorskip("monai.losses")


@pytest.mark.parametrize("include_background", [False, True])
def test_soft_dice_loss_matches_monai(include_background):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 16, 16, generator=g)
    labels = torch.randint(0, 4, (3, 16, 16), generator=g)
    ours = soft_dice_loss(logits, labels, include_background=include_background, eps=1e-5)
    ref = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, batch=True,
                                include_background=include_background, smooth_nr=1e-5,
                                smooth_dr=1e-5)(logits, labels[:, None])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    # and it is not trivially equal: another prediction gives another loss
    assert not torch.isclose(ours, soft_dice_loss(-logits, labels,
                                                  include_background=include_background))
