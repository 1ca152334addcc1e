"""The ground-truth reference: a dataset's own keypoints of one image."""
from __future__ import annotations

import numpy as np

from ...core.errors import DataError
from ...data.cards import Card
from ...data.dataset import ReidData
from ..sets import Reference, pairs_within
from .base import AnnotateOptions, ReferenceSource, reference_row


class GroundTruthReference(ReferenceSource):
    """The dataset's own keypoints of the reference image (synthetic, CTai, IPanda50)."""

    def annotate(self, data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
        if data.keypoints is None:
            raise DataError(f"dataset {data.name} has no ground-truth keypoints; choose another --source")
        row = reference_row(data, opts)
        k = opts.num_keypoints or len(data.categories)
        if k > len(data.categories):
            raise DataError(f"--num-keypoints {k}: dataset {data.name} has {len(data.categories)} keypoint categories")
        pts = data.keypoints[row, :k]
        if not np.isfinite(pts).all():
            raise DataError(f"image {data.df['image_id'].iloc[row]} lacks some ground-truth keypoints; choose another --image")
        cats = data.categories[:k]
        return Reference(str(data.df["image_id"].iloc[row]), cats, pairs_within(data.flip_pairs, cats), pts,
                         {"source": "ground-truth"})
