"""What a reference source is: something that places K named keypoints on ONE reference image.

Sources (one file each, registered in ``__init__``) implement ``annotate(data, card, options)``;
the result is propagated to every image by `harness keypoints propagate` or a recipe. Every
source of a dataset annotates the same image unless told otherwise: ``--image``, else the card's
``reference_image`` (MacaqueFaces: the expert's image 20), else the first image. A reference is
stored under a name made from what was asked (``reference_name``), so `keypoints annotate` and a
recipe asking the same find the same file, and GPT-4 is asked once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ...core.io import config_hash
from ...data.cards import Card
from ...data.dataset import ReidData, row_of_image
from ..sets import Reference


@dataclass(frozen=True)
class AnnotateOptions:
    image: str | None = None  # image id of the reference image (default: the card's reference_image, else the first)
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


# options that decide what a source returns (the rest: how to reach it)
REQUEST_FIELDS = ("num_keypoints", "model")


def reference_row(data: ReidData, card: Card | None, opts: AnnotateOptions) -> int:
    """The reference image's row: ``--image``, else the card's ``reference_image``, else the first."""
    if opts.image is not None:
        return row_of_image(data, opts.image)
    if card is not None and card.reference_image is not None:
        return row_of_image(data, card.reference_image)
    return 0


class ReferenceSource:
    """Base class: ``annotate`` places the keypoints; ``request`` says what identifies the answer."""

    def annotate(self, data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
        raise NotImplementedError

    def row(self, data: ReidData, card: Card | None, opts: AnnotateOptions) -> int:
        return reference_row(data, card, opts)

    def request(self, data: ReidData, card: Card | None, opts: AnnotateOptions) -> dict:
        """What was asked: the reference image and the options that change the answer."""
        asked = {k: v for k, v in asdict(opts).items() if k in REQUEST_FIELDS and v is not None}
        return {"image": str(data.df["image_id"].iloc[self.row(data, card, opts)]), **asked}


def reference_name(source: str, request: dict) -> str:
    """The stored name of a reference: the source and a hash of what was asked of it."""
    return f"ref-{source}-{config_hash(request)[:8]}"
