"""Keypoint value types: a set for every image of a dataset, a reference annotation of one image,
and the target a keypoint source is resolved for.

Points are pixels of the image as the harness uses it (x right, y down; the crop's pixels for a
cropped dataset); NaN marks a missing point. Left/right names follow the animal's own sides.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ..core.errors import DataError
from ..core.io import config_hash
from ..data.cards import Card
from ..data.dataset import ReidData, image_sizes


def pairs_within(flip_pairs, categories) -> tuple[tuple[str, str], ...]:
    """The left/right pairs whose two sides are both among ``categories`` (after keeping the first K)."""
    return tuple(p for p in flip_pairs if p[0] in categories and p[1] in categories)


@dataclass(frozen=True)
class KeypointSet:
    categories: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...]
    points: np.ndarray  # (N, K, 2)
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.points.ndim != 3 or self.points.shape[1:] != (len(self.categories), 2):
            raise DataError(f"keypoint array shape {self.points.shape} does not fit {len(self.categories)} categories")
        names = set(self.categories)
        for a, b in self.flip_pairs:
            if a not in names or b not in names:
                raise DataError(f"flip pair ({a}, {b}) names a category not in {list(self.categories)}")

    def first(self, k: int | None) -> KeypointSet:
        """Keep the first ``k`` categories (the --num-keypoints option)."""
        if k is None:
            return self
        if not 1 <= k <= len(self.categories):
            raise DataError(
                f"--num-keypoints {k} is out of range: this keypoint set has {len(self.categories)} "
                f"categories ({', '.join(self.categories)})"
            )
        cats = self.categories[:k]
        return replace(self, categories=cats, flip_pairs=pairs_within(self.flip_pairs, cats), points=self.points[:, :k])


@dataclass(frozen=True)
class Reference:
    """Keypoints chosen on ONE reference image: (K, 2) points in its original pixels."""

    image_id: str
    categories: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...]
    points: np.ndarray
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.points.shape != (len(self.categories), 2):
            raise DataError(f"reference points shape {self.points.shape} does not fit {len(self.categories)} categories")
        if not np.isfinite(self.points).all():
            raise DataError("every keypoint of a reference annotation needs a position")

    def content_hash(self) -> str:
        return config_hash({"image_id": self.image_id, "categories": self.categories,
                            "points": np.round(self.points, 2).tolist(), "flip_pairs": self.flip_pairs})


def infer_flip_pairs(names) -> tuple[tuple[str, str], ...]:
    """Left/right pairs among names such as left_eye/right_eye, 'left eye'/'right eye', eye_l/eye_r."""
    pairs = []
    by_key = {n.lower(): n for n in names}
    for n in names:
        low = n.lower()
        for a, b in (("left", "right"), ("_l", "_r")):
            if a in low:
                other = low.replace(a, b)
                if other in by_key and other != low:
                    pairs.append((n, by_key[other]))
                break
    return tuple(pairs)


def check_inside(pts: np.ndarray, w: float, h: float, where: str, cats) -> None:
    for c, (x, y) in zip(cats, pts):
        if not (0 <= x <= w and 0 <= y <= h):
            raise DataError(f"{where}: {c} at ({x:g}, {y:g}) is outside the {w:g}x{h:g} image")


@dataclass(frozen=True)
class Target:
    """What keypoints are resolved for: the dataset, the card it was loaded from (its reference
    image and expert file; None for a dataset made without one), the run's config and whether to
    show progress. Made once from what the caller holds and handed down the layers, so none below
    looks the card up again; ``sizes`` reads the image sizes once, for every step that needs them."""

    data: ReidData
    card: Card | None
    cfg: object
    progress: bool = True

    @cached_property
    def sizes(self) -> np.ndarray:
        return image_sizes(self.data)
