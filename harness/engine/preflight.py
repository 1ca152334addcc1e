"""What a run can be told before it trains: its memory and download estimates, and the problems
that would stop it after it started (weights that cannot load, too little disk), for `harness run
--dry-run`, `harness run` and `harness ablate` alike."""
from __future__ import annotations

import inspect
import shutil
from pathlib import Path

from ..config import RunConfig
from ..keypoints.featurizers import FEATURIZERS, create_featurizer
from ..keypoints.sources import parse_keypoints
from ..method import METHODS
from ..model.backbones import (OPTIMIZER_STATE_BYTES, skeleton, training_memory_gb, weights_download_gb,
                               weights_problem)


def _fitting_accumulate(model, batch: int, optimizer: str, gpu_gb: float) -> int | None:
    """The fewest micro-batches (a divisor of ``batch``) whose estimate fits in ``gpu_gb``."""
    for a in (d for d in range(1, batch + 1) if batch % d == 0):
        if training_memory_gb(model, batch // a, optimizer) <= gpu_gb:
            return a
    return None


def memory_line(cfg: RunConfig, gpu_gb: float | None = None) -> str:
    """Estimated peak GPU memory of the run's training, and the --accumulate that fits ``gpu_gb``."""
    method = METHODS.create(cfg.method)
    model = skeleton(cfg.backbone, cfg.image_size)
    params = sum(p.numel() for p in model.parameters())
    if not method.trains:
        return f"memory: no training; ~{4 * params / 2**30:.1f} GB of fp32 weights to embed with"
    accumulate = cfg.accumulate if isinstance(cfg.accumulate, int) else 1
    need = training_memory_gb(model, -(-cfg.batch_size // accumulate), cfg.optimizer)
    if need is None:
        return f"memory: no estimate for {type(model).__name__} (the estimate covers ViTs)"
    line = (f"memory: ~{need:.0f} GB peak GPU memory training at batch {cfg.batch_size}"
            f"{f' (--accumulate {accumulate})' if accumulate > 1 else ''}, {params / 1e6:.0f}M parameters")
    if gpu_gb:
        fit = _fitting_accumulate(model, cfg.batch_size, cfg.optimizer, gpu_gb)
        line += (f"; on {gpu_gb:g} GB: --accumulate {fit}" if fit else f"; does not fit {gpu_gb:g} GB at any --accumulate")
    return line


def download_line(cfg: RunConfig) -> str:
    """What a first run downloads: the backbone's hub weights and the keypoint recipe's featurizer."""
    parts = []
    backbone = weights_download_gb(cfg.backbone, cfg.image_size, bool(cfg.pretrained), cfg.weights)
    if backbone:
        parts.append(f"backbone {cfg.backbone} ~{backbone:.1f} GB")
    featurizer = _recipe_featurizer(cfg)
    if featurizer is not None and featurizer.download_gb():
        parts.append(f"featurizer {featurizer.name} ~{featurizer.download_gb():.1f} GB")
    return "downloads: " + (", ".join(parts) + " (cached after the first run)" if parts else "none")


def checkpoint_gb(cfg: RunConfig) -> float:
    """Size of the run's largest checkpoint: fp32 weights and the optimizer's state (0: no training)."""
    if not METHODS.create(cfg.method).trains:
        return 0.0
    params = sum(p.numel() for p in skeleton(cfg.backbone, cfg.image_size).parameters())
    return (4 + OPTIMIZER_STATE_BYTES.get(cfg.optimizer, 8)) * params / 1e9


def preflight_problems(cfg: RunConfig, results_dir: Path) -> list[str]:
    """What would stop this run after it started, checked before any run trains: weights that
    cannot load, and too little free disk for its checkpoint (under the results folder) and its
    downloads (the hub cache); one line each."""
    from huggingface_hub import constants  # a dependency of timm; imported here, as timm is, to start fast

    problems = [p for p in [weights_problem(cfg.backbone, bool(cfg.pretrained), cfg.weights)] if p]
    needs = [(Path(results_dir), checkpoint_gb(cfg), "its checkpoint"),
             (Path(constants.HF_HUB_CACHE), _download_gb(cfg), "its downloads")]
    for folder, need, what in needs:
        where = next((p for p in [folder, *folder.parents] if p.exists()), Path("/"))
        free = shutil.disk_usage(where).free / 1e9
        if need and free < 1.1 * need:  # 10% headroom: the atomic write holds two copies briefly
            problems.append(f"{cfg.dataset}: {what} need ~{need:.1f} GB under {where}, {free:.1f} GB free")
    return problems


def _download_gb(cfg: RunConfig) -> float:
    total = weights_download_gb(cfg.backbone, cfg.image_size, bool(cfg.pretrained), cfg.weights)
    featurizer = _recipe_featurizer(cfg)
    return total + (featurizer.download_gb() if featurizer else 0.0)


def _recipe_featurizer(cfg: RunConfig):
    """The featurizer of the run's keypoint recipe, built without loading anything (None: no recipe)."""
    source = METHODS.create(cfg.method).keypoint_source(cfg.keypoints)
    recipe = parse_keypoints(source).recipe if source else None  # the recipe inside the wrappers
    if recipe is None or not recipe.matches:
        return None
    takes_device = "device" in inspect.signature(FEATURIZERS.get(recipe.featurizer).factory).parameters
    return create_featurizer(recipe.featurizer, **recipe.options, **({"device": "cpu"} if takes_device else {}))
