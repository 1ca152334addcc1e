"""Reference sources (the K keypoints of ONE image), one file each; each class registers itself on
``REFERENCE_SOURCES`` with a decorator (``harness list`` shows them). Importing the modules here
runs those decorators; third-party sources come from the ``harness.references`` entry-point group
or a file on HARNESS_PLUGIN_PATH.
"""
from __future__ import annotations

from . import expert, gpt4, gradcam, ground_truth  # noqa: F401  (imported for their registrations)
from .base import (REFERENCE_SOURCES, AnnotateOptions, ReferenceSource, annotate_options, declared_options,
                   reference_name)

__all__ = ["REFERENCE_SOURCES", "AnnotateOptions", "ReferenceSource", "annotate_options", "declared_options",
           "reference_name"]
