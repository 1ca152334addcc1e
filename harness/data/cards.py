"""Dataset cards: JSON files in the repository's ``datasets/`` folder (data, not Python).

A card names a loader and its options, the keypoint categories with their left/right flip pairs,
an optional expert reference annotation, and the run defaults of the paper's setting (with the
source of each in ``notes``). ``datasets/`` is never a Python package: ``import datasets`` must
stay Hugging Face's, which wildlife-datasets imports.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..core.errors import DataError
from ..core.paths import cards_dir
from ..core.registry import Registry

CROPS = ("auto", "full", "bbox")
# `--dataset all`: the paper's four datasets, in the order of its Table 1
PAPER_DATASETS = ("macaquefaces", "giraffes", "ipanda50", "ctai")


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
    reference_image: str | None = None  # image every reference source annotates by default (the expert's)
    # cards of the "wildlife" loader (harness/data/wildlife.py)
    wildlife_class: str | None = None  # wildlife-datasets class name, e.g. "MacaqueFaces"
    folder: str | None = None  # folder under the data root (default: the class name)
    crop: str = "auto"  # full image, bbox crop, or auto (bbox when the metadata has one)
    expects: tuple[str, ...] = ()  # paths inside the folder that must exist for the data to count as present
    keypoint_points: tuple[tuple[int, ...], ...] = ()  # per category: metadata points averaged into it
    download: str = ""  # manual step shown when the data is missing (credentials, OS limits, ...)
    notes: dict = field(default_factory=dict)  # where each default comes from (documentation only)
    path: Path | None = None

    @property
    def reference_path(self) -> Path | None:
        """The expert reference annotation file, next to the card."""
        if not self.reference:
            return None
        return (self.path.parent if self.path is not None else cards_dir()) / self.reference


def dataset_names(name: str) -> list[str]:
    """`all` means the paper's four datasets; any other name is itself."""
    return list(PAPER_DATASETS) if name.lower() == "all" else [name]


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
    raw["expects"] = tuple(raw.get("expects", ()))
    if raw.get("reference_image") is not None:
        raw["reference_image"] = str(raw["reference_image"])
    raw["keypoint_points"] = tuple(tuple(int(i) for i in g) for g in raw.get("keypoint_points", ()))
    if raw.get("crop", "auto") not in CROPS:
        raise DataError(f"dataset card {path}: crop must be one of {', '.join(CROPS)}, got {raw['crop']!r}")
    if raw["keypoint_points"] and len(raw["keypoint_points"]) != len(raw["categories"]):
        raise DataError(f"dataset card {path}: keypoint_points needs one entry per category")
    return Card(**raw, path=Path(path))


def _register_cards() -> None:
    paths = sorted(cards_dir().glob("*.json"))
    references = set()  # reference annotations live next to the cards; they are not cards
    for path in paths:
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue  # read_card reports it
        if isinstance(raw, dict) and isinstance(raw.get("reference"), str):
            references.add(raw["reference"])
    for path in paths:
        if path.name in references:
            continue
        card = read_card(path)
        DATASETS.register(card.name, card.description, factory=lambda card=card: card)


DATASETS: Registry[Card] = Registry("dataset", loader=_register_cards)
