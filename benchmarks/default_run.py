"""P4: wall time of the embedded default run, `harness run --method ckpe --dataset synthetic`, from an
empty cache (dataset generation included) into an empty results folder. Target <= 90 s on 2 cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from _common import record

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HARNESS_CACHE": str(Path(tmp) / "cache")}
        cmd = [sys.executable, "-m", "harness.cli", "run", "--method", "ckpe", "--dataset", "synthetic", "--quiet",
               "--results-dir", str(Path(tmp) / "results")]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        rec = json.loads(next((Path(tmp) / "results").glob("*.json")).read_text())
    figures = (f"{wall:.1f} s wall (process start to exit, generation included); in-run {rec['wall_time_s']:.1f} s; "
               f"top-1 {rec['metrics']['top1']:.1f}")
    record("P4 default run", figures, "<= 90 s")


if __name__ == "__main__":
    main()
