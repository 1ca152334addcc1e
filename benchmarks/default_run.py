"""P4: wall time of the embedded default run, `harness run --method ckpe --dataset synthetic`, from an
empty cache (dataset generation included) into an empty results folder. Target <= 90 s on 2 cores."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from _common import record, run_harness

    rec, wall = run_harness("--method", "ckpe", "--dataset", "synthetic", fresh_cache=True)
    figures = (f"{wall:.1f} s wall (process start to exit, generation included); in-run {rec['wall_time_s']:.1f} s; "
               f"top-1 {rec['metrics']['top1']:.1f}")
    record("P4 default run", figures, "<= 90 s")


if __name__ == "__main__":
    main()
