"""Keypoints -> per-patch token masks, and the horizontal flip that keeps categories honest.

Keypoints are float pixel coordinates (x right, y down) in the model-input image, shape (B, K, 2);
NaN marks a missing point. ``category`` (K,) gives each keypoint's category index in 0..C-1.
A keypoint at continuous position (x, y) lies in patch (floor(y / ph), floor(x / pw)); a point on
the far edge (x = W or y = H, e.g. a point at x = 0 after a horizontal flip) belongs to the last
patch; points outside [0, W] x [0, H] or NaN are ignored. The mask has one row per patch token (no [CLS] row:
the encoding is added to patch tokens only, so [CLS] is untouched).
"""
from __future__ import annotations

import torch


def token_mask(
    points: torch.Tensor,
    category: torch.Tensor,
    num_categories: int,
    grid: tuple[int, int],
    patch: tuple[int, int],
) -> torch.Tensor:
    """(B, K, 2) points, (K,) category ids -> (B, gh*gw, C) float mask in {0, 1}."""
    gh, gw = grid
    ph, pw = patch
    b, k, _ = points.shape
    mask = torch.zeros(b, gh * gw, num_categories, dtype=torch.float32, device=points.device)
    if k == 0:
        return mask
    x, y = points[..., 0], points[..., 1]
    valid = torch.isfinite(x) & torch.isfinite(y) & (x >= 0) & (y >= 0) & (x <= gw * pw) & (y <= gh * ph)
    col = torch.div(torch.nan_to_num(x, nan=0.0).clamp(0, gw * pw - 1), pw, rounding_mode="floor").long()
    row = torch.div(torch.nan_to_num(y, nan=0.0).clamp(0, gh * ph - 1), ph, rounding_mode="floor").long()
    token = row * gw + col
    bidx = torch.arange(b, device=points.device)[:, None].expand(b, k)
    cidx = category.to(points.device).long()[None, :].expand(b, k)
    mask[bidx[valid], token[valid], cidx[valid]] = 1.0
    return mask


def flip_permutation(categories: list[str] | tuple[str, ...], flip_pairs) -> list[int]:
    """Index permutation that swaps left/right categories: new[i] = old[perm[i]]."""
    index = {c: i for i, c in enumerate(categories)}
    perm = list(range(len(categories)))
    for a, b in flip_pairs:
        if a in index and b in index:
            perm[index[a]], perm[index[b]] = index[b], index[a]
    return perm


def hflip(images: torch.Tensor, points: torch.Tensor | None, flip: torch.Tensor,
          perm: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mirror the images where ``flip`` (B,) is True; mirror their keypoints, if any (x -> W - x),
    and swap left/right categories so a flipped left eye is labelled as the right eye it now looks like."""
    if not bool(flip.any()):
        return images, points
    width = images.shape[-1]
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if points is None:
        return images, None
    mirrored = points.clone()
    mirrored[..., 0] = width - mirrored[..., 0]
    mirrored = mirrored[:, perm]
    points = torch.where(flip[:, None, None], mirrored, points)
    return images, points
