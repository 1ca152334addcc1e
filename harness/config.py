"""Run configuration: one frozen dataclass whose fields map 1:1 onto `harness run` options.

Resolution order: dataclass defaults < the dataset card's "defaults" < options given on the
command line. The resolved config is saved with every result and its hash names the file.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace

PROTOCOLS = ("disjoint", "closed")


@dataclass(frozen=True)
class RunConfig:
    method: str = "ckpe"
    dataset: str = "synthetic"
    protocol: str = "disjoint"  # disjoint: 80/20 by individuals (paper); closed: ClosedSetSplit(0.8)
    seed: int = 0  # training seed (init, batch order, augmentation)
    split_seed: int = 666  # WildlifeDatasets' split seed
    keypoints: str = "ground-truth"  # keypoint source for methods that use keypoints
    num_keypoints: int | None = None  # keep the first K categories (None: all)
    backbone: str = "micro"
    pretrained: bool = False
    weights: str | None = None  # local checkpoint file (safetensors / torch), instead of the hub
    image_size: int = 64
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    ce_weight: float = 0.2  # lambda in L = L_arcface + lambda * L_ce
    arcface_margin: float = 0.5  # radians
    arcface_scale: float = 64.0
    hflip: float = 0.0  # probability of the left/right-swapping horizontal flip augmentation
    device: str = "auto"
    compile: str = "none"
    bad_images: str = "fail"  # an unreadable image: fail (naming it) or skip (warn, drop, record)  # torch.compile backend: none, inductor, aot_eager, ...
    dataset_options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if self.num_keypoints is not None and self.num_keypoints < 1:
            raise ValueError(f"--num-keypoints must be >= 1, got {self.num_keypoints}")
        for name in ("epochs", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip is a probability in [0, 1], got {self.hflip}")
        if self.bad_images not in ("fail", "skip"):
            raise ValueError(f"--bad-images must be fail or skip, got {self.bad_images!r}")
        if self.ce_weight < 0:
            raise ValueError(f"ce_weight must be >= 0, got {self.ce_weight}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dataset_options"] = dict(self.dataset_options)
        return d

    def experiment_hash(self) -> str:
        """Hash of everything that defines the experiment except the seed and the device."""
        d = self.to_dict()
        d.pop("seed")
        d.pop("device")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def resolve(card_defaults: dict, given: dict, method_defaults: dict | None = None) -> RunConfig:
    """Build the run config: dataclass defaults, then the card's defaults, then the method's
    defaults (e.g. the frozen baseline's backbone), then what was given."""
    method_defaults = method_defaults or {}
    names = set(RunConfig.field_names())
    unknown = sorted((set(card_defaults) | set(method_defaults) | set(given)) - names)
    if unknown:
        raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
    merged = {**card_defaults, **method_defaults, **{k: v for k, v in given.items() if v is not None}}
    options = {**dict(card_defaults.get("dataset_options") or {}), **dict(given.get("dataset_options") or {})}
    merged["dataset_options"] = tuple(sorted((str(k), str(v)) for k, v in options.items()))
    return replace(RunConfig(), **merged)
