"""Training augmentation that moves keypoints with the pixels.

RandAugment (Cubuk et al. 2020) as WildlifeDatasets trains with it (``RandAugment(num_ops=2,
magnitude=20)``): per image, ``num_ops`` operations drawn uniformly from torchvision's 14, each at
``magnitude`` of 31 bins, geometric ones with a random sign. The operations and their magnitude
ranges are torchvision's (``torchvision.transforms.v2.RandAugment``); they are applied with
``torchvision.transforms.v2.functional`` to the image AND its ``tv_tensors.KeyPoints``, so geometric
operations move the keypoints and photometric ones leave them. torchvision's own RandAugment
class is not used because it refuses KeyPoints inputs (torchvision 0.29: "Inputs of type
KeyPoints are not supported by RandAugment()"). In training each image's operations come from its
own seed (``image_seed``: seed, epoch, place in the epoch's order), so a run is reproducible,
resumes exactly from a checkpoint, and augments alike on any number of torchrun processes.

Keypoints here are continuous pixel coordinates (pixel i spans [i, i + 1)), the frame torchvision's
affine and rotate kernels use for images and keypoints alike (checked: a blob and its keypoint
land on the same spot). A point moved outside the image is kept (the token mask ignores it); NaN
stays NaN.
"""
from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass

import torch

from .workers import pool

AUGMENTATIONS = ("none", "randaugment")
@lru_cache(maxsize=1)
def _torchvision():
    """(tv_tensors, transforms.v2.functional), imported with the first augmented image: torchvision
    takes about a second to import, which every command that never augments would pay."""
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional

    return tv_tensors, functional


BINS = 31  # torchvision's num_magnitude_bins


def _linear(top: float):
    return lambda size: torch.linspace(0.0, top, BINS)


# name -> (magnitudes for an image of side ``size``, signed, geometric); torchvision's ranges
OPERATIONS = {
    "Identity": (None, False, False),
    "ShearX": (_linear(0.3), True, True),
    "ShearY": (_linear(0.3), True, True),
    "TranslateX": (lambda size: torch.linspace(0.0, 150.0 / 331.0 * size, BINS), True, True),
    "TranslateY": (lambda size: torch.linspace(0.0, 150.0 / 331.0 * size, BINS), True, True),
    "Rotate": (_linear(30.0), True, True),
    "Brightness": (_linear(0.9), True, False),
    "Color": (_linear(0.9), True, False),
    "Contrast": (_linear(0.9), True, False),
    "Sharpness": (_linear(0.9), True, False),
    "Posterize": (lambda size: 8 - (torch.arange(BINS) / ((BINS - 1) / 4)).round().int(), False, False),
    "Solarize": (lambda size: torch.linspace(1.0, 0.0, BINS), False, False),
    "AutoContrast": (None, False, False),
    "Equalize": (None, False, False),
}
NAMES = tuple(OPERATIONS)


def _geometric(name: str, magnitude: float, inpt):
    TF = _torchvision()[1]  # noqa: N806 - torchvision's usual name for its functional module
    if name == "Rotate":
        return TF.rotate(inpt, magnitude)
    shear = math.degrees(math.atan(magnitude))
    params = {"ShearX": dict(translate=[0, 0], shear=[shear, 0.0], center=[0, 0]),
              "ShearY": dict(translate=[0, 0], shear=[0.0, shear], center=[0, 0]),
              "TranslateX": dict(translate=[int(magnitude), 0], shear=[0.0, 0.0]),
              "TranslateY": dict(translate=[0, int(magnitude)], shear=[0.0, 0.0])}[name]
    return TF.affine(inpt, angle=0.0, scale=1.0, **params)


