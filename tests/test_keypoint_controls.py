"""Keypoint controls on perturbed data: the oracle source (aligned points moved by each image's
exact transform), PCK against it, Gaussian keypoint noise in patch widths, the share of points in
another patch than the fixed template's, and their one-line errors."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness.core.errors import DataError
from harness.data.dataset import ReidData
from harness.data.loaders import get_card, load_dataset
from harness.keypoints.pck import pck
from harness.keypoints.sets import KeypointSet, Target
from harness.keypoints.sources import image_seed, resolve_keypoints, resolve_origin, source_problem
from harness.keypoints.store import load_keypoint_set, save_keypoint_set, stored_path
from harness.keypoints.template import patch_cells, share_table, template_share

SYN = {"identities": "10", "images_per_identity": "6", "image_size": "32"}
CFG = SimpleNamespace(backbone="nano", image_size=32, num_keypoints=None, seed=0, dataset="synthetic")
DS = ["--dataset", "synthetic", *(a for k, v in SYN.items() for a in ("--dataset-option", f"{k}={v}"))]


@pytest.fixture(scope="module")
def pair():
    card = get_card("synthetic")
    return load_dataset(card, SYN), load_dataset(card, {**SYN, "perturb": "strong", "perturb_seed": "1"})


def test_the_oracle_is_the_aligned_points_moved_by_each_transform(pair):
    aligned, data = pair
    oracle = resolve_keypoints("oracle:ground-truth", data, CFG)
    assert np.array_equal(oracle.points, data.keypoints, equal_nan=True)  # the ground truth moves the same way
    rng = np.random.default_rng(0)
    stored = KeypointSet(("a", "b"), (), rng.uniform(2, 30, (len(aligned.df), 2, 2)), {"source": "test"})
    save_keypoint_set(stored, aligned, "aligned-set")
    got = resolve_keypoints("oracle:aligned-set", data, CFG)
    back = load_keypoint_set(stored_path("aligned-set", aligned), aligned)[0].points  # as stored (0.01 px)
    ids = aligned.df["image_id"].astype(str)
    for r in (0, 7, 59):
        assert np.array_equal(got.points[r], data.perturbation.points(back[r], ids[r], (32, 32)), equal_nan=True)
    assert not np.allclose(got.points, back, equal_nan=True)
    assert got.provenance["source"] == "oracle" and got.provenance["aligned"]["keypoints"] == "aligned-set"
    assert got.provenance["perturb"]["seed"] == 1 and got.categories == ("a", "b")
    assert stored_path("aligned-set", data) is None  # a set of the aligned images is not one of the perturbed


def test_pck_against_the_oracle(pair):
    _, data = pair
    oracle = resolve_keypoints("oracle:ground-truth", data, CFG)
    assert pck(oracle, data, 0.1, truth=oracle)["pck"] == 1.0
    present = np.isfinite(oracle.points).all(-1)
    r3, r4 = np.flatnonzero(present[:, 0])[0], np.flatnonzero(present[:, 1])[1]
    off = oracle.points.copy()
    off[r3, 0] += [3.5, 0.0]  # 3.5 px > 0.1 x 32: wrong at alpha 0.1, right at 0.2 (6.4 px)
    off[r4, 1] += [0.0, -4.0]
    shifted = KeypointSet(oracle.categories, oracle.flip_pairs, off)
    at_01, at_02 = pck(shifted, data, 0.1, truth=oracle), pck(shifted, data, 0.2, truth=oracle)
    for r in (r3, r4):
        n = present[r].sum()
        assert at_01["per_image"][str(r)] == pytest.approx((n - 1) / n) and at_02["per_image"][str(r)] == 1.0
    assert at_01["pck"] == pytest.approx((present.sum() - 2) / present.sum()) and at_02["pck"] == 1.0
    with pytest.raises(DataError, match="no keypoint category of this set"):
        pck(KeypointSet(("zz",), (), off[:, :1]), data, 0.1, truth=oracle)


def test_noise_sigma_zero_is_the_clean_set_and_its_scale_is_sigma_patch_widths(pair):
    aligned, _ = pair
    clean = resolve_keypoints("ground-truth", aligned, CFG)
    assert np.array_equal(resolve_keypoints("ground-truth+noise=0", aligned, CFG).points, clean.points, equal_nan=True)
    half, one = (resolve_keypoints(f"ground-truth+noise={s}", aligned, CFG) for s in (0.5, 1))
    ids = aligned.df["image_id"].astype(str)
    z = np.stack([image_seed("keypoint-noise-v1", i).standard_normal(clean.points.shape[1:]) for i in ids])
    # nano: patch 8 at 32 px input; the synthetic images are 32 px, so input pixels = original pixels
    expected = clean.points + 1 * 8 * z
    inside = ((expected >= 0) & (expected <= 32)).all(-1) & np.isfinite(clean.points).all(-1)
    assert np.allclose(one.points[inside], expected[inside]) and np.isnan(one.points[~inside]).all()
    both = np.isfinite(half.points).all(-1) & np.isfinite(one.points).all(-1)
    assert np.allclose((one.points - clean.points)[both], 2 * (half.points - clean.points)[both])
    assert 0.8 < np.std((one.points - clean.points)[both]) / 8 < 1.2  # sigma x patch pixels
    assert one.provenance["noise"] == {"sigma_patches": 1.0, "patch_px": 8, "image_size": 32, "sigma_input_px": 8.0}


def test_noise_scales_into_original_pixels_by_image_over_input_size(pair):
    aligned, _ = pair
    cfg = SimpleNamespace(**{**vars(CFG), "image_size": 16})  # input half the image: 1 input px = 2 original px
    clean = resolve_keypoints("ground-truth", aligned, cfg).points
    noisy = resolve_keypoints("ground-truth+noise=0.25", aligned, cfg).points
    z = image_seed("keypoint-noise-v1", "0").standard_normal(clean.shape[1:])
    ok = np.isfinite(noisy[0]).all(-1)
    assert np.allclose(noisy[0][ok], clean[0][ok] + 0.25 * 8 * 2 * z[ok])


@pytest.mark.parametrize("name, message", [
    ("ground-truth+noise=-0.5", "noise sigma must be a number >= 0 (in patch widths), got '-0.5'"),
    ("ground-truth+noise=lots", "noise sigma must be a number >= 0"),
])
def test_bad_noise_is_a_one_line_error(pair, name, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_keypoints(name, pair[0], CFG)
    assert message in source_problem(name)


def test_oracle_needs_a_perturbed_dataset_and_preflight_reads_wrapped_recipes(pair):
    with pytest.raises(DataError, match="needs a perturbed dataset"):
        resolve_keypoints("oracle:ground-truth", pair[0], CFG)
    assert "unknown featurizer 'nofeat'" in source_problem("oracle:expert@nofeat+noise=1")
    assert source_problem("oracle:expert@sift+noise=0.5") is None and source_problem("random") is None


def test_template_share_by_hand(tmp_path):
    """64x32 images at 32 px input, patch 8: x halves, y stays. Category a: the template (image 0's
    point) lies in patch (1, 1); image 1 too, image 2 in (2, 1), image 3 has no point: 1 of 3.
    Category b: template (3, 3); image 1 on the far corner (last patch), image 2 in (0, 0), image 3
    in (3, 3): 1 of 4."""
    df = pd.DataFrame({"image_id": ["0", "1", "2", "3"], "identity": ["x", "x", "y", "y"], "path": list("abcd")})
    data = ReidData("t", tmp_path, df, ("a", "b"), (), sizes=np.array([[64.0, 32.0]] * 4))
    pts = np.array([[[20, 10], [60, 30]], [[22, 12], [64, 32]], [[40, 10], [0, 0]], [[np.nan, np.nan], [63, 31]]])
    kps = KeypointSet(("a", "b"), (), pts.astype(float))
    assert patch_cells(pts, data.sizes, 32, 8)[:, 0].tolist() == [[1, 1], [1, 1], [2, 1], [-1, -1]]
    share = template_share(kps, data, 0, 32, 8)
    assert share["per_category"] == {"a": pytest.approx(1 / 3), "b": pytest.approx(1 / 4)}
    assert share["images"] == {"a": 3, "b": 4} and share["all"] == pytest.approx(2 / 7)
    assert template_share(kps, data, 0, 32, 32)["all"] == 0.0  # one patch: nothing can differ
    # at 64 px input (y doubles) image 1's a, (22, 24), leaves the template's patch (2, 2) for (2, 3)
    assert template_share(kps, data, 0, 64, 8)["per_category"] == {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 4)}


def test_score_cli_against_the_oracle_stores_pck_and_template_share(cli, pair):
    aligned, data = pair
    save_keypoint_set(KeypointSet(data.categories, data.flip_pairs, data.keypoints, {"source": "test"}), data, "mine")
    path = stored_path("mine", data)
    raw = json.loads(path.read_text())
    assert "template_share" not in raw  # a file without it (as before it existed) still loads
    load_keypoint_set(path, data)
    res = cli("keypoints", "score", *DS, "--dataset-option", "perturb=strong", "--dataset-option", "perturb_seed=1",
              "--keypoints", "mine", "--against", "oracle:ground-truth", "--alpha", "0.05", "--patch-size", "4")
    assert res.exit_code == 0, res.output
    assert "against oracle:ground-truth" in res.output and "all                       100.0" in res.output
    assert "points in another patch than the fixed template's" in res.output and "patch 4 px" in res.output
    stored = json.loads(path.read_text())
    assert stored["score"]["0.05 vs oracle:ground-truth"]["pck"] == 1.0
    (geometry, share), = stored["template_share"].items()
    assert geometry == f"{share['image_size']}px/4px" and share["patch"] == 4 and 0 < share["all"] <= 1
    bad = cli("keypoints", "score", *DS, "--keypoints", "oracle:ground-truth")
    assert bad.exit_code != 0 and "needs a perturbed dataset" in bad.output and "Traceback" not in bad.output


def test_score_cli_stores_a_recipes_scores_with_the_set_it_resolved_to(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))  # the recipe's set is the only one stored
    res = cli("keypoints", "score", *DS, "--keypoints", "ground-truth@sift:size=32,step=4", "--patch-size", "4")
    assert res.exit_code == 0, res.output
    path, = (tmp_path / "cache" / "keypoints").glob("synthetic-*/sift-*.json")  # its hash name, not the recipe
    assert f"stored with {path}" in res.output and "not stored" not in res.output
    stored = json.loads(path.read_text())
    assert 0.0 <= stored["score"]["0.1"]["pck"] <= 1.0 and len(stored["score"]["0.1"]["per_image"]) == 60
    (geometry, share), = stored["template_share"].items()
    assert geometry == f"{share['image_size']}px/4px" and share["patch"] == 4 and set(share["per_category"]) == set(stored["categories"])
    assert share_table(share) in res.output  # the stored share is the printed one


@pytest.mark.parametrize("name, why", [
    ("ground-truth", "it is a registered source"),
    ("ground-truth+noise=0.5", "it is derived on the fly from another source"),
    ("ground-truth@template", "is placed on the fly, not stored"),
])
def test_score_cli_says_in_one_line_why_a_source_has_no_stored_scores(cli, tmp_path, monkeypatch, name, why):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    res = cli("keypoints", "score", *DS, "--keypoints", name)
    assert res.exit_code == 0, res.output
    line, = (x for x in res.output.splitlines() if x.startswith("scores not stored"))
    assert line.startswith(f"scores not stored: {name}: ") and why in line and "stored with" not in res.output
    assert not any((tmp_path / "cache").rglob("*@template*"))  # a template recipe leaves no set file


def test_a_stored_set_is_its_own_origin_unless_num_keypoints_cuts_it(pair, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    aligned, _ = pair
    points = np.random.default_rng(1).uniform(2, 30, (len(aligned.df), 3, 2))
    save_keypoint_set(KeypointSet(("a", "b", "c"), (), points, {"source": "test"}), aligned, "three")
    whole = resolve_origin("three", Target(aligned, None, CFG))
    assert whole.stored_set == "three" and whole.not_stored is None and whole.keypoints.categories == ("a", "b", "c")
    cut = resolve_origin("three", Target(aligned, None, SimpleNamespace(**{**vars(CFG), "num_keypoints": 2})))
    assert cut.stored_set is None and cut.keypoints.categories == ("a", "b")
    assert cut.not_stored == "--num-keypoints 2 keeps fewer than the 3 keypoints of its stored set three"
    assert resolve_origin("ground-truth", Target(aligned, None, CFG)).stored_set is None


def test_a_run_on_perturbed_data_records_the_perturbation_oracle_and_noise(cli, tiny_args, tmp_path):
    out = tmp_path / "results"
    res = cli("run", "--method", "ckpe", "--keypoints", "oracle:ground-truth+noise=0.5", "--results-dir", out,
              *tiny_args, "--dataset-option", "perturb=mild", "--dataset-option", "perturb_seed=3")
    assert res.exit_code == 0, res.output
    rec = json.loads(next(out.glob("*.json")).read_text())
    assert rec["config"]["keypoints"] == "oracle:ground-truth+noise=0.5"
    assert rec["config"]["dataset_options"]["perturb"] == "mild" and rec["config"]["dataset_options"]["perturb_seed"] == "3"
    assert rec["dataset"]["perturb"]["ranges"]["rotation_deg"] == 15.0 and rec["dataset"]["perturb"]["seed"] == 3
    prov = rec["keypoints"]["provenance"]
    assert prov["source"] == "oracle" and prov["noise"]["sigma_patches"] == 0.5 and prov["noise"]["patch_px"] == 8
    bad = cli("run", "--method", "ckpe", "--keypoints", "ground-truth+noise=-1", "--results-dir", out, *tiny_args)
    assert bad.exit_code != 0 and "noise sigma must be a number >= 0" in bad.output and "Traceback" not in bad.output
    bad = cli("run", "--method", "ckpe", "--results-dir", out, *tiny_args, "--dataset-option", "perturb=wild")
    assert bad.exit_code != 0 and "unknown perturbation severity perturb='wild'" in bad.output
