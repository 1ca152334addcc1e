"""Keypoint sources: where a run's keypoints for every image come from.

A name given to ``--keypoints`` is, in this order: a registered source (``ground-truth``: the
dataset's own; ``random``: seeded uniform points, the control of Tables 6/7), a recipe
``SOURCE@FEATURIZER[:key=value,...]`` (annotate one reference image, propagate it; both cached),
or the name of a stored keypoint set (from `harness keypoints propagate`). A registered source is
a factory ``(data, config) -> KeypointSet``. Two wrappers compose with any of them:

- ``oracle:SOURCE`` (on a dataset with ``--dataset-option perturb``): SOURCE resolved on the same
  dataset without the perturbation (the aligned images), each image's points then moved by that
  image's exact transform: where perfect propagation would put them on the perturbed images.
- ``SOURCE+noise=SIGMA``: SOURCE with seeded Gaussian noise of SIGMA patch widths added to every
  point (the same noisy points at training and test; the name, and so the run's config, says SIGMA).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

import numpy as np

from ..core.errors import DataError, RegistryError
from ..core.registry import Registry, did_you_mean, plugin_loader
from ..data.cards import Card
from ..data.dataset import ReidData, image_sizes
from ..model.backbones import skeleton
from .recipes import Recipe, from_recipe, is_recipe, parse_recipe, recipe_problem, reference_problem
from .sets import KeypointSet, Target
from .store import load_keypoint_set, stored_names, stored_path

# third-party sources come from the ``harness.keypoint_sources`` entry-point group or HARNESS_PLUGIN_PATH
KEYPOINT_SOURCES: Registry = Registry("keypoint source", loader=plugin_loader("harness.keypoint_sources"))


def random_points(sizes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Uniform random points inside each image: sizes (n, 2) as (width, height) -> (n, k, 2).
    Reproducible from ``seed``; the control of Tables 6/7."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, size=(len(sizes), k, 2)) * np.asarray(sizes, dtype=np.float64)[:, None, :]


def annotate_route(dataset: str) -> str:
    """The way to keypoints on a dataset that ships none: mark one image, propagate it."""
    return (f"mark one reference image with `harness keypoints annotate --dataset {dataset}`, propagate it to every "
            f"image with `harness keypoints propagate --dataset {dataset} --reference <its name> --featurizer sift`, "
            "then run with --keypoints <the propagated set's name>")


def no_ground_truth(dataset: str) -> str:
    return (f"dataset {dataset} has no ground-truth keypoints: {annotate_route(dataset)} (or --keypoints random, "
            "the control)")


@KEYPOINT_SOURCES.register("ground-truth", "keypoints shipped with the dataset's metadata")
def ground_truth(data: ReidData, cfg) -> KeypointSet:
    if data.keypoints is None:
        raise DataError(no_ground_truth(data.name))
    return KeypointSet(data.categories, data.flip_pairs, data.keypoints, {"source": "ground-truth"})


@KEYPOINT_SOURCES.register("random", "uniform random points per image, seeded (control of Tables 6/7)")
def random_source(data: ReidData, cfg) -> KeypointSet:
    k = cfg.num_keypoints or len(data.categories) or 1
    seed = 1_000_003 * cfg.seed + 17
    pts = random_points(image_sizes(data), k, seed)
    cats = tuple(f"random_{i + 1}" for i in range(k))
    return KeypointSet(cats, (), pts, {"source": "random", "seed": seed})


ORACLE_PREFIX = "oracle:"  # ``oracle:SOURCE``: SOURCE on the aligned images, moved by each image's transform
NOISE = re.compile(r"^(?P<base>.+)\+noise=(?P<sigma>[^+]*)$")


@dataclass(frozen=True)
class KeypointName:
    """A ``--keypoints`` value parsed once: ``+noise=SIGMA`` (outermost) around ``oracle:`` around
    the base: a registered source, a recipe (parsed) or a stored set's name."""

    name: str
    inner: str  # the name without its noise suffix
    base: str  # without either wrapper
    oracle: bool = False
    noise: float | None = None
    recipe: Recipe | None = None


