"""The fixed-template control: the reference's keypoints copied to every image, no matching.

Each point keeps its position relative to the image size (x / width, y / height). On roughly
aligned crops (MacaqueFaces faces) this tells apart what keypoints add from what a fixed
positional prior adds: a model given template points learns nothing about where THIS animal's
eyes are. Selected as the placement ``template`` of a recipe: ``--keypoints expert@template``.
"""
from __future__ import annotations

import numpy as np

from ..data.dataset import ReidData, image_sizes, row_of_image
from .sets import KeypointSet, Reference

TEMPLATE = "template"


def place_template(data: ReidData, ref: Reference, reference_name: str) -> KeypointSet:
    sizes = image_sizes(data)
    relative = ref.points / sizes[row_of_image(data, ref.image_id)]  # (K, 2) in [0, 1]
    points = relative[None, :, :] * sizes[:, None, :]
    provenance = {"source": "template", "reference": {"name": reference_name, "image_id": ref.image_id,
                                                       **ref.provenance}}
    return KeypointSet(ref.categories, ref.flip_pairs, np.asarray(points, dtype=np.float64), provenance)
