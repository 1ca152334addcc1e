"""`harness run --dry-run` on a generated folder dataset (4 identities x 5 images, and one of a
single identity): each of the failures a new user meets (a test split of one identity, --batch-size
larger than the training set, CKPE without keypoints, a one-identity folder) must be caught, with a
non-zero exit, before any training. Prints the wall time of each (process start to exit); target
under 5 s each on 2 cores."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

CASES = {  # name -> (folder, arguments, what the one-line error says)
    "small test split": ("four", ["--method", "vit", "--epochs", "1", "--batch-size", "8"],
                         "too small to mean anything"),
    "batch size": ("four", ["--method", "vit", "--epochs", "1", "--allow-small-test"], "larger than the training set"),
    "no keypoints": ("four", ["--method", "ckpe", "--batch-size", "8", "--allow-small-test"], "keypoints annotate"),
    "one identity": ("one", ["--method", "vit"], "at least 2 identities"),
}


def folders(root: Path) -> None:
    rng = np.random.default_rng(0)
    for name, identities in (("four", 4), ("one", 1)):
        for i in range(identities):
            (root / name / f"animal{i}").mkdir(parents=True)
            for j in range(5):
                pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / name / f"animal{i}" / f"{j}.jpg")


def main() -> None:
    from _common import record

    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders(root)
        for case, (folder, args, says) in CASES.items():
            cmd = [sys.executable, "-m", "harness", "run", "--dataset", f"folder:{root / folder}", *args, "--dry-run",
                   "--results-dir", str(root / "results")]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            caught = done.returncode != 0 and says in done.stderr
            figures.append(f"{case} {seconds:.1f} s{'' if caught else ' NOT CAUGHT'}")
    record("dry run catches", "; ".join(figures), "each caught, < 5 s")


if __name__ == "__main__":
    main()
