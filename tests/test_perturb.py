"""Pose-perturbed images (--dataset-option perturb): one seeded similarity transform per image that
moves pixels and keypoints together, identity at severity 0, its own image cache and fingerprint,
for every loader; the expert reference moved with its image."""
import numpy as np
import pytest
from PIL import Image

from harness.core.errors import DataError
from harness.data.dataset import load_rows, open_row
from harness.data.images import DecodeSettings, _cache_key, decode_images
from harness.data.loaders import get_card, load_dataset
from harness.data.perturb import Perturbation

SYN = {"identities": "4", "images_per_identity": "3", "image_size": "32"}


def bright_pixel(w, h, x, y):
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[y, x] = 255
    return Image.fromarray(a)


@pytest.mark.parametrize("image_id", ["7", "Macaque_Face_21.jpg", "ann/0.jpg"])
def test_a_keypoint_moves_where_the_pixel_it_marks_goes(image_id):
    p = Perturbation(1.0, seed=3)
    w, h, x, y = 61, 47, 22, 30
    out = np.asarray(p.image(bright_pixel(w, h, x, y), image_id))[..., 0].astype(float)
    assert out.shape == (h, w) and out.max() > 0  # same size; the pixel is still in the frame
    ys, xs = np.mgrid[0:h, 0:w]
    # the centroid of the resampled bright pixel, in continuous coordinates (pixel i spans [i, i + 1])
    centroid = np.array([(out * (xs + 0.5)).sum(), (out * (ys + 0.5)).sum()]) / out.sum()
    moved = p.points(np.array([[x + 0.5, y + 0.5]]), image_id, (w, h))[0]
    assert np.linalg.norm(moved - centroid) < 0.35
    assert np.linalg.norm(moved - [x + 0.5, y + 0.5]) > 1  # it did move


def test_the_transform_is_deterministic_seeded_by_image_and_seed_and_scaled_by_severity():
    strong, again, other_seed = Perturbation(1.0, 0), Perturbation(1.0, 0), Perturbation(1.0, 1)
    assert strong.params("5", (100, 100)) == again.params("5", (100, 100))
    assert strong.params("5", (100, 100)) != strong.params("6", (100, 100))
    assert strong.params("5", (100, 100)) != other_seed.params("5", (100, 100))
    angle, (tx, ty), scale = strong.params("5", (100, 100))
    half_angle, (htx, hty), half_scale = Perturbation(0.5, 0).params("5", (100, 100))
    assert half_angle == pytest.approx(angle / 2) and htx == pytest.approx(tx / 2)
    assert half_scale - 1 == pytest.approx((scale - 1) / 2)
    for i in range(200):  # the documented ranges of severity 1
        a, (sx, sy), s = strong.params(str(i), (80, 40))
        assert abs(a) <= 30 and 0.8 <= s <= 1.2 and abs(sx) <= 8 and abs(sy) <= 4
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(strong.image(im, "5")), np.asarray(again.image(im, "5")))


def test_severity_zero_is_the_identity_and_levels_parse():
    im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    zero = Perturbation.from_options("none", None, "d")
    assert zero.severity == 0 and np.array_equal(np.asarray(zero.image(im, "1")), np.asarray(im))
    pts = np.array([[3.0, 4.0], [np.nan, np.nan]])
    assert np.array_equal(zero.points(pts, "1", (30, 20)), pts, equal_nan=True)
    assert Perturbation.from_options("mild", "4", "d") == Perturbation(0.5, 4, "mild")
    assert Perturbation.from_options("0.25", None, "d").severity == 0.25
    assert Perturbation.from_options(None, None, "d") is None


