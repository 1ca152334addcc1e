"""Keypoint sources: where a run's keypoints for every image come from.

A name given to ``--keypoints`` is, in this order: a registered source (``ground-truth``: the
dataset's own; ``random``: seeded uniform points, the control of Tables 6/7), a recipe
``SOURCE@FEATURIZER[:key=value,...]`` (annotate one reference image, propagate it; both cached),
or the name of a stored keypoint set (from `harness keypoints propagate`). A registered source is
a factory ``(data, config) -> KeypointSet``.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import DataError, RegistryError
from ..core.registry import Registry
from ..data.dataset import ReidData, image_sizes
from .recipes import from_recipe, is_recipe
from .sets import KeypointSet
from .store import load_keypoint_set, stored_names, stored_path

KEYPOINT_SOURCES: Registry = Registry("keypoint source")


def random_points(sizes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Uniform random points inside each image: sizes (n, 2) as (width, height) -> (n, k, 2).
    Reproducible from ``seed``; the control of Tables 6/7."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, size=(len(sizes), k, 2)) * np.asarray(sizes, dtype=np.float64)[:, None, :]


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


def resolve_keypoints(name: str, data: ReidData, cfg, progress: bool = True) -> KeypointSet:
    """The run's keypoints: a registered source (ground-truth, random, ...) or a stored keypoint set
    (from `harness keypoints propagate`), validated against the dataset; then --num-keypoints."""
    num = getattr(cfg, "num_keypoints", None)
    if name in KEYPOINT_SOURCES:
        return KEYPOINT_SOURCES.create(name, data, cfg).first(num)
    if is_recipe(name):
        return from_recipe(name, data, cfg, progress=progress)[0].first(num)
    path = stored_path(name, data)
    if path is None:
        stored = stored_names(data)
        raise RegistryError(
            f"unknown keypoint source {name!r}: neither a registered source ({', '.join(KEYPOINT_SOURCES.names())}) "
            f"nor a stored keypoint set of dataset {data.name} "
            f"({', '.join(stored) if stored else 'none stored yet: see `harness keypoints propagate`'})"
        )
    return load_keypoint_set(path, data)[0].first(num)
