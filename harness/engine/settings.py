"""How to train, as training reads it: the training fields of a run config, copied once."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import SETTING_FIELDS
from .augment import RandAugment


@dataclass(frozen=True)
class TrainSettings:
    """How to train: the training fields of a run config."""

    epochs: int
    batch_size: int  # images per optimizer step (all ranks, all micro-batches)
    lr: float
    weight_decay: float
    warmup_epochs: float
    hflip: float  # probability of the left/right-swapping horizontal flip
    seed: int
    optimizer: str = "adamw"
    momentum: float = 0.9  # sgd
    lr_min: float = 0.0  # the cosine decay ends here
    accumulate: int | str = 1  # micro-batches per optimizer step; "auto": the fewest that fit (``auto_accumulate``)
    augment: RandAugment | None = None
    compile_backend: str = "none"  # torch.compile backend; none = eager
    kpe_lr_scale: float = 1.0  # the keypoint embedding's lr as a multiple of ``lr``

    @classmethod
    def from_config(cls, cfg) -> TrainSettings:
        """The config fields declared with ``setting`` (``config.SETTING_FIELDS``), copied; one that
        is None (not applied, e.g. momentum without SGD) keeps this class's default. RandAugment is
        built from its three fields."""
        copied = {name: getattr(cfg, field) for field, name in SETTING_FIELDS.items() if getattr(cfg, field) is not None}
        augment = RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude) if cfg.augment == "randaugment" else None
        return cls(**copied, augment=augment)
