"""Run configuration: one frozen dataclass whose fields map 1:1 onto `harness run` options.

A config is resolved from layers, each later one winning: the dataclass defaults < the dataset
card's ``defaults`` < the method's (``Method.layer``: its ``defaults`` and loss terms) < a table
cell's overrides < options given on the command line. ``resolve`` keeps where every value came
from, so a run can say it. The resolved config is saved with every result; fields that did not
influence the run are null there (``Method.applied``) and stay out of the hash that names the
result file. What a field means is declared once, with the field (``option``): its help text and
the groups derived from it (``RUN_FIELDS``, ``TRAINING_FIELDS``, ``SETTING_FIELDS``).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

PROTOCOLS = ("disjoint", "closed", "open")
EXCLUDES = ("same-day",)  # gallery rules besides the whole gallery (None)
OPTIMIZERS = ("adamw", "sgd")
# how the keypoint embedding starts (model/keypoint_vit.py says what each means); the paper leaves it open
KPE_INITS = ("zero", "normal", "token")
AUGMENTATIONS = ("none", "randaugment")


def option(default=MISSING, help: str = "", *, training: bool = False, run_only: bool = False,
           setting: bool | str = False, default_factory=MISSING, since=None):
    """A RunConfig field with what it means, declared once (the field's metadata): ``help`` is its
    `harness run` option's text; ``training``: it only matters when a method trains (a method that
    does not train sets it to None); ``run_only``: it tells runs of one cell apart, or says how a run
    was computed without changing the experiment (gradient accumulation and torch.compile give the
    same training), so it stays out of the experiment hash; ``setting``: training copies it into
    ``TrainSettings`` (True: under the same name, a string: under that name); ``since``: for a field
    added after records existed, the value every earlier run had in effect. A record without the
    field reads it as that value, and that value stays out of the experiment hash, so an old record
    keeps its name and matches a new run of the same experiment."""
    metadata = {"help": help, "training": training, "run_only": run_only, "setting": setting, "since": since}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunConfig:
    method: str = option("ckpe", "method plugin (see `harness list`)")
    dataset: str = option("synthetic", "dataset card name (see `harness list`), `all` (the paper's four, in "
                          "sequence), any wildlife-datasets class name, or folder:PATH (PATH/<identity>/<image>)")
    protocol: str = option("disjoint", "disjoint = 80/20 by individuals (paper); closed = WildlifeDatasets' "
                           "ClosedSetSplit(0.8); open = identity folds with new individuals (no gallery image), "
                           "answered by a threshold chosen on training identities (BAKS, BAUS)")
    seed: int = option(0, "training seed (init, batch order, augmentation, random points)", run_only=True,
                       setting=True)
    split_seed: int = option(666, "seed of the train/test split (WildlifeDatasets uses 666)")
    folds: int | None = option(None, "identity k-fold cross-validation: K groups of identities, each the test set "
                               "once (scikit-learn GroupKFold, shuffled by --split-seed); without --fold every "
                               "fold runs")
    fold: int | None = option(None, "run only this fold (0..K-1) of --folds K", run_only=True)
    validate: bool = option(False, "evaluate on an inner validation split (1/5 of the training identities) instead "
                            "of the test identities: for choosing hyperparameters without looking at test folds")
    exclude: str | None = option(None, "same-day: remove from each query's gallery the images of its identity taken "
                                 "on its own day (cross-day re-identification; needs capture dates) [default: the "
                                 "whole gallery]")
    keypoints: str | None = option("ground-truth", "keypoint source for keypoint methods (see `harness list`)")
    num_keypoints: int | None = option(None, "keep the first K keypoint categories")
    # {aliases}: the backbone aliases, filled in by the CLI (they live in a higher layer, model/)
    backbone: str = option("micro", "timm model name or alias: {aliases} (sizes: `harness list`)")
    pretrained: bool | None = option(False, "load pretrained backbone weights from the Hugging Face hub (honours "
                                     "HF_HUB_OFFLINE)")
    weights: str | None = option(None, "local checkpoint instead of the hub: .safetensors or a torch file (read "
                                 "weights-only); ViT positional embeddings are resampled to --image-size")
    image_size: int = option(64, "model input size in pixels (square)")
    epochs: int | None = option(12, "training epochs (0: evaluate the untrained model)", training=True, setting=True)
    batch_size: int | None = option(64, "images per optimizer step (the effective batch)", training=True,
                                    setting=True)
    accumulate: int | str | None = option(
        1, "micro-batches per optimizer step (gradient accumulation; the batch size stays the effective one); "
        "auto: the fewest whose micro-batch fits in GPU memory (same losses; the record's history says which)",
        training=True, run_only=True, setting=True)
    optimizer: str | None = option("adamw", "adamw or sgd", training=True, setting=True)
    lr: float | None = option(1e-3, "peak learning rate (warm-up, then cosine decay to --lr-min)", training=True,
                              setting=True)
    lr_min: float | None = option(0.0, "learning rate at the end of the cosine decay", training=True, setting=True)
    momentum: float | None = option(0.9, "SGD momentum", training=True, setting=True)
    weight_decay: float | None = option(0.05, "weight decay (never on norms, biases, position/cls tokens or the "
                                        "keypoint embedding)", training=True, setting=True)
    warmup_epochs: float | None = option(1.0, "linear warm-up length in epochs", training=True, setting=True)
    ce_weight: float | None = option(0.2, "lambda: weight of the identity cross-entropy term", training=True)
    arcface_margin: float | None = option(0.5, "ArcFace additive angular margin in radians", training=True)
    arcface_scale: float | None = option(64.0, "ArcFace scale", training=True)
    hflip: float | None = option(0.0, "probability of horizontal flip (mirrors keypoints, swaps left/right "
                                 "categories)", training=True, setting=True)
    augment: str | None = option("none", "none or randaugment (torchvision's 14 operations; keypoints move with "
                                 "geometric ones)", training=True)
    randaugment_ops: int | None = option(2, "RandAugment: operations per image", training=True)
    randaugment_magnitude: int | None = option(20, "RandAugment: magnitude, 0..30", training=True)
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...", run_only=True)
    compile: str | None = option("none", "torch.compile the training step with this backend (inductor on GPUs); "
                                 "none = eager", training=True, run_only=True, setting="compile_backend")
    bad_images: str = option("fail", "unreadable image: fail (default, names the file) or skip (warn, drop it, "
                             "record it)")
    # the CLI's --dataset-option (shared with other commands) carries its own help
    dataset_options: tuple[tuple[str, str], ...] = option(
        help="dataset loader options KEY=VALUE", default_factory=tuple)
    # last, so every earlier field keeps its place; None: the method's terms (ArcFace + ce_weight x CE
    # unless it declares others), which keeps the experiment hash of every default run
    losses: str | None = option(None, "loss terms, comma-separated, each NAME or NAME=WEIGHT (see `harness list`; "
                                "a term's weight defaults to its own: --ce-weight for ce, 1 for the others); "
                                "none: the method's, usually arcface,ce", training=True)
    # the keypoint channel (methods with keypoints only): how its embedding starts and how fast it learns.
    # Chosen on validation identities of the known-answer control (tables/channel_choice.py,
    # docs/keypoint-channel.md): token x30 was best under AdamW in both layouts; from zero the channel
    # stayed near 0% of the token norm under SGD and at chance where the keypoints are necessary
    kpe_init: str | None = option("token", "keypoint embedding init: token (random directions at the mean patch-token "
                                  "norm of the first training batch), zero (the model starts as the plain ViT; every "
                                  "run before this option) or normal (std 0.02, as timm's position embeddings)",
                                  training=True, since="zero")
    kpe_lr_scale: float | None = option(30.0, "the keypoint embedding's learning rate as a multiple of --lr (1: every "
                                        "run before this option)", training=True, setting=True, since=1.0)
    allow_small_test: bool = option(False, "run even when the test split is too small to mean anything (too few "
                                    "test identities, or a random ranking's top-1 at least 50%); the record and "
                                    "its summary line carry a caveat", run_only=True)

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
            (self.kpe_init is None or self.kpe_init in KPE_INITS,
             f"unknown --kpe-init {self.kpe_init!r}; valid: {', '.join(KPE_INITS)}"),
            (self.kpe_lr_scale is None or (math.isfinite(self.kpe_lr_scale) and self.kpe_lr_scale > 0),
             f"--kpe-lr-scale must be a number > 0, got {self.kpe_lr_scale}"),
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
        that tell runs of one cell apart or only say how it was computed (``RUN_FIELDS``) and
        without a later field at the value every earlier run had (``LEGACY``)."""
        return {k: v for k, v in self.to_dict().items()
                if v is not None and k not in RUN_FIELDS and not (k in LEGACY and v == LEGACY[k])}

    def experiment_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.experiment(), sort_keys=True).encode()).hexdigest()[:10]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """A config as a record stores it; fields added later take the value earlier runs had in
        effect (``LEGACY``) or else their defaults; dropped ones are ignored."""
        known = {**LEGACY, **{k: v for k, v in d.items() if k in cls.field_names()}}
        known["dataset_options"] = tuple(sorted((str(k), str(v)) for k, v in dict(known.get("dataset_options") or {}).items()))
        return cls(**known)


def _marked(key: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(RunConfig) if f.metadata.get(key))


RUN_FIELDS = _marked("run_only")
# field -> the value it had in effect before it existed (``option``'s ``since``)
LEGACY = {f.name: f.metadata["since"] for f in fields(RunConfig) if f.metadata.get("since") is not None}
TRAINING_FIELDS = _marked("training")
# config field -> the TrainSettings attribute training copies it into
SETTING_FIELDS = {f.name: f.name if f.metadata["setting"] is True else f.metadata["setting"]
                  for f in fields(RunConfig) if f.metadata.get("setting")}


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
