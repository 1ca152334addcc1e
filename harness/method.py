"""Method plugins: what a method is, and where methods come from.

A method says how keypoints enter the model: ``encoding`` (none / binary = KPE / categorical =
CKPE) and ``point_source`` (none / the run's ``--keypoints`` / uniform random points). A plugin is one
file in ``methods/`` (or in a folder on HARNESS_PLUGIN_PATH, or a module behind the
``harness.methods`` entry-point group) that registers a factory returning a ``Method``. A plugin
that needs new behaviour subclasses ``Method`` and overrides ``build_model`` or ``caveats``. A method
may declare its loss terms (``losses``, registered in ``model/losses.py``); the default is ArcFace +
ce_weight x cross-entropy.

(The module is ``method``, singular: it defines the one ``Method`` type, while the root ``methods/``
folder holds the plugins of that type; the entry-point group stays ``harness.methods``.)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import nn

from .config import TRAINING_FIELDS, RunConfig
from .core.registry import Registry, plugin_loader
from .model.backbones import RANDOM_INIT
from .model.keypoint_vit import ENCODINGS, KeypointViT
from .model.losses import DEFAULT_LOSSES, canonical_losses, parse_losses

POINT_SOURCES = ("none", "keypoints", "random")


@dataclass(frozen=True)
class Method:
    encoding: str = "none"  # none | binary | categorical
    point_source: str = "none"  # none | keypoints (the run's --keypoints) | random
    trains: bool = True
    defaults: dict = field(default_factory=dict)  # run-config defaults between the card's and the CLI's
    # loss terms, each a registered name or (name, weight); a bare name trains with the term's default weight
    losses: tuple = tuple(DEFAULT_LOSSES.split(","))

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; valid: {', '.join(ENCODINGS)}")
        if self.point_source not in POINT_SOURCES:
            raise ValueError(f"unknown point source {self.point_source!r}; valid: {', '.join(POINT_SOURCES)}")
        if (self.encoding == "none") != (self.point_source == "none"):
            raise ValueError("a method encodes keypoints exactly when it uses points")
        parse_losses(self.loss_spec)  # an unknown term fails when the method is made, naming the valid ones

    @property
    def loss_spec(self) -> str:
        """``losses`` as a ``--losses`` value: ``"arcface,ce,triplet=0.5"``."""
        return ",".join(t if isinstance(t, str) else f"{t[0]}={float(t[1])!r}" for t in self.losses)

    def layer(self) -> dict:
        """The run-config values this method sets (the "method" layer of ``config.resolve``): its
        ``defaults`` and, when it declares other terms than the default, ``losses``."""
        declared = {} if self.loss_spec == DEFAULT_LOSSES else {"losses": self.loss_spec}
        return {**declared, **self.defaults}

    @property
    def uses_keypoints(self) -> bool:
        return self.point_source != "none"

    def keypoint_source(self, configured: str) -> str | None:
        """Name of the keypoint source this method reads, given the run's --keypoints."""
        return {"none": None, "keypoints": configured, "random": "random"}[self.point_source]

    def applied(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` with every field that cannot influence this method's run set to None: the
        keypoint source of a method without keypoints, training settings of one that does not
        train, momentum without SGD, RandAugment settings without RandAugment, `pretrained` of a
        random-init test-bed backbone or of a run with --weights. Those stay out of the record's
        hash, so runs that differ only there are one experiment. ``losses`` is spelled one way
        (``canonical_losses``; None for the default objective) for the same reason."""
        off: dict = {}
        if self.point_source != "keypoints":
            off["keypoints"] = None
        if not self.uses_keypoints:
            off.update(num_keypoints=None, kpe_init=None, kpe_lr_scale=None)
        if not self.trains:
            off.update(dict.fromkeys(TRAINING_FIELDS))
        else:
            if cfg.optimizer != "sgd":
                off["momentum"] = None
            if cfg.augment != "randaugment":
                off.update(randaugment_ops=None, randaugment_magnitude=None)
            off["losses"] = canonical_losses(cfg.losses, cfg)
        if cfg.weights or cfg.backbone in RANDOM_INIT:
            off["pretrained"] = None
        return replace(cfg, **off)

    def normalization(self, backbone: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) the images are normalized with: the statistics of the backbone's timm
        configuration (its pretraining data), 0.5 / 0.5 when it names none."""
        pretrained = getattr(backbone, "pretrained_cfg", {}) or {}
        return tuple(pretrained.get("mean", (0.5, 0.5, 0.5))), tuple(pretrained.get("std", (0.5, 0.5, 0.5)))

    def caveats(self, cfg) -> list[dict]:
        """Warnings a result record must carry for this method and config ({"id", "text"} each)."""
        return []

    def build_model(self, backbone: nn.Module, num_categories: int, init: str = "zero") -> nn.Module:
        """The network: ``backbone`` wrapped with this method's keypoint encoding, its embedding
        started as ``init`` (``--kpe-init``)."""
        return KeypointViT(backbone, self.encoding, num_categories if self.uses_keypoints else 0, init=init)


METHODS: Registry = Registry("method", loader=plugin_loader("harness.methods"))


def register_method(name: str, description: str = ""):
    """Decorator for a plugin's factory: ``@register_method("ckpe", "one line")``."""
    return METHODS.register(name, description)
