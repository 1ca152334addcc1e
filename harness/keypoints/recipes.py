"""Keypoint recipes: `--keypoints SOURCE@FEATURIZER[:key=value,...]` names a whole pipeline.

`expert@dift` = annotate the reference image with the `expert` source, propagate it to every
image with the `dift` featurizer; `gpt4@dift:timestep=100,k=3` the same with GPT-4 choosing 3
keypoints and features at diffusion timestep 100. Keys `k` (keypoints to choose; default: the
run's --num-keypoints), `image` (reference image id; default: the card's reference image) and
`ref_model` (the reference source's model: GPT model name, or the Grad-CAM classifier, e.g. the
offline `tiny-random-vit` / `tiny-random-resnet`) go to the reference source; `mode` (fast /
exact), `pixels` (continuous / centres) and `mirror` (1: also match the mirrored reference) to
the matching (defaults: the featurizer's); every other key to the featurizer. `SOURCE@template`
places the reference's points at the same relative position on every image, without matching
(the fixed-template control). Both steps are cached: the reference by what was asked of it
(`ref-<source>-<hash>`, as `harness keypoints annotate` names it, so GPT-4 is asked once), the
propagated set by its configuration, so a recipe used by many runs is computed once. Under
torchrun rank 0 alone annotates (the others wait) and the ranks share the propagation out.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from ..core import distributed
from ..core.errors import DataError
from ..core.registry import did_you_mean
from ..core.paths import cache_dir
from .featurizers import FEATURIZERS, create_featurizer, option_value
from .propagate import MODES, PIXELS, PropagateSettings, featurizer_device, propagate
from .references import REFERENCE_SOURCES, AnnotateOptions, reference_name
from .sets import KeypointSet, Reference, Target
from .store import entry_path, read_reference, save_reference, stored_path
from .template import TEMPLATE, place_template

REFERENCE_KEYS = {"k": "num_keypoints", "image": "image", "ref_model": "model"}


def is_recipe(name: str) -> bool:
    return "@" in name and not name.endswith(".json")


@dataclass(frozen=True)
class Recipe:
    """A recipe parsed once: its reference source and the options for it (``AnnotateOptions``
    fields), its featurizer (or ``template``) and the featurizer's own options, and the matching
    options {mode, pixels, mirror} (mode and pixels None: the featurizer's defaults)."""

    spec: str
    source: str
    featurizer: str
    reference: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    matching: dict = field(default_factory=dict)

    @property
    def matches(self) -> bool:
        """False for ``SOURCE@template``: the reference's points placed, no featurizer."""
        return self.featurizer != TEMPLATE


def parse_recipe(spec: str) -> Recipe:
    """'gpt4@sd:timestep=100,k=3' -> Recipe(source 'gpt4', featurizer 'sd', reference
    {'num_keypoints': 3}, options {'timestep': 100}); the matching keys checked."""
    source, _, rest = spec.partition("@")
    featurizer, _, opts = rest.partition(":")
    if not source or not featurizer:
        raise DataError(f"bad keypoint recipe {spec!r}: expected SOURCE@FEATURIZER[:key=value,...]")
    ref_opts, feat_opts = {}, {}
    for item in filter(None, (x.strip() for x in opts.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise DataError(f"bad keypoint recipe {spec!r}: option {item!r} is not key=value")
        parsed = option_value(value)
        if key in REFERENCE_KEYS:
            ref_opts[REFERENCE_KEYS[key]] = parsed if key == "k" else value
        else:
            feat_opts[key] = parsed
    matching = _matching(spec, feat_opts)
    return Recipe(spec, source, featurizer, ref_opts, feat_opts, matching)


def _matching(spec: str, feat_opts: dict) -> dict:
    """Take the matching keys out of a recipe's featurizer options: {mode, pixels, mirror}, checked
    (mode and pixels None when not given: the featurizer's defaults)."""
    mode, pixels, mirror = feat_opts.pop("mode", None), feat_opts.pop("pixels", None), feat_opts.pop("mirror", 0)
    if mode is not None and mode not in MODES:
        raise DataError(f"keypoint recipe {spec!r}: unknown matching mode {mode!r}; valid: {', '.join(MODES)}")
    if pixels is not None and pixels not in PIXELS:
        raise DataError(f"keypoint recipe {spec!r}: unknown pixel convention {pixels!r}; valid: {', '.join(PIXELS)}")
    if mirror not in (0, 1):
        raise DataError(f"keypoint recipe {spec!r}: mirror must be 0 or 1, got {mirror!r}")
    return {"mode": mode, "pixels": pixels, "mirror": bool(mirror)}


def recipe_problem(recipe: Recipe) -> str | None:
    """Why a parsed recipe cannot run, judged from names alone (before any data is loaded), or None."""
    spec, source, featurizer = recipe.spec, recipe.source, recipe.featurizer
    if source not in REFERENCE_SOURCES:
        return (f"keypoint recipe {spec!r}: unknown reference source {source!r}; "
                f"valid: {', '.join(REFERENCE_SOURCES.names())}{did_you_mean(source, REFERENCE_SOURCES.names())}")
    if recipe.matches and featurizer not in FEATURIZERS:
        return (f"keypoint recipe {spec!r}: unknown featurizer {featurizer!r}; "
                f"valid: {', '.join(FEATURIZERS.names())}, or {TEMPLATE} (no matching)"
                f"{did_you_mean(featurizer, [*FEATURIZERS.names(), TEMPLATE])}")
    return _secret_problem(spec, source)


def reference_problem(recipe: Recipe, target: Target) -> str | None:
    """Why the recipe's reference cannot be had for this data (the expert file it reads, the image
    it names), asked of the source without annotating anything; None when it can."""
    try:
        REFERENCE_SOURCES.create(recipe.source).request(target.data, target.card, AnnotateOptions(**recipe.reference))
    except DataError as exc:
        return str(exc)
    return None


def _secret_problem(spec: str, source: str) -> str | None:
    """A gpt4 recipe without OPENAI_API_KEY fails when its run reaches the keypoints, maybe hours
    into `--dataset all`: said beforehand, unless the cache holds a GPT-4 reference already (then
    the key may not be needed; which reference a run needs is only known once its data is loaded)."""
    if source != "gpt4" or os.environ.get("OPENAI_API_KEY", "").strip():
        return None
    if any((cache_dir() / "keypoints").glob("*/ref-gpt4-*.json")):
        return None
    return (f"keypoint recipe {spec!r}: the gpt4 reference source needs OPENAI_API_KEY (export your OpenAI API "
            "key) and no GPT-4 reference is stored yet")


def recipe_reference(recipe: Recipe, target: Target) -> tuple[Reference, str]:
    """The recipe's reference annotation, made once and stored under what was asked of it (the
    store is asked once whether it holds it). K is the recipe's `k`, else the run's --num-keypoints;
    the image the recipe's `image`, else the target card's."""
    entry = REFERENCE_SOURCES.get(recipe.source)
    opts = dict(recipe.reference)
    if opts.get("num_keypoints") is None and getattr(target.cfg, "num_keypoints", None):
        opts["num_keypoints"] = target.cfg.num_keypoints
    options = AnnotateOptions(**opts)
    data, annotator = target.data, entry.factory()
    name = reference_name(entry.name, annotator.request(data, target.card, options))
    dist = distributed.from_env()
    path = stored_path(name, data)
    if path is None and dist.is_main:  # under torchrun rank 0 alone annotates
        path = save_reference(annotator.annotate(data, target.card, options), data, name, target.sizes)
    distributed.barrier(dist)
    # read back from its file, as a later run reads it (stored points are rounded to 0.01 px)
    return read_reference(path or entry_path(name, data), data, target.sizes), name


def from_recipe(recipe: Recipe, target: Target) -> tuple[KeypointSet, str]:
    """Annotate (cached) + propagate (cached) -> (KeypointSet, name)."""
    if not recipe.matches:
        ref, ref_name = recipe_reference(recipe, target)
        return place_template(target.data, ref, ref_name, target.sizes), f"{ref_name}@{TEMPLATE}"
    feat = create_featurizer(recipe.featurizer, **recipe.options)
    dist = distributed.from_env()
    if dist.world > 1:  # the process group the reference's barrier and the sharded propagation use
        distributed.setup(dist, featurizer_device(feat))
    ref, ref_name = recipe_reference(recipe, target)
    # every rank propagates its share of the images; rank 0 writes the set
    report = (lambda line: print(line, file=sys.stderr)) if target.progress else None
    kps, name, _ = propagate(target.data, ref, feat, PropagateSettings(**recipe.matching, progress=target.progress),
                             reference_name=ref_name, dist=dist, report=report)
    return kps, name
