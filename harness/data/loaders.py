"""The one hub of dataset loaders. Each loader registers itself on ``LOADERS`` (defined beside the
``Loader`` base class) with a decorator in its own file; importing them here runs those decorators.

``get_card`` finds a dataset by name (a card in datasets/, or a name a loader understands without
one: ``folder:PATH``, any wildlife-datasets class), ``load_dataset`` makes its ReidData and
``data_problem`` says, without loading, whether its data is present.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from ..core.errors import RegistryError
from ..core.registry import did_you_mean
from ..core.paths import data_root_or_default
from . import folder, synthetic, wildlife  # noqa: F401  (imported for their registrations)
from .cards import DATASETS, Card
from .dataset import LOADERS, Loader, ReidData, image_sizes
from .perturb import Perturbation


def loader_of(card: Card) -> Loader:
    return LOADERS.create(card.loader)


def get_card(name: str) -> Card:
    """A dataset card by name: a card in datasets/, ``folder:PATH`` (identity/image.jpg), or any
    wildlife-datasets class name (e.g. ``SeaTurtleIDHeads``)."""
    try:
        return DATASETS.create(name)
    except RegistryError:
        for entry in LOADERS:
            card = entry.factory().adhoc_card(name)
            if card is not None:
                return card
        unknown = f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS.names())}"
        raise RegistryError(f"{unknown}; or a wildlife-datasets class name (e.g. SeaTurtleIDHeads), "
                            f"or folder:PATH (PATH/<identity>/<image>){did_you_mean(name, DATASETS.names())}") from None


def data_problem(card: Card, data_root: Path | None = None) -> str | None:
    """None when the card's data is present under the data root, else one line saying what is
    missing and how to get it (no loading, no side effects)."""
    return loader_of(card).missing(card, data_root_or_default(data_root))


def data_location(card: Card, data_root: Path | None = None) -> str:
    return loader_of(card).location(card, data_root_or_default(data_root))


def load_dataset(card: Card, options: dict | None = None, data_root: Path | None = None) -> ReidData:
    """The card's dataset; the options ``perturb`` / ``perturb_seed`` (any loader) are taken out
    here and applied to what the loader made (``harness/data/perturb.py``)."""
    opts = {**card.options, **(options or {})}
    perturbation = Perturbation.from_options(opts.pop("perturb", None), opts.pop("perturb_seed", None), card.name)
    data = loader_of(card).load(card, opts, data_root_or_default(data_root))
    return perturbed(data, perturbation) if perturbation is not None else data


def perturbed(data: ReidData, perturbation: Perturbation) -> ReidData:
    """``data`` with every image moved by its own transform: ground-truth keypoints moved with
    the pixels, another fingerprint (so stored keypoint sets and splits of the aligned and the
    perturbed images never mix), and the perturbation in ``info`` (the result record)."""
    keypoints = data.keypoints
    if keypoints is not None:
        ids = data.df["image_id"].astype(str).tolist()
        keypoints = perturbation.dataset_points(keypoints, ids, image_sizes(data))
    fingerprint = hashlib.sha256(f"{data.fingerprint}|{perturbation.key}".encode()).hexdigest()[:16]
    return replace(data, keypoints=keypoints, fingerprint=fingerprint, perturbation=perturbation, unperturbed=data,
                   info={**data.info, "perturb": perturbation.record(), "unperturbed_fingerprint": data.fingerprint})


def download_dataset(card: Card, data_root: Path | None = None, force: bool = False) -> Path:
    return loader_of(card).download(card, data_root_or_default(data_root), force)
