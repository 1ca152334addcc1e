import math

import numpy as np
import pytest
import torch

from harness.model.backbones import create_backbone
from harness.model.keypoint_vit import KeypointViT, backbone_geometry
from harness.engine.run import input_points
from harness.keypoints.sets import KeypointSet
from harness.model.tokens import flip_permutation, hflip, token_mask

NAN = math.nan


@pytest.mark.parametrize(
    "arch, size, grid, patch",
    [
        ("vit_tiny_patch16_224", 64, (4, 4), (16, 16)),
        ("vit_small_patch14_dinov2", 56, (4, 4), (14, 14)),
        ("vit_tiny_patch16_224", (32, 64), (2, 4), (16, 16)),  # non-square input
    ],
)
def test_geometry_comes_from_the_backbone(arch, size, grid, patch):
    import timm

    bb = timm.create_model(arch, pretrained=False, num_classes=0, img_size=size, depth=1)
    assert backbone_geometry(bb) == (grid, patch)


def test_keypoint_to_patch_index_patch16_and_patch14():
    pts = torch.tensor([[[0.0, 0.0], [15.99, 15.99], [16.0, 0.0], [63.9, 63.9]]])
    cat = torch.arange(4)
    m16 = token_mask(pts, cat, 4, grid=(4, 4), patch=(16, 16))
    assert m16.shape == (1, 16, 4)
    assert torch.nonzero(m16[0]).tolist() == [[0, 0], [0, 1], [1, 2], [15, 3]]
    m14 = token_mask(pts, cat, 4, grid=(4, 4), patch=(14, 14))
    # 15.99 -> col 1,row 1 (token 5); 16 -> col 1 (token 1); 63.9 is outside the 56x56 input
    assert torch.nonzero(m14[0]).tolist() == [[0, 0], [1, 2], [5, 1]]


def test_non_square_grid_row_major():
    # input 64 wide x 32 high, patch 16: grid 2 rows x 4 cols
    pts = torch.tensor([[[50.0, 20.0], [5.0, 5.0]]])
    m = token_mask(pts, torch.tensor([0, 1]), 2, grid=(2, 4), patch=(16, 16))
    assert torch.nonzero(m[0]).tolist() == [[0, 1], [7, 0]]  # (row 1, col 3) -> 1*4+3 = 7


def test_several_points_in_one_patch_outside_and_nan():
    pts = torch.tensor([[[1.0, 1.0], [2.0, 3.0], [NAN, 4.0], [-1.0, 5.0], [64.5, 5.0], [5.0, NAN]]])
    cat = torch.tensor([0, 0, 1, 1, 1, 1])
    m = token_mask(pts, cat, 2, grid=(4, 4), patch=(16, 16))
    assert m.sum().item() == 1.0  # two category-0 points share patch 0; the rest are ignored
    assert m[0, 0, 0].item() == 1.0
    edge = token_mask(torch.tensor([[[64.0, 5.0]]]), torch.tensor([1]), 2, grid=(4, 4), patch=(16, 16))
    assert edge[0, 3, 1].item() == 1.0 and edge.sum().item() == 1.0  # the far edge is in the last patch
    cat = torch.tensor([0, 1, 1, 1, 1, 1])
    m = token_mask(pts, cat, 2, grid=(4, 4), patch=(16, 16))
    assert m[0, 0].tolist() == [1.0, 1.0]  # two categories in one patch: both set


def test_flip_mirrors_points_and_swaps_left_right():
    cats = ("left_eye", "right_eye", "nose")
    perm = flip_permutation(cats, [("left_eye", "right_eye")])
    assert perm == [1, 0, 2]
    img = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    pts = torch.tensor([[[1.0, 1.0], [3.0, 1.0], [2.0, 3.0]]] * 2)
    flip = torch.tensor([True, False])
    out_img, out_pts = hflip(img, pts, flip, perm)
    assert torch.equal(out_img[0], img[0].flip(-1))
    assert torch.equal(out_img[1], img[1])
    # image 0: the old right eye (x=3) mirrored to x=1 is now the LEFT eye, and vice versa
    assert out_pts[0].tolist() == [[1.0, 1.0], [3.0, 1.0], [2.0, 3.0]]
    assert out_pts[0, 0].tolist() == [4 - 3.0, 1.0]
    assert out_pts[0, 2].tolist() == [4 - 2.0, 3.0]
    assert torch.equal(out_pts[1], pts[1])


def test_flip_changes_which_category_a_patch_carries():
    perm = flip_permutation(("left_eye", "right_eye"), [("left_eye", "right_eye")])
    img = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    pts = torch.tensor([[[4.0, 4.0], [20.0, 4.0]]])  # left eye in patch 0, right eye in patch 1
    _, fp = hflip(img, pts, torch.tensor([True]), perm)
    m = token_mask(fp, torch.arange(2), 2, grid=(2, 2), patch=(16, 16))
    # mirrored: left eye (from x=20) -> x=12 -> patch 0 ; right eye (from x=4) -> x=28 -> patch 1
    assert torch.nonzero(m[0]).tolist() == [[0, 0], [1, 1]]
    assert fp[0].tolist() == [[12.0, 4.0], [28.0, 4.0]]


def test_input_points_scale_non_square_originals():
    kps = KeypointSet(("a",), (), np.array([[[50.0, 30.0]], [[10.0, 10.0]]]))
    sizes = np.array([[100.0, 60.0], [20.0, 40.0]])
    pts = input_points(kps, sizes, 64)
    assert pts.tolist() == [[[32.0, 32.0]], [[32.0, 16.0]]]


@pytest.mark.parametrize("encoding", ["binary", "categorical"])
def test_zero_init_reproduces_the_plain_vit_exactly(encoding):
    torch.manual_seed(0)
    bb = create_backbone("nano", 32)
    bb.eval()
    x = torch.randn(3, 3, 32, 32)
    plain = bb(x)
    model = KeypointViT(bb, encoding, num_categories=3).eval()
    mask = (torch.rand(3, model.num_patches, 3) > 0.5).float()
    assert torch.equal(model(x, mask), plain)
    with torch.no_grad():
        model.encoding.weight.normal_()
    assert not torch.allclose(model(x, mask), plain)
    # [CLS] is untouched: with an all-zero mask the output is the plain one again
    assert torch.equal(model(x, torch.zeros_like(mask)), plain)


def test_ckpe_distinguishes_categories_kpe_does_not():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    a = torch.zeros(1, 16, 2)
    a[0, 5, 0] = 1
    b = torch.zeros(1, 16, 2)
    b[0, 5, 1] = 1
    for enc, differs in (("categorical", True), ("binary", False)):
        model = KeypointViT(create_backbone("nano", 32), enc, 2).eval()
        with torch.no_grad():
            model.encoding.weight.normal_()
        assert (not torch.allclose(model(x, a), model(x, b))) == differs


def test_mask_shape_is_checked():
    model = KeypointViT(create_backbone("nano", 32), "categorical", 2)
    with pytest.raises(ValueError, match="token mask shape"):
        model(torch.randn(1, 3, 32, 32), torch.zeros(1, 15, 2))
    with pytest.raises(ValueError, match="pass a"):
        model(torch.randn(1, 3, 32, 32))


def test_image_size_not_divisible_by_patch_size():
    from harness.core.errors import BackboneError

    with pytest.raises(BackboneError, match="not divisible by the patch size 8"):
        create_backbone("nano", 36)
