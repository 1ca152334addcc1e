"""PCK@alpha of a keypoint set against the dataset's ground truth.

A predicted keypoint is correct when it lies within alpha * max(h, w) of the ground-truth point,
where (w, h) is the size of the animal's bounding box when the dataset has one (a ``bbox`` column,
[x, y, w, h]) and of the whole image otherwise. Ground-truth points that are missing are left out;
a missing prediction for a present ground-truth point counts as wrong. Categories are matched by
name; categories the ground truth does not have are not scored.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import DataError
from ..data.dataset import ReidData, image_sizes
from .sets import KeypointSet


def reference_lengths(data: ReidData) -> tuple[np.ndarray, str]:
    """max(w, h) per row of the image as used: the crop of a dataset with a ``bbox`` column (the
    whole image on rows without a box), else the whole image."""
    basis = "max(h, w) of the bounding box" if "bbox" in data.df.columns else "max(h, w) of the image"
    return image_sizes(data).max(1), basis


def pck(kps: KeypointSet, data: ReidData, alpha: float = 0.1, truth: KeypointSet | None = None) -> dict:
    """PCK against the dataset's ground truth, or against ``truth`` (another keypoint set of the
    same rows, e.g. the oracle of a perturbed dataset: ``oracle:SOURCE``)."""
    if not 0 < alpha <= 1:
        raise ValueError(f"--alpha must be in (0, 1], got {alpha}")
    if truth is None and data.keypoints is None:
        raise DataError(f"dataset {data.name} has no ground-truth keypoints to score against (on a perturbed "
                        "dataset, score against its oracle: --against oracle:SOURCE)")
    true_cats = truth.categories if truth is not None else data.categories
    true_points = truth.points if truth is not None else data.keypoints
    shared = [c for c in kps.categories if c in true_cats]
    if not shared:
        raise DataError(
            f"no keypoint category of this set ({', '.join(kps.categories)}) is in the "
            f"{'reference set' if truth is not None else 'ground truth of ' + data.name} ({', '.join(true_cats)}); "
            "PCK compares categories by name"
        )
    pi = [kps.categories.index(c) for c in shared]
    gi = [true_cats.index(c) for c in shared]
    pred, gt = kps.points[:, pi], true_points[:, gi]
    lengths, basis = reference_lengths(data)
    present = np.isfinite(gt).all(-1)
    dist = np.linalg.norm(pred - gt, axis=-1)
    correct = np.where(np.isfinite(dist), dist <= alpha * lengths[:, None], False) & present
    per_cat = {c: float(correct[:, j].sum() / max(present[:, j].sum(), 1)) for j, c in enumerate(shared)}
    counted = present.sum(1)
    per_image = {str(i): (float(correct[r].sum() / counted[r]) if counted[r] else None)
                 for r, i in enumerate(data.df["image_id"])}
    return {
        "alpha": alpha,
        "basis": basis,
        "pck": float(correct.sum() / max(present.sum(), 1)),
        "per_category": per_cat,
        "per_image": per_image,
        "points": int(present.sum()),
        "unscored_categories": [c for c in kps.categories if c not in shared],
        "median_error_px": float(np.nanmedian(np.where(present, dist, np.nan))) if present.any() else None,
    }


def table(score: dict) -> str:
    """The PCK result as a small text table (categories, then the overall value)."""
    lines = [f"PCK@{score['alpha']:g} ({score['basis']})", f"{'category':<24} {'PCK':>6}"]
    for c, v in score["per_category"].items():
        lines.append(f"{c:<24} {100 * v:6.1f}")
    lines.append(f"{'all':<24} {100 * score['pck']:6.1f}")
    imgs = [v for v in score["per_image"].values() if v is not None]
    if imgs:
        lines.append(f"images with every keypoint correct: {sum(v == 1.0 for v in imgs)}/{len(imgs)}")
    if score["unscored_categories"]:
        lines.append(f"not scored (no ground truth): {', '.join(score['unscored_categories'])}")
    return "\n".join(lines)
