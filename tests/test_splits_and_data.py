import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from wildlife_datasets import splits as wd_splits

from harness.config import RunConfig
from harness.core.errors import DataError
from harness.data.loaders import get_card, load_dataset
from harness.engine.run import prepare
from harness.data.splits import HeldOut, make_split
from harness.data.synthetic import SyntheticSpec, generate

OPTS = {"identities": "20", "images_per_identity": "5", "image_size": "32"}


def small():
    return load_dataset(get_card("synthetic"), OPTS)


def test_synthetic_is_deterministic_and_in_wildlife_format(tmp_path):
    a = small()
    assert list(a.df.columns)[:3] == ["image_id", "identity", "path"]
    assert len(a.df) == 100 and a.df["identity"].nunique() == 20
    assert a.keypoints.shape == (100, 4, 2)
    assert a.categories == ("left_eye", "right_eye", "nose", "mouth")
    assert a.flip_pairs == (("left_eye", "right_eye"),)
    inside = (a.keypoints >= 0) & (a.keypoints < 32)
    assert inside.all()
    # generating the same spec elsewhere gives byte-identical images
    spec = SyntheticSpec(identities=20, images_per_identity=5, image_size=32)
    other = generate(spec, tmp_path)
    for rel in a.df["path"][:5]:
        assert (other / rel).read_bytes() == (a.root / rel).read_bytes()


def test_identity_is_the_colour_code_not_the_pose():
    from harness.data.synthetic import identity_codes

    spec = SyntheticSpec(identities=30, parts=3, colours=4)
    codes = identity_codes(spec, np.random.default_rng(0))
    assert len({tuple(c) for c in codes}) == 30  # every identity has its own code


def test_disjoint_split_is_identity_disjoint_80_20():
    data = small()
    s = make_split(data.df, "disjoint", 666)
    tr = set(data.df["identity"].iloc[s.train])
    te = set(data.df["identity"].iloc[s.test])
    assert not tr & te
    assert len(te) == 4 and len(tr) == 16  # 20% of the 20 individuals
    assert len(s.train) + len(s.test) == 100


def test_closed_split_shares_identities():
    data = small()
    s = make_split(data.df, "closed", 666)
    tr = set(data.df["identity"].iloc[s.train])
    te = set(data.df["identity"].iloc[s.test])
    assert te <= tr and len(s.test) == 20  # 1 of 5 images per identity held out


@pytest.mark.parametrize("protocol", ["disjoint", "closed"])
def test_splits_are_wildlife_datasets_own_without_importing_its_package(protocol):
    """The split classes load from wildlife-datasets' files alone (its package __init__ costs a dry
    run 1.4 s) and split exactly as the library imported the usual way does."""
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"image_id": np.arange(90), "identity": rng.choice([f"id{i}" for i in range(13)], 90)})
    splitter = (wd_splits.DisjointSetSplit(n_class_test=3, seed=666) if protocol == "disjoint"
                else wd_splits.ClosedSetSplit(0.8, seed=666))
    train, test = splitter.split(df)[0]
    s = make_split(df, protocol, 666)
    assert np.array_equal(s.train, np.sort(train)) and np.array_equal(s.test, np.sort(test))
    alone = ("import sys, numpy as np, pandas as pd\n"
             "from harness.data.splits import make_split\n"
             "df = pd.DataFrame({'image_id': range(40), 'identity': [f'id{i % 8}' for i in range(40)]})\n"
             f"make_split(df, {protocol!r}, 666)\n"
             "print('wildlife_datasets' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", alone], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fingerprint_is_stable_across_methods_and_changes_with_seed_and_protocol():
    fps = {}
    for method in ("vit", "kpe", "ckpe", "random"):
        cfg = RunConfig(method=method, dataset_options=tuple(OPTS.items()))
        fps[method] = prepare(cfg).split.fingerprint
    assert len(set(fps.values())) == 1
    base = fps["vit"]
    data = small()
    assert make_split(data.df, "disjoint", 1, dataset=data.split_key).fingerprint != base
    assert make_split(data.df, "closed", 666, dataset=data.split_key).fingerprint != base
    assert make_split(data.df, "disjoint", 666, dataset=data.split_key).fingerprint == base
    # the same image ids in another dataset give another fingerprint
    assert make_split(data.df, "disjoint", 666, dataset="other:0").fingerprint != base


