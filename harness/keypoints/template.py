"""The fixed-template control: the reference's keypoints copied to every image, no matching.

Each point keeps its position relative to the image size (x / width, y / height). On roughly
aligned crops (MacaqueFaces faces) this tells apart what keypoints add from what a fixed
positional prior adds: a model given template points learns nothing about where THIS animal's
eyes are. Selected as the placement ``template`` of a recipe: ``--keypoints expert@template``.

``template_share`` measures how much a keypoint set says beyond that template: per category, the
share of images whose point lies in another patch of the model-input grid than the template's
(`harness keypoints score` reports it and stores it with the set).
"""
from __future__ import annotations

import numpy as np

from ..data.dataset import ReidData, image_sizes, row_of_image
from .sets import KeypointSet, Reference

TEMPLATE = "template"


def place_template(data: ReidData, ref: Reference, reference_name: str, sizes: np.ndarray) -> KeypointSet:
    """The reference's points at the same relative place on every image (``sizes``: their (N, 2) sizes)."""
    relative = ref.points / sizes[row_of_image(data, ref.image_id)]  # (K, 2) in [0, 1]
    points = relative[None, :, :] * sizes[:, None, :]
    provenance = {"source": "template", "reference": {"name": reference_name, "image_id": ref.image_id,
                                                       **ref.provenance}}
    return KeypointSet(ref.categories, ref.flip_pairs, np.asarray(points, dtype=np.float64), provenance)


def patch_cells(points: np.ndarray, sizes: np.ndarray, image_size: int, patch: int) -> np.ndarray:
    """(N, K, 2) original-pixel points -> (N, K, 2) patch (column, row) of the model-input image
    (resized to image_size^2), as ``harness.model.tokens.token_mask`` assigns them (a point on the
    far edge in the last patch); -1 where a point is missing or outside the image."""
    scaled = points * (image_size / np.asarray(sizes, dtype=np.float64))[:, None, :]
    valid = np.isfinite(scaled).all(-1) & ((scaled >= 0) & (scaled <= image_size)).all(-1)
    cells = np.floor(np.clip(np.nan_to_num(scaled), 0, image_size - 1) / patch).astype(np.int64)
    cells[~valid] = -1
    return cells


def template_row(kps: KeypointSet, data: ReidData, card=None) -> int:
    """The row whose points make the template: the set's reference image (its provenance, also an
    oracle's aligned provenance), else the card's reference image, else the first complete row."""
    prov = kps.provenance or {}
    for where in (prov, prov.get("aligned") or {}):
        image_id = (where.get("reference") or {}).get("image_id")
        if image_id is not None:
            return row_of_image(data, image_id)
    if card is not None and card.reference_image is not None:
        return row_of_image(data, card.reference_image)
    complete = np.isfinite(kps.points).all(axis=(1, 2))
    return int(np.argmax(complete))


def template_share(kps: KeypointSet, data: ReidData, row: int, image_size: int, patch: int) -> dict:
    """Information in a keypoint set beyond the fixed template: per category, the share of images
    whose point lies in another patch than the template's (the points of image ``row`` placed at
    the same relative position on every image, as ``place_template`` does), at ``image_size`` and
    ``patch``. Images where the point or the template is missing are left out of that category."""
    sizes = image_sizes(data)
    template = (kps.points[row] / sizes[row])[None, :, :] * sizes[:, None, :]
    mine, fixed = patch_cells(kps.points, sizes, image_size, patch), patch_cells(template, sizes, image_size, patch)
    both = (mine >= 0).all(-1) & (fixed >= 0).all(-1)  # (N, K)
    moved = (mine != fixed).any(-1) & both
    per_cat = {c: (float(moved[:, k].sum() / both[:, k].sum()) if both[:, k].any() else None)
               for k, c in enumerate(kps.categories)}
    return {"image_size": int(image_size), "patch": int(patch), "reference_image": str(data.df["image_id"].iloc[row]),
            "per_category": per_cat, "images": {c: int(both[:, k].sum()) for k, c in enumerate(kps.categories)},
            "all": float(moved.sum() / both.sum()) if both.any() else None}


def _percent(v) -> str:
    return "-" if v is None else f"{100 * v:5.1f}%"


def share_table(share: dict) -> str:
    """The template share as a small text table (categories, then all points)."""
    lines = [f"points in another patch than the fixed template's (image {share['image_size']} px, patch "
             f"{share['patch']} px, template from image {share['reference_image']})",
             f"{'category':<24} {'share':>6} {'images':>7}"]
    for c, v in share["per_category"].items():
        lines.append(f"{c:<24} {_percent(v):>6} {share['images'][c]:>7}")
    lines.append(f"{'all':<24} {_percent(share['all']):>6}")
    return "\n".join(lines)
