"""Patch-14 backbones (DINOv2, CLIP) at the wildlife baseline's 384 px: one line naming the size to
use, before anything is built or downloaded; at that size random-init timm models build and their
patch divides the input."""
from __future__ import annotations

import pytest

from harness.core.errors import BackboneError
from harness.model.backbones import create_backbone, native_size, size_problem

PATCH14 = {"vit_large_patch14_dinov2.lvd142m": 518, "vit_large_patch14_clip_224.openai": 224}


def test_native_sizes_come_from_timm_offline():
    for name, size in PATCH14.items():
        assert native_size(name) == size and size % 14 == 0
    assert native_size("megadescriptor") == 384 and native_size("nano") is None


@pytest.mark.parametrize("name", list(PATCH14))
def test_384_px_is_one_line_naming_the_native_size_before_any_download(name, monkeypatch):
    import timm

    def no_build(*args, **kwargs):
        raise AssertionError("built (or downloaded) before the size was checked")

    monkeypatch.setattr(timm, "create_model", no_build)
    with pytest.raises(BackboneError) as info:
        create_backbone(name, 384, pretrained=True, require_patch_grid=False)
    assert str(info.value) == (f"image size 384 is not divisible by the patch size 14 of {name!r}: pass "
                               f"--image-size {PATCH14[name]} (its native size)")


@pytest.mark.parametrize("name", list(PATCH14))
def test_random_init_models_build_at_their_native_size_with_a_whole_patch_grid(name):
    model = create_backbone(name, PATCH14[name], pretrained=False, require_patch_grid=False)
    grid, patch = model.patch_embed.grid_size, model.patch_embed.patch_size
    assert grid[0] * patch[0] == PATCH14[name] == grid[1] * patch[1]


def test_a_test_bed_gets_the_nearest_multiple():
    assert size_problem("nano", 36, 8) == ("image size 36 is not divisible by the patch size 8 of 'nano': pass "
                                           "--image-size 32 (the nearest multiple of 8)")
    assert size_problem("nano", 32, 8) is None
