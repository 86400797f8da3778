"""TGDSession, the framework-free run under both integrations: which plan, continuing, and the
records a checkpoint carries."""

import copy
import json
import warnings

import pytest
import torch

import tgd
from tgd.integrations.session import RECORD_FORMAT, TGDSession, resolve_module
from tgd.models import DnCNN


def dncnn(seed=0):
    torch.manual_seed(seed)
    return DnCNN(width=16, depth=4)


def step(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x = torch.randn(2, 3, 16, 16)
    opt.zero_grad()
    (model(x) - x[:, 1:2]).square().mean().backward()
    opt.step()


def test_first_start_plans_the_pretrained_net_and_later_starts_continue():
    model = dncnn()
    base = copy.deepcopy(model)
    session = TGDSession()  # threshold 0.3 by default
    session.start(model)
    assert session.plan.to_dict() == tgd.plan(base, 0.3).to_dict()
    assert session.handle.mode == "parameter"
    step(model)
    session.stop()
    assert not tgd.is_attached(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # continuing: no "weights differ" warning
        session.start(model)
    session.stop()
    assert tgd.frozen_fingerprint(model, session.plan) == tgd.frozen_fingerprint(
        base, session.plan)


def test_record_round_trips_and_is_plain_json():
    model = dncnn()
    session = TGDSession(0.3, mode="activation")
    assert session.record() is None
    session.start(model)
    step(model)
    session.stop()
    record = json.loads(json.dumps(session.record()))
    assert record["format"] == RECORD_FORMAT and record["mode"] == "activation"

    other = TGDSession(0.9, mode="activation")  # its own threshold is not used on resume
    other.restore(record)
    other.start(model)
    assert other.plan.to_dict() == session.plan.to_dict()
    other.stop()


def test_continuing_on_other_frozen_values_is_refused():
    model = dncnn()
    session = TGDSession(0.3)
    session.start(model)
    session.stop()
    with pytest.raises(ValueError, match="frozen values differ"):
        session.start(dncnn(seed=1))


@pytest.mark.parametrize("change, mode, message", [
    (lambda r: r.update(format="x"), "parameter", "not a TGD session record"),
    (lambda r: r.pop("plan"), "parameter", "missing plan"),
    (lambda r: None, "activation", "trained with mode 'parameter'"),
])  # fmt: skip
def test_bad_records_are_refused(change, mode, message):
    model = dncnn()
    session = TGDSession(0.3)
    session.start(model)
    session.stop()
    record = session.record()
    change(record)
    with pytest.raises(ValueError, match=message):
        TGDSession(0.3, mode=mode).restore(record)


def test_a_given_plan_must_match_the_restored_one():
    model = dncnn()
    session = TGDSession(0.3)
    session.start(model)
    session.stop()
    other_plan = tgd.plan(dncnn(), 0.6)
    with pytest.raises(ValueError, match="differs from the plan given"):
        TGDSession(plan=other_plan).restore(session.record())
    TGDSession(plan=session.plan.to_json()).restore(session.record())  # JSON text works


def test_arguments_and_empty_plans_are_checked():
    with pytest.raises(ValueError, match="either threshold or plan"):
        TGDSession(0.3, plan=tgd.plan(dncnn(), 0.3))
    with pytest.raises(ValueError, match="mode must be one of"):
        TGDSession(mode="everything")
    model = dncnn()
    with pytest.raises(ValueError, match="retrains nothing"):
        TGDSession(0.0).start(model)
    assert not tgd.is_attached(model)
    session = TGDSession()
    session.start(model)
    with pytest.raises(RuntimeError, match="already attached"):
        TGDSession().start(model)
    session.stop()


def test_resolve_module():
    outer = torch.nn.Module()
    outer.inner = torch.nn.Module()
    outer.inner.net = dncnn()
    assert resolve_module(outer, "inner.net") is outer.inner.net
    assert resolve_module(outer, None) is outer
    with pytest.raises(AttributeError, match="no module attribute 'inner.nope'"):
        resolve_module(outer, "inner.nope")