def _photometric(name: str, magnitude: float, image):
    TF = _torchvision()[1]  # noqa: N806 - torchvision's usual name for its functional module
    if name == "Brightness":
        return TF.adjust_brightness(image, 1.0 + magnitude)
    if name == "Color":
        return TF.adjust_saturation(image, 1.0 + magnitude)
    if name == "Contrast":
        return TF.adjust_contrast(image, 1.0 + magnitude)
    if name == "Sharpness":
        return TF.adjust_sharpness(image, 1.0 + magnitude)
    if name == "Posterize":
        return TF.posterize(image, int(magnitude))
    if name == "Solarize":
        return TF.solarize(image, 255.0 * magnitude)
    if name == "AutoContrast":
        return TF.autocontrast(image)
    if name == "Equalize":
        return TF.equalize(image)
    return image


def check_randaugment(num_ops: int, magnitude: int) -> None:
    if num_ops < 0 or not 0 <= magnitude < BINS:
        raise ValueError(f"RandAugment needs --randaugment-ops >= 0 and --randaugment-magnitude in 0..{BINS - 1}, "
                         f"got {num_ops}, {magnitude}")


@dataclass(frozen=True)
class RandAugment:
    num_ops: int = 2
    magnitude: int = 20  # of 0..30

    def __post_init__(self):
        check_randaugment(self.num_ops, self.magnitude)

    def draw(self, generator: torch.Generator) -> list[tuple[str, float]]:
        """The operations for one image: (name, signed magnitude) x num_ops, image-size free."""
        ops = []
        for _ in range(self.num_ops):
            name = NAMES[int(torch.randint(len(NAMES), (1,), generator=generator))]
            sign = -1.0 if bool(torch.rand((), generator=generator) < 0.5) else 1.0
            ops.append((name, sign))
        return ops

    def apply(self, image: torch.Tensor, points: torch.Tensor | None, ops: list[tuple[str, float]]):
        """One uint8 image (3, S, S) and its (K, 2) continuous keypoints through ``ops``."""
        size = image.shape[-1]
        tv_tensors = _torchvision()[0]
        image = tv_tensors.Image(image)
        keypoints = None if points is None else tv_tensors.KeyPoints(points, canvas_size=tuple(image.shape[-2:]))
        for name, sign in ops:
            scale, signed, geometric = OPERATIONS[name]
            magnitude = 0.0 if scale is None else float(scale(size)[self.magnitude]) * (sign if signed else 1.0)
            if geometric:
                image = _geometric(name, magnitude, image)
                keypoints = None if keypoints is None else _geometric(name, magnitude, keypoints)
            else:
                image = _photometric(name, magnitude, image)
        out_points = None if keypoints is None else keypoints.as_subclass(torch.Tensor)
        return image.as_subclass(torch.Tensor), out_points

    def __call__(self, images: torch.Tensor, points: torch.Tensor | None, generator: torch.Generator):
        """A batch (B, 3, S, S) uint8 and (B, K, 2) keypoints (or None), each image augmented alone,
        its operations drawn in turn from ``generator``."""
        ops = [self.draw(generator) for _ in range(images.shape[0])]
        return self._apply_all(images, points, ops)

    def seeded(self, images: torch.Tensor, points: torch.Tensor | None, seeds: list[int], workers: int = 1):
        """As ``__call__``, image i's operations drawn from its own ``seeds[i]`` (``image_seed``);
        with ``workers`` > 1 the images are augmented by that many threads, with the same result
        (each image's operations are fixed before any runs)."""
        ops = [self.draw(torch.Generator().manual_seed(int(seed))) for seed in seeds]
        return self._apply_all(images, points, ops, workers)

    def _apply_all(self, images, points, ops, workers: int = 1):
        def one(i):
            return self.apply(images[i], None if points is None else points[i], ops[i])

        done = list(pool(workers).map(one, range(len(ops)))) if workers > 1 and len(ops) > 1 else \
            [one(i) for i in range(len(ops))]
        out_images = torch.stack([image for image, _ in done])
        return out_images, (None if points is None else torch.stack([pts for _, pts in done]))
