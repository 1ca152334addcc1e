"""Keypoint recipes: `--keypoints SOURCE@FEATURIZER[:key=value,...]` names a whole pipeline.

`expert@sd` = annotate the reference image with the `expert` source, propagate it to every image
with the `sd` featurizer; `gpt4@sd:timestep=100,k=3` the same with GPT-4 choosing 3 keypoints and
features at diffusion timestep 100. Keys `k` (keypoints to choose), `image` (reference image id) and
`ref_model` (the reference source's model: GPT model name, or the Grad-CAM classifier, e.g. the
offline `tiny-random-vit` / `tiny-random-resnet`) go to the reference source, `mode` (fast/exact)
and `mirror` (1: also match the mirrored reference) to the matching, every other key to the
featurizer. Both steps are cached: the
reference under `recipe-<source>-<hash>` (so GPT-4 is asked once), the propagated set by its
configuration, so a recipe used by many runs (a table's cells, seeds) is computed once. Under
torchrun rank 0 alone annotates (the others wait) and the ranks share the propagation out.
"""
from __future__ import annotations

import sys

from ..core import distributed
from ..core.errors import DataError
from ..core.io import config_hash
from ..data.dataset import ReidData
from ..data.loaders import get_card
from .featurizers import FEATURIZERS, create_featurizer
from .propagate import MODES, featurizer_device, propagate
from .references import REFERENCE_SOURCES, AnnotateOptions
from .store import load_reference, save_reference, stored_path

REFERENCE_KEYS = {"k": "num_keypoints", "image": "image", "ref_model": "model"}


def is_recipe(name: str) -> bool:
    return "@" in name and not name.endswith(".json")


def parse_recipe(spec: str) -> tuple[str, str, dict, dict]:
    """'gpt4@sd:timestep=100,k=3' -> ('gpt4', 'sd', {'num_keypoints': 3}, {'timestep': 100})."""
    source, _, rest = spec.partition("@")
    featurizer, _, opts = rest.partition(":")
    if not source or not featurizer:
        raise DataError(f"bad keypoint recipe {spec!r}: expected SOURCE@FEATURIZER[:key=value,...]")
    ref_opts, feat_opts = {}, {}
    for item in filter(None, (x.strip() for x in opts.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise DataError(f"bad keypoint recipe {spec!r}: option {item!r} is not key=value")
        parsed = _number(value)
        if key in REFERENCE_KEYS:
            ref_opts[REFERENCE_KEYS[key]] = parsed if key == "k" else value
        else:
            feat_opts[key] = parsed
    return source, featurizer, ref_opts, feat_opts


def matching_options(spec: str, feat_opts: dict) -> tuple[str, bool]:
    """Take the matching keys out of a recipe's featurizer options: (mode, mirror), checked."""
    mode, mirror = str(feat_opts.pop("mode", "fast")), feat_opts.pop("mirror", 0)
    if mode not in MODES:
        raise DataError(f"keypoint recipe {spec!r}: unknown matching mode {mode!r}; valid: {', '.join(MODES)}")
    if mirror not in (0, 1):
        raise DataError(f"keypoint recipe {spec!r}: mirror must be 0 or 1, got {mirror!r}")
    return mode, bool(mirror)


def recipe_problem(spec: str) -> str | None:
    """Why a recipe cannot run, judged from names alone (before any data is loaded), or None."""
    try:
        source, featurizer, _, feat_opts = parse_recipe(spec)
        matching_options(spec, feat_opts)
    except DataError as exc:
        return str(exc)
    for name, reg in ((source, REFERENCE_SOURCES), (featurizer, FEATURIZERS)):
        if name not in reg:
            return f"keypoint recipe {spec!r}: unknown {reg.kind} {name!r}; valid: {', '.join(reg.names())}"
    return None


def _number(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def from_recipe(spec: str, data: ReidData, cfg, progress: bool = True):
    """Annotate (cached) + propagate (cached) -> (KeypointSet, provenance name)."""
    source, featurizer, ref_opts, feat_opts = parse_recipe(spec)
    mode, mirror = matching_options(spec, feat_opts)
    entry = REFERENCE_SOURCES.get(source)
    key = config_hash([entry.name, ref_opts])
    ref_name = f"recipe-{entry.name}-{key}"
    feat = create_featurizer(featurizer, **feat_opts)
    dist = distributed.from_env()
    if dist.world > 1:  # under torchrun: rank 0 alone annotates, the others wait for its reference
        distributed.setup(dist, featurizer_device(feat))
    if dist.is_main and stored_path(ref_name, data) is None:
        card = get_card(cfg.dataset) if getattr(cfg, "dataset", None) else None
        ref = entry.factory().annotate(data, card, AnnotateOptions(**ref_opts))
        save_reference(ref, data, ref_name)
    distributed.barrier(dist)
    ref = load_reference(ref_name, data)
    # every rank propagates its share of the images; rank 0 writes the set
    kps, name, _ = propagate(data, ref, feat, reference_name=ref_name, mode=mode, mirror=mirror,
                             progress=progress, dist=dist,
                             report=(lambda line: print(line, file=sys.stderr)) if progress else None)
    return kps, name
