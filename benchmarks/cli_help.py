"""Start-up of the command line: wall time of `harness --help` (process start to exit), the median
of several runs, and of `harness run --help` for comparison. Target: `harness --help` under 1 s on
an idle 2-core machine (the root help imports no command, so neither torch nor timm)."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

REPEATS = 5


def wall(*args: str) -> float:
    """Median seconds of `python -m harness ARGS` over ``REPEATS`` runs (the first warms the file cache)."""
    times = []
    for _ in range(REPEATS + 1):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    from _common import record

    root, run = wall("--help"), wall("run", "--help")
    record("CLI start-up", f"`harness --help` {root:.2f} s, `harness run --help` {run:.2f} s (median of {REPEATS})",
           "--help < 1 s")


if __name__ == "__main__":
    main()
