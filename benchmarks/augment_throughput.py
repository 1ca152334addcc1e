"""RandAugment throughput: images/s at 224 px on one core, and with the thread count training uses on a
GPU box (``default_workers("cuda")``: all cores but one, at most 8); then the data-wait share of a
short `harness run` with RandAugment on this machine's default device. The per-core figure against
what a GPU consumes says how many cores keep it fed (ViT-B/16 trains at ~1,000+ img/s on a
current GPU; see gpu_check.py for the measured figure there).

Every image's operations are fixed by its seed before any thread runs, so the worker count
changes the speed, never the images (checked here too).
Usage: python benchmarks/augment_throughput.py [--images 256] [--size 224]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def rate(images, points, seeds, workers: int, rounds: int = 2) -> tuple[float, object]:
    from harness.engine.augment import RandAugment

    augment = RandAugment(2, 20)
    augment.seeded(images[:8], points[:8], seeds[:8], workers)  # warm-up: kernels, the pool's threads
    t0 = time.perf_counter()
    for _ in range(rounds):
        out = augment.seeded(images, points, seeds, workers)
    return rounds * len(seeds) / (time.perf_counter() - t0), out


def main() -> None:
    import torch
    from _common import record, run_harness

    from harness.engine.workers import default_workers, image_seed

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    torch.set_num_threads(1)  # one core per augmenting thread: the per-core figure is one thread's
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, args.size, args.size), dtype=torch.uint8, generator=g)
    points = torch.rand(args.images, 4, 2, generator=g) * args.size
    seeds = [image_seed(0, 0, i) for i in range(args.images)]
    one, a = rate(images, points, seeds, 1)
    workers = default_workers("cuda")
    many, b = rate(images, points, seeds, workers)
    cores = os.cpu_count() or 1
    every, c = rate(images, points, seeds, cores)
    same = all(torch.equal(a[0], x[0]) and torch.equal(a[1], x[1]) for x in (b, c))
    rec, _ = run_harness("--method", "ckpe", "--dataset", "synthetic", "--backbone", "nano", "--image-size", "224",
                         "--epochs", "1", "--batch-size", "32", "--augment", "randaugment",
                         "--dataset-option", "identities=10", "--dataset-option", "images_per_identity=40",
                         "--dataset-option", "image_size=100", fresh_cache=False)
    epoch = rec["timing"]["epochs"][0]
    figures = (f"RandAugment(2, 20) at {args.size} px: {one:.0f} img/s on one core, {many:.0f} img/s with "
               f"{workers} thread(s) (the GPU default here), {every:.0f} img/s with {cores} (every core), same images: "
               f"{same}; nano {rec['split']['train_images']} "
               f"images x 1 epoch on {rec['device']['type']}: data wait {100 * epoch['data_share']:.1f}% of "
               f"{epoch['seconds']:.1f} s")
    record("augmentation throughput", figures, "data wait <= 10% on a GPU")


if __name__ == "__main__":
    main()
