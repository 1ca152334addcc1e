"""The ground-truth reference: a dataset's own keypoints of one image."""
from __future__ import annotations

import numpy as np

from ...core.errors import DataError
from ...data.cards import Card
from ...data.dataset import ReidData
from ..sets import Reference, pairs_within
from .base import REFERENCE_SOURCES, AnnotateOptions, ReferenceSource, reference_row


@REFERENCE_SOURCES.register("ground-truth", "the dataset's own keypoints of the reference image")
class GroundTruthReference(ReferenceSource):
    """The dataset's own keypoints of the reference image (synthetic, CTai, IPanda50)."""

    def row(self, data: ReidData, card: Card | None, opts: AnnotateOptions) -> int:
        """Without --image or a card's reference_image: the first image with all K keypoints."""
        if opts.image is not None or (card is not None and card.reference_image is not None) or data.keypoints is None:
            return reference_row(data, card, opts)
        complete = np.isfinite(data.keypoints[:, : self.k(data, opts)]).all(axis=(1, 2))
        if not complete.any():
            raise DataError(f"dataset {data.name}: no image has all {self.k(data, opts)} ground-truth keypoints")
        return int(np.argmax(complete))

    def k(self, data: ReidData, opts: AnnotateOptions) -> int:
        k = opts.num_keypoints or len(data.categories)
        if k > len(data.categories):
            raise DataError(f"--num-keypoints {k}: dataset {data.name} has {len(data.categories)} keypoint categories")
        return k

    def annotate(self, data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
        if data.keypoints is None:
            raise DataError(f"dataset {data.name} has no ground-truth keypoints; choose another --source")
        row = self.row(data, card, opts)
        k = self.k(data, opts)
        pts = data.keypoints[row, :k]
        if not np.isfinite(pts).all():
            raise DataError(f"image {data.df['image_id'].iloc[row]} lacks some ground-truth keypoints; choose another --image")
        cats = data.categories[:k]
        return Reference(str(data.df["image_id"].iloc[row]), cats, pairs_within(data.flip_pairs, cats), pts,
                         {"source": "ground-truth"})
