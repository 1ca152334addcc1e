"""Propagation: matching correctness on moved copies, fast vs exact, cache and resume, featurizers
built from tiny random-init models saved to and loaded from local folders."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.data.dataset import ReidData
from harness.keypoints.featurizers import FEATURIZERS, Featurizer, create_featurizer
from harness.keypoints.sets import Reference
from harness.keypoints.store import load_keypoint_set, store_dir
from harness.keypoints.propagate import PropagateSettings as Settings
from harness.keypoints.propagate import match, propagate

QUIET = Settings(progress=False)

SIZE, STRIDE = 64, 4


class PoolFeaturizer(Featurizer):
    """Deterministic, translation- and flip-equivariant: soft colour histograms of each feature
    cell and of its 3x3 and 5x5 cell neighbourhoods."""

    name = "pool"
    size, stride, batch_size = SIZE, STRIDE, 4

    def __init__(self):
        self.calls = 0

    def config(self):
        return {"featurizer": "pool"}

    def _features(self, images):
        self.calls += 1
        centres = torch.linspace(0, 1, 8).view(1, 1, -1, 1, 1)
        soft = (1 - (images[:, :, None] - centres).abs() * 7).clamp(min=0).flatten(1, 2)
        cells = F.avg_pool2d(soft, STRIDE)
        wide = F.avg_pool2d(cells, 3, 1, 1, count_include_pad=False)
        wider = F.avg_pool2d(cells, 5, 1, 2, count_include_pad=False)
        return torch.cat([cells, wide, wider], 1)


class Interrupt(Exception):
    """Stands in for a killed process."""


class Flaky(PoolFeaturizer):
    """Dies on its third call: after the reference and one batch."""

    def _features(self, images):
        if self.calls == 2:
            raise Interrupt
        return super()._features(images)


def texture(seed=0):
    g = torch.Generator().manual_seed(seed)
    control = torch.rand(1, 3, 8, 8, generator=g)
    img = F.interpolate(control, size=(SIZE, SIZE), mode="bicubic", align_corners=False).clamp(0, 1)[0]
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def make_data(tmp_path, images, name="moved"):
    rows = []
    for i, arr in enumerate(images):
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
        rows.append({"image_id": i, "identity": f"id{i}", "path": f"{i}.png"})
    return ReidData(name, tmp_path, pd.DataFrame(rows), ("a", "b", "c"), ())


REF_POINTS = np.array([[20.5, 22.5], [40.5, 30.5], [30.5, 44.5]])


def moved_copies():
    base = texture()
    shifts = [(0, 0), (8, 4), (-6, 7), (5, -9)]
    images, expected = [], []
    for dx, dy in shifts:
        images.append(np.roll(base, (dy, dx), axis=(0, 1)))
        expected.append(REF_POINTS + [dx, dy])
    images.append(base[:, ::-1].copy())  # mirrored copy
    expected.append(np.stack([SIZE - REF_POINTS[:, 0], REF_POINTS[:, 1]], 1))
    return images, np.stack(expected)


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_propagation_recovers_translated_and_flipped_keypoints(tmp_path, mode):
    images, expected = moved_copies()
    data = make_data(tmp_path, images, f"moved-{mode}")
    ref = Reference("0", ("a", "b", "c"), (), REF_POINTS, {"source": "test"})
    kps, name, computed = propagate(data, ref, PoolFeaturizer(), Settings(mode=mode, progress=False), reference_name="t")
    assert computed and kps.points.shape == (5, 3, 2)
    err = np.abs(kps.points - expected)
    assert (err <= STRIDE).all(), err.max(axis=(1, 2))  # within one feature cell


def test_exact_mode_agrees_with_fast_mode_within_one_cell():
    images, _ = moved_copies()  # targets that contain the reference points
    imgs = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    feats = PoolFeaturizer()(imgs)
    rng = np.random.default_rng(1)
    pts = torch.from_numpy(rng.uniform(12, SIZE - 12, (8, 2))).float()
    fast = match(feats[0], pts, feats, STRIDE, "fast")
    exact = match(feats[0], pts, feats, STRIDE, "exact")
    within = ((fast - exact).abs() <= STRIDE).all(-1)
    # measured with this toy featurizer: 37 of 40 points agree within one cell; the 3 that do
    # not are points whose bilinearly sampled reference vector (a mix of two cells' histograms)
    # resembles a far cell more than its own (fast mode compares it with cell vectors only)
    assert within.float().mean() >= 0.9, within
    assert ((exact[0] - pts).abs() <= STRIDE).all()  # the reference finds its own points


def test_second_propagate_extracts_nothing_and_interrupted_run_resumes(tmp_path, monkeypatch):
    images, _ = moved_copies()
    data = make_data(tmp_path, images, "cache")
    ref = Reference("0", ("a", "b", "c"), (), REF_POINTS, {"source": "test"})

    with pytest.raises(Interrupt):
        propagate(data, ref, Flaky(), Settings(batch_size=2, progress=False), reference_name="t")
    partial = list(store_dir(data).glob(".*.partial.npz"))
    assert len(partial) == 1 and int(np.load(partial[0])["done"]) == 2
    resumed = PoolFeaturizer()
    kps, name, computed = propagate(data, ref, resumed, Settings(batch_size=2, progress=False), reference_name="t")
    assert computed and resumed.calls == 1 + 2  # reference + the 3 remaining images in 2 batches
    assert not list(store_dir(data).glob(".*.partial.npz"))
    again = PoolFeaturizer()
    kps2, name2, computed2 = propagate(data, ref, again, QUIET, reference_name="t")
    assert not computed2 and again.calls == 0 and name2 == name
    np.testing.assert_allclose(kps2.points, kps.points)
    raw = json.loads((store_dir(data) / f"{name}.json").read_text())
    assert raw["provenance"]["featurizer"] == {"featurizer": "pool"}
    assert raw["provenance"]["reference"]["image_id"] == "0" and raw["provenance"]["matching"] == "fast"
    assert load_keypoint_set(store_dir(data) / f"{name}.json", data)[0].categories == ("a", "b", "c")


def test_featurizer_options_are_checked():
    assert {"sd", "dinov2", "sift", "spin"} <= set(FEATURIZERS.names())
    with pytest.raises(ValueError, match="featurizer sift does not take --timestep"):
        create_featurizer("sift", timestep=3)
    with pytest.raises(ValueError, match="--timestep must be in 0..999"):
        create_featurizer("sd", timestep=2000)


def test_sift_and_spin_featurizers_shapes():
    imgs = torch.rand(2, 3, 64, 64)
    f = create_featurizer("sift", size=64, step=4, patch=8)
    assert f(imgs).shape == (2, 128, 16, 16) and f.stride == 4
    s = create_featurizer("spin", size=64, step=2, bins=4, rings=3, space="minmax")
    assert s(imgs).shape == (2, 2 * 4 * 3, 32, 32)


def make_tiny_sd(root):
    from harness.keypoints.testbed import make_tiny_sd as build

    return build(root)


def test_sd_featurizer_tiny_local_model_stops_unet_early(tmp_path):
    make_tiny_sd(tmp_path / "sd")
    f = create_featurizer("sd", model=str(tmp_path / "sd"), size=64, ensemble=2, block=1, device="cpu")
    imgs = torch.rand(3, 3, 64, 64)
    f.load()
    f._loaded = True
    later = []
    f.unet.up_blocks[2].register_forward_hook(lambda *a: later.append("up2"))
    f.unet.conv_out.register_forward_hook(lambda *a: later.append("conv_out"))
    out = f(imgs)
    # VAE /2, UNet: 3 levels; up-block 1 ends with an upsampler -> latent resolution -> stride 2
    assert f.stride == 2 and out.shape == (3, 16, 32, 32)
    assert later == [] and f.unet_calls == 1  # 3 images x 2 draws in one early-stopped UNet pass
    assert torch.isfinite(out).all()
    from diffusers.models.attention_processor import AttnProcessor2_0

    procs = list(f.unet.attn_processors.values()) + list(f.vae.attn_processors.values())
    assert procs and all(isinstance(p, AttnProcessor2_0) for p in procs)  # SDPA attention
    # passes of at most 4 samples: 6 samples -> 2 passes, same features
    small = create_featurizer("sd", model=str(tmp_path / "sd"), size=64, ensemble=2, block=1, device="cpu", unet_batch=4)
    torch.testing.assert_close(small(imgs), out, rtol=1e-4, atol=1e-5)
    assert small.unet_calls == 2
    f0 = create_featurizer("sd", model=str(tmp_path / "sd"), size=64, ensemble=2, block=0, device="cpu")
    assert f0(imgs[:1]).shape[-1] == 16 and f0.stride == 4
    # batching does not change features (the same noise draws for every image)
    torch.testing.assert_close(f(imgs[1:2]), out[1:2], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="--block 5 is out of range"):
        create_featurizer("sd", model=str(tmp_path / "sd"), size=64, block=5, device="cpu")(imgs[:1])


def test_dift_samples_a_latent_per_ensemble_member_and_batching_changes_nothing(tmp_path):
    make_tiny_sd(tmp_path / "sd")
    imgs = torch.rand(3, 3, 64, 64)
    common = dict(model=str(tmp_path / "sd"), size=64, ensemble=3, device="cpu")
    dift, mean = create_featurizer("dift", **common), create_featurizer("sd", dtype="fp32", **common)
    sampled = dift(imgs)
    assert not torch.allclose(sampled, mean(imgs))  # the latent is drawn, not its mean
    torch.testing.assert_close(dift(imgs[2:3]), sampled[2:3], rtol=1e-4, atol=1e-5)  # per image, batch-free
    one_draw = create_featurizer("dift", **{**common, "ensemble": 1})
    assert not torch.allclose(one_draw(imgs), sampled)  # members differ: an average of several draws


def test_sd_featurizer_missing_model_is_a_data_error(tmp_path):
    from harness.core.errors import DataError

    with pytest.raises(DataError, match="cannot load Stable Diffusion model"):
        create_featurizer("sd", model=str(tmp_path / "nothing"), size=64, device="cpu")(torch.rand(1, 3, 64, 64))


def test_dinov2_featurizer_tiny_local_model(tmp_path):
    import timm
    from timm.models import save_for_hf

    args = dict(depth=1, embed_dim=32, num_heads=2, img_size=56)
    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, **args)
    save_for_hf(net, str(tmp_path / "dino"), model_args=args, safe_serialization=True)
    f = create_featurizer("dinov2", model=str(tmp_path / "dino"), size=56, device="cpu")
    out = f(torch.rand(2, 3, 56, 56))
    assert f.stride == 14 and out.shape == (2, 32, 4, 4)
    # the weights are the saved ones (not a fresh random init): same tokens as the saved model
    x = torch.rand(1, 3, 56, 56)
    ref = net.eval().forward_features((x - f.mean) / f.std)[:, net.num_prefix_tokens :]
    torch.testing.assert_close(f(x).flatten(2).transpose(1, 2), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 14"):
        create_featurizer("dinov2", model=str(tmp_path / "dino"), size=50, device="cpu")(torch.rand(1, 3, 50, 50))


def test_interrupted_sharded_propagation_resumes_with_another_world_size(tmp_path, monkeypatch):
    """Ranks (threads here, meeting at a threading barrier) save per-rank partial files with a
    per-image done mask: 3 ranks killed after one image each, then 1 process killed after one
    more, then 2 ranks finish only what is left, and the set equals an uninterrupted run."""
    import threading

    from harness.core import distributed
    from harness.core.distributed import DistInfo

    shifts = [(0, 0), (8, 4), (-6, 7), (5, -9), (3, 3), (-4, -2), (9, 1), (-7, 5)]
    images = [np.roll(texture(), (dy, dx), axis=(0, 1)) for dx, dy in shifts]
    ref = Reference("0", ("a", "b", "c"), (), REF_POINTS, {"source": "test"})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    expected = propagate(make_data(tmp_path / "a", images, "whole"), ref, PoolFeaturizer(), QUIET,
                         reference_name="t")[0].points
    data = make_data(tmp_path / "b", images, "sharded")
    folder = store_dir(data)

    def run_ranks(world, make):
        gate = threading.Barrier(world, timeout=30)
        monkeypatch.setattr(distributed, "barrier", lambda info: info.world > 1 and gate.wait())
        monkeypatch.setattr(distributed, "setup", lambda info, device: device)
        feats, errors, lines = [make() for _ in range(world)], [None] * world, []

        def rank(r):
            try:
                propagate(data, ref, feats[r], Settings(batch_size=1, progress=False), reference_name="t",
                          dist=DistInfo(r, world), report=lines.append)
            except Exception as exc:  # noqa: BLE001 - handed to the test thread
                errors[r] = exc

        threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return feats, errors, lines

    feats, errors, _ = run_ranks(3, Flaky)  # blocks of rows 0-2, 3-5, 6-7: each rank saves its first
    assert all(isinstance(e, Interrupt) for e in errors), errors
    masks = {p.name.split(".")[-3]: np.flatnonzero(np.load(p)["mask"]).tolist() for p in folder.glob(".*.partial.npz")}
    assert masks == {"rank0": [0], "rank1": [3], "rank2": [6]}

    with pytest.raises(Interrupt):  # one process merges the three, does row 1, dies
        propagate(data, ref, Flaky(), Settings(batch_size=1, progress=False), reference_name="t", dist=DistInfo())
    single = [p for p in folder.glob(".*.partial.npz") if ".rank" not in p.name]
    assert len(single) == 1 and np.flatnonzero(np.load(single[0])["mask"]).tolist() == [0, 1, 3, 6]

    feats, errors, lines = run_ranks(2, PoolFeaturizer)  # left: 2, 4, 5, 7 -> rank 0 {2, 4}, rank 1 {5, 7}
    assert errors == [None, None]
    assert [f.calls for f in feats] == [1 + 2, 1 + 2]  # the reference + its own two images
    assert lines == ["propagated on 2 processes; images featurized per rank: 2, 2"]
    assert not list(folder.glob(".*partial*"))  # every partial, stale rank 2's too, is gone
    kps = load_keypoint_set(next(folder.glob("pool-*.json")), data)[0]
    np.testing.assert_allclose(kps.points, expected)


class LayoutFeaturizer(Featurizer):
    """Deterministic, translation-equivariant but NOT mirror-invariant: each cell's 2x2 sub-cell
    colours and those of its 3x3 cell neighbourhood, in a fixed left-to-right order."""

    name = "layout"
    size, stride, batch_size = SIZE, STRIDE, 8

    def config(self):
        return {"featurizer": "layout"}

    def _features(self, images):
        sub = F.pixel_unshuffle(F.avg_pool2d(images, STRIDE // 2), 2)  # (B, 12, 16, 16)
        b, c, h, w = sub.shape
        return F.unfold(sub, 3, padding=1).view(b, c * 9, h, w)


def test_mirror_matching_follows_the_animal_seen_from_its_other_side(tmp_path):
    images, expected = moved_copies()  # the last copy is the reference mirrored
    ref = Reference("0", ("a", "b", "c"), (), REF_POINTS, {"source": "test"})
    plain, _, _ = propagate(make_data(tmp_path, images, "plain"), ref, LayoutFeaturizer(), QUIET,
                            reference_name="t")
    err_plain = np.abs(plain.points - expected).max(-1)
    assert (err_plain[:4] <= STRIDE).all()  # translations: found
    assert (err_plain[4] > STRIDE).any()  # the mirrored pose fools a featurizer that is not mirror-invariant
    (tmp_path / "m").mkdir()
    for mode in ("fast", "exact"):
        kps, name, _ = propagate(make_data(tmp_path / "m", images, f"mirror-{mode}"), ref, LayoutFeaturizer(),
                                 Settings(mode=mode, mirror=True, progress=False), reference_name="t")
        assert (np.abs(kps.points - expected) <= STRIDE).all(), (mode, np.abs(kps.points - expected).max((1, 2)))
        prov = json.loads((store_dir(make_data(tmp_path / "m", images, f"mirror-{mode}")) / f"{name}.json").read_text())
        assert prov["provenance"]["mirror"] == {"images_matched_to_mirrored_reference": 1}
    # the option is part of the configuration: it names another set
    assert name != propagate(make_data(tmp_path / "m", images, "mirror-exact"), ref, LayoutFeaturizer(),
                             Settings(mode="exact", progress=False), reference_name="t")[1]


def test_sharded_mirror_propagation_merges_views_like_one_process(tmp_path, monkeypatch):
    """Two ranks (threads at a barrier) with --mirror: each rank's matched views travel in its
    partial file, so the merged set and its mirrored-image count equal one process's."""
    import threading

    from harness.core import distributed
    from harness.core.distributed import DistInfo

    base = texture()
    images = [np.roll(base, (dy, dx), axis=(0, 1)) for dx, dy in [(0, 0), (5, 3), (-4, 6)]]
    images += [np.roll(base[:, ::-1], (dy, dx), axis=(0, 1)) for dx, dy in [(0, 0), (6, -2), (-3, -5)]]
    ref = Reference("0", ("a", "b", "c"), (), REF_POINTS, {"source": "test"})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, name, _ = propagate(make_data(tmp_path / "a", images, "one"), ref, LayoutFeaturizer(),
                             Settings(mirror=True, progress=False), reference_name="t")
    gate = threading.Barrier(2, timeout=30)
    monkeypatch.setattr(distributed, "barrier", lambda info: info.world > 1 and gate.wait())
    monkeypatch.setattr(distributed, "setup", lambda info, device: device)
    data = make_data(tmp_path / "b", images, "two")
    out = [None, None]

    def rank(r):
        out[r] = propagate(data, ref, LayoutFeaturizer(), Settings(mirror=True, batch_size=2, progress=False),
                           reference_name="t", dist=DistInfo(r, 2))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    two = out[0][0]
    np.testing.assert_allclose(two.points, one.points)
    assert two.provenance["mirror"] == one.provenance["mirror"] == {"images_matched_to_mirrored_reference": 3}
    assert not list(store_dir(data).glob(".*.partial.npz"))


