"""Cost of the small setting's pretrained representation (issue 24, point 6), on this machine:

- frozen features: seconds per image of `mobilenetv2-dsr` at 224 px (the `wildlife-baseline` row:
  one forward per image, no training) and of the hybrid's stride-16 trunk (what filling its token
  cache costs, once per image);
- the hybrid: one training epoch of CKPE with `mobilenetv2-dsr-hybrid` at 224 px on the synthetic
  dataset, with the token cache cold (epoch 1: the trunk runs) and warm (epoch 2: only the small
  transformer runs), beside the micro ViT at 64 px (the small setting's default) on the same data.

Uses the package's weights when the `small-pretrained` extra is installed, random init otherwise
(the cost is the same; the row says which).
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def seconds_per_image(module, size: int, batch: int = 32, batches: int = 3) -> float:
    """Median over ``batches`` timed batches (after one warm-up) of no-grad forward time per image."""
    import torch

    x = torch.randn(batch, 3, size, size)
    times = []
    with torch.no_grad():
        module(x)
        for _ in range(batches):
            t0 = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - t0) / batch)
    return sorted(times)[len(times) // 2]


def frozen_costs(name: str, pretrained: bool) -> tuple[float, float]:
    from harness.model.backbones import create_backbone

    full = create_backbone(name, 224, pretrained=pretrained, require_patch_grid=False).eval()
    trunk = create_backbone(f"{name}-hybrid", 224, pretrained=pretrained).patch_embed.backbone.trunk
    return seconds_per_image(full, 224), seconds_per_image(trunk, 224)


def epoch_seconds(backbone: str, size: int, pretrained: bool) -> tuple[list[float], int]:
    """Per-epoch training seconds of a 2-epoch CKPE run on synthetic, and its training images."""
    from _common import run_harness

    rec, _ = run_harness("--method", "ckpe", "--dataset", "synthetic", "--backbone", backbone,
                         "--pretrained" if pretrained else "--no-pretrained", "--image-size", str(size),
                         "--epochs", "2", fresh_cache=False)
    train = int(rec["dataset"]["images"] * 0.8)  # identity-disjoint 80/20 of equal-sized identities
    return [e["seconds"] for e in rec["timing"]["epochs"]], train


def main() -> None:
    import argparse

    import torch
    from _common import record

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch threads for the frozen-feature timing (default: torch's)")
    parser.add_argument("--frozen-only", action="store_true", help="skip the two training runs")
    parser.add_argument("--trunk", default="mobilenetv2-dsr", help="a package-weights backbone with a -hybrid twin "
                        "(e.g. efficientnet-lite0); the training runs are MobileNetV2's only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # on a busy machine one thread can beat two: say which was measured
    from harness.model.backbones import PACKAGE_WEIGHTS

    pretrained = importlib.util.find_spec(PACKAGE_WEIGHTS[args.trunk].module) is not None
    weights = "package weights" if pretrained else "random init (extra not installed; same cost)"
    full, trunk = frozen_costs(args.trunk, pretrained)
    record("small pretrained: frozen features",
           f"{args.trunk} 224px, {weights}, batch 32: {full * 1e3:.1f} ms/image (whole net, pooled); "
           f"hybrid trunk to stride 16: {trunk * 1e3:.1f} ms/image", "-")
    if args.frozen_only or args.trunk != "mobilenetv2-dsr":
        return
    hybrid, train = epoch_seconds("mobilenetv2-dsr-hybrid", 224, pretrained)
    micro, _ = epoch_seconds("micro", 64, False)
    record("small pretrained: hybrid epoch",
           f"CKPE on synthetic (~{train} training images, batch 64): mobilenetv2-dsr-hybrid 224px epoch 1 (token "
           f"cache cold) {hybrid[0]:.1f} s, epoch 2 (cached) {hybrid[1]:.1f} s; micro 64px {micro[0]:.1f} / "
           f"{micro[1]:.1f} s", "-")


if __name__ == "__main__":
    main()