def test_held_out_sets_the_test_share_and_the_validation_part():
    data = small()
    wider = make_split(data.df, "disjoint", 666, held_out=HeldOut(test_fraction=0.4))
    assert data.df["identity"].iloc[wider.test].nunique() == 8  # 40% of the 20 individuals
    outer = make_split(data.df, "disjoint", 666, held_out=HeldOut(folds=5, fold=1))
    inner = make_split(data.df, "disjoint", 666, held_out=HeldOut(folds=5, fold=1, validate=True))
    outer_test = set(data.df["identity"].iloc[outer.test])
    inner_ids = set(data.df["identity"].iloc[np.concatenate([inner.train, inner.test])])
    assert inner_ids == set(data.df["identity"].iloc[outer.train]) and not inner_ids & outer_test
    assert inner.fingerprint != outer.fingerprint
    with pytest.raises(DataError, match="needs the disjoint or open protocol"):
        make_split(data.df, "closed", 666, held_out=HeldOut(validate=True))


def test_split_refuses_a_single_identity():
    df = pd.DataFrame({"image_id": [1, 2], "identity": ["a", "a"], "path": ["x", "y"]})
    with pytest.raises(DataError, match="at least 2 identities"):
        make_split(df, "disjoint")


def test_num_keypoints_keeps_first_categories_and_rejects_too_many():
    cfg = RunConfig(method="ckpe", num_keypoints=2, dataset_options=tuple(OPTS.items()))
    p = prepare(cfg)
    assert p.keypoints.categories == ("left_eye", "right_eye")
    assert p.keypoints.points.shape == (100, 2, 2)
    with pytest.raises(DataError, match="--num-keypoints 9 is out of range: this keypoint set has 4"):
        prepare(RunConfig(method="ckpe", num_keypoints=9, dataset_options=tuple(OPTS.items())))


def test_random_points_are_seeded_and_inside_the_image():
    a = prepare(RunConfig(method="random", seed=3, num_keypoints=3, dataset_options=tuple(OPTS.items())))
    b = prepare(RunConfig(method="random", seed=3, num_keypoints=3, dataset_options=tuple(OPTS.items())))
    c = prepare(RunConfig(method="random", seed=4, num_keypoints=3, dataset_options=tuple(OPTS.items())))
    assert a.keypoints.points.shape == (100, 3, 2)
    assert np.array_equal(a.keypoints.points, b.keypoints.points)
    assert not np.array_equal(a.keypoints.points, c.keypoints.points)
    assert (a.keypoints.points >= 0).all() and (a.keypoints.points < 32).all()
    assert a.keypoints.flip_pairs == ()


def test_bad_dataset_option():
    with pytest.raises(DataError, match="unknown option 'colors'"):
        load_dataset(get_card("synthetic"), {"colors": "3"})
    with pytest.raises(DataError, match="option identities='many' is not a valid int"):
        load_dataset(get_card("synthetic"), {"identities": "many"})


