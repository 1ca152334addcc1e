"""P1: train-step time of KPE and CKPE relative to the plain timm ViT (target <= 1.02).

Same backbone weights, batch, input and loss for every variant; one process; warm-up steps, then
variants interleaved step by step (so drift hits all alike) and medians compared. The KPE/CKPE
step includes building the token masks from keypoints.
Usage: python benchmarks/train_step.py [--backbone vit_tiny_patch16_224] [--image-size 224]
       [--batch-size 32] [--steps 15] [--keypoints 4]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from _common import record

    from harness.model.backbones import create_backbone
    from harness.model.keypoint_vit import KeypointViT
    from harness.engine.train import Objective, batch_masks, reid_loss

    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="vit_tiny_patch16_224")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--keypoints", type=int, default=4)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    base = create_backbone(args.backbone, args.image_size)
    b, k, s = args.batch_size, args.keypoints, args.image_size
    x = torch.randn(b, 3, s, s, device=device)
    labels = torch.randint(0, 10, (b,), device=device)
    points = torch.rand(b, k, 2) * s

    class Plain(torch.nn.Module):  # the timm model itself, no wrapper
        def __init__(self, bb):
            super().__init__()
            self.bb = bb
            self.embed_dim = bb.num_features

        def forward(self, x, mask=None):
            return self.bb(x)

    variants = {"vit": Plain(copy.deepcopy(base))}
    for name, enc in (("kpe", "binary"), ("ckpe", "categorical")):
        variants[name] = KeypointViT(copy.deepcopy(base), enc, k)
    steps = {}
    for name, model in variants.items():
        model.to(device).train()
        obj = Objective(model, reid_loss(model.embed_dim, 10, 0.5, 64.0, 0.2)).to(device)
        opt = torch.optim.AdamW(obj.parameters(), lr=1e-4)

        def step(model=model, obj=obj, opt=opt):
            mask = batch_masks(model, points, device)  # None for the plain ViT (no encoding)
            loss, _ = obj(x, mask, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()

        steps[name] = step
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    times = {n: [] for n in steps}
    for _ in range(args.steps):
        for n, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[n].append(time.perf_counter() - t0)
    med = {n: statistics.median(v) for n, v in times.items()}
    figures = (f"{args.backbone} {s}px batch {b}, {k} keypoints: median step vit {med['vit'] * 1000:.0f} ms, "
               f"KPE/vit {med['kpe'] / med['vit']:.3f}, CKPE/vit {med['ckpe'] / med['vit']:.3f} ({args.steps} steps)")
    record("P1 train-step overhead", figures, "<= 1.02")


if __name__ == "__main__":
    main()
