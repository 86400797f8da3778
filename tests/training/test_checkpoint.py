"""Checkpoint round trip, corruption detection, and kill-and-resume equality."""

import json
import subprocess
import sys

import pytest
import torch

from tgd.models import DnCNN
from tgd.training import load_checkpoint, load_model, prepare, save_model, train
from tgd.training.checkpoint import (
    capture_rng,
    flatten_optimizer,
    restore_rng,
    unflatten_optimizer,
)
from tgd.training.loop import RESUME_DIR

from ..conftest import tiny_cfg
from ..interrupt import sigkill_after_first_checkpoint


def test_round_trip_keeps_every_buffer(tmp_path, pretrained):
    path = save_model(tmp_path / "m", pretrained, {"method": "scratch", "metrics": {"a": 1.5}})
    model, ck = load_model(path)
    a, b = pretrained.state_dict(), model.state_dict()
    assert set(a) == set(b) and any("running_var" in k for k in a)
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert ck.meta["metrics"] == {"a": 1.5} and ck.meta["model"]["width"] == 8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(FileExistsError):
        save_model(tmp_path / "m", pretrained, {})


def test_plain_safetensors_loads_without_tgd(tmp_path, pretrained):
    from safetensors.torch import load_file

    save_model(tmp_path / "m", pretrained, {})
    m = DnCNN(width=8, depth=4)
    m.load_state_dict(load_file(tmp_path / "m.safetensors"))


def test_corrupt_and_mismatched_files_are_clear_errors(tmp_path, pretrained):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_model(tmp_path / "missing")
    js = save_model(tmp_path / "m", pretrained, {})
    st = tmp_path / "m.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_model(js)
    st.write_bytes(data)
    js.write_text(js.read_text()[:-20])
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(js)
    # a checkpoint whose JSON describes another network
    js2 = save_model(tmp_path / "w", pretrained, {})
    meta = json.loads(js2.read_text())
    meta["model"]["width"] = 16
    js2.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match the model"):
        load_model(js2)


def test_optimizer_and_rng_flattening_round_trip(pretrained, v1_set):
    cfg = tiny_cfg(iterations=2)
    setup = prepare("scratch", pretrained, cfg)
    opt = torch.optim.Adam(setup.params, lr=1e-3)
    train(setup, cfg, v1_set)  # builds its own optimizer; step ours once for state
    loss = pretrained(torch.randn(2, 3, 16, 16)).square().mean()
    loss.backward()
    opt.step()
    t, s = flatten_optimizer(opt.state_dict())
    s = json.loads(json.dumps(s))
    back = unflatten_optimizer(t, s)
    ref = opt.state_dict()
    assert back["param_groups"] == ref["param_groups"]
    for pid, st in ref["state"].items():
        for k, v in st.items():
            assert torch.equal(back["state"][pid][k], v)
    rt, rs = capture_rng()
    a = torch.rand(3)
    restore_rng(rt, json.loads(json.dumps(rs)))
    assert torch.equal(torch.rand(3), a)


@pytest.mark.parametrize("method,schedule", [("scratch", "constant"), ("tgd", "constant"),
                                             ("ewc", "constant"), ("scratch", "cosine"),
                                             ("tgd", "cosine")])
