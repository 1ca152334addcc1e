"""Colour spin images: rotation- and mirror-invariant ring histograms, no weights, offline."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import FEATURIZERS, Featurizer, check_size


@FEATURIZERS.register("spin", "colour spin images (ring histograms): rotation/mirror invariant, no weights, offline")
class SpinFeaturizer(Featurizer):
    """Colour spin images (Lazebnik, Schmid & Ponce 2005): at every pixel, a soft histogram of each
    colour channel's intensity within concentric rings around it. Invariant to rotation and
    mirroring, no weights; Hellinger-normalised (square root) so cosine compares histograms."""

    name = "spin"

    SPACES = ("rgb", "gray", "minmax")

    def __init__(self, size: int = 64, step: int = 2, rings: int = 5, radius: float = 0.125, bins: int = 8,
                 space: str = "rgb", batch_size: int = 64):
        if space not in self.SPACES:
            raise ValueError(f"spin --space must be one of {', '.join(self.SPACES)}, got {space!r}")
        self.space = space
        if rings < 1 or bins < 2 or not 0 < radius < 0.5 or step < 1:
            raise ValueError("spin featurizer needs --rings >= 1, --bins >= 2, 0 < --radius < 0.5, --step >= 1")
        self.size, self.stride, self.rings, self.radius, self.bins = int(size), int(step), int(rings), float(radius), int(bins)
        self.batch_size = int(batch_size)
        check_size(self.size, self.stride, "spin")

    def config(self) -> dict:
        return {"featurizer": "spin", "size": self.size, "step": self.stride, "rings": self.rings,
                "radius": self.radius, "bins": self.bins, "space": self.space}

    def load(self) -> None:
        outer = self.radius * self.size
        spacing = outer / max(self.rings - 1, 1)
        sigma = max(spacing / 2, 0.5)
        half = int(np.ceil(outer + 2 * sigma))
        yy, xx = torch.meshgrid(torch.arange(-half, half + 1.0), torch.arange(-half, half + 1.0), indexing="ij")
        dist = (xx**2 + yy**2).sqrt()
        kernels = []
        for i in range(self.rings):
            k = torch.exp(-((dist - i * spacing) ** 2) / (2 * sigma**2))
            kernels.append(k / k.sum())
        self.kernels = torch.stack(kernels)[:, None]  # (rings, 1, k, k)
        self.half = half

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        if self.space == "gray":
            images = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif self.space == "minmax":  # brightest and darkest channel: separates black/white from colours
            images = torch.cat([images.amax(1, keepdim=True), images.amin(1, keepdim=True)], 1)
        b, c, h, w = images.shape
        centres = (torch.arange(self.bins) + 0.5) / self.bins
        soft = (1 - (images[:, :, None] - centres.view(1, 1, -1, 1, 1)).abs() * self.bins).clamp(min=0)
        soft = soft.reshape(b * c * self.bins, 1, h, w)
        pooled = F.conv2d(F.pad(soft, [self.half] * 4, mode="replicate"), self.kernels)  # (b*c*bins, rings, h, w)
        feats = pooled.reshape(b, c * self.bins * self.rings, h, w)
        feats = F.avg_pool2d(feats, self.stride) if self.stride > 1 else feats
        return feats.clamp(min=0).sqrt()
