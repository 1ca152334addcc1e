"""Pose-perturbed images: ``--dataset-option perturb=<severity>`` for any dataset (positive control).

Every image gets, once and deterministically, a random similarity transform about its centre
(rotation, isotropic scale, translation), drawn from a generator seeded by the image id and
``perturb_seed`` (default 0). Pixels and keypoints move together: the image goes through
torchvision's ``transforms.v2.functional.affine`` and its points through the same call on
``tv_tensors.KeyPoints``, so one implementation of the matrix serves both and they cannot
disagree. Points the transform moves out of the frame become NaN (missing). The transform acts on
the image as used (after a ``crop=bbox`` crop, before resizing), in its own pixels.

Severity x (a number in [0, 2], or a level name) sets the ranges, each linear in x:
rotation uniform in +-30x degrees, scale uniform in [1 - 0.2x, 1 + 0.2x], translation uniform in
+-0.1x of the width (x) and of the height (y). Levels: none = 0 (the identity), mild = 0.5
(+-15 degrees, 0.9-1.1, +-5%), strong = 1 (+-30 degrees, 0.8-1.2, +-10%). The per-image draws
are made in [-1, 1] and scaled by x, so one image's mild transform is half its strong one.
Pixels moved in from outside the frame are black.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..core.errors import DataError

LEVELS = {"none": 0.0, "mild": 0.5, "strong": 1.0}
MAX_SEVERITY = 2.0
ROTATION_DEG, SCALE, SHIFT = 30.0, 0.2, 0.1  # the ranges at severity 1 (see the module docstring)
VERSION = 1  # bump when the draws or the transform change: cache keys and fingerprints change with it
OPTIONS = ("perturb", "perturb_seed")


@dataclass(frozen=True)
class Perturbation:
    severity: float
    seed: int = 0
    level: str = ""  # the value as given (a level name or the number)

    @classmethod
    def from_options(cls, value, seed, dataset: str) -> Perturbation | None:
        """The perturbation the dataset options ask for (None without ``perturb``); bad values -> one line."""
        if value is None:
            if seed is not None:
                raise DataError(f"dataset {dataset}: option perturb_seed needs perturb=<severity> "
                                f"({', '.join(LEVELS)} or a number in [0, {MAX_SEVERITY:g}])")
            return None
        text = str(value).strip().lower()
        try:
            severity = LEVELS[text] if text in LEVELS else float(text)
        except ValueError:
            severity = float("nan")
        if not 0.0 <= severity <= MAX_SEVERITY:  # also rejects NaN
            raise DataError(f"dataset {dataset}: unknown perturbation severity perturb={value!r}; valid: "
                            f"{', '.join(LEVELS)} or a number in [0, {MAX_SEVERITY:g}]")
        try:
            seed = 0 if seed is None else int(str(seed))
        except ValueError:
            raise DataError(f"dataset {dataset}: perturb_seed={seed!r} is not an integer") from None
        return cls(severity, seed, text)

    @property
    def key(self) -> str:
        """What identifies the transforms: enters image cache keys and the dataset fingerprint."""
        return f"perturb-v{VERSION}:{self.severity:g}:{self.seed}"

    def ranges(self) -> dict:
        x = self.severity
        return {"rotation_deg": ROTATION_DEG * x, "scale": [1 - SCALE * x, 1 + SCALE * x], "shift": SHIFT * x}

    def record(self) -> dict:
        """What a result record says about the perturbation."""
        return {"severity": self.severity, "level": self.level, "seed": self.seed, "version": VERSION,
                "ranges": self.ranges()}

    def params(self, image_id, size) -> tuple[float, list[float], float]:
        """(angle in degrees, [tx, ty] in pixels, scale) of one image of ``size`` (width, height)."""
        digest = hashlib.sha256(f"{VERSION}|{self.seed}|{image_id}".encode()).digest()
        u = np.random.default_rng(int.from_bytes(digest[:8], "little")).uniform(-1.0, 1.0, size=4)
        x = self.severity
        w, h = float(size[0]), float(size[1])
        return float(ROTATION_DEG * x * u[0]), [float(SHIFT * x * u[2] * w), float(SHIFT * x * u[3] * h)], \
            float(1 + SCALE * x * u[1])

    def image(self, im: Image.Image, image_id) -> Image.Image:
        """One RGB image, transformed (the same size); severity 0 returns it unchanged."""
        if self.severity == 0:
            return im
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        angle, shift, scale = self.params(image_id, im.size)
        pixels = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
        out = F.affine(pixels, angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0],
                       interpolation=InterpolationMode.BILINEAR, fill=0)
        return Image.fromarray(out.permute(1, 2, 0).numpy())

    def points(self, points: np.ndarray, image_id, size) -> np.ndarray:
        """(K, 2) points of one image of ``size`` (width, height) moved with its pixels; a point
        that leaves [0, w] x [0, h] becomes NaN, a NaN point stays NaN."""
        points = np.asarray(points, dtype=np.float64)
        if self.severity == 0 or points.size == 0:
            return points.copy()
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as F

        angle, shift, scale = self.params(image_id, size)
        w, h = float(size[0]), float(size[1])
        kp = tv_tensors.KeyPoints(torch.from_numpy(points), canvas_size=(int(round(h)), int(round(w))))
        moved = F.affine(kp, angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0]).numpy().astype(np.float64)
        outside = ~((moved[:, 0] >= 0) & (moved[:, 0] <= w) & (moved[:, 1] >= 0) & (moved[:, 1] <= h))
        moved[outside] = np.nan
        return moved

    def dataset_points(self, points: np.ndarray, image_ids, sizes: np.ndarray) -> np.ndarray:
        """(N, K, 2) points of every row moved by that row's transform."""
        return np.stack([self.points(p, i, s) for p, i, s in zip(points, image_ids, sizes)]) if len(points) \
            else np.asarray(points, dtype=np.float64).copy()


@dataclass(frozen=True)
class ImagePerturbations:
    """The perturbation of each image of a list (what the decode paths need): ``key`` for their
    caches, ``apply(i, im)`` for the i-th image."""

    perturbation: Perturbation
    image_ids: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.perturbation.key

    def apply(self, i: int, im: Image.Image) -> Image.Image:
        return self.perturbation.image(im, self.image_ids[i])
