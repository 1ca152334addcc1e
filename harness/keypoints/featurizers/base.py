"""What a featurizer is: an image batch -> a dense feature map with a known stride.

Every featurizer takes float images (B, 3, S, S) in [0, 1], S = its ``size``, and returns features
(B, D, S // stride, S // stride); feature cell (i, j) describes input pixels
[j * stride, (j + 1) * stride) x [i * stride, (i + 1) * stride). Weights are loaded lazily on the
first call, so a featurizer's ``config()`` (which names a propagation in the cache) costs nothing.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

from ...core.registry import Registry, plugin_loader


RESIZES = ("bilinear", "bicubic")
# defined here, beside the base class, so each featurizer's file registers itself with a decorator
FEATURIZERS: Registry = Registry("featurizer", loader=plugin_loader("harness.featurizers"))


class Featurizer:
    """Base class: subclasses set ``name``, ``size``, ``stride`` and implement ``_features``.

    ``resize`` is how images are resized to ``size`` before featurizing; ``matching`` holds the
    matching defaults this featurizer is meant with (a recipe's keys override them): ``mode``
    (fast / exact) and ``pixels`` (how a reference point's coordinates are read: ``continuous``,
    x = 31 is the left edge of pixel 31; ``centres``, x = 31 is the centre of pixel 31, as DIFT
    reads integer annotations)."""

    name = "?"
    size: int
    stride: int
    batch_size: int = 8
    resize: str = "bilinear"
    matching = {"mode": "fast", "pixels": "continuous"}

    def config(self) -> dict:
        """Everything that changes the features (names the propagation in the cache)."""
        raise NotImplementedError

    def download_gb(self) -> float:
        """What ``load`` would download on a first run (GB; 0: no weights, or local ones)."""
        return 0.0

    def load(self) -> None:
        """Load weights (called once, before the first batch)."""

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.size, self.size):
            raise ValueError(f"{self.name} featurizer expects {self.size}x{self.size} images, got {tuple(images.shape[-2:])}")
        if not getattr(self, "_loaded", False):
            self.load()
            self._loaded = True
        feats = self._features(images).float()
        grid = self.size // self.stride
        if feats.shape[-2:] != (grid, grid):
            raise RuntimeError(f"{self.name} featurizer gave a {tuple(feats.shape[-2:])} map, expected {grid}x{grid}")
        return feats


def check_size(size: int, multiple: int, name: str) -> None:
    if size < multiple or size % multiple:
        raise ValueError(f"--size {size} must be a positive multiple of {multiple} for the {name} featurizer")


def timm_model_name(model: str) -> str:
    """A local folder (timm's config.json + weights) -> 'local-dir:<path>'; anything else (a timm
    name with tag, or 'hf-hub:<repo>') is passed to timm as is."""
    path = Path(model).expanduser()
    if path.is_dir():
        return f"local-dir:{path.resolve()}"
    return model


def option_value(text: str):
    """A plugin option's text as a recipe reads it: an int, else a float, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def featurizer_options(name: str) -> dict[str, object]:
    """The options a registered featurizer takes (its constructor's arguments, which are also the
    recipe keys), each with its default (``inspect.Parameter.empty`` when it has none)."""
    factory = FEATURIZERS.get(name).factory
    return {k: p.default for k, p in inspect.signature(factory).parameters.items()
            if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def create_featurizer(name: str, **options) -> Featurizer:
    """Build a registered featurizer from the options given (None = not given = its default);
    an option the featurizer does not take is a one-line error naming the ones it takes."""
    entry = FEATURIZERS.get(name)
    given = {k: v for k, v in options.items() if v is not None}
    params = featurizer_options(name)
    extra = sorted(set(given) - set(params))
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise ValueError(f"featurizer {name} does not take {flags}; it takes: "
                         f"{', '.join('--' + k.replace('_', '-') for k in params)}")
    return entry.factory(**given)
