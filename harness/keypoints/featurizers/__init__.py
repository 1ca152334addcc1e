"""Featurizers for keypoint propagation, registered here by name (one file each):

  sd      Stable Diffusion UNet features (diffusers), fast settings
  dift    the same with DIFT's settings exactly (sampled latent, fp32, bicubic, exact matching)
  dinov2  patch tokens of a DINOv2 ViT (timm)
  sift    dense SIFT descriptors (OpenCV): no weights, offline
  spin    colour spin images: no weights, offline
"""
from __future__ import annotations

import inspect

from ...core.registry import Registry
from .base import Featurizer
from .dinov2 import DinoV2Featurizer
from .sd import DiftFeaturizer, SDFeaturizer
from .sift import SiftFeaturizer
from .spin import SpinFeaturizer

FEATURIZERS: Registry[Featurizer] = Registry("featurizer")
for _name, _cls, _description in (
    ("sd", SDFeaturizer, "Stable Diffusion UNet up-block features (diffusers): latent mean, fp16 on GPU, fast matching"),
    ("dift", DiftFeaturizer, "Stable Diffusion features with DIFT's settings: sampled latent, fp32, bicubic, exact matching"),
    ("dinov2", DinoV2Featurizer, "patch tokens of a DINOv2 ViT (timm), stride 14"),
    ("sift", SiftFeaturizer, "dense SIFT descriptors on a grid (OpenCV): no weights, offline"),
    ("spin", SpinFeaturizer, "colour spin images (ring histograms): rotation/mirror invariant, no weights, offline"),
):
    FEATURIZERS.register(_name, _description, factory=_cls)


def create_featurizer(name: str, **options) -> Featurizer:
    """Build a registered featurizer from the options given (None = not given = its default);
    an option the featurizer does not take is a one-line error naming the ones it takes."""
    entry = FEATURIZERS.get(name)
    given = {k: v for k, v in options.items() if v is not None}
    params = {k: p for k, p in inspect.signature(entry.factory).parameters.items() if k != "self"}
    extra = sorted(set(given) - set(params))
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise ValueError(f"featurizer {name} does not take {flags}; it takes: "
                         f"{', '.join('--' + k.replace('_', '-') for k in params)}")
    return entry.factory(**given)
