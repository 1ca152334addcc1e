"""The checkpoint policy: written when due (overhead bound, optional minimum interval) and after the
last epoch; only what resuming needs (no frozen parameters); resumes exactly."""
from __future__ import annotations

import pytest
import torch

from harness.engine.checkpoint import CHECKPOINT_ENV, Checkpoint, SavePolicy, TrainState, checkpoint_minutes
from harness.engine.settings import TrainSettings
from harness.engine.train import Normalizer, Runtime, TrainData, reid_loss, train
from harness.model.backbones import create_backbone
from harness.model.keypoint_vit import KeypointViT


def test_policy_bounds_the_overhead_and_honours_the_interval():
    p = SavePolicy(every_s=0.0, max_share=0.05, last_end=100.0, last_cost=1.0)
    assert not p.due(119.0, final=False)  # 19 s of training for a 1 s write: over 5%
    assert p.due(120.0, final=False)
    assert SavePolicy(last_end=100.0, last_cost=0.08).due(100.2, final=False)  # a small model's write: always
    assert p.due(100.5, final=True)  # the last epoch is always written
    p = SavePolicy(every_s=600.0, last_end=0.0, last_cost=0.0)
    assert not p.due(599.0, final=False) and p.due(600.0, final=False)


def test_interval_comes_from_the_environment_and_bad_values_are_one_line(monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    assert checkpoint_minutes() == 0.0
    monkeypatch.setenv(CHECKPOINT_ENV, "2.5")
    assert Checkpoint("x.pt").policy.every_s == 150.0
    for bad in ("soon", "-1"):
        monkeypatch.setenv(CHECKPOINT_ENV, bad)
        with pytest.raises(ValueError, match=CHECKPOINT_ENV):
            checkpoint_minutes()


class Killed(Exception):
    pass


class KillAfter:
    """A hook standing in for kill -9 after ``epoch`` epochs (after the checkpoint hook ran)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_start(self, state):
        pass

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            raise Killed


def fit(tmp_path, policy, freeze=True, kill_after=None):
    torch.manual_seed(0)
    model = KeypointViT(create_backbone("nano", 32), "none", 0)
    if freeze:
        model.backbone.patch_embed.requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    data = TrainData(torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(32) % 4, None)
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-3, weight_decay=0.05, warmup_epochs=0.0, hflip=0.0, seed=0)
    ckpt = Checkpoint(tmp_path / "run_s0.pt", policy=policy)
    hooks = [ckpt] + ([KillAfter(kill_after)] if kill_after else [])
    history = train(model, reid_loss(model.embed_dim, 4, 0.5, 16.0, 0.2), data, Normalizer((0.5,) * 3, (0.5,) * 3),
                    settings, Runtime(torch.device("cpu"), hooks=tuple(hooks), progress=False))
    return history, ckpt


def test_rare_checkpoints_write_the_last_epoch_only(tmp_path):
    _, ckpt = fit(tmp_path, SavePolicy(every_s=3600.0))  # an hour apart: only the end is written
    assert ckpt.writes == 1 and ckpt.seconds > 0
    assert torch.load(tmp_path / "run_s0.pt", weights_only=True)["epoch"] == 3


def test_checkpoints_hold_no_frozen_parameters_and_resume_exactly(tmp_path):
    every_epoch = SavePolicy(max_share=1e9)  # these epochs take milliseconds: no overhead bound at all
    ref, _ = fit(tmp_path / "ref", every_epoch)
    with pytest.raises(Killed):
        fit(tmp_path, every_epoch, kill_after=2)
    saved = torch.load(tmp_path / "run_s0.pt", weights_only=True)
    assert saved["epoch"] == 2
    assert not [k for k in saved["objective"] if "patch_embed" in k]  # frozen: rebuilt from the seed
    assert any(k.startswith("model.backbone.blocks") for k in saved["objective"])
    resumed, _ = fit(tmp_path, SavePolicy())
    assert [h["loss"] for h in resumed] == [h["loss"] for h in ref]


def test_a_checkpoint_of_another_model_is_ignored_with_a_warning(tmp_path):
    fit(tmp_path, SavePolicy(every_s=3600.0), freeze=False)
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    state = TrainState(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), torch.Generator(), [])
    with pytest.warns(UserWarning, match="another model's parameters"):
        Checkpoint(tmp_path / "run_s0.pt").on_start(state)
    assert state.epoch == 0


def test_a_checkpoint_that_still_holds_frozen_parameters_resumes(tmp_path):
    every_epoch = SavePolicy(max_share=1e9)
    with pytest.raises(Killed):
        fit(tmp_path, every_epoch, kill_after=1)
    saved = torch.load(tmp_path / "run_s0.pt", weights_only=True)
    torch.manual_seed(3)
    saved["objective"]["model.backbone.patch_embed.proj.weight"] = torch.randn(32, 3, 8, 8)  # as older ones did
    torch.save(saved, tmp_path / "run_s0.pt")
    resumed, _ = fit(tmp_path, every_epoch)
    assert len(resumed) == 3 and resumed[0] == saved["history"][0]
