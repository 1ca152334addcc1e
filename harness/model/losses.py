"""Loss terms: the training objective is a weighted list of registered terms.

A term is a factory ``(dim, num_classes, cfg) -> nn.Module`` whose module maps (embeddings, labels)
to a scalar, registered where it is defined with ``@register_loss(name, description, weight=...)``;
``weight`` is its default weight, a number or the name of the run-config field holding it. A method
declares its terms (``Method.losses``) and a run may name others (``--losses``), both as names with
optional weights, e.g. ``arcface,ce,triplet=0.5``. The default, ``arcface,ce``, is the paper's
L = L_arcface + lambda * L_ce with lambda = ``--ce-weight``. Third-party terms come from the
``harness.losses`` entry-point group or a plugin folder, like every other kind.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.registry import Registry, plugin_loader

DEFAULT_LOSSES = "arcface,ce"

LOSS_TERMS: Registry = Registry("loss term", loader=plugin_loader("harness.losses"))


def register_loss(name: str, description: str = "", weight: float | str = 1.0):
    """Decorator for a term's factory: ``@register_loss("triplet", "one line", weight=1.0)``."""

    def add(factory):
        factory.default_weight = weight
        return LOSS_TERMS.register(name, description)(factory)

    return add


class LossTerm(nn.Module):
    """A named, weighted term: ``weight * fn(embeddings, labels)``."""

    def __init__(self, name: str, weight: float, fn: nn.Module):
        super().__init__()
        self.name, self.weight, self.fn = name, float(weight), fn

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.fn(emb, labels)


class ClassifierCE(nn.Module):
    """Identity classification head + cross-entropy."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, emb, labels):
        return F.cross_entropy(self.head(emb), labels)


class BatchHardTriplet(nn.Module):
    """Batch-hard triplet loss on cosine distances: per anchor, its farthest same-identity image
    against its nearest other-identity one, hinged at ``margin``, averaged over the anchors that
    have both (pytorch-metric-learning's miner and loss; the mean, not its default average over
    non-zero terms, so easy batches pull the loss down as they should)."""

    def __init__(self, margin: float = 0.3):
        super().__init__()
        # pytorch-metric-learning imports scipy.stats (about a second): where a loss is built, not at start-up
        from pytorch_metric_learning import distances, miners, reducers
        from pytorch_metric_learning.losses import TripletMarginLoss

        cosine = distances.CosineSimilarity()
        self.miner = miners.BatchHardMiner(distance=cosine)
        self.loss = TripletMarginLoss(margin=margin, distance=cosine, reducer=reducers.MeanReducer())

    def forward(self, emb, labels):
        return self.loss(emb, labels, self.miner(emb, labels))


@register_loss("arcface", "ArcFace (additive angular margin; --arcface-margin, --arcface-scale)", weight=1.0)
def arcface(dim: int, num_classes: int, cfg) -> nn.Module:
    from pytorch_metric_learning.losses import ArcFaceLoss  # scipy.stats: imported where it is built

    # pytorch-metric-learning takes the margin in degrees; the config holds radians
    return ArcFaceLoss(num_classes, dim, margin=math.degrees(cfg.arcface_margin), scale=cfg.arcface_scale)


@register_loss("ce", "identity cross-entropy on a linear head, weighted by --ce-weight", weight="ce_weight")
def cross_entropy(dim: int, num_classes: int, cfg) -> nn.Module:
    return ClassifierCE(dim, num_classes)


@register_loss("triplet", "batch-hard triplet loss on cosine distances of the embeddings (margin 0.3)")
def triplet(dim: int, num_classes: int, cfg) -> nn.Module:
    return BatchHardTriplet()


def parse_losses(spec: str) -> tuple[tuple[str, float | None], ...]:
    """``"arcface,ce,triplet=0.5"`` -> ((name, weight or None for the term's default), ...); a
    one-line ValueError (or RegistryError listing the valid names) for anything else."""
    terms: list[tuple[str, float | None]] = []
    for part in spec.split(","):
        name, given, raw = (x.strip() for x in part.partition("="))
        name = name.lower()
        if not name:
            raise ValueError(f"--losses {spec!r}: an empty term; give NAME or NAME=WEIGHT, comma-separated")
        LOSS_TERMS.get(name)
        try:
            weight = float(raw) if given else None
        except ValueError:
            raise ValueError(f"--losses {spec!r}: the weight of {name} ({raw!r}) is not a number") from None
        if weight is not None and not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"--losses {spec!r}: the weight of {name} must be a number >= 0, got {raw}")
        if name in (n for n, _ in terms):
            raise ValueError(f"--losses {spec!r}: {name} is named twice")
        terms.append((name, weight))
    return tuple(terms)


def term_weight(name: str, weight: float | None, cfg) -> float:
    """The weight a term trains with: the one given, else its registered default (read from
    ``cfg`` when that names a config field)."""
    if weight is not None:
        return float(weight)
    default = LOSS_TERMS.get(name).factory.default_weight
    return float(getattr(cfg, default)) if isinstance(default, str) else float(default)


def canonical_losses(spec: str | None, cfg) -> str | None:
    """One spelling per objective: lower-case names in order, a weight only where it differs from
    the term's default; None for the default objective, so a default run's experiment hash is the
    one it had before terms could be named."""
    if spec is None:
        return None
    parts = [name if weight is None or weight == term_weight(name, None, cfg) else f"{name}={weight!r}"
             for name, weight in parse_losses(spec)]
    text = ",".join(parts)
    return None if text == DEFAULT_LOSSES else text


def build_losses(spec: str | None, dim: int, num_classes: int, cfg) -> nn.ModuleList:
    """The objective's terms (None: the default, ``arcface,ce``). A term weighted 0 is left out:
    it builds no head and draws no random numbers, so the other terms start as without it."""
    terms = []
    for name, weight in parse_losses(spec or DEFAULT_LOSSES):
        w = term_weight(name, weight, cfg)
        if w > 0:
            terms.append(LossTerm(name, w, LOSS_TERMS.create(name, dim, num_classes, cfg)))
    if not terms:
        raise ValueError(f"--losses {spec or DEFAULT_LOSSES!r}: every term is weighted 0; nothing would train")
    return nn.ModuleList(terms)
