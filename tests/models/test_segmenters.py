"""Critic and segmenter networks, segmenter checkpoints, hard Dice."""

import numpy as np
import pytest
import torch

from tgd.evaluation.segmentation import dice_per_class
from tgd.models import SEGMENTER_ARCHS, Critic, Segmenter
from tgd.training.segmenter import load_segmenter, save_segmenter, segment, train_segmenter

pytest.importorskip("monai")


def test_critic_shapes_and_errors():
    c = Critic(1, 4, 3)
    assert c(torch.randn(5, 1, 16, 24)).shape == (5,)
    assert Critic(3, 4, 2, spatial_dims=3)(torch.randn(2, 3, 8, 8, 8)).shape == (2,)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in c.modules())
    with pytest.raises(ValueError, match="takes"):
        c(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="spatial_dims"):
        Critic(spatial_dims=1)


@pytest.mark.parametrize("arch", [a for a in SEGMENTER_ARCHS if a != "vnet"])
def test_segmenters_map_images_to_logits(arch):
    seg = Segmenter(arch, n_classes=4, width=4)
    assert seg(torch.randn(2, 1, 16, 16)).shape == (2, 4, 16, 16)
    with pytest.raises(ValueError, match="divisible by 8"):
        seg(torch.randn(1, 1, 12, 16))


def test_segmenter_errors():
    with pytest.raises(ValueError, match="arch"):
        Segmenter("vox")
    with pytest.raises(ValueError, match="n_classes"):
        Segmenter(n_classes=1)


class _Squares(torch.utils.data.Dataset):
    """A bright square (class 1) on a dark background."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for _ in range(16):
            y = 0.1 * torch.randn(1, 16, 16, generator=g)
            c = torch.zeros(16, 16, dtype=torch.int64)
            r, s = torch.randint(0, 10, (2,), generator=g).tolist()
            y[0, r:r + 6, s:s + 6] += 1.0
            c[r:r + 6, s:s + 6] = 1
            self.items.append((y.repeat(3, 1, 1), y, c))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_train_segmenter_learns_and_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    seg = Segmenter("unet", n_classes=2, width=4)
    data = _Squares()
    m = train_segmenter(seg, data, iterations=60, batch_size=8, lr=1e-2)
    ys = torch.stack([it[1] for it in data.items])
    cs = torch.stack([it[2] for it in data.items])
    pred = segment(seg, ys)
    assert dice_per_class(pred.numpy(), cs.numpy(), [1])[1] > 0.8
    assert m["train_loss_last"] < m["loss"][0][1]
    save_segmenter(tmp_path / "seg", seg, {"classes": ["background", "square"]})
    back, ck = load_segmenter(tmp_path / "seg")
    assert ck.meta["classes"] == ["background", "square"]
    assert torch.equal(segment(back, ys), pred)
    with pytest.raises(FileExistsError):
        save_segmenter(tmp_path / "seg", seg, {})


def test_dice_per_class_by_hand():
    p = np.array([0, 1, 1, 2])
    t = np.array([0, 1, 2, 2])
    d = dice_per_class(p, t, [1, 2, 3])
    assert d[1] == pytest.approx(2 / 3) and d[2] == pytest.approx(2 / 3) and np.isnan(d[3])
