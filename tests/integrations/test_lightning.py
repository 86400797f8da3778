"""TGDCallback under a real Lightning Trainer (CPU, a tiny MONAI BasicUNet): checkpoints hold
the plain network, frozen values stay, and resuming continues exactly like an uninterrupted
run."""

import importlib
import sys

import pytest
import torch

import tgd
from tgd.targeting import plain_state_dict

L = pytest.importorskip("lightning.pytorch")
nets = pytest.importorskip("monai.networks.nets")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.strategies import SingleDeviceStrategy  # noqa: E402

from tgd.integrations.lightning import TGDCallback  # noqa: E402


def basic_unet(seed):
    torch.manual_seed(seed)
    return nets.BasicUNet(2, 1, 1, features=(4, 4, 8, 8, 16, 4), norm="batch")


class Denoiser(L.LightningModule):
    def __init__(self, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.net = basic_unet(seed)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        noisy, clean = batch
        return torch.nn.functional.mse_loss(self.net(noisy), clean)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1)


def loader(n=8):
    g = torch.Generator().manual_seed(5)
    clean = torch.rand(n, 1, 32, 32, generator=g)
    noisy = clean + 0.1 * torch.randn(n, 1, 32, 32, generator=g)
    return torch.utils.data.DataLoader(list(zip(noisy, clean, strict=True)), batch_size=2)


def trainer(tmp_path, callbacks, **kw):
    kw.setdefault("enable_checkpointing", any(isinstance(c, ModelCheckpoint) for c in callbacks))
    return L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks, **kw,
    )  # fmt: skip


def load(path):
    return torch.load(path, weights_only=True)  # a checkpoint this test wrote


def test_fit_attaches_keeps_frozen_values_and_checkpoints_the_plain_net(tmp_path):
    module = Denoiser(seed=0)
    base = basic_unet(0)
    cb = TGDCallback(0.3, module_attr="net")
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1,
                           filename="{step}")  # fmt: skip
    seen = {}

    class Probe(L.Callback):  # what the training steps ran on
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen["attached"] = tgd.is_attached(pl_module.net)

    trainer(tmp_path, [cb, ckpt, Probe()], max_steps=4).fit(module, loader())
    assert seen["attached"] and not tgd.is_attached(module.net)
    plan = cb.plan
    assert any(lp.n_targeted for lp in plan.layers.values())
    assert tgd.frozen_fingerprint(module.net, plan) == tgd.frozen_fingerprint(base, plan)
    before = base.state_dict()
    changed = [k for k, v in module.net.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "TGD trained nothing"

    for step in (2, 4):  # both written while TGD was attached
        state = load(tmp_path / f"step={step}.ckpt")
        sd = state["state_dict"]
        assert not [k for k in sd if "parametrizations" in k]
        plain = basic_unet(1)
        plain.load_state_dict({k.removeprefix("net."): v for k, v in sd.items()}, strict=True)
        assert tgd.frozen_fingerprint(plain, plan) == tgd.frozen_fingerprint(base, plan)
        Denoiser(seed=1).load_state_dict(sd, strict=True)
        assert state["tgd"]["plan"] == plan.to_json()
        assert state["tgd"]["mode"] == "parameter" and state["tgd"]["module_attr"] == "net"
    last = load(tmp_path / "step=4.ckpt")["state_dict"]
    for key, value in module.state_dict().items():
        assert torch.equal(last[key], value), key
    restored = Denoiser.load_from_checkpoint(tmp_path / "step=4.ckpt", weights_only=True)
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(restored.eval()(x), module.eval()(x))


class Whole(L.LightningModule):
    """TGD on the LightningModule itself (no module_attr)."""

    def __init__(self):
        super().__init__()
        self.net = basic_unet(0)

    def forward(self, x):
        return self.net(x)

    training_step = Denoiser.training_step
    configure_optimizers = Denoiser.configure_optimizers


def test_whole_module_target(tmp_path):
    module = Whole()
    cb = TGDCallback(plan=tgd.plan(Whole(), 0.3), mode="activation")
    trainer(tmp_path, [cb, ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2)],
            max_steps=2).fit(module, loader())  # fmt: skip
    sd = load(next(tmp_path.glob("*.ckpt")))["state_dict"]
    Whole().load_state_dict(sd, strict=True)
    assert tgd.frozen_fingerprint(module, cb.plan) == tgd.frozen_fingerprint(Whole(), cb.plan)


