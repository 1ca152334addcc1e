"""The synthetic variant whose keypoints are necessary by construction (``scramble``): every identity
wears the same colours, in its own order over the parts, at random places. Without knowing which
part is where, an image says nothing about its identity."""
import numpy as np
import pytest
from PIL import Image

from harness.data.synthetic import PALETTE, SyntheticSpec, identity_codes, load

SPEC = SyntheticSpec(identities=6, images_per_identity=5, image_size=32, parts=5, scramble=True)


def test_identities_are_orderings_of_one_colour_set():
    codes = identity_codes(SPEC, np.random.default_rng(0))
    assert codes.shape == (6, 5)
    assert all(sorted(row) == [0, 1, 2, 3, 4] for row in codes.tolist())
    assert len({tuple(row) for row in codes.tolist()}) == 6
    assert SPEC.flip_pairs == ()  # parts at random places have no sides to swap


def test_parts_sit_apart_at_random_places_and_show_their_colours(tmp_path):
    root, df, kps = load(SPEC, tmp_path)
    assert kps.shape == (30, 5, 2)
    assert np.isfinite(kps).all() and (kps >= 0).all() and (kps < 32).all()
    gaps = [np.linalg.norm(a - b) for pts in kps for i, a in enumerate(pts) for b in pts[i + 1:]]
    assert min(gaps) > 2.2 * 1.5  # no two discs overlap (disc radius >= 1.5 px)
    # the part's place moves from image to image of one identity: no layout to learn
    first = kps[df["identity"] == df["identity"].iloc[0]]
    assert np.ptp(first[:, 0, 0]) > 5
    # every image shows every colour of the set at some part: the pixels carry the same colours
    codes = identity_codes(SPEC, np.random.default_rng(SPEC.seed))
    for row in range(0, 30, 7):
        pixels = np.asarray(Image.open(root / df["path"].iloc[row]).convert("RGB"), dtype=float)
        identity = int(df["identity"].iloc[row][3:])
        for part, (x, y) in enumerate(kps[row]):
            shown = pixels[int(round(y)), int(round(x))]
            assert np.abs(shown - PALETTE[codes[identity][part]]).max() < 60


def test_scramble_refuses_what_would_leak_or_not_fit():
    with pytest.raises(ValueError, match="4! orderings of the colours cannot give 50 distinct identities"):
        SyntheticSpec(parts=4, scramble=True)
    with pytest.raises(ValueError, match="colours \\(4\\) must be >= parts \\(5\\)"):
        SyntheticSpec(parts=5, colours=4, identities=10, scramble=True)
    with pytest.raises(ValueError, match="scramble and part_markers exclude each other"):
        SyntheticSpec(parts=5, scramble=True, part_markers=True)
    assert SyntheticSpec().fingerprint() == "abd613bbb9cf"  # the standard layout's data is unchanged
    assert SPEC.fingerprint() != SyntheticSpec(identities=6, images_per_identity=5, image_size=32, parts=5).fingerprint()
