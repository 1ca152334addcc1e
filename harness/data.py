"""Dataset cards -> DataFrames in the wildlife-datasets format, and images -> tensors.

A dataset card is a JSON file in the repository's ``datasets/`` folder (data, not Python): it names
a loader, the loader's options, the keypoint categories with their left/right flip pairs, the
default keypoint source and per-dataset run defaults. Loaders are registered by name.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .registry import REPO_ROOT, Registry


class DataError(ValueError):
    """Missing or malformed data; the message names the file and what to do."""


@dataclass(frozen=True)
class Card:
    name: str
    loader: str
    description: str = ""
    options: dict = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    flip_pairs: tuple[tuple[str, str], ...] = ()
    defaults: dict = field(default_factory=dict)
    reference: str | None = None  # expert reference annotation (JSON file next to the card)
    path: Path | None = None


@dataclass
class ReidData:
    """A dataset as plain data: the DataFrame (image_id, identity, path relative to ``root``)
    plus ground-truth keypoints (N, C, 2) in original-image pixels (NaN = missing) when known."""

    name: str
    root: Path
    df: pd.DataFrame
    categories: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...]
    keypoints: np.ndarray | None = None
    fingerprint: str = ""

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


Loader = Callable[[Card, dict, Path], ReidData]
LOADERS: Registry[Loader] = Registry("dataset loader")


def cards_dir() -> Path:
    return Path(os.environ.get("HARNESS_DATASETS", REPO_ROOT / "datasets"))


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "keypoint-reid-harness"))


def read_card(path: Path) -> Card:
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"dataset card {path} is not valid JSON: {exc}") from exc
    known = {f.name for f in fields(Card)} - {"path"}
    unknown = set(raw) - known
    if unknown:
        raise DataError(f"dataset card {path}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    for key in ("name", "loader"):
        if key not in raw:
            raise DataError(f"dataset card {path}: missing field {key!r}")
    raw["categories"] = tuple(raw.get("categories", ()))
    raw["flip_pairs"] = tuple(tuple(p) for p in raw.get("flip_pairs", ()))
    return Card(**raw, path=Path(path))


def _register_cards() -> None:
    folder = cards_dir()
    for path in sorted(folder.glob("*.json")):
        card = read_card(path)
        DATASETS.register(card.name, card.description, factory=lambda card=card: card)


DATASETS: Registry[Card] = Registry("dataset", loader=_register_cards)


def get_card(name: str) -> Card:
    return DATASETS.create(name)


def load_dataset(card: Card, options: dict | None = None, data_root: Path | None = None) -> ReidData:
    opts = {**card.options, **(options or {})}
    return LOADERS.create(card.loader, card, opts, Path(data_root) if data_root else cache_dir())


def load_images(root: Path, paths: list[str], size: int, desc: str = "images") -> tuple[torch.Tensor, np.ndarray]:
    """Decode and resize images to (size, size): uint8 tensor (N, 3, size, size) and the original
    (width, height) of each, needed to map keypoints into the resized image."""
    from tqdm import tqdm

    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    sizes = np.zeros((len(paths), 2), dtype=np.float64)
    for i, rel in enumerate(tqdm(paths, desc=f"loading {desc}", leave=False, disable=len(paths) < 2000)):
        path = Path(root) / rel
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                sizes[i] = im.size
                im = im.resize((size, size), Image.BILINEAR)
                out[i] = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
        except FileNotFoundError as exc:
            raise DataError(f"image not found: {path}") from exc
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}") from exc
    return out, sizes


# ---------------------------------------------------------------- built-in loaders


def _typed_options(cls, options: dict, dataset: str) -> dict:
    """Parse string options into the types of ``cls``'s dataclass fields."""
    types = {f.name: f.default for f in fields(cls)}
    parsed = {}
    for key, value in options.items():
        if key not in types:
            raise DataError(f"dataset {dataset}: unknown option {key!r}; valid: {', '.join(sorted(types))}")
        default = types[key]
        try:
            if isinstance(default, bool):
                parsed[key] = str(value).lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
            elif isinstance(default, tuple):
                parsed[key] = tuple(float(x) for x in (value.split(",") if isinstance(value, str) else value))
            else:
                parsed[key] = type(default)(value)
        except (TypeError, ValueError) as exc:
            raise DataError(f"dataset {dataset}: option {key}={value!r} is not a valid {type(default).__name__}") from exc
    return parsed


@LOADERS.register("synthetic", "generated keypoint dataset (no downloads)")
def _load_synthetic(card: Card, options: dict, data_root: Path) -> ReidData:
    from . import synthetic

    try:
        spec = synthetic.SyntheticSpec(**_typed_options(synthetic.SyntheticSpec, options, card.name))
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    root, df, kps = synthetic.load(spec, Path(data_root))
    return ReidData(
        name=card.name,
        root=root,
        df=df,
        categories=spec.categories,
        flip_pairs=spec.flip_pairs,
        keypoints=kps,
        fingerprint=spec.fingerprint(),
    )