def test_kill_and_resume_is_bit_identical(tmp_path, pretrained_state, v2_set, method, schedule):
    from tgd.training import estimate_fisher

    def run(**kw):
        torch.manual_seed(0)
        m = DnCNN(width=8, depth=4)
        m.load_state_dict(pretrained_state)
        cfg = tiny_cfg(method, iterations=8, weight_decay=1e-3, lr_schedule=schedule)
        fisher = estimate_fisher(m, v2_set, 4) if method == "ewc" else None
        setup = prepare(method, m, cfg, fisher=fisher)
        res = train(setup, cfg, v2_set, **kw)
        return setup, res

    ref, _ = run()
    run(work_dir=tmp_path, checkpoint_every=3, stop_after=5)  # "killed" after iteration 5
    assert sorted(p.name for p in (tmp_path / RESUME_DIR).glob("*.json")) == [
        "step-00000003.json"]
    resumed, res = run(work_dir=tmp_path, checkpoint_every=3, resume=True)
    assert res.metrics["iterations_this_run"] == 5 and res.iterations == 8
    a, b = ref.effective_state_dict(), resumed.effective_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_skips_an_interrupted_save(tmp_path, pretrained_state, v2_set):
    def run(**kw):
        m = DnCNN(width=8, depth=4)
        m.load_state_dict(pretrained_state)
        cfg = tiny_cfg(iterations=6)
        setup = prepare("scratch", m, cfg)
        return setup, train(setup, cfg, v2_set, **kw)

    ref, _ = run()
    run(work_dir=tmp_path, checkpoint_every=2, stop_after=5)
    newest = tmp_path / RESUME_DIR / "step-00000004.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # as if the machine died while writing it
    with pytest.warns(UserWarning, match="skipping unusable"):
        resumed, res = run(work_dir=tmp_path, checkpoint_every=2, resume=True)
    assert res.metrics["iterations_this_run"] == 4
    a, b = ref.effective_state_dict(), resumed.effective_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_settings(tmp_path, pretrained, v2_set):
    cfg = tiny_cfg(iterations=4)
    train(prepare("scratch", pretrained, cfg), cfg, v2_set, work_dir=tmp_path,
          checkpoint_every=2, stop_after=3)
    other = tiny_cfg(iterations=4, lr=5e-3)
    with pytest.raises(ValueError, match="lr"):
        train(prepare("scratch", pretrained, other), other, v2_set, work_dir=tmp_path,
              resume=True)


def test_real_sigkill_then_resume_matches(tmp_path, sim_manifests):
    """Kill ``tgd train`` with SIGKILL mid-run; ``--resume`` ends with the same weights."""
    exe = [sys.executable, "-m", "tgd.cli", "train", "--data", sim_manifests([0])["v1"],
           "--width", "8", "--depth", "3",
           "--batch-size", "4", "--patch-size", "16", "--iterations", "400",
           "--fisher-samples", "0", "--no-progress", "--threads", "1"]
    ref = subprocess.run(exe + ["--out", str(tmp_path / "ref")], capture_output=True,
                         text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    sigkill_after_first_checkpoint([*exe[3:], "--out", str(out), "--checkpoint-every", "25"],
                                   out, timeout=120)
    res = subprocess.run(exe + ["--out", str(out), "--checkpoint-every", "25", "--resume"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    a, b = load_checkpoint(tmp_path / "ref"), load_checkpoint(out)
    assert a.meta["metrics"]["iterations"] == b.meta["metrics"]["iterations"] == 400
    assert b.meta["metrics"]["iterations_this_run"] < 400
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert not (out / RESUME_DIR).exists()


def test_cosine_schedule_is_a_function_of_the_iteration(pretrained_state, v2_set):
    from tgd.training.loop import lr_at

    cfg = tiny_cfg("scratch", lr=1e-2, lr_schedule="cosine")
    assert lr_at(cfg, 0, 10) == pytest.approx(1e-2)
    assert lr_at(cfg, 5, 10) == pytest.approx(5e-3)
    assert lr_at(cfg, 10, 10) == pytest.approx(0.0, abs=1e-12)
    assert [lr_at(cfg, i, 10) for i in range(10)] == sorted(
        (lr_at(cfg, i, 10) for i in range(10)), reverse=True)
    assert lr_at(tiny_cfg("scratch", lr=1e-2), 7, 10) == 1e-2

    def final(schedule):
        m = DnCNN(width=8, depth=4)
        m.load_state_dict(pretrained_state)
        c = tiny_cfg("scratch", iterations=6, lr=1e-2, lr_schedule=schedule)
        setup = prepare("scratch", m, c)
        train(setup, c, v2_set)
        return setup.finish().state_dict()

    a, b = final("constant"), final("cosine")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="lr_schedule"):
        tiny_cfg("scratch", lr_schedule="step").validate()


def test_clear_resume_removes_leftovers_of_a_write_killed_midway(tmp_path):
    from tgd.training.driver import clear_resume
    from tgd.training.loop import RESUME_DIR

    d = tmp_path / RESUME_DIR
    d.mkdir()
    for name in ("step-4.json", "step-4.safetensors", ".tmp-k2j3-step-8.safetensors"):
        (d / name).write_bytes(b"x")
    (tmp_path / "model.json").write_text("{}")  # the run's own output stays
    clear_resume(tmp_path)
    assert not d.exists()
    assert (tmp_path / "model.json").exists()
