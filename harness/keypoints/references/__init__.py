"""Reference sources, registered here by name (one file each): the K keypoints of ONE image.

  expert          a person's JSON file (--reference-file, or the dataset card's ``reference``)
  gpt4            a vision model behind the OpenAI API names and places K keypoints
  gradcam-resnet  Grad-CAM of a ResNet classifier: the K strongest local maxima, named by rank
  gradcam-vit     the same with a ViT classifier
  ground-truth    the dataset's own keypoints of that image (synthetic, CTai, IPanda50)
"""
from __future__ import annotations

from ...core.registry import Registry
from .base import AnnotateOptions, ReferenceSource, reference_name
from .expert import ExpertReference
from .gpt4 import Gpt4Reference
from .gradcam import GradCamResNet, GradCamViT
from .ground_truth import GroundTruthReference

REFERENCE_SOURCES: Registry[ReferenceSource] = Registry("reference source")
for _name, _cls, _description in (
    ("expert", ExpertReference, "a person's annotation of one image (JSON file; the card's `reference`)"),
    ("ground-truth", GroundTruthReference, "the dataset's own keypoints of the reference image"),
    ("gpt4", Gpt4Reference, "a vision model (OpenAI API) picks and names K discriminative keypoints"),
    ("gradcam-resnet", GradCamResNet, "Grad-CAM of a ResNet classifier: top-K local maxima, named by rank"),
    ("gradcam-vit", GradCamViT, "Grad-CAM of a ViT classifier: top-K local maxima, named by rank"),
):
    REFERENCE_SOURCES.register(_name, _description, factory=_cls)

__all__ = ["REFERENCE_SOURCES", "AnnotateOptions", "ReferenceSource", "reference_name"]
