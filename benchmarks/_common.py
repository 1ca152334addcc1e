"""Shared bits of the benchmark scripts: machine description, the RESULTS.md log, a timed run."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
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
    """Short commit of the measured code; +dirty when tracked files (this log aside) differ from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        return done.stdout if done.returncode == 0 else ""

    head = git("rev-parse", "HEAD").strip()
    if not head:
        return "?"
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return head[:7] + ("+dirty" if [p for p in changed if p != "benchmarks/RESULTS.md"] else "")


def run_harness(*args: str, fresh_cache: bool = True) -> tuple[dict, float]:
    """`harness run ARGS --quiet` in a subprocess into a temporary results folder: (its record, wall
    seconds from process start to exit). ``fresh_cache``: an empty HARNESS_CACHE (dataset generation
    and image decoding included in the time) instead of the user's."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if fresh_cache or "HARNESS_CACHE" not in env:
            env["HARNESS_CACHE"] = str(Path(tmp) / "cache")
        cmd = [sys.executable, "-m", "harness", "run", *args, "--quiet", "--results-dir", str(Path(tmp) / "results")]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        return json.loads(next((Path(tmp) / "results").glob("*.json")).read_text()), wall


def record(benchmark: str, figures: str, target: str, results: Path | None = None, quiet: bool = False) -> None:
    """Print the row and append it to benchmarks/RESULTS.md (or ``results``, e.g. a test's file)."""
    results = Path(results or RESULTS)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    row = f"| {when} | {benchmark} | {figures} | {target} | {machine()} | {commit()} |\n"
    if not results.exists():
        results.write_text("# Benchmark results\n\nAppended by the scripts in this folder; never edited by hand.\n\n" + HEADER)
    with results.open("a") as fh:
        fh.write(row)
    if not quiet:
        print(row.strip())
