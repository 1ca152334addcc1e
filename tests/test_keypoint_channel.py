"""The keypoint channel's learning is a recorded option: how the embedding starts (--kpe-init), how
fast it learns (--kpe-lr-scale), its share of the token norm in every keypoint record's history,
and records made before the options existed keep their names and say which channel they used."""
import json

import pytest
import torch

from harness.config import LEGACY, RunConfig
from harness.engine.settings import TrainSettings
from harness.engine.train import make_optimizer, parameter_groups, warmup_cosine
from harness.method import METHODS
from harness.model.backbones import create_backbone
from harness.model.keypoint_vit import NORMAL_STD, KeypointViT


def _model(init: str, encoding: str = "categorical") -> KeypointViT:
    torch.manual_seed(0)
    return KeypointViT(create_backbone("nano", 32), encoding, 3, init=init)


def test_each_init_starts_where_it_says():
    assert torch.count_nonzero(_model("zero").encoding.weight) == 0
    normal = _model("normal").encoding.weight.detach()
    assert normal.shape == (3, 32)
    assert abs(float(normal.std()) - NORMAL_STD) < 0.006
    token = _model("token")
    images = torch.randn(8, 3, 32, 32)
    token.match_token_scale(images)
    target = float(token.backbone.patch_embed(images).detach().norm(dim=-1).mean())
    assert torch.allclose(token.encoding.weight.norm(dim=1), torch.full((3,), target), rtol=1e-4)
    before = _model("normal").encoding.weight.detach().clone()
    still = _model("normal")
    still.match_token_scale(images)  # only the token init is rescaled
    assert torch.equal(still.encoding.weight.detach(), before)
    with pytest.raises(ValueError, match="unknown keypoint embedding init 'big'"):
        _model("big")


def test_channel_share_is_the_embedding_over_the_tokens_it_is_added_to():
    model = _model("token", "binary").train()
    images = torch.randn(4, 3, 32, 32)
    model.match_token_scale(images)
    assert model.channel_share() == {}  # no training forward yet
    mask = torch.zeros(4, 16, 3)
    mask[:, 5, 1] = 1
    model(images, mask)
    share = model.channel_share()
    tokens = float(model.backbone.patch_embed(images).detach().norm(dim=-1).mean())
    assert share["token_norm"] == pytest.approx(tokens, rel=1e-4)
    assert share["kpe_share"] == pytest.approx(1.0, rel=1e-3)  # token init: the tokens' own scale
    assert model.channel_share() == {}  # reset after reading
    model.eval()
    model(images, mask)  # evaluation forwards are not training statistics
    assert model.channel_share() == {}


def _settings(**kw) -> TrainSettings:
    return TrainSettings(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.05, warmup_epochs=0, hflip=0, seed=0, **kw)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_embedding_learns_at_its_own_rate_and_the_schedule_scales_it_alike(optimizer):
    model = _model("zero")
    plain = parameter_groups(model, 0.05)
    assert len(plain) == 2  # scale 1: the optimizer of every earlier run, unchanged
    opt = make_optimizer(model, _settings(optimizer=optimizer, kpe_lr_scale=30.0), torch.device("cpu"))
    (channel,) = [g for g in opt.param_groups if any(p is model.encoding.weight for p in g["params"])]
    assert len(channel["params"]) == 1 and channel["weight_decay"] == 0.0
    assert channel["lr"] == pytest.approx(0.03)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(10, 0))
    for _ in range(5):
        opt.step()
        sched.step()
    rates = sched.get_last_lr()
    assert rates[2] / rates[0] == pytest.approx(30.0)


def test_the_options_are_recorded_checked_and_hashed_only_when_they_differ_from_earlier_runs():
    ckpe, vit = METHODS.create("ckpe"), METHODS.create("vit")
    assert LEGACY == {"kpe_init": "zero", "kpe_lr_scale": 1.0}
    stored = ckpe.applied(RunConfig()).to_dict()
    old = {k: v for k, v in stored.items() if k not in LEGACY}  # a record written before the options
    read = RunConfig.from_dict(old)
    assert (read.kpe_init, read.kpe_lr_scale) == ("zero", 1.0)  # it says which channel it used
    assert read.experiment_hash() == ckpe.applied(RunConfig(**LEGACY)).experiment_hash()
    assert read.experiment_hash() != ckpe.applied(RunConfig()).experiment_hash()  # the default changed since
    assert ckpe.applied(RunConfig(kpe_init="token")).experiment_hash() != read.experiment_hash()
    assert ckpe.applied(RunConfig(kpe_init="zero", kpe_lr_scale=30.0)).experiment_hash() != read.experiment_hash()
    plain = vit.applied(RunConfig(method="vit", kpe_init="token", kpe_lr_scale=30.0))
    assert (plain.kpe_init, plain.kpe_lr_scale) == (None, None)  # no channel: nothing to record
    assert plain.experiment_hash() == vit.applied(RunConfig(method="vit")).experiment_hash()
    with pytest.raises(ValueError, match="unknown --kpe-init 'big'; valid: zero, normal, token"):
        RunConfig(kpe_init="big")
    with pytest.raises(ValueError, match="--kpe-lr-scale must be a number > 0"):
        RunConfig(kpe_lr_scale=0.0)


def test_a_keypoint_record_holds_the_channel_and_its_share_per_epoch(cli, tiny_args, tmp_path):
    out = cli("run", "--method", "ckpe", "--kpe-init", "token", "--kpe-lr-scale", "3", "--results-dir", tmp_path,
              *tiny_args)
    assert out.exit_code == 0, out.output
    (path,) = tmp_path.glob("ckpe_*.json")
    record = json.loads(path.read_text())
    assert (record["config"]["kpe_init"], record["config"]["kpe_lr_scale"]) == ("token", 3.0)
    assert record["config_origins"]["kpe_init"] == "command line"
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    for epoch in record["history"]:
        assert epoch["kpe_share"] == pytest.approx(epoch["kpe_norm"] / epoch["token_norm"], rel=1e-3)
        assert 0.2 < epoch["kpe_share"] < 5  # started at the tokens' scale
    plain = cli("run", "--method", "vit", "--results-dir", tmp_path, *tiny_args)
    assert plain.exit_code == 0, plain.output
    (vit,) = tmp_path.glob("vit_*.json")
    vit_record = json.loads(vit.read_text())
    assert vit_record["config"]["kpe_init"] is None
    assert all("kpe_share" not in h for h in vit_record["history"])


def test_dry_run_shows_the_channel_and_where_it_came_from(cli, tiny_args):
    out = cli("run", "--method", "ckpe", "--kpe-lr-scale", "10", "--dry-run", *tiny_args)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    given = next(line for line in lines if line.strip().startswith("command line:"))
    assert "kpe_lr_scale=10.0" in given
    assert any(line.strip().startswith("default:") and "kpe_init=" in line for line in lines)
    with_bad = cli("run", "--method", "ckpe", "--kpe-init", "huge", "--dry-run", *tiny_args)
    assert with_bad.exit_code != 0
    assert "unknown --kpe-init 'huge'" in with_bad.output
