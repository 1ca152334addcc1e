"""A reference marked by hand: the names to place and the points a person clicked on the page of
`harness keypoints annotate` (without --source) -> a checked ``Reference``, stored in the same
format as every other reference (``store.reference_to_json``), so propagation and recipes read it."""
from __future__ import annotations

import math

import numpy as np

from ...core.errors import DataError
from ...data.cards import Card
from ...data.dataset import ReidData
from ..sets import Reference, check_inside, infer_flip_pairs, pairs_within

MARKED_SOURCE = "marked"  # the provenance source of a hand-marked reference


def names_to_mark(data: ReidData, card: Card | None, names: str | None,
                  num_keypoints: int | None) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(categories, left/right pairs) to mark: ``names`` (comma-separated, pairs inferred from
    left/right in the names), else the dataset's keypoint categories, the first ``num_keypoints``."""
    if names is not None:
        cats = tuple(n.strip() for n in names.split(",") if n.strip())
        if not cats:
            raise DataError("--names needs at least one name, e.g. --names left_eye,right_eye,nose")
        if len(set(cats)) != len(cats):
            raise DataError(f"--names {names}: a name is given twice")
        return cats, infer_flip_pairs(cats)
    if not data.categories:
        raise DataError(f"dataset {data.name} has no keypoint categories; name the points to mark with "
                        "--names, e.g. --names left_eye,right_eye,nose")
    cats = tuple(data.categories)
    k = num_keypoints or (card.defaults.get("num_keypoints") if card is not None else None)
    if k is not None:
        if k > len(cats):
            raise DataError(f"--num-keypoints {k}: dataset {data.name} has {len(cats)} keypoint categories")
        cats = cats[:k]
    return cats, pairs_within(data.flip_pairs, cats)


def marked_reference(image_id: str, categories, flip_pairs, points: object, size) -> Reference:
    """The reference from clicked ``points`` ({name: [x, y]} in the image's original pixels),
    checked: every name placed once, no other name, finite numbers inside the ``size`` (w, h) image."""
    if not isinstance(points, dict):
        raise DataError("'points' must map each name to [x, y]")
    extra = sorted(set(points) - set(categories))
    if extra:
        raise DataError(f"unknown point name(s) {', '.join(map(str, extra))}; the names are {', '.join(categories)}")
    missing = [c for c in categories if c not in points]
    if missing:
        raise DataError(f"no point for {', '.join(missing)}: every name needs one before saving")
    pts = np.array([_point(points[c], c) for c in categories], dtype=np.float64)
    w, h = size
    check_inside(pts, w, h, f"image {image_id}", categories)
    return Reference(str(image_id), tuple(categories), tuple(flip_pairs), pts, {"source": MARKED_SOURCE})


def _point(value, name: str) -> tuple[float, float]:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
    if not ok or not all(math.isfinite(v) for v in value):
        raise DataError(f"point {name}: expected [x, y] finite numbers, got {value!r}")
    return float(value[0]), float(value[1])


def marked_name(ref: Reference) -> str:
    """A hand-marked reference's stored name: its content, so marking the same points again finds it."""
    return f"ref-{MARKED_SOURCE}-{ref.content_hash()[:8]}"