def parse_keypoints(name: str) -> KeypointName:
    """'oracle:expert@sift+noise=0.5' -> KeypointName(base 'expert@sift' as a Recipe, oracle, noise
    0.5); a bad sigma or recipe is a DataError."""
    inner, sigma = name, None
    found = NOISE.match(name)
    if found is not None:
        inner = found["base"]
        try:
            sigma = float(found["sigma"])
        except ValueError:
            sigma = float("nan")
        if not sigma >= 0 or not np.isfinite(sigma):  # negative, NaN, inf
            raise DataError(f"keypoint source {name!r}: noise sigma must be a number >= 0 (in patch widths), "
                            f"got {found['sigma']!r}")
    oracle = inner.startswith(ORACLE_PREFIX)
    base = inner[len(ORACLE_PREFIX):] if oracle else inner
    recipe = parse_recipe(base) if base not in KEYPOINT_SOURCES and is_recipe(base) else None
    return KeypointName(name, inner, base, oracle, sigma, recipe)


def source_problem(name: str) -> str | None:
    """Why a keypoint source name cannot work, judged from the name alone (before any data is
    loaded; wrappers unwrapped, recipes checked), or None."""
    try:
        parsed = parse_keypoints(name)
    except DataError as exc:
        return str(exc)
    return None if parsed.recipe is None else recipe_problem(parsed.recipe)


def keypoints_problem(name: str, target: Target) -> str | None:
    """Whether the keypoints ``name`` asks for can be had for this data, judged without making them
    (a dry run's check): the ground truth, a perturbed dataset for ``oracle:``, patches to measure
    noise in, a recipe's reference, a stored set; one line, or None."""
    try:
        parsed = parse_keypoints(name)
        if parsed.noise is not None:
            patch_pixels(target.cfg)
    except DataError as exc:
        return str(exc)
    data = target.data
    if parsed.oracle:
        if data.perturbation is None:
            return (f"keypoint source {parsed.inner!r} needs a perturbed dataset (--dataset-option perturb=<severity>)")
        data = data.unperturbed
    if parsed.base == "ground-truth":
        return no_ground_truth(data.name) if data.keypoints is None else None
    if parsed.base in KEYPOINT_SOURCES:
        return None
    if parsed.recipe is not None:
        why = recipe_problem(parsed.recipe) or reference_problem(parsed.recipe, replace(target, data=data))
        return f"{why}; or {annotate_route(data.name)}" if why else None
    if stored_path(parsed.base, data) is None:
        return f"{unknown_source(parsed.base, data)}; to make one, {annotate_route(data.name)}"
    return None


