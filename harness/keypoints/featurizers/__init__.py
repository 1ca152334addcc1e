"""Featurizers for keypoint propagation, one file each; each class registers itself on
``FEATURIZERS`` with a decorator (``harness list`` shows them). Importing the modules here runs
those decorators; third-party featurizers come from the ``harness.featurizers`` entry-point group
or a file on HARNESS_PLUGIN_PATH.
"""
from __future__ import annotations

from . import dinov2, sd, sift, spin  # noqa: F401  (imported for their registrations)
from .base import FEATURIZERS, Featurizer, create_featurizer, featurizer_options, option_value

__all__ = ["FEATURIZERS", "Featurizer", "create_featurizer", "featurizer_options", "option_value"]
