"""TGDHandler in a real MONAI SupervisedTrainer (CPU, a tiny MONAI UNet): TGD is attached while
it trains, CheckpointSaver files hold the plain network, frozen values stay, and a run resumed
with CheckpointLoader continues exactly like an uninterrupted one."""

import importlib
import sys

import pytest
import torch

import tgd

pytest.importorskip("ignite")
engines = pytest.importorskip("monai.engines")
handlers = pytest.importorskip("monai.handlers")
nets = pytest.importorskip("monai.networks.nets")

from ignite.engine import Events  # noqa: E402

from tgd.integrations.ignite import PlainStateView, TGDHandler  # noqa: E402


def unet(seed):
    torch.manual_seed(seed)
    return nets.UNet(2, 1, 1, channels=(4, 8, 16), strides=(2, 2), num_res_units=1,
                     norm="batch")  # fmt: skip


def loader(n=8):
    g = torch.Generator().manual_seed(5)
    clean = torch.rand(n, 1, 16, 16, generator=g)
    noisy = clean + 0.1 * torch.randn(n, 1, 16, 16, generator=g)
    data = [{"image": x, "label": y} for x, y in zip(noisy, clean, strict=True)]
    return torch.utils.data.DataLoader(data, batch_size=2)


def supervised(net, max_epochs, train_handlers=()):
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    trainer = engines.SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=max_epochs, train_data_loader=loader(),
        network=net, optimizer=opt, loss_function=torch.nn.MSELoss(),
        train_handlers=list(train_handlers),
    )  # fmt: skip
    return trainer, opt


def load(path):
    return torch.load(path, weights_only=True)  # a file this test wrote


def test_supervised_trainer_checkpoints_the_plain_network(tmp_path):
    net, base = unet(0), unet(0)
    handler = TGDHandler(0.5, network=net)
    saver = handlers.CheckpointSaver(
        save_dir=str(tmp_path), save_dict={"net": handler.plain_module(), "tgd": handler},
        save_interval=1, epoch_level=True, save_final=True, final_filename="final.pt",
    )  # fmt: skip
    trainer, _ = supervised(net, 2, [handler, saver])
    seen = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(tgd.is_attached(net)))
    trainer.run()

    assert seen == [True] * 8 and not tgd.is_attached(net)
    plan = handler.plan
    assert any(lp.n_targeted for lp in plan.layers.values())
    assert tgd.frozen_fingerprint(net, plan) == tgd.frozen_fingerprint(base, plan)
    before = base.state_dict()
    assert [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]

    epoch_files = sorted(tmp_path.glob("checkpoint_*.pt"))
    assert epoch_files, sorted(p.name for p in tmp_path.iterdir())
    for path in [*epoch_files, tmp_path / "final.pt"]:  # the epoch files: written attached
        saved = load(path)
        assert not [k for k in saved["net"] if "parametrizations" in k]
        plain = unet(1)
        plain.load_state_dict(saved["net"], strict=True)
        assert tgd.frozen_fingerprint(plain, plan) == tgd.frozen_fingerprint(base, plan)
        assert saved["tgd"]["plan"] == plan.to_json() and saved["tgd"]["mode"] == "parameter"
    plain = unet(1)
    plain.load_state_dict(load(tmp_path / "final.pt")["net"], strict=True)
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(plain.eval()(x), net.eval()(x))


def test_resume_with_checkpoint_loader_continues_exactly(tmp_path):
    straight = unet(0)
    supervised(straight, 2, [TGDHandler(0.5)])[0].run()

    net = unet(0)
    handler = TGDHandler(0.5)
    trainer, opt = supervised(net, 1, [handler])
    handlers.CheckpointSaver(
        save_dir=str(tmp_path), save_dict={"net": PlainStateView(net), "opt": opt,
                                           "trainer": trainer, "tgd": handler},
        save_final=True, final_filename="epoch1.pt",
    ).attach(trainer)  # fmt: skip
    trainer.run()

    resumed = unet(1)  # other weights: the checkpoint brings the network, the plan, the state
    handler2 = TGDHandler(0.5)
    trainer2, opt2 = supervised(resumed, 2)
    handlers.CheckpointLoader(
        load_path=str(tmp_path / "epoch1.pt"),
        load_dict={"net": PlainStateView(resumed), "opt": opt2, "trainer": trainer2,
                   "tgd": handler2},
    ).attach(trainer2)  # fmt: skip
    handler2.attach(trainer2)  # after the loader: both act at STARTED, in this order
    trainer2.run()
    assert trainer2.state.iteration == 8
    assert handler2.plan.to_dict() == handler.plan.to_dict()
    after_one = load(tmp_path / "epoch1.pt")["net"]
    assert any(not torch.equal(after_one[k], v) for k, v in straight.state_dict().items())
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_loading_after_tgd_attached_is_refused_and_detaches(tmp_path):
    net = unet(0)
    torch.save({"net": unet(0).state_dict()}, tmp_path / "plain.pt")
    handler = TGDHandler(0.5)
    trainer, _ = supervised(net, 1, [handler])  # handler first: wrong order for resuming
    handlers.CheckpointLoader(load_path=str(tmp_path / "plain.pt"),
                              load_dict={"net": PlainStateView(net)}).attach(trainer)
    with pytest.raises(RuntimeError, match="register CheckpointLoader before TGDHandler"):
        trainer.run()
    assert not tgd.is_attached(net)  # detached on the exception


def test_plain_state_view_matches_effective_state_dict():
    net = unet(0)
    view = PlainStateView(net)
    with tgd.attach(net, tgd.plan(net, 0.5)):
        assert [k for k in net.state_dict() if "parametrizations" in k]
        want = tgd.effective_state_dict(net)
        got = view.state_dict()
        assert list(got) == list(want) == list(unet(0).state_dict())
    with pytest.raises(ValueError, match="network"):
        TGDHandler().plain_module()


def test_missing_ignite_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "tgd.integrations.ignite", raising=False)
    monkeypatch.setitem(sys.modules, "ignite.engine", None)
    with pytest.raises(ImportError, match=r"pip install 'tgd\[monai\]'"):
        importlib.import_module("tgd.integrations.ignite")
