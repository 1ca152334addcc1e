"""Method plugins: what a method is, and where methods come from.

A method says how keypoints enter the model: ``encoding`` (none / binary = KPE / categorical =
CKPE) and ``points`` (none / the run's keypoint source / uniform random points). A plugin is one
file in ``methods/`` (or in a folder on HARNESS_PLUGIN_PATH, or a module behind the
``harness.methods`` entry-point group) that registers a factory returning a ``Method``. A plugin
that needs new behaviour subclasses ``Method`` and overrides ``build_model`` or ``select_points``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .registry import Registry, load_entry_points, load_plugin_files, plugin_dirs

POINTS = ("none", "keypoints", "random")


@dataclass(frozen=True)
class Method:
    encoding: str = "none"  # none | binary | categorical
    points: str = "none"  # none | keypoints | random
    trains: bool = True
    defaults: dict = field(default_factory=dict)  # run-config defaults between the card's and the CLI's

    def __post_init__(self):
        from .model import ENCODINGS

        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; valid: {', '.join(ENCODINGS)}")
        if self.points not in POINTS:
            raise ValueError(f"unknown points {self.points!r}; valid: {', '.join(POINTS)}")
        if (self.encoding == "none") != (self.points == "none"):
            raise ValueError("a method encodes keypoints exactly when it uses points")

    @property
    def uses_keypoints(self) -> bool:
        return self.points != "none"

    def keypoint_source(self, configured: str) -> str | None:
        """Name of the keypoint source this method reads, given the run's --keypoints."""
        return {"none": None, "keypoints": configured, "random": "random"}[self.points]

    def caveats(self, cfg) -> list[dict]:
        """Warnings a result record must carry for this method and config ({"id", "text"} each)."""
        return []

    def build_model(self, backbone: nn.Module, num_categories: int) -> nn.Module:
        from .model import KeypointViT

        return KeypointViT(backbone, self.encoding, num_categories if self.uses_keypoints else 0)


def _load_method_plugins() -> None:
    load_plugin_files(plugin_dirs(), "harness_plugins")
    load_entry_points("harness.methods")


METHODS: Registry = Registry("method", loader=_load_method_plugins)


def register_method(name: str, description: str = ""):
    """Decorator for a plugin's factory: ``@register_method("ckpe", "one line")``."""
    return METHODS.register(name, description)
