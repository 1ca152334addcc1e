"""A dataset as plain data (``ReidData``), the loader interface that makes one, and per-row access
to its images as the harness uses them (cropped when the dataset is)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..core.errors import DataError
from ..core.registry import Registry, plugin_loader
from .cards import Card
from .images import crop_box, load_images, open_rgb, parse_bbox
from .perturb import ImagePerturbations, Perturbation


@dataclass
class ReidData:
    """A dataset as plain data: the DataFrame (image_id, identity, path relative to ``root``)
    plus ground-truth keypoints (N, C, 2) in original-image pixels (NaN = missing) when known.

    An optional ``bbox`` column ([x, y, w, h] per row, NaN = whole image) means images are used
    cropped to that box: images are decoded cropped and ``keypoints`` are already in crop pixels."""

    name: str
    root: Path
    df: pd.DataFrame
    categories: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...]
    keypoints: np.ndarray | None = None
    fingerprint: str = ""
    info: dict = field(default_factory=dict)  # loader facts for the result record (class, folder, crop, ...)
    # (N, 2) image (or crop) sizes, filled on first use by image_sizes: headers read once
    sizes: np.ndarray | None = field(default=None, repr=False, compare=False)
    # --dataset-option perturb: every image (and keypoint) moved by its own similarity transform;
    # ``unperturbed`` is the same dataset without it (the oracle keypoint source reads it)
    perturbation: Perturbation | None = None
    unperturbed: ReidData | None = field(default=None, repr=False, compare=False)

    @property
    def split_key(self) -> str:
        """What a split fingerprint says about the dataset it belongs to."""
        return f"{self.name}:{self.fingerprint}"

    def __post_init__(self):
        missing = {"image_id", "identity", "path"} - set(self.df.columns)
        if missing:
            raise DataError(f"dataset {self.name}: DataFrame lacks column(s) {sorted(missing)}")
        self.df = self.df.reset_index(drop=True)
        if self.keypoints is not None and self.keypoints.shape != (len(self.df), len(self.categories), 2):
            raise DataError(
                f"dataset {self.name}: keypoints shape {self.keypoints.shape} != "
                f"({len(self.df)}, {len(self.categories)}, 2)"
            )


# the loaders' registry, beside their base class, so each loader's file registers itself; a card's
# `loader` names one; third-party loaders come from the ``harness.loaders`` entry-point group
LOADERS: Registry = Registry("dataset loader", loader=plugin_loader("harness.loaders"))


class Loader:
    """Makes ReidData from a card. One class per kind of source, in its own file, registered on
    ``LOADERS`` with a decorator (``@LOADERS.register("folder", "one line")``): loading, the
    presence check, cards for names without one, and the download."""

    def load(self, card: Card, options: dict, data_root: Path) -> ReidData:
        raise NotImplementedError

    def missing(self, card: Card, data_root: Path) -> str | None:
        """None when the card's data is present, else one line saying what is missing and how to
        get it (no loading, no side effects). Loaders that need no files are always present."""
        return None

    def has_dates(self, card: Card, options: dict) -> bool | None:
        """Whether the data will have capture dates, where that is known without loading it (a
        dry run must work before a download); None: known only once loaded."""
        return None

    def location(self, card: Card, data_root: Path) -> str:
        """Where the card's data is expected (for `harness data list`)."""
        return "generated on first use, in the cache"

    def adhoc_card(self, name: str) -> Card | None:
        """A card for a dataset name without a card file (e.g. any wildlife-datasets class), or None."""
        return None

    def download(self, card: Card, data_root: Path, force: bool = False) -> Path:
        raise DataError(f"dataset {card.name} is not downloadable (loader {card.loader!r})")


def content_fingerprint(df: pd.DataFrame, *extra: str) -> str:
    """A dataset's identity: its sorted (image id, identity, path) rows plus ``extra`` facts."""
    rows = sorted(f"{a}\t{b}\t{c}" for a, b, c in zip(df["image_id"].astype(str), df["identity"], df["path"]))
    return hashlib.sha256("\n".join([*rows, *extra]).encode()).hexdigest()[:16]


def capture_days(df: pd.DataFrame) -> np.ndarray | None:
    """Each row's capture day, 'YYYY-MM-DD' (None where unknown), from wildlife-datasets' ``date``
    column; None when the dataset has no dates at all. The day is what cross-day evaluation keys
    on: frames of one recording session are near-duplicates."""
    if "date" not in df:
        return None
    parsed = pd.to_datetime(df["date"], errors="coerce", utc=True, format="mixed")
    if parsed.isna().all():
        return None
    return np.array([None if pd.isna(t) else t.strftime("%Y-%m-%d") for t in parsed], dtype=object)


def row_bboxes(data: ReidData, rows) -> list | None:
    """The crop box of each row (None for an uncropped dataset): images and keypoints of a
    dataset with a ``bbox`` column are always used in crop pixels."""
    return [data.df["bbox"].iloc[r] for r in rows] if "bbox" in data.df else None


def row_perturbations(data: ReidData, rows) -> ImagePerturbations | None:
    """The perturbation of each of ``rows`` (for ``decode_images`` / ``load_images``), None when
    the dataset is not perturbed."""
    if data.perturbation is None:
        return None
    ids = data.df["image_id"].astype(str)
    return ImagePerturbations(data.perturbation, tuple(ids.iloc[r] for r in rows))


def open_row(data: ReidData, row: int) -> Image.Image:
    """Row ``row``'s image as the harness uses it: RGB, cropped when the dataset is, perturbed
    when it is."""
    box = row_bboxes(data, [row])
    im = open_rgb(data.root / data.df["path"].iloc[row], parse_bbox(box[0]) if box else None)
    moves = row_perturbations(data, [row])
    return moves.apply(0, im) if moves is not None else im


def load_rows(data: ReidData, rows, size: int, desc: str = "images",
              resize: str = "bilinear") -> tuple[torch.Tensor, np.ndarray]:
    """``load_images`` for rows of a dataset, cropped (and perturbed) when the dataset is."""
    return load_images(data.root, [data.df["path"].iloc[r] for r in rows], size, desc=desc,
                       bboxes=row_bboxes(data, rows), resize=resize, perturb=row_perturbations(data, rows))


def row_of_image(data: ReidData, image_id) -> int:
    ids = data.df["image_id"].astype(str).tolist()
    try:
        return ids.index(str(image_id))
    except ValueError:
        raise DataError(f"image id {image_id} is not in dataset {data.name} (ids run {ids[0]} .. {ids[-1]})") from None


def image_sizes(data: ReidData, rows=None) -> np.ndarray:
    """(N, 2) original (width, height) of every row (or of ``rows``), read from image headers
    without decoding; for a cropped dataset (``bbox`` column) the size of each crop. The sizes of
    all rows are kept on ``data`` once read, so loading and scoring a set read each header once."""
    if data.sizes is not None:
        return data.sizes if rows is None else data.sizes[list(rows)]
    if rows is None:
        data.sizes = image_sizes(data, range(len(data.df)))
        return data.sizes
    sizes = np.zeros((len(rows), 2))
    boxes = [parse_bbox(b) for b in (row_bboxes(data, rows) or [None] * len(rows))]
    for i, rel in enumerate(data.df["path"].iloc[list(rows)]):
        if boxes[i] is not None:
            left, top, right, bottom = crop_box(boxes[i])
            sizes[i] = (right - left, bottom - top)
            continue
        try:
            with Image.open(data.root / rel) as im:
                sizes[i] = im.size
        except OSError as exc:
            raise DataError(f"cannot read image {data.root / rel}: {exc}") from exc
    return sizes