def test_decoded_images_are_cached_and_invalidated(tmp_path, monkeypatch):
    import functools

    import harness.data.images as hd

    load_images = functools.partial(hd.load_images, cache=True)
    from PIL import Image

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    for i in range(3):
        Image.new("RGB", (40, 20), (10 * i, 0, 0)).save(tmp_path / f"{i}.png")
    paths = [f"{i}.png" for i in range(3)]
    calls = []
    real = hd._decode
    monkeypatch.setattr(hd, "_decode", lambda *a: calls.append(a[0]) or real(*a))
    a, sa = load_images(tmp_path, paths, 16)
    assert a.shape == (3, 3, 16, 16) and a.dtype == torch.uint8
    assert sa.tolist() == [[40.0, 20.0]] * 3 and len(calls) == 3
    b, _ = load_images(tmp_path, paths, 16)  # second time: read from the cache, nothing decoded
    assert len(calls) == 3 and torch.equal(a, b)
    load_images(tmp_path, paths, 8)  # another size: decoded again
    assert len(calls) == 6
    c, sc = load_images(tmp_path, paths, 16, bboxes=[[0, 0, 20, 10]] * 3)  # a crop: decoded again
    assert len(calls) == 9 and sc.tolist() == [[20.0, 10.0]] * 3
    import os, time
    Image.new("RGB", (40, 20), (0, 255, 0)).save(tmp_path / "1.png")  # a changed file
    os.utime(tmp_path / "1.png", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    d, _ = load_images(tmp_path, paths, 16)
    assert len(calls) == 12 and not torch.equal(d[1], a[1]) and torch.equal(d[0], a[0])
    assert not list((tmp_path / "cache" / "images").glob(".*"))  # no temporary folder left


def test_a_corrupt_image_names_the_file_or_is_skipped(tmp_path, monkeypatch):
    from PIL import Image

    from harness.data.images import DecodeSettings, decode_images, load_images

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    Image.new("RGB", (64, 64), (200, 0, 0)).save(tmp_path / "good.png")
    full = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(full[: len(full) // 2])  # truncated file
    with pytest.raises(DataError, match="cannot read image .*bad.png.*--bad-images skip"):
        load_images(tmp_path, ["good.png", "bad.png"], 16, cache=True)
    assert not list((tmp_path / "cache" / "images").glob("*"))  # nothing half-written is kept
    skip = DecodeSettings(bad_images="skip")
    pix, sizes, bad = decode_images(tmp_path, ["good.png", "bad.png", "cut.png"], 16, settings=skip)
    assert bad == [1, 2] and int(pix[0].max()) == 200 and int(pix[1].max()) == 0
    # the cached decode remembers which rows were unreadable
    _, _, again = decode_images(tmp_path, ["good.png", "bad.png", "cut.png"], 16, settings=skip)
    assert again == [1, 2]
    with pytest.raises(DataError, match="2 unreadable in all"):
        decode_images(tmp_path, ["good.png", "bad.png", "cut.png"], 16)  # the default policy: fail


def test_decode_settings_are_checked_and_the_resampling_caches_apart(tmp_path, monkeypatch):
    from PIL import Image

    from harness.data.images import DecodeSettings, decode_images

    with pytest.raises(DataError, match="unknown bad-images policy 'ignore'; valid: fail, skip"):
        DecodeSettings(bad_images="ignore")
    with pytest.raises(DataError, match="unknown resize 'nearest'; valid: bilinear, bicubic"):
        DecodeSettings(resize="nearest")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    linear, sizes, bad = decode_images(tmp_path, ["a.png"], 8)
    cubic, _, _ = decode_images(tmp_path, ["a.png"], 8, settings=DecodeSettings(resize="bicubic"))
    plain, _, _ = decode_images(tmp_path, ["a.png"], 8, settings=DecodeSettings(cache=False, progress=False))
    assert linear.shape == (1, 3, 8, 8) and sizes.tolist() == [[30.0, 40.0]] and bad == []
    assert torch.equal(linear, plain) and not torch.equal(linear, cubic)
    assert len(list((tmp_path / "cache" / "images").iterdir())) == 2  # one folder per resampling


def test_an_incomplete_cache_folder_is_rebuilt_not_read(tmp_path, monkeypatch):
    import harness.data.images as hd
    from PIL import Image

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    Image.new("RGB", (20, 20), (7, 8, 9)).save(tmp_path / "a.png")
    a, _ = hd.load_images(tmp_path, ["a.png"], 8, cache=True)
    (folder,) = (tmp_path / "cache" / "images").iterdir()
    (folder / "bad.npy").unlink()  # as left by an older layout or a crash
    b, _ = hd.load_images(tmp_path, ["a.png"], 8, cache=True)
    assert torch.equal(a, b) and (folder / "bad.npy").exists()