@pytest.mark.parametrize("value, seed, message", [
    ("wild", None, "unknown perturbation severity perturb='wild'; valid: none, mild, strong or a number in [0, 2]"),
    ("-1", None, "unknown perturbation severity"), ("2.5", None, "unknown perturbation severity"),
    ("nan", None, "unknown perturbation severity"), ("mild", "x", "perturb_seed='x' is not an integer"),
    (None, "3", "option perturb_seed needs perturb=<severity>"),
])
def test_bad_perturbation_options_are_one_line_errors(value, seed, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Perturbation.from_options(value, seed, "d")


def test_points_leaving_the_frame_become_nan():
    p = Perturbation(2.0, 0)
    corners = np.array([[0.5, 0.5], [99.5, 0.5], [0.5, 99.5], [99.5, 99.5], [50, 50]])
    moved = np.stack([p.points(corners, str(i), (100, 100)) for i in range(30)])
    assert np.isnan(moved[:, :4]).any()  # corners leave the frame under +-60 degrees and +-20%
    assert np.isfinite(moved[:, 4]).all()  # the centre never does (shift <= 20 px)
    inside = np.isfinite(moved).all(-1)
    assert ((moved[inside] >= 0) & (moved[inside] <= 100)).all()


def test_cache_keys_differ_and_the_unperturbed_key_is_unchanged(tmp_path):
    args = (tmp_path, ["a.png", "b.png"], [None, None], 32)
    plain, mild, strong = _cache_key(*args), _cache_key(*args, "perturb-v1:0.5:0"), _cache_key(*args, "perturb-v1:1:0")
    assert plain == _cache_key(*args, "") and len({plain, mild, strong, _cache_key(*args, "perturb-v1:0.5:1")}) == 4


def test_perturbed_synthetic_moves_pixels_and_ground_truth_and_caches_apart():
    card = get_card("synthetic")
    aligned = load_dataset(card, SYN)
    data = load_dataset(card, {**SYN, "perturb": "strong", "perturb_seed": "2"})
    assert data.fingerprint != aligned.fingerprint and data.unperturbed.fingerprint == aligned.fingerprint
    assert data.info["perturb"]["ranges"] == {"rotation_deg": 30.0, "scale": [0.8, 1.2], "shift": 0.1}
    assert data.info["perturb"]["seed"] == 2 and "perturb" not in aligned.info
    ids = aligned.df["image_id"].astype(str)
    for r in range(len(ids)):
        assert np.array_equal(data.keypoints[r], data.perturbation.points(aligned.keypoints[r], ids[r], (32, 32)),
                              equal_nan=True)
    assert not np.allclose(data.keypoints, aligned.keypoints, equal_nan=True)
    expected = np.asarray(data.perturbation.image(open_row(aligned, 5), ids[5]))
    assert np.array_equal(np.asarray(open_row(data, 5)), expected)
    assert np.array_equal(load_rows(data, [5], 32)[0][0].permute(1, 2, 0).numpy(), expected)
    paths = list(data.df["path"])
    from harness.data.dataset import row_perturbations

    quiet = DecodeSettings(progress=False)
    plain, _, _ = decode_images(aligned.root, paths, 32, settings=quiet)
    moved, _, _ = decode_images(data.root, paths, 32, perturb=row_perturbations(data, range(len(paths))), settings=quiet)
    assert np.array_equal(moved[5].permute(1, 2, 0).numpy(), expected)  # from its own cache folder
    assert not np.array_equal(plain.numpy(), moved.numpy())
    again, _, _ = decode_images(data.root, paths, 32, perturb=row_perturbations(data, range(len(paths))), settings=quiet)
    assert np.array_equal(again.numpy(), moved.numpy())


def test_folder_and_wildlife_loaders_take_the_option_and_the_expert_reference_moves(tmp_path):
    for ident in ("ann", "bob"):
        (tmp_path / "f" / ident).mkdir(parents=True)
        for j in range(2):
            Image.new("RGB", (20, 10), (j * 50, 90, 0)).save(tmp_path / "f" / ident / f"{j}.png")
    folder = load_dataset(get_card(f"folder:{tmp_path / 'f'}"), {"perturb": "mild"})
    assert folder.perturbation.severity == 0.5 and folder.info["perturb"]["level"] == "mild"
    from wildlife_layouts import make_macaquefaces

    from harness.keypoints.references import REFERENCE_SOURCES, AnnotateOptions
    from harness.keypoints.store import load_reference, save_reference

    make_macaquefaces(tmp_path / "w")
    card = get_card("macaquefaces")
    data = load_dataset(card, {"perturb": "strong"}, tmp_path / "w")
    expert = REFERENCE_SOURCES.create("expert")
    aligned_ref = expert.annotate(data.unperturbed, card, AnnotateOptions())
    ref = expert.annotate(data, card, AnnotateOptions())
    assert np.allclose(aligned_ref.points, [[31, 24], [67, 25], [50, 53], [50, 72]])
    assert np.allclose(ref.points, data.perturbation.points(aligned_ref.points, "20", (100, 100)))
    save_reference(ref, data, "ref-moved")  # stored in the perturbed frame: read back unmoved again
    assert np.allclose(load_reference("ref-moved", data).points, ref.points, atol=0.006)  # stored to 0.01 px
    with pytest.raises(DataError, match="made on images perturbed by perturb-v1:1:0"):
        load_reference(str(_stored(data, "ref-moved")), data.unperturbed)


def _stored(data, name):
    from harness.keypoints.store import store_dir

    return store_dir(data) / f"{name}.json"


def test_expert_at_sift_on_perturbed_faces_propagates_the_moved_reference(tmp_path):
    """The recipe annotates the perturbed reference image with the expert's points moved by that
    image's transform: matched against itself, the propagated points land on the moved points."""
    from types import SimpleNamespace

    from wildlife_layouts import make_macaquefaces

    from harness.keypoints.sources import resolve_keypoints

    make_macaquefaces(tmp_path)
    card = get_card("macaquefaces")
    data = load_dataset(card, {"perturb": "strong", "perturb_seed": "5"}, tmp_path)
    cfg = SimpleNamespace(num_keypoints=3, dataset="macaquefaces", seed=0, backbone="nano", image_size=32)
    kps = resolve_keypoints("expert@sift:size=100,step=4", data, cfg, progress=False, card=card)
    row = int(np.flatnonzero(data.df["image_id"].astype(str) == "20")[0])
    expert = np.array([[31, 24], [67, 25], [50, 53]], dtype=float)
    moved = data.perturbation.points(expert, "20", (100, 100))
    assert np.abs(moved - expert).max() > 4  # the transform moved them well beyond the tolerance below
    assert np.abs(kps.points[row] - moved).max() <= 2.5
    assert kps.provenance["reference"]["image_id"] == "20"


def test_a_reference_point_moved_out_of_the_frame_is_a_one_line_error(tmp_path):
    from wildlife_layouts import make_macaquefaces

    from harness.keypoints.references import REFERENCE_SOURCES, AnnotateOptions

    expert = np.array([[31, 24], [67, 25], [50, 53], [50, 72]], dtype=float)
    seed = next(s for s in range(200) if np.isnan(Perturbation(2.0, s).points(expert, "20", (100, 100))).any())
    make_macaquefaces(tmp_path)
    card = get_card("macaquefaces")
    data = load_dataset(card, {"perturb": "2", "perturb_seed": str(seed)}, tmp_path)
    with pytest.raises(DataError, match=f"moves .* of the reference image 20 out of the frame; pass another "
                                        f"--dataset-option perturb_seed"):
        REFERENCE_SOURCES.create("expert").annotate(data, card, AnnotateOptions())
