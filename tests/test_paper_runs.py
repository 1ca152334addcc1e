"""`--dataset all`, pretrained backbones / --weights, and the wildlife-baseline method, end to end
on the layout fixtures (tests/wildlife_layouts.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.core.errors import BackboneError
from harness.model.backbones import ALIASES, create_backbone, load_weights
from harness.config import RunConfig
from harness.data.dataset import image_sizes
from harness.keypoints.sets import KeypointSet
from harness.keypoints.sources import KEYPOINT_SOURCES
from harness.method import METHODS
from wildlife_layouts import make_all

FAST = ["--backbone", "nano", "--epochs", "1", "--image-size", "32", "--batch-size", "8", "--quiet",
        "--allow-small-test"]  # 5 identities a fixture: one test identity


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return make_all(tmp_path_factory.mktemp("paper-data"))


@pytest.fixture
def stand_in_sources():
    """The cards name the paper's recipes (`expert@dift`, `gpt4@dift`, `ground-truth@dift`), which
    need Stable Diffusion weights and an OpenAI key. These tests are about `--dataset all`, so
    those names stand in with fixed points per category."""
    def fixed(data, cfg):
        sizes = image_sizes(data)
        c = len(data.categories)
        pts = np.stack([sizes * (i + 1) / (c + 1) for i in range(c)], axis=1)
        return KeypointSet(data.categories, data.flip_pairs, pts, {"source": "test stand-in"})

    added = [n for n in ("expert@dift", "gpt4@dift", "ground-truth@dift") if n not in KEYPOINT_SOURCES]
    for name in added:
        KEYPOINT_SOURCES.register(name, "test stand-in", factory=fixed)
    yield
    for name in added:
        KEYPOINT_SOURCES.unregister(name)


def records(folder, twins=False):
    """The runs' own records; ``twins=True``: the twins a dated dataset's run also wrote (the same
    training scored under the other gallery rule)."""
    recs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return [r for r in recs if ("training_shared_with" in r) == twins]


def test_dataset_all_runs_the_four_datasets_with_distinct_splits(cli, fixtures, tmp_path, stand_in_sources):
    out = tmp_path / "results"
    res = cli("run", "--method", "ckpe", "--dataset", "all", "--data-root", fixtures, "--results-dir", out, *FAST)
    assert res.exit_code == 0, res.output
    recs = records(out)
    assert sorted(r["config"]["dataset"] for r in recs) == ["ctai", "giraffes", "ipanda50", "macaquefaces"]
    assert len({r["split"]["fingerprint"] for r in recs}) == 4
    # the datasets with capture dates also get their cross-day twin, from the same training
    twins = records(out, twins=True)
    assert sorted(r["config"]["dataset"] for r in twins) == ["giraffes", "macaquefaces"]
    assert all(t["config"]["exclude"] == "same-day" for t in twins)
    by = {r["config"]["dataset"]: r for r in recs}
    assert by["ctai"]["keypoints"]["categories"] == ["right_eye", "left_eye", "mouth_centre"]  # K = 3
    assert by["ipanda50"]["keypoints"]["categories"] == ["right_eye", "left_eye"]  # its only two
    assert by["ctai"]["keypoints"]["provenance"]["source"] == "test stand-in"
    assert by["ctai"]["dataset"]["unknown_images"] == 2 and by["ctai"]["dataset"]["class"] == "CTai"
    for r in recs:  # paper settings from the cards, CLI overrides on top
        c = r["config"]
        assert c["ce_weight"] == 0.2 and c["arcface_margin"] == 0.5 and c["arcface_scale"] == 64.0
        assert c["optimizer"] == "sgd" and c["augment"] == "randaugment" and c["lr_min"] == 1e-6
        assert c["backbone"] == "nano" and c["epochs"] == 1 and c["pretrained"] is None  # random-init: not applied
        assert r["backbone"]["weights"] == "random-init"  # nano is a random-init test bed
    table = res.output.strip().splitlines()[-3:]
    assert table[0].startswith("| method") and "macaquefaces" in table[0] and "ctai" in table[0]
    assert table[2].startswith("| ckpe   | disjoint")


def test_dataset_all_reports_every_missing_dataset_before_training(cli, tmp_path):
    res = cli("run", "--method", "vit", "--dataset", "all", "--data-root", tmp_path / "empty",
              "--results-dir", tmp_path / "r", *FAST)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "4 of 4 datasets cannot run" in res.output
    for name, cls in (("macaquefaces", "MacaqueFaces"), ("giraffes", "Giraffes"), ("ipanda50", "IPanda50"), ("ctai", "CTai")):
        assert f"dataset {name} ({cls}) not found" in res.output
        assert f"harness data download {name} --data-root" in res.output
    assert not list((tmp_path / "r").glob("*.json"))


def test_data_list_and_download_failure(cli, fixtures, tmp_path, monkeypatch):
    res = cli("data", "list", "--data-root", fixtures)
    assert res.exit_code == 0 and res.output.count("present") == 5  # the four, and the generated synthetic set
    lines = {line.split()[0]: line for line in res.output.splitlines()[1:-1]}
    assert all("present" in lines[name] for name in ("macaquefaces", "giraffes", "ipanda50", "ctai"))
    assert "generated on first use" in lines["synthetic"]
    import wildlife_datasets.datasets as wd

    def offline(cls, root, force=False, **kw):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(wd.MacaqueFaces, "get_data", classmethod(offline))
    monkeypatch.setattr(wd.CTai, "get_data", classmethod(offline))
    res = cli("data", "download", "macaquefaces", "--data-root", tmp_path)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "download of dataset macaquefaces (MacaqueFaces) into" in res.output
    assert "Name or service not known" in res.output
    res = cli("data", "download", "ctai", "--data-root", fixtures)  # present: nothing to fetch
    assert res.exit_code == 0 and "ctai: present in" in res.output


def test_wildlife_baseline_offline_without_weights_fails_clearly(fixtures, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    cmd = [sys.executable, "-m", "harness", "run", "--method", "wildlife-baseline", "--dataset", "macaquefaces",
           "--data-root", str(fixtures), "--results-dir", str(tmp_path / "r"), "--quiet"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    # said by the preflight, before anything is built: the backbone, why, and how to pass a local file
    assert "would stop a run after it started" in out.stderr and "backbone 'megadescriptor'" in out.stderr
    assert "HF_HUB_OFFLINE is set" in out.stderr and "--weights PATH" in out.stderr
    assert not list((tmp_path / "r").glob("*.json"))


def test_wildlife_baseline_with_local_weights_at_another_image_size(cli, fixtures, tmp_path):
    from safetensors.torch import save_file

    ckpt = tmp_path / "nano.safetensors"
    save_file(create_backbone("nano", 32).state_dict(), str(ckpt))
    out = tmp_path / "r"
    res = cli("run", "--method", "wildlife-baseline", "--dataset", "macaquefaces", "--data-root", fixtures,
              "--backbone", "nano", "--weights", ckpt, "--image-size", "64", "--protocol", "closed",
              "--results-dir", out, "--quiet")
    assert res.exit_code == 0, res.output
    (rec,) = records(out)
    assert rec["history"] == [] and rec["protocol"] == "closed" and rec["metrics"]["queries"] > 0
    assert rec["config"]["image_size"] == 64 and rec["config"]["weights"] == str(ckpt)
    assert rec["backbone"]["weights"] == "file" and len(rec["backbone"]["sha256"]) == 64
    assert [c["id"] for c in rec["caveats"]] == ["preprocessing-differs-from-wildlifedatasets"]  # not MegaDescriptor


def test_wildlife_baseline_defaults_and_megadescriptor_caveat():
    method = METHODS.create("wildlife-baseline")
    assert not method.trains and not method.uses_keypoints
    assert method.defaults == {"backbone": "megadescriptor", "pretrained": True, "image_size": 384}
    caveat, preprocessing = method.caveats(RunConfig(method="wildlife-baseline", backbone="megadescriptor"))
    assert "trained on the closed-set training parts" in caveat["text"] and "leakage" in caveat["text"]
    assert "518 px" in preprocessing["text"]
    assert len(method.caveats(RunConfig(backbone="hf-hub:BVRA/MegaDescriptor-L-384", protocol="closed"))) == 2
    assert [c["id"] for c in method.caveats(RunConfig(backbone="vit_large_patch14_dinov2.lvd142m"))] == [
        "preprocessing-differs-from-wildlifedatasets"]
    assert ALIASES["megadescriptor"][0] == "swin_large_patch4_window12_384"


def test_baseline_runs_on_a_non_vit_backbone(cli, fixtures, tmp_path):
    res = cli("run", "--method", "wildlife-baseline", "--dataset", "giraffes", "--data-root", fixtures,
              "--backbone", "resnet18", "--no-pretrained", "--image-size", "32", "--results-dir", tmp_path, "--quiet",
              "--allow-small-test")
    assert res.exit_code == 0, res.output
    (rec,) = records(tmp_path)
    assert rec["backbone"]["architecture"] == "ResNet"
    res = cli("run", "--method", "ckpe", "--dataset", "ctai", "--data-root", fixtures, "--backbone", "resnet18",
              "--no-pretrained", "--image-size", "32", "--results-dir", tmp_path / "k", "--quiet")
    assert res.exit_code != 0 and "keypoint methods need one" in res.output


def test_weights_files_load_strictly_and_safely(tmp_path):
    src = create_backbone("nano", 32)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "n.pth")
    same = create_backbone("nano", 32, weights=str(tmp_path / "n.pth"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(src.eval()(x), same.eval()(x))
    bigger = create_backbone("nano", 48, weights=str(tmp_path / "n.pth"))  # 4x4 -> 6x6 patch grid
    assert bigger.pos_embed.shape == (1, 37, 32) and bigger.eval()(torch.randn(1, 3, 48, 48)).shape == (1, 32)
    torch.save({"model": src.state_dict(), "code": object()}, tmp_path / "pickled.pth")
    with pytest.raises(BackboneError, match="weights-only"):
        create_backbone("nano", 32, weights=str(tmp_path / "pickled.pth"))
    with pytest.raises(BackboneError, match="does not match backbone 'micro'"):
        create_backbone("micro", 32, weights=str(tmp_path / "n.pth"))
    with pytest.raises(BackboneError, match="no such file"):
        load_weights(src, tmp_path / "missing.safetensors")


def test_paper_aliases_name_in21k_checkpoints_timm_knows():
    import timm

    for alias in ("base", "large", "huge"):
        name = ALIASES[alias][0]
        assert "in21k" in name and name in timm.list_pretrained(name)
