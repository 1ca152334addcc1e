"""The paper's four datasets through wildlife-datasets 1.0.8, on fixtures that mimic their real
on-disk layouts (tests/wildlife_layouts.py): counts, identities, unknown identities, keypoints, crops."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from harness.core.errors import DataError
from harness.data.dataset import ReidData
from harness.data.images import load_images
from harness.data.loaders import data_problem, get_card, load_dataset
from harness.data.dataset import image_sizes
from harness.core.paths import REPO_ROOT
from harness.data.splits import make_split
from wildlife_layouts import CTAI_FIXES, CTAI_ROWS, IPANDA_ODD, make_all, make_ctai, make_ipanda50


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_all(tmp_path_factory.mktemp("wildlife"))


def load(name, root, **options):
    return load_dataset(get_card(name), {k: str(v) for k, v in options.items()}, root)


def test_macaquefaces_layout_counts_and_expert_reference(root):
    d = load("macaquefaces", root)
    assert len(d.df) == 39 and d.df["identity"].nunique() == 5
    assert d.df["identity"].value_counts()["Dan"] == 23
    assert d.keypoints is None and d.categories == ("right_eye", "left_eye", "nose", "mouth_centre")
    assert d.root == root / "MacaqueFaces" and d.info["crop"] == "full"
    # the card's expert reference names an image of the real layout: image_id 20 of the catalogue
    card = get_card("macaquefaces")
    ref = json.loads((REPO_ROOT / "datasets" / card.reference).read_text())
    row = d.df[d.df["image_id"] == ref["image"]["image_id"]].iloc[0]
    assert row["path"] == ref["image"]["path"] and row["identity"] == ref["image"]["identity"]
    assert list(ref["categories"]) == list(card.categories)
    with Image.open(d.root / row["path"]) as im:
        assert im.size == (100, 100)
    for protocol in ("disjoint", "closed"):
        s = make_split(d.df, protocol, 666)
        assert len(s.train) and len(s.test)


def test_giraffes_identities_are_the_cluster_folders(root):
    d = load("giraffes", root)
    assert len(d.df) == 20 and sorted(d.df["identity"].unique()) == ["1", "2", "3", "4", "5"]
    assert d.df["path"].str.contains("/miele2021/clusters/").all()  # raw images/ are not the dataset
    assert d.keypoints is None


def test_ipanda50_eye_keypoints_and_renamed_files(tmp_path):
    folder, written = make_ipanda50(tmp_path)
    first = load("ipanda50", tmp_path)
    second = load("ipanda50", tmp_path)  # wildlife-datasets renamed the non-ASCII file on the first load
    assert (folder / "changes.csv").exists()
    assert len(first.df) == 20 and first.df["identity"].nunique() == 5
    assert first.categories == ("right_eye", "left_eye") and first.flip_pairs == (("right_eye", "left_eye"),)
    assert list(first.df["image_id"]) == list(second.df["image_id"])
    np.testing.assert_array_equal(first.keypoints, second.keypoints)  # same labels on every load
    paths = list(second.df["path"])
    assert all(p.isascii() for p in paths)
    for name, (right, left) in written.items():
        stem = name.split(".")[0]
        key = "/" + (stem if stem.isascii() else stem[:18])
        i = next(i for i, p in enumerate(second.df["path"]) if key in p)
        np.testing.assert_allclose(first.keypoints[i, 0], right)  # eye centre = mean of its two points
        np.testing.assert_allclose(first.keypoints[i, 1], left)
    odd = [i for i, p in enumerate(paths) if p.startswith("iPanda50-images/49_yuanrun/49_20150403")]
    assert len(odd) == 1 and np.isfinite(second.keypoints[odd[0]]).all()
    unlabelled = [i for i, p in enumerate(paths) if "_v004_" in p]
    assert unlabelled and np.isnan(first.keypoints[unlabelled]).all()
    one_eye = [i for i, p in enumerate(paths) if "_v003_" in p and "yuanrun" not in p]
    assert np.isfinite(first.keypoints[one_eye, 0]).all() and np.isnan(first.keypoints[one_eye, 1]).all()
    assert IPANDA_ODD not in "".join(paths)


def test_ctai_label_fixes_unknown_and_inf_keypoints(root):
    d = load("ctai", root)
    names = sorted({CTAI_FIXES.get(r[0], r[0]) for r in CTAI_ROWS if r[0] != "Adult"})
    assert sorted(d.df["identity"].unique()) == names  # misspellings merged by wildlife-datasets
    assert len(d.df) == len(CTAI_ROWS) - 2 and d.info["unknown_images"] == 2  # "Adult" -> unknown, dropped
    assert d.categories == ("right_eye", "left_eye", "mouth_centre", "left_earlobe", "right_earlobe")
    assert d.flip_pairs == (("right_eye", "left_eye"), ("left_earlobe", "right_earlobe"))
    for i, (_, _, _, _, pts) in enumerate(CTAI_ROWS[:15]):
        for c, p in enumerate(pts):
            if p is None:
                assert np.isnan(d.keypoints[i, c]).all()  # Inf in the file -> missing
            else:
                np.testing.assert_array_equal(d.keypoints[i, c], p)
    kept = load("ctai", root, unknown="keep")
    assert (kept.df["identity"] == "unknown").sum() == 2
    # the splits skip unknown identities: both give the same split
    assert make_split(kept.df, "closed", 666).fingerprint == make_split(d.df, "closed", 666).fingerprint


def test_split_fingerprints_differ_between_datasets(root):
    fps = {make_split(load(n, root).df, "disjoint", 666).fingerprint for n in ("macaquefaces", "giraffes", "ipanda50", "ctai")}
    assert len(fps) == 4


def test_missing_data_names_dataset_folder_and_command(tmp_path):
    card = get_card("ctai")
    msg = data_problem(card, tmp_path)
    assert "dataset ctai (CTai) not found" in msg and str(tmp_path / "CTai") in msg
    assert f"harness data download ctai --data-root {tmp_path}" in msg
    with pytest.raises(DataError, match="harness data download ctai"):
        load("ctai", tmp_path)
    gir = data_problem(get_card("giraffes"), tmp_path)
    assert "wget" in gir and str(tmp_path / "Giraffes") in gir
    # a broken folder: present but a metadata file lost
    make_ctai(tmp_path)
    next((tmp_path / "CTai").rglob("img-id3-object-1.png")).unlink()
    with pytest.raises(DataError, match="cannot read .*Some files not found"):
        load("ctai", tmp_path)


def test_any_wildlife_class_and_bad_options(root):
    card = get_card("MacaqueFaces")  # a class name finds its card
    assert card.name == "macaquefaces"
    other = get_card("SeaTurtleIDHeads")
    assert other.loader == "wildlife" and other.wildlife_class == "SeaTurtleIDHeads" and other.categories == ()
    with pytest.raises(DataError, match="unknown option"):
        load("ctai", root, colour="red")
    with pytest.raises(DataError, match="crop=bbox, but CTai's metadata has no bbox"):
        load("ctai", root, crop="bbox")


def test_folder_dataset(tmp_path):
    for ident in ("ann", "bob"):
        for j in range(3):
            (tmp_path / ident).mkdir(exist_ok=True)
            Image.new("RGB", (20, 10), (j * 50, 0, 0)).save(tmp_path / ident / f"{j}.jpg")
    (tmp_path / "notes.txt").write_text("not an identity")
    d = load_dataset(get_card(f"folder:{tmp_path}"), {}, None)
    assert len(d.df) == 6 and sorted(d.df["identity"].unique()) == ["ann", "bob"]
    assert d.df["image_id"].iloc[0] == "ann/0.jpg"
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(get_card(f"folder:{tmp_path / 'nope'}"), {}, None)


def test_bbox_crop_moves_keypoints_into_the_crop(tmp_path):
    from harness.data.wildlife import card_keypoints, flat_points

    img = np.zeros((40, 60, 3), np.uint8)
    img[10:30, 20:50] = 255  # the box [20, 10, 30, 20] is white
    Image.fromarray(img).save(tmp_path / "a.png")
    points = flat_points([[25.0, 15.0, np.inf, 3.0], np.nan])
    assert np.isnan(points[0, 1]).all() and np.isnan(points[1]).all()
    cats, kps = card_keypoints(get_card("ipanda50").__class__(name="x", loader="wildlife"), points)
    assert cats == ("point_1", "point_2")
    df = pd.DataFrame({"image_id": [1], "identity": ["a"], "path": ["a.png"], "bbox": [[20, 10, 30, 20]]})
    data = ReidData("x", tmp_path, df, ("p",), (), keypoints=np.array([[[5.0, 5.0]]]))
    images, sizes = load_images(tmp_path, ["a.png"], 16, bboxes=df["bbox"])
    assert sizes.tolist() == [[30.0, 20.0]] and int(images.min()) == 255  # only the white box is left
    assert image_sizes(data).tolist() == [[30.0, 20.0]]
    full, full_sizes = load_images(tmp_path, ["a.png"], 16)
    assert full_sizes.tolist() == [[60.0, 40.0]] and int(full.min()) == 0
    assert isinstance(images, torch.Tensor) and images.shape == (1, 3, 16, 16)


def test_cards_are_valid_and_reference_files_are_not_cards():
    from harness.data.cards import DATASETS, PAPER_DATASETS

    assert set(PAPER_DATASETS) <= set(DATASETS.names())
    assert "macaquefaces-expert" not in DATASETS.names()
    for name in PAPER_DATASETS:
        card = get_card(name)
        assert card.loader == "wildlife" and card.expects and card.defaults["backbone"] == "large"
        assert card.defaults["ce_weight"] == 0.2 and card.notes["ce_weight"].startswith("paper")
