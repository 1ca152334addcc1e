"""Trunk forwards per image across a small sweep of hybrid runs (issue 37, point 1): target 1.

Several runs (methods x seeds) of a hybrid backbone on one small generated dataset share one
HARNESS_CACHE (a temporary folder, never the user's). Each run record says how many images the
frozen trunk ran on (``backbone.token_cache.trunk_forwards``); their sum over the sweep, divided by
the dataset's images, is the figure. The same sweep with the disk token cache off
(HARNESS_TOKEN_CACHE_GB=0: each run fills only its own in-memory cache) is printed beside it.

The trunk's weights: the package's with the `small-pretrained` extra installed, else a random-init
torchvision MobileNetV2 saved to a file (--weights): a random-init trunk built by the run itself is
never cached, since it differs with the seed.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

DATA = ["--dataset", "synthetic", "--dataset-option", "identities=10", "--dataset-option", "images_per_identity=6",
        "--dataset-option", "image_size=64", "--image-size", "64", "--epochs", "2", "--batch-size", "16"]


def weights_args(backbone: str, folder: Path) -> list[str]:
    """--pretrained when the trunk's package is installed, else --weights to a saved MobileNetV2."""
    from harness.model.backbones import HYBRIDS, PACKAGE_WEIGHTS

    if importlib.util.find_spec(PACKAGE_WEIGHTS[backbone].module) is not None:
        return ["--pretrained"]
    if HYBRIDS[backbone].trunk != "mobilenetv2-dsr":
        raise SystemExit(f"{backbone}: install the small-pretrained extra (only MobileNetV2 has a stand-in file)")
    import torch
    import torchvision

    torch.manual_seed(0)
    path = folder / "mobilenetv2_torchvision.pt"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), path)
    return ["--weights", str(path)]


def sweep(backbone: str, weights: list[str], methods: list[str], seeds: int, cache: Path, budget_gb: str):
    """(trunk forwards summed over the sweep's runs, the dataset's images, wall seconds)."""
    from _common import run_harness

    os.environ.update(HARNESS_CACHE=str(cache), HARNESS_TOKEN_CACHE_GB=budget_gb)
    forwards, images, t0 = 0, 0, time.perf_counter()
    for method in methods:
        for seed in range(seeds):
            rec, _ = run_harness("--method", method, "--backbone", backbone, *weights, *DATA, "--seed", str(seed),
                                 fresh_cache=False)
            forwards += rec["backbone"]["token_cache"]["trunk_forwards"]
            images = rec["dataset"]["images"]
    return forwards, images, time.perf_counter() - t0


def main() -> None:
    import argparse

    from _common import record

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenetv2-dsr-hybrid")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default="vit,ckpe", help="comma-separated methods, each run with every seed")
    args = parser.parse_args()
    methods = args.methods.split(",")
    runs = len(methods) * args.seeds
    with tempfile.TemporaryDirectory() as tmp:
        weights = weights_args(args.backbone, Path(tmp))
        shared = sweep(args.backbone, weights, methods, args.seeds, Path(tmp) / "shared", "4")
        alone = sweep(args.backbone, weights, methods, args.seeds, Path(tmp) / "alone", "0")
    which = "package weights" if weights == ["--pretrained"] else "a saved random-init MobileNetV2 file"
    record("trunk tokens: forwards per image per sweep",
           f"{args.backbone} ({which}), {runs} runs ({'/'.join(methods)} x {args.seeds} seeds, 2 epochs) on "
           f"{shared[1]} synthetic images at 64 px: disk token cache {shared[0] / shared[1]:.2f} trunk forwards per "
           f"image ({shared[0]} in all, sweep {shared[2]:.0f} s); without it (HARNESS_TOKEN_CACHE_GB=0) "
           f"{alone[0] / alone[1]:.2f} ({alone[0]}, {alone[2]:.0f} s)", "1 forward per image")


if __name__ == "__main__":
    main()
