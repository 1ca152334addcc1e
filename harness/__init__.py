"""Benchmark harness for keypoint-aware animal re-identification."""
from __future__ import annotations

import importlib

__all__ = ["METHODS", "Method", "register_method"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """The plugin API (``from harness import Method, register_method``), imported on first use:
    ``harness.method`` imports torch and timm, seconds that `harness --help` and every command that
    trains nothing would pay at start-up (PEP 562 module attribute)."""
    if name in __all__:
        return getattr(importlib.import_module(f"{__name__}.method"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
