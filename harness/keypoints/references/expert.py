"""The expert reference: a person's JSON annotation of one image (format of datasets/macaquefaces-expert.json)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from ...core.errors import DataError
from ...data.cards import Card
from ...data.dataset import ReidData
from ..sets import Reference, pairs_within
from ..store import read_reference
from .base import REFERENCE_SOURCES, AnnotateOptions, ReferenceSource


@REFERENCE_SOURCES.register("expert", "a person's annotation of one image (JSON file; the card's `reference`)")
class ExpertReference(ReferenceSource):
    """A person's annotation of one image: a JSON file (--reference-file, or the card's ``reference``)."""

    options = {"reference_file": "annotation JSON [default: the card's `reference`]"}

    def path(self, card: Card | None, opts: AnnotateOptions) -> Path:
        path = opts.reference_file or (card.reference_path if card is not None else None)
        if path is None:
            raise DataError(f"dataset {card.name if card else '?'} ships no expert reference (card field "
                            "`reference`); pass --reference-file PATH")
        return Path(path)

    def request(self, data: ReidData, card: Card | None, opts: AnnotateOptions) -> dict:
        """The file's content (not its place) and K identify an expert reference."""
        try:
            content = self.path(card, opts).read_bytes()
        except OSError as exc:
            raise DataError(f"expert reference {self.path(card, opts)} cannot be read: {exc}") from exc
        return {"file_sha256": hashlib.sha256(content).hexdigest()[:16], "num_keypoints": opts.num_keypoints}

    def annotate(self, data: ReidData, card: Card, opts: AnnotateOptions) -> Reference:
        path = self.path(card, opts)
        ref = read_reference(path, data)
        if opts.image is not None and str(opts.image) != ref.image_id:
            raise DataError(f"--image {opts.image} differs from the image of the expert file {path} ({ref.image_id})")
        if opts.num_keypoints is not None:
            if opts.num_keypoints > len(ref.categories):
                raise DataError(f"--num-keypoints {opts.num_keypoints}: the expert file {path} has {len(ref.categories)}")
            cats = ref.categories[: opts.num_keypoints]
            ref = Reference(ref.image_id, cats, pairs_within(ref.flip_pairs, cats), ref.points[: len(cats)], ref.provenance)
        return Reference(ref.image_id, ref.categories, ref.flip_pairs, ref.points,
                         {"source": "expert", "file": str(path)})