@pytest.mark.parametrize("mode", ["fast", "exact"])
@pytest.mark.parametrize("x", [5.0, 5.5, 5.99, 0.0, 15.2])
def test_mirrored_reference_vector_is_the_vector_of_the_mirrored_point(mode, x):
    """With features = the pixels themselves (stride 1), the mirrored view's vector must equal the
    original's, in both modes and for whole-number coordinates (exact mode reads whole pixels)."""
    from harness.keypoints.propagate import reference_views

    class Pixels(Featurizer):
        name, size, stride = "pixels", 16, 1

        def config(self):
            return {"featurizer": "pixels"}

        def _features(self, images):
            return images

    img = (torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    v = reference_views(Pixels(), img, torch.tensor([[x, 7.0]]), mode, mirror=True)
    torch.testing.assert_close(v[0], v[1])


def test_cropped_dataset_propagates_scores_and_draws_in_crop_pixels(tmp_path):
    """With a ``bbox`` column images and keypoints are used in crop pixels everywhere: the copies sit
    at different places on larger canvases, their boxes cut them out again (one row has no box),
    and propagation finds the points in crop pixels; PCK and the grid read the same crops."""
    from harness.keypoints.pck import pck
    from harness.keypoints.show import draw_grid

    images, expected = moved_copies()
    rows = []
    for i, arr in enumerate(images):
        if i == 2:  # no box: the whole (64 x 64) image
            Image.fromarray(arr).save(tmp_path / f"{i}.png")
            box = float("nan")
        else:
            canvas = np.zeros((SIZE + 40, SIZE + 50, 3), np.uint8)
            x, y = 7 * i + 3, 5 * i + 2
            canvas[y : y + SIZE, x : x + SIZE] = arr
            Image.fromarray(canvas).save(tmp_path / f"{i}.png")
            box = json.dumps([x, y, SIZE, SIZE])
        rows.append({"image_id": i, "identity": f"id{i}", "path": f"{i}.png", "bbox": box})
    data = ReidData("cropped", tmp_path, pd.DataFrame(rows), ("a", "b", "c"), (), keypoints=expected.copy())
    ref = Reference("0", ("a", "b", "c"), (), REF_POINTS, {"source": "test"})
    kps, _, _ = propagate(data, ref, PoolFeaturizer(), QUIET, reference_name="t")
    assert (np.abs(kps.points - expected) <= STRIDE).all(), np.abs(kps.points - expected).max((1, 2))
    score = pck(kps, data, 0.1)
    assert score["pck"] == 1.0 and score["basis"] == "max(h, w) of the bounding box"
    assert Image.open(draw_grid(data, kps, tmp_path / "grid.png", n=5)).size[0] > 0
