"""Dry-run estimates: peak GPU memory of a run's training (and the --accumulate that fits a given
memory), and what its first run downloads, from architectures built on the meta device."""
from __future__ import annotations

import re

import pytest

from harness.config import RunConfig
from harness.model.backbones import skeleton, training_memory_gb, weights_download_gb
from harness.engine.preflight import download_line, memory_line


def paper(backbone, **kw):
    return RunConfig(method="ckpe", dataset="giraffes", backbone=backbone, image_size=224, batch_size=128,
                     optimizer="sgd", pretrained=True, keypoints="gpt4@dift", **kw)


def gb(line):
    return float(re.search(r"~(\d+(?:\.\d+)?) GB", line).group(1))


def test_memory_estimates_scale_with_the_backbone_and_name_the_accumulate_that_fits():
    base, large, huge = (memory_line(paper(b), gpu_gb=24) for b in ("base", "large", "huge"))
    assert 8 <= gb(base) <= 14 and 24 <= gb(large) <= 32 and 50 <= gb(huge) <= 70  # the estimates
    assert base.endswith("on 24 GB: --accumulate 1") and large.endswith("on 24 GB: --accumulate 2")
    assert huge.endswith("on 24 GB: --accumulate 4") and "631M parameters" in huge
    halved = memory_line(paper("large", accumulate=2))
    assert "(--accumulate 2)" in halved and gb(halved) < gb(large)
    model = skeleton("large", 224)
    assert training_memory_gb(model, 64, "adamw") > training_memory_gb(model, 64, "sgd")  # two moments


def test_memory_of_frozen_baselines_and_non_vits():
    frozen = memory_line(RunConfig(method="wildlife-baseline", backbone="megadescriptor", image_size=384))
    assert frozen.startswith("memory: no training; ~0.7 GB")
    cnn = memory_line(RunConfig(method="vit", backbone="resnet18", image_size=64))
    assert "no estimate for ResNet" in cnn


def test_downloads_name_the_backbone_and_the_featurizer():
    line = download_line(paper("large"))
    assert "backbone large ~1.2 GB" in line and "featurizer dift ~5.2 GB" in line
    assert download_line(RunConfig(method="ckpe", backbone="nano", keypoints="ground-truth")) == "downloads: none"
    local = download_line(RunConfig(method="ckpe", backbone="nano", keypoints="expert@sd:model=tiny-random-sd"))
    assert local == "downloads: none"
    assert weights_download_gb("large", 224, False, None) == 0.0  # random init
    assert weights_download_gb("large", 224, True, "local.safetensors") == 0.0


@pytest.mark.parametrize("recipe", ["expert@dinov2", "expert@sift"])
def test_other_featurizers(recipe):
    line = download_line(RunConfig(method="ckpe", backbone="nano", keypoints=recipe))
    assert ("featurizer dinov2 ~0.3 GB" in line) if "dinov2" in recipe else line == "downloads: none"


def test_preflight_finds_missing_weights_offline_hub_gaps_and_full_disks(tmp_path, monkeypatch):
    from collections import namedtuple

    from harness.model.backbones import weights_problem
    from harness.engine import preflight

    assert weights_problem("nano", True, None) is None  # a test bed loads nothing
    assert "no such file" in weights_problem("large", False, str(tmp_path / "missing.safetensors"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert weights_problem("large", True, None) is None  # online: the download decides
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    problem = weights_problem("large", True, None)
    assert "HF_HUB_OFFLINE is set" in problem and "timm/vit_large_patch16_224.augreg_in21k" in problem
    snapshot = tmp_path / "hub" / "models--timm--vit_large_patch16_224.augreg_in21k" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    assert weights_problem("large", True, None) is None
    cfg = paper("large")
    assert 2.3 < preflight.checkpoint_gb(cfg) < 2.5  # 303M parameters x (4 + 4 SGD momentum) bytes: the 2.4 GB
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: Usage(100e9, 99e9, 1e9))
    problems = preflight.preflight_problems(cfg, tmp_path / "results")
    assert any("its checkpoint need ~2.4 GB" in p and "1.0 GB free" in p for p in problems)
    assert any("its downloads need ~6.4 GB" in p for p in problems)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: Usage(100e9, 0, 100e9))
    assert preflight.preflight_problems(cfg, tmp_path / "results") == []