def test_resume_continues_exactly_with_the_checkpoints_plan(tmp_path):
    straight = Denoiser(seed=0)
    cb0 = TGDCallback(0.3, module_attr="net")
    trainer(tmp_path / "a", [cb0], max_epochs=2).fit(straight, loader())

    first = Denoiser(seed=0)
    cb1 = TGDCallback(0.3, module_attr="net")
    epoch_end = ModelCheckpoint(dirpath=tmp_path / "b", save_on_train_epoch_end=True)
    trainer(tmp_path / "b", [cb1, epoch_end], max_epochs=1).fit(first, loader())
    path = next((tmp_path / "b").glob("*.ckpt"))

    # another initialisation: the weights, the plan and the optimizer come from the checkpoint
    resumed = Denoiser(seed=1)
    cb2 = TGDCallback(0.3, module_attr="net")
    t = trainer(tmp_path / "c", [cb2], max_epochs=2)
    t.fit(resumed, loader(), ckpt_path=path)
    assert t.global_step == 8
    assert any(not torch.equal(first.state_dict()[k], v) for k, v in straight.state_dict().items())
    assert cb2.plan.to_dict() == cb1.plan.to_dict() == cb0.plan.to_dict()
    assert tgd.frozen_fingerprint(resumed.net, cb2.plan) == tgd.frozen_fingerprint(
        basic_unet(0), cb2.plan)
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_resume_refuses_checkpoints_without_a_record_or_with_moved_frozen_values(tmp_path):
    plain = ModelCheckpoint(dirpath=tmp_path / "plain", save_on_train_epoch_end=True)
    trainer(tmp_path, [plain], max_epochs=1).fit(Denoiser(), loader())
    with pytest.raises(ValueError, match="has no 'tgd' entry"):
        trainer(tmp_path, [TGDCallback(module_attr="net")], max_epochs=2).fit(
            Denoiser(), loader(), ckpt_path=next((tmp_path / "plain").glob("*.ckpt")))

    tgd_ckpt = ModelCheckpoint(dirpath=tmp_path / "tgd", save_on_train_epoch_end=True)
    cb = TGDCallback(module_attr="net")
    trainer(tmp_path, [cb, tgd_ckpt], max_epochs=1).fit(Denoiser(), loader())
    state = load(next((tmp_path / "tgd").glob("*.ckpt")))
    frozen = next(n for n, lp in cb.plan.layers.items() if not lp.mask.all())
    row = int((~cb.plan.layers[frozen].mask).nonzero()[0])
    state["state_dict"][f"net.{frozen}.weight"][row] += 1.0
    torch.save(state, tmp_path / "moved.ckpt")
    with pytest.raises(ValueError, match="frozen values differ"):
        trainer(tmp_path, [TGDCallback(module_attr="net")], max_epochs=2).fit(
            Denoiser(), loader(), ckpt_path=tmp_path / "moved.ckpt")


def test_weights_only_checkpoints_warn_and_convert_with_plain_state_dict(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_weights_only=True)
    with pytest.warns(UserWarning, match="save_weights_only=True"):
        trainer(tmp_path, [TGDCallback(module_attr="net"), ckpt], max_steps=2).fit(
            Denoiser(), loader())
    sd = load(next(tmp_path.glob("*.ckpt")))["state_dict"]
    assert [k for k in sd if "parametrizations" in k]  # the documented limitation
    Denoiser(seed=1).load_state_dict(plain_state_dict(sd), strict=True)


def test_refuses_strategies_that_restore_after_setup(tmp_path):
    class LateRestore(SingleDeviceStrategy):
        @property
        def restore_checkpoint_after_setup(self):
            return True

    t = L.Trainer(strategy=LateRestore(device="cpu"), max_steps=1, logger=False,
                  enable_progress_bar=False, enable_checkpointing=False,
                  default_root_dir=tmp_path,
                  callbacks=[TGDCallback(module_attr="net")])  # fmt: skip
    with pytest.raises(RuntimeError, match="restores checkpoints after setup"):
        t.fit(Denoiser(), loader())
    with pytest.raises(ValueError, match="either threshold or plan"):
        TGDCallback(0.3, plan=tgd.plan(basic_unet(0), 0.3))


def test_missing_lightning_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "tgd.integrations.lightning", raising=False)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    with pytest.raises(ImportError, match=r"pip install 'tgd\[lightning\]'"):
        importlib.import_module("tgd.integrations.lightning")