def patch_pixels(cfg) -> int:
    """The patch width, in model-input pixels, of the run's backbone (its meta-device skeleton:
    nothing is downloaded or allocated)."""
    embed = getattr(skeleton(cfg.backbone, cfg.image_size), "patch_embed", None)
    if embed is None:
        raise DataError(f"backbone {cfg.backbone!r} has no patches: keypoint noise is measured in patch widths")
    size = embed.patch_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def image_seed(tag: str, image_id) -> np.random.Generator:
    digest = hashlib.sha256(f"{tag}|{image_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def noisy(kps: KeypointSet, target: Target, sigma: float, patch: int) -> KeypointSet:
    """Gaussian noise of ``sigma`` patch widths (``sigma * patch`` model-input pixels, i.e. that
    times width / image_size original pixels in x, height / image_size in y) added to each point.
    Drawn per image from its id alone, so every sigma scales the same draws; points pushed out
    of the image become NaN (missing), as the token masks would ignore them anyway."""
    sizes, image_size = target.sizes, target.cfg.image_size
    ids = target.data.df["image_id"].astype(str)
    draws = np.stack([image_seed("keypoint-noise-v1", i).standard_normal(kps.points.shape[1:]) for i in ids])
    points = kps.points + sigma * patch * draws * (sizes / image_size)[:, None, :]
    outside = ~((points >= 0) & (points <= sizes[:, None, :])).all(-1)
    points[outside] = np.nan
    provenance = {**kps.provenance, "noise": {"sigma_patches": sigma, "patch_px": patch, "image_size": image_size,
                                              "sigma_input_px": sigma * patch}}
    return replace(kps, points=points, provenance=provenance)


def oracle_keypoints(parsed: KeypointName, target: Target) -> KeypointSet:
    """``oracle:SOURCE``: SOURCE on the unperturbed images, moved by each image's exact transform."""
    name, inner, data = parsed.inner, parsed.base, target.data
    if data.perturbation is None:
        raise DataError(f"keypoint source {name!r} needs a perturbed dataset (--dataset-option perturb=<severity>): "
                        "it moves the aligned images' points by each image's transform")
    aligned = replace(target, data=data.unperturbed)
    kps = resolve_target(inner, aligned)
    ids = aligned.data.df["image_id"].astype(str).tolist()
    points = data.perturbation.dataset_points(kps.points, ids, aligned.sizes)
    provenance = {"source": "oracle", "aligned": {"keypoints": inner, **kps.provenance},
                  "perturb": data.perturbation.record()}
    return KeypointSet(kps.categories, kps.flip_pairs, points, provenance)


def resolve_keypoints(name: str, data: ReidData, cfg, progress: bool = True, card: Card | None = None) -> KeypointSet:
    """The run's keypoints: a registered source (ground-truth, random, ...), a recipe, or a stored
    keypoint set (from `harness keypoints propagate`), validated against the dataset; then
    --num-keypoints; the wrappers ``oracle:`` and ``+noise=`` around any of them. ``card``: the card
    ``data`` was loaded from (a recipe's reference image and expert file), as the caller holds it."""
    return resolve_target(name, Target(data, card, cfg, progress))


def resolve_target(name: str, target: Target) -> KeypointSet:
    """``resolve_keypoints`` for a target made once: every step below reads its card and sizes."""
    return resolve_origin(name, target).keypoints


@dataclass(frozen=True)
class Resolved:
    """A name's keypoints and the stored set they are read from, so that what is measured on them
    (PCK, template share) can be kept with that set; ``not_stored`` says why there is none."""

    keypoints: KeypointSet
    stored_set: str | None = None
    not_stored: str | None = None


def resolve_origin(name: str, target: Target) -> Resolved:
    """The one dispatch on a keypoint name (see the module docstring for the order)."""
    parsed = parse_keypoints(name)
    derived = "it is derived on the fly from another source (score that source to store with its set)"
    if parsed.noise is not None:
        kps = noisy(resolve_target(parsed.inner, target), target, parsed.noise, patch_pixels(target.cfg))
        return Resolved(kps, None, derived)
    if parsed.oracle:
        return Resolved(oracle_keypoints(parsed, target), None, derived)
    data, num = target.data, getattr(target.cfg, "num_keypoints", None)
    if name in KEYPOINT_SOURCES:
        return Resolved(KEYPOINT_SOURCES.create(name, data, target.cfg).first(num), None,
                        "it is a registered source, made from the dataset each time")
    if parsed.recipe is not None:
        full, set_name = from_recipe(parsed.recipe, target)
        if stored_path(set_name, data) is None:  # SOURCE@template places its points anew each time
            return Resolved(full.first(num), None, f"the recipe's set {set_name} is placed on the fly, not stored")
        return kept_with(full, set_name, num)
    path = stored_path(name, data)
    if path is None:
        raise RegistryError(unknown_source(name, data))
    return kept_with(load_keypoint_set(path, data, target.sizes)[0], name, num)


def unknown_source(name: str, data: ReidData) -> str:
    """A name that is neither a registered source, a recipe, nor a set stored for ``data``."""
    stored = stored_names(data)
    return (f"unknown keypoint source {name!r}: neither a registered source ({', '.join(KEYPOINT_SOURCES.names())}) "
            f"nor a stored keypoint set of dataset {data.name} "
            f"({', '.join(stored) if stored else 'none stored yet: see `harness keypoints propagate`'})"
            f"{did_you_mean(name, [*KEYPOINT_SOURCES.names(), *stored])}")


def kept_with(full: KeypointSet, set_name: str, num: int | None) -> Resolved:
    """A stored set cut to --num-keypoints; a cut one keeps no scores, which would pass for the whole set's."""
    kps = full.first(num)
    if len(kps.categories) == len(full.categories):
        return Resolved(kps, set_name)
    return Resolved(kps, None, f"--num-keypoints {len(kps.categories)} keeps fewer than the "
                               f"{len(full.categories)} keypoints of its stored set {set_name}")
