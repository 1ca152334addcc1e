"""Run configuration: one frozen dataclass whose fields map 1:1 onto `harness run` options.

A config is resolved from layers, each later one winning: the dataclass defaults < the dataset
card's ``defaults`` < the method's ``defaults`` < a table cell's overrides < options given on the
command line. ``resolve`` keeps where every value came from, so a run can say it. The resolved
config is saved with every result; fields that did not influence the run are null there
(``Method.applied``) and stay out of the hash that names the result file.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace

PROTOCOLS = ("disjoint", "closed", "open")
EXCLUDES = ("same-day",)  # gallery rules besides the whole gallery (None)
OPTIMIZERS = ("adamw", "sgd")
AUGMENTATIONS = ("none", "randaugment")
# fields that tell runs of one cell apart, or say how a run was computed, without changing the
# experiment (gradient accumulation and torch.compile give the same training)
RUN_FIELDS = ("seed", "device", "fold", "accumulate", "compile")


@dataclass(frozen=True)
class RunConfig:
    method: str = "ckpe"
    dataset: str = "synthetic"
    protocol: str = "disjoint"  # disjoint: 80/20 by individuals (paper); closed: ClosedSetSplit(0.8); open: new individuals
    seed: int = 0  # training seed (init, batch order, augmentation)
    split_seed: int = 666  # WildlifeDatasets' split seed
    folds: int | None = None  # identity k-fold cross-validation (None: one wildlife-datasets split)
    fold: int | None = None  # which fold is the test set (0..folds-1)
    validate: bool = False  # test on an inner split of the training identities (tuning), never the test ones
    exclude: str | None = None  # gallery rule: None = whole gallery; same-day = no same-identity image of the query's day
    keypoints: str | None = "ground-truth"  # keypoint source for methods that use keypoints
    num_keypoints: int | None = None  # K: keep the first K categories / ask the reference source for K (None: all)
    backbone: str = "micro"
    pretrained: bool | None = False
    weights: str | None = None  # local checkpoint file (safetensors / torch), instead of the hub
    image_size: int = 64
    epochs: int | None = 12
    batch_size: int | None = 64  # images per optimizer step (the effective batch)
    accumulate: int | str | None = 1  # micro-batches per optimizer step (gradient accumulation); "auto": the fewest that fit
    optimizer: str | None = "adamw"
    lr: float | None = 1e-3
    lr_min: float | None = 0.0  # cosine decay ends here
    momentum: float | None = 0.9  # sgd only
    weight_decay: float | None = 0.05  # never on norms, biases, position/cls tokens, keypoint embedding
    warmup_epochs: float | None = 1.0
    ce_weight: float | None = 0.2  # lambda in L = L_arcface + lambda * L_ce
    arcface_margin: float | None = 0.5  # radians
    arcface_scale: float | None = 64.0
    hflip: float | None = 0.0  # probability of the left/right-swapping horizontal flip augmentation
    augment: str | None = "none"  # none | randaugment (keypoints move with the pixels)
    randaugment_ops: int | None = 2
    randaugment_magnitude: int | None = 20  # of 0..30, torchvision's bins
    device: str = "auto"
    compile: str | None = "none"  # torch.compile backend: none, inductor, aot_eager, ...
    bad_images: str = "fail"  # an unreadable image: fail (naming it) or skip (warn, drop, record)
    dataset_options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self):
        checks = (
            (self.protocol in PROTOCOLS, f"unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}"),
            (self.num_keypoints is None or self.num_keypoints >= 1, f"--num-keypoints must be >= 1, got {self.num_keypoints}"),
            (self.image_size >= 1, f"image_size must be >= 1, got {self.image_size}"),
            (self.epochs is None or self.epochs >= 0, f"--epochs must be >= 0 (0: evaluate the untrained model), got {self.epochs}"),
            (self.batch_size is None or self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.accumulate in (None, "auto") or (isinstance(self.accumulate, int) and self.accumulate >= 1),
             f"--accumulate must be >= 1 or auto, got {self.accumulate}"),
            (self.hflip is None or 0.0 <= self.hflip <= 1.0, f"hflip is a probability in [0, 1], got {self.hflip}"),
            (self.bad_images in ("fail", "skip"), f"--bad-images must be fail or skip, got {self.bad_images!r}"),
            (self.ce_weight is None or self.ce_weight >= 0, f"ce_weight must be >= 0, got {self.ce_weight}"),
            (self.optimizer is None or self.optimizer in OPTIMIZERS,
             f"unknown --optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"),
            (self.augment is None or self.augment in AUGMENTATIONS,
             f"unknown --augment {self.augment!r}; valid: {', '.join(AUGMENTATIONS)}"),
            (self.folds is None or self.folds >= 2, f"--folds must be >= 2, got {self.folds}"),
            (self.fold is None or (self.folds is not None and 0 <= self.fold < self.folds),
             f"--fold {self.fold} needs --folds K with 0 <= fold < K"),
            (self.folds is None or self.protocol in ("disjoint", "open"),
             "--folds splits identities: it needs --protocol disjoint or open"),
            (self.exclude is None or self.exclude in EXCLUDES,
             f"unknown --exclude {self.exclude!r}; valid: {', '.join(EXCLUDES)} (or leave it out: the whole gallery)"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.batch_size is not None and isinstance(self.accumulate, int) and self.batch_size % self.accumulate:
            raise ValueError(f"--batch-size {self.batch_size} must be a multiple of --accumulate {self.accumulate}")
        if self.augment == "randaugment":
            if not (0 <= (self.randaugment_ops or 0) and 0 <= (self.randaugment_magnitude or 0) <= 30):
                raise ValueError(f"RandAugment needs --randaugment-ops >= 0 and --randaugment-magnitude in 0..30, "
                                 f"got {self.randaugment_ops}, {self.randaugment_magnitude}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dataset_options"] = dict(self.dataset_options)
        return d

    def experiment(self) -> dict:
        """What defines the experiment: every field that applied (not None), without the fields
        that tell runs of one cell apart or only say how it was computed (``RUN_FIELDS``)."""
        return {k: v for k, v in self.to_dict().items() if v is not None and k not in RUN_FIELDS}

    def experiment_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.experiment(), sort_keys=True).encode()).hexdigest()[:10]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """A config as a record stores it; fields added later take their defaults, dropped ones are ignored."""
        known = {k: v for k, v in d.items() if k in cls.field_names()}
        known["dataset_options"] = tuple(sorted((str(k), str(v)) for k, v in dict(known.get("dataset_options") or {}).items()))
        return cls(**known)


@dataclass(frozen=True)
class Resolved:
    """A resolved config and where each value came from (``default``, ``card <name>``, ``method``,
    ``table cell``, ``command line``)."""

    config: RunConfig
    origins: dict
    warnings: tuple[str, ...] = ()


def resolve(layers: list[tuple[str, dict]]) -> Resolved:
    """Apply ``(origin, values)`` layers over the dataclass defaults, later layers winning; a value
    of None in a layer means "not given". ``dataset_options`` merge key by key."""
    names = set(RunConfig.field_names())
    merged: dict = {}
    origins = {name: "default" for name in names}
    options: dict = {}
    for origin, values in layers:
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        for key, value in values.items():
            if key == "dataset_options":
                if value:
                    options.update({str(k): str(v) for k, v in dict(value).items()})
                    origins[key] = origin
            elif value is not None:
                merged[key] = value
                origins[key] = origin
    merged["dataset_options"] = tuple(sorted(options.items()))
    return Resolved(replace(RunConfig(), **merged), origins)
