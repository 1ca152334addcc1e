"""Keypoint sources: something that gives every image of a dataset its keypoints.

A KeypointSet holds category names, left/right flip pairs, per-image points (N, K, 2) in
original-image pixels (NaN = missing), aligned with the dataset's rows, and its provenance.
Sources are registered by name; each is a factory ``(data, config) -> KeypointSet``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from .data import DataError, ReidData
from .registry import Registry
from .tokens import random_points


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

    def first(self, k: int | None) -> "KeypointSet":
        """Keep the first ``k`` categories (the --num-keypoints option)."""
        if k is None:
            return self
        if not 1 <= k <= len(self.categories):
            raise DataError(
                f"--num-keypoints {k} is out of range: this keypoint set has {len(self.categories)} "
                f"categories ({', '.join(self.categories)})"
            )
        cats = self.categories[:k]
        pairs = tuple(p for p in self.flip_pairs if p[0] in cats and p[1] in cats)
        return replace(self, categories=cats, flip_pairs=pairs, points=self.points[:, :k])


KEYPOINT_SOURCES: Registry = Registry("keypoint source")


def image_sizes(data: ReidData) -> np.ndarray:
    """(N, 2) original (width, height), read from image headers without decoding; for a cropped
    dataset (``bbox`` column) the size of each crop."""
    from .data import crop_box, parse_bbox

    sizes = np.zeros((len(data.df), 2))
    boxes = [parse_bbox(b) for b in data.df["bbox"]] if "bbox" in data.df else [None] * len(data.df)
    for i, rel in enumerate(data.df["path"]):
        if boxes[i] is not None:
            left, top, right, bottom = crop_box(boxes[i])
            sizes[i] = (right - left, bottom - top)
            continue
        try:
            with Image.open(data.root / rel) as im:
                sizes[i] = im.size
        except OSError as exc:
            raise DataError(f"cannot read image {data.root / rel}: {exc}") from exc
    return sizes


@KEYPOINT_SOURCES.register("ground-truth", "keypoints shipped with the dataset's metadata")
def ground_truth(data: ReidData, cfg) -> KeypointSet:
    if data.keypoints is None:
        raise DataError(
            f"dataset {data.name} has no ground-truth keypoints; choose another --keypoints source "
            f"({', '.join(n for n in KEYPOINT_SOURCES.names() if n != 'ground-truth')})"
        )
    return KeypointSet(data.categories, data.flip_pairs, data.keypoints, {"source": "ground-truth"})


@KEYPOINT_SOURCES.register("random", "uniform random points per image, seeded (control of Tables 6/7)")
def random_source(data: ReidData, cfg) -> KeypointSet:
    k = cfg.num_keypoints or len(data.categories) or 1
    seed = 1_000_003 * cfg.seed + 17
    pts = random_points(image_sizes(data), k, seed)
    cats = tuple(f"random_{i + 1}" for i in range(k))
    return KeypointSet(cats, (), pts, {"source": "random", "seed": seed})
