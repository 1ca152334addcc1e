"""P5: share of a training step spent waiting for data, on a MacaqueFaces-sized synthetic set
(34 identities x 185 images = 6,290 images) at 224 px. Target <= 10%.

Runs `harness run` for one epoch and reads the per-epoch data share the trainer records (time
spent assembling a batch on the device: indexing the decoded uint8 cache, flip, normalisation,
keypoint masks) over the epoch's wall time.
Usage: python benchmarks/data_wait.py [--backbone vit_tiny_patch16_224] [--epochs 1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from _common import record, run_harness

    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="vit_tiny_patch16_224")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    # the user's HARNESS_CACHE when set: only the epoch's data share is measured, not generation
    rec, _ = run_harness("--method", "ckpe", "--dataset", "synthetic", "--backbone", args.backbone,
                         "--image-size", "224", "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                         "--dataset-option", "identities=34", "--dataset-option", "images_per_identity=185",
                         "--dataset-option", "image_size=100", fresh_cache=False)
    epochs = rec["timing"]["epochs"]
    share = sum(e["data_share"] * e["seconds"] for e in epochs) / sum(e["seconds"] for e in epochs)
    figures = (f"{rec['dataset']['images']} images, {args.backbone} 224px batch {args.batch_size}: data wait "
               f"{100 * share:.1f}% of {sum(e['seconds'] for e in epochs):.0f} s training on {rec['device']['type']}")
    record("P5 data wait", figures, "<= 10%")


if __name__ == "__main__":
    main()
