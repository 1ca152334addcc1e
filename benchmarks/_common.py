"""Shared bits of the benchmark scripts: machine description and the RESULTS.md log."""
from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "| date (UTC) | benchmark | figures | target | machine | commit |\n|---|---|---|---|---|---|\n"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    load = os.getloadavg()[0]  # other work on the machine skews timings: say how busy it was
    return f"{dev}, torch {torch.__version__} ({cpu}, {torch.get_num_threads()} threads, load {load:.1f} at the end)"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=RESULTS.parent, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!benchmarks/RESULTS.md"], cwd=RESULTS.parent.parent,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def record(benchmark: str, figures: str, target: str) -> None:
    """Print the row and append it to benchmarks/RESULTS.md."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    row = f"| {when} | {benchmark} | {figures} | {target} | {machine()} | {commit()} |\n"
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in this folder; never edited by hand.\n\n" + HEADER)
    with RESULTS.open("a") as fh:
        fh.write(row)
    print(row.strip())
