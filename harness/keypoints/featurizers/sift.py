"""Dense SIFT descriptors (OpenCV) on a regular grid: no weights, runs offline."""
from __future__ import annotations

import numpy as np
import torch

from .base import FEATURIZERS, Featurizer, check_size


@FEATURIZERS.register("sift", "dense SIFT descriptors on a grid (OpenCV): no weights, offline")
class SiftFeaturizer(Featurizer):
    name = "sift"

    def __init__(self, size: int = 128, step: int = 4, patch: float = 12.0, batch_size: int = 64):
        if step < 1 or patch <= 0:
            raise ValueError("--step must be >= 1 and --patch > 0")
        self.size, self.stride, self.patch, self.batch_size = int(size), int(step), float(patch), int(batch_size)
        check_size(self.size, self.stride, "sift")

    def config(self) -> dict:
        return {"featurizer": "sift", "size": self.size, "step": self.stride, "patch": self.patch}

    def load(self) -> None:
        import cv2

        self.cv2 = cv2
        self.sift = cv2.SIFT_create()
        centres = (np.arange(self.size // self.stride) + 0.5) * self.stride - 0.5
        self.grid = [(float(x), float(y)) for y in centres for x in centres]

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        cv2 = self.cv2
        cells = self.size // self.stride
        gray = (images.float().mul(255).clamp(0, 255) * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
        out = np.empty((images.shape[0], 128, cells, cells), dtype=np.float32)
        for i, im in enumerate(gray.round().to(torch.uint8).numpy()):
            kps = [cv2.KeyPoint(x, y, self.patch, 0) for x, y in self.grid]
            kps, desc = self.sift.compute(im, kps)
            if desc is None or len(kps) != len(self.grid):
                raise RuntimeError("OpenCV SIFT dropped grid points; use a smaller --patch")
            out[i] = desc.reshape(cells, cells, 128).transpose(2, 0, 1)
        return torch.from_numpy(out)
