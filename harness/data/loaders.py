"""The one hub of dataset loaders: name -> Loader object, registered here and nowhere else.

``get_card`` finds a dataset by name (a card in datasets/, or a name a loader understands without
one: ``folder:PATH``, any wildlife-datasets class), ``load_dataset`` makes its ReidData and
``data_problem`` says, without loading, whether its data is present.
"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import RegistryError
from ..core.paths import data_root_or_default
from ..core.registry import Registry
from .cards import DATASETS, Card
from .dataset import Loader, ReidData
from .folder import FolderLoader
from .synthetic import SyntheticLoader
from .wildlife import WildlifeLoader

LOADERS: Registry[Loader] = Registry("dataset loader")
for _name, _loader in (("synthetic", SyntheticLoader), ("wildlife", WildlifeLoader), ("folder", FolderLoader)):
    LOADERS.register(_name, _loader.description, factory=_loader)


def loader_of(card: Card) -> Loader:
    return LOADERS.create(card.loader)


def get_card(name: str) -> Card:
    """A dataset card by name: a card in datasets/, ``folder:PATH`` (identity/image.jpg), or any
    wildlife-datasets class name (e.g. ``SeaTurtleIDHeads``)."""
    try:
        return DATASETS.create(name)
    except RegistryError as exc:
        for entry in LOADERS:
            card = entry.factory().adhoc_card(name)
            if card is not None:
                return card
        raise RegistryError(f"{exc}; or a wildlife-datasets class name (e.g. SeaTurtleIDHeads), "
                            "or folder:PATH (PATH/<identity>/<image>)") from None


def data_problem(card: Card, data_root: Path | None = None) -> str | None:
    """None when the card's data is present under the data root, else one line saying what is
    missing and how to get it (no loading, no side effects)."""
    return loader_of(card).missing(card, data_root_or_default(data_root))


def data_location(card: Card, data_root: Path | None = None) -> str:
    return loader_of(card).location(card, data_root_or_default(data_root))


def load_dataset(card: Card, options: dict | None = None, data_root: Path | None = None) -> ReidData:
    opts = {**card.options, **(options or {})}
    return loader_of(card).load(card, opts, data_root_or_default(data_root))


def download_dataset(card: Card, data_root: Path | None = None, force: bool = False) -> Path:
    return loader_of(card).download(card, data_root_or_default(data_root), force)
