"""What a reference source is: something that places K named keypoints on ONE reference image.

Sources (one file each, registered there on ``REFERENCE_SOURCES`` with a decorator) implement
``annotate(data, card, options)`` and declare in ``options`` the keys of `harness keypoints annotate
--option KEY=VALUE` they read;
the result is propagated to every image by `harness keypoints propagate` or a recipe. Every
source of a dataset annotates the same image unless told otherwise: ``--image``, else the card's
``reference_image`` (MacaqueFaces: the expert's image 20), else the first image. A reference is
stored under a name made from what was asked (``reference_name``), so `keypoints annotate` and a
recipe asking the same find the same file, and GPT-4 is asked once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ...core.io import config_hash
from ...core.registry import Registry, plugin_loader
from ...data.cards import Card
from ...data.dataset import ReidData, row_of_image
from ..featurizers.base import option_value
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
    # a plugin source's own options (declared in its ``options``, given as --option KEY=VALUE)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.num_keypoints is not None and self.num_keypoints < 1:
            raise ValueError(f"--num-keypoints must be >= 1, got {self.num_keypoints}")


# options that decide what a source returns (the rest: how to reach it)
REQUEST_FIELDS = ("num_keypoints", "model")
# defined here, beside the base class, so each source's file registers itself with a decorator
REFERENCE_SOURCES: Registry = Registry("reference source", loader=plugin_loader("harness.references"))


def reference_row(data: ReidData, card: Card | None, opts: AnnotateOptions) -> int:
    """The reference image's row: ``--image``, else the card's ``reference_image``, else the first."""
    if opts.image is not None:
        return row_of_image(data, opts.image)
    if card is not None and card.reference_image is not None:
        return row_of_image(data, card.reference_image)
    return 0


class ReferenceSource:
    """Base class: ``annotate`` places the keypoints; ``request`` says what identifies the answer.

    ``options`` maps each option this source reads, beyond the image, K and the device, to a line
    of help: an ``AnnotateOptions`` field, or a key of its ``extra`` (a plugin's own option)."""

    options: dict[str, str] = {}

    def annotate(self, data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
        raise NotImplementedError

    def row(self, data: ReidData, card: Card | None, opts: AnnotateOptions) -> int:
        return reference_row(data, card, opts)

    def request(self, data: ReidData, card: Card | None, opts: AnnotateOptions) -> dict:
        """What was asked: the reference image and the options that change the answer."""
        asked = {k: v for k, v in asdict(opts).items() if k in REQUEST_FIELDS and v is not None}
        if opts.extra:  # a plugin's own options may change its answer: they name the reference too
            asked["extra"] = dict(sorted(opts.extra.items()))
        return {"image": str(data.df["image_id"].iloc[self.row(data, card, opts)]), **asked}


def reference_name(source: str, request: dict) -> str:
    """The stored name of a reference: the source and a hash of what was asked of it."""
    return f"ref-{source}-{config_hash(request)[:8]}"


def declared_options(source: str) -> dict[str, str]:
    """The options a registered reference source reads (name -> one line of help), from the source."""
    return dict(getattr(REFERENCE_SOURCES.get(source).factory, "options", {}))


def annotate_options(source: str, given: dict[str, str], **common) -> AnnotateOptions:
    """``AnnotateOptions`` from the shared settings (``common``: image, K, device, ...) and the
    text values of `--option KEY=VALUE`, each checked against the options ``source`` declares and
    typed like its ``AnnotateOptions`` field (a plugin's own keys go to ``extra`` as numbers when
    they parse as one, as a recipe's values do)."""
    declared = declared_options(source)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"reference source {source} does not take --option {', '.join(unknown)}; it takes: "
                         f"{', '.join(declared) or 'no options'}")
    types = {f.name: str(f.type) for f in fields(AnnotateOptions)}
    typed, extra = dict(common), {}
    for key, text in given.items():
        if key in types and key != "extra":
            typed[key] = _typed(key, text, types[key])
        else:
            extra[key] = option_value(text)
    return AnnotateOptions(**typed, extra=extra)


def _typed(key: str, text: str, annotation: str):
    """``text`` as the field's type (annotations are strings here: ``from __future__ import annotations``)."""
    try:
        if annotation.startswith("int"):
            return int(text)
        if annotation.startswith("float"):
            return float(text)
    except ValueError:
        raise ValueError(f"--option {key}={text}: {key} must be a number ({annotation.split()[0]})") from None
    return Path(text).expanduser() if annotation.startswith("Path") else text

