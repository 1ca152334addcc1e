"""Checkpoint overhead: the share of training time spent writing checkpoints, with the old policy
(every epoch) and the default one (``SavePolicy``: after the last epoch, and otherwise only when the
time since the last write is at least 20x what it took). Goal <= 5%.

Trains a random-init backbone in this process on random tensors (no dataset, no downloads), timing
the checkpoint hook. A tiny model writes in milliseconds, so the figure that matters at scale is
extrapolated from this disk's measured write speed: the resume state of a real backbone (weights +
the optimizer's state) against a short epoch (Giraffes on a fast GPU: ~1.5 s).
Usage: python benchmarks/checkpoint_overhead.py [--backbone nano] [--epochs 6] [--big vit_large_patch16_224]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def train_once(folder: Path, policy, backbone: str, size: int, epochs: int, images: int, batch: int):
    """(training seconds, checkpoint seconds, writes) of one run with ``policy``."""
    import torch

    from harness.core.distributed import pick_device
    from harness.engine.checkpoint import Checkpoint
    from harness.engine.settings import TrainSettings
    from harness.engine.train import Normalizer, Runtime, TrainData, reid_loss, train
    from harness.model.backbones import create_backbone
    from harness.model.keypoint_vit import KeypointViT

    torch.manual_seed(0)
    model = KeypointViT(create_backbone(backbone, size), "none", 0)
    data = TrainData(torch.randint(0, 256, (images, 3, size, size), dtype=torch.uint8), torch.arange(images) % 8, None)
    settings = TrainSettings(epochs=epochs, batch_size=batch, lr=1e-3, weight_decay=0.05, warmup_epochs=0.0,
                             hflip=0.0, seed=0, optimizer="sgd")
    ckpt = Checkpoint(folder / "bench_s0.pt", policy=policy)
    t0 = time.perf_counter()
    train(model, reid_loss(model.embed_dim, 8, 0.5, 16.0, 0.2), data, Normalizer((0.5,) * 3, (0.5,) * 3), settings,
          Runtime(pick_device("auto"), hooks=(ckpt,), progress=False))
    return time.perf_counter() - t0, ckpt.seconds, ckpt.writes


def write_speed(folder: Path, megabytes: int = 256) -> float:
    """GB/s of an atomic torch.save of one tensor (fsync included), as the checkpoint writes."""
    import torch

    from harness.core.io import replace_atomic

    blob = {"x": torch.zeros(megabytes * 2**18)}  # float32: 4 bytes each
    t0 = time.perf_counter()
    replace_atomic(folder / "speed.pt", lambda tmp: torch.save(blob, tmp))
    return megabytes / 1024 / (time.perf_counter() - t0)


def state_gb(name: str) -> float:
    """Resume state of a random-init timm model trained with SGD + momentum: weights + one buffer."""
    import timm

    params = sum(p.numel() for p in timm.create_model(name, pretrained=False, num_classes=0).parameters())
    return 2 * 4 * params / 1e9


def main() -> None:
    from _common import record

    from harness.engine.checkpoint import SavePolicy

    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="nano")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--big", default="vit_large_patch16_224", help="timm model whose state size is extrapolated")
    ap.add_argument("--epoch-seconds", type=float, default=1.5, help="its epoch time on a fast GPU (Giraffes)")
    args = ap.parse_args()
    shares = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "warm-up").mkdir()  # the first run in a process pays for lazy initialisation: not measured
        train_once(Path(tmp) / "warm-up", SavePolicy(), args.backbone, args.image_size, 1, args.images, args.batch_size)
        for label, policy in (("every epoch", SavePolicy(max_share=1e9)), ("default", SavePolicy())):
            folder = Path(tmp) / label.replace(" ", "-")
            folder.mkdir()
            total, saving, writes = train_once(folder, policy, args.backbone, args.image_size, args.epochs,
                                               args.images, args.batch_size)
            shares[label] = (100 * saving / total, writes, total)
        speed = write_speed(Path(tmp))
    gb = state_gb(args.big)
    write_s = gb / speed
    every = 100 * write_s / (write_s + args.epoch_seconds)
    bounded = 100 * min(write_s, 0.05 * max(args.epoch_seconds, 20 * write_s)) / max(args.epoch_seconds, 20 * write_s)
    measured = "; ".join(f"{k}: {s:.1f}% ({w} writes, {t:.1f} s)" for k, (s, w, t) in shares.items())
    figures = (f"{args.backbone} {args.image_size}px, {args.epochs} epochs of {args.images} images: {measured}; "
               f"disk {speed:.2f} GB/s, so {args.big} ({gb:.1f} GB state, SGD) after {args.epoch_seconds} s epochs: "
               f"every epoch {every:.0f}%, default <= {bounded:.1f}% (one write per "
               f"{max(args.epoch_seconds, 20 * write_s):.0f} s)")
    record("checkpoint overhead", figures, "<= 5%")


if __name__ == "__main__":
    main()
