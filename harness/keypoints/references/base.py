"""What a reference source is: something that places K named keypoints on ONE reference image.

Sources (one file each, registered in ``__init__``) implement ``annotate(data, card, options)``;
the result is propagated to every image by `harness keypoints propagate` or a recipe.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...data.cards import Card
from ...data.dataset import ReidData, row_of_image
from ..sets import Reference


@dataclass(frozen=True)
class AnnotateOptions:
    image: str | None = None  # image id of the reference image (default: the dataset's first image)
    num_keypoints: int | None = None  # K
    reference_file: Path | None = None  # expert: the annotation file
    model: str | None = None  # gpt4: model name; gradcam-*: timm name, hf-hub:<repo> or local folder
    base_url: str | None = None  # gpt4: OpenAI-compatible endpoint (default: OPENAI_BASE_URL or OpenAI's)
    max_retries: int = 4  # gpt4: retries of 429 / 5xx / timeouts, exponential backoff (OpenAI client)
    timeout: float = 60.0  # gpt4: seconds per request
    device: str = "auto"

    def __post_init__(self):
        if self.num_keypoints is not None and self.num_keypoints < 1:
            raise ValueError(f"--num-keypoints must be >= 1, got {self.num_keypoints}")


def reference_row(data: ReidData, opts: AnnotateOptions) -> int:
    return row_of_image(data, opts.image) if opts.image is not None else 0


class ReferenceSource:
    """Base class: one ``annotate`` per source."""

    def annotate(self, data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
        raise NotImplementedError
