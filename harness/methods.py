"""Method plugins: what a method is, and where methods come from.

A method says how keypoints enter the model: ``encoding`` (none / binary = KPE / categorical =
CKPE) and ``point_source`` (none / the run's ``--keypoints`` / uniform random points). A plugin is one
file in ``methods/`` (or in a folder on HARNESS_PLUGIN_PATH, or a module behind the
``harness.methods`` entry-point group) that registers a factory returning a ``Method``. A plugin
that needs new behaviour subclasses ``Method`` and overrides ``build_model`` or ``caveats``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .core.registry import Registry, load_entry_points, load_plugin_files, plugin_dirs
from .model.keypoint_vit import ENCODINGS, KeypointViT

POINT_SOURCES = ("none", "keypoints", "random")


@dataclass(frozen=True)
class Method:
    encoding: str = "none"  # none | binary | categorical
    point_source: str = "none"  # none | keypoints (the run's --keypoints) | random
    trains: bool = True
    defaults: dict = field(default_factory=dict)  # run-config defaults between the card's and the CLI's

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; valid: {', '.join(ENCODINGS)}")
        if self.point_source not in POINT_SOURCES:
            raise ValueError(f"unknown point source {self.point_source!r}; valid: {', '.join(POINT_SOURCES)}")
        if (self.encoding == "none") != (self.point_source == "none"):
            raise ValueError("a method encodes keypoints exactly when it uses points")

    @property
    def uses_keypoints(self) -> bool:
        return self.point_source != "none"

    def keypoint_source(self, configured: str) -> str | None:
        """Name of the keypoint source this method reads, given the run's --keypoints."""
        return {"none": None, "keypoints": configured, "random": "random"}[self.point_source]

    def caveats(self, cfg) -> list[dict]:
        """Warnings a result record must carry for this method and config ({"id", "text"} each)."""
        return []

    def build_model(self, backbone: nn.Module, num_categories: int) -> nn.Module:
        return KeypointViT(backbone, self.encoding, num_categories if self.uses_keypoints else 0)


def _load_method_plugins() -> None:
    load_plugin_files(plugin_dirs(), "harness_plugins")
    load_entry_points("harness.methods")


METHODS: Registry = Registry("method", loader=_load_method_plugins)


def register_method(name: str, description: str = ""):
    """Decorator for a plugin's factory: ``@register_method("ckpe", "one line")``."""
    return METHODS.register(name, description)
