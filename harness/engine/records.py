"""Run records: one JSON file per run, written atomically, never silently overwritten."""
from __future__ import annotations

import functools
import json
import os
import platform
import re
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

from ..core.errors import ResultsError
from ..core.io import visible_json, write_json_atomic
from ..core.paths import REPO_ROOT

SCHEMA_VERSION = 3  # 2: per-query outcomes ("queries"), folds, config origins; 3: best match per query, open set, exclude
REQUIRED_KEYS = (
    "schema", "name", "config", "seed", "protocol", "split", "keypoints", "metrics", "history",
    "wall_time_s", "device", "versions", "git", "created",
)


def result_name(cfg) -> str:
    dataset = re.sub(r"[^A-Za-z0-9.-]+", "-", cfg.dataset).strip("-")  # folder:PATH -> folder-PATH
    fold = f"_f{cfg.fold}" if cfg.fold is not None else ""
    return f"{cfg.method}_{dataset}_{cfg.experiment_hash()}{fold}_s{cfg.seed}"


def summary_table(records: list[dict], metric: str = "top1") -> str:
    """Records -> a Table 1 shaped text table: one row per (method, protocol), one column per
    dataset (in first-seen order), cells = ``metric`` (mean over seeds, with the seed count when
    more than one). Reused by `harness run --dataset all`; a leaderboard can render the same rows."""
    datasets: list[str] = []
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    for rec in records:
        ds = rec["config"]["dataset"]
        if ds not in datasets:
            datasets.append(ds)
        row = cells.setdefault((rec["config"]["method"], rec["protocol"]), {})
        if rec["metrics"].get(metric) is not None:  # None: no query counted for this metric
            row.setdefault(ds, []).append(float(rec["metrics"][metric]))
    header = ["method", "protocol", *datasets]
    rows = []
    for (method, protocol), values in cells.items():
        row = [method, protocol]
        for ds in datasets:
            v = values.get(ds)
            row.append("-" if not v else f"{sum(v) / len(v):.1f}" + (f" (n={len(v)})" if len(v) > 1 else ""))
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"{metric} (%)", line(header), rule, *[line(r) for r in rows]])


def result_path(results_dir: Path, cfg) -> Path:
    return Path(results_dir) / f"{result_name(cfg)}.json"


def check_writable(results_dir: Path) -> Path:
    """Fail before any work if results cannot be written there."""
    results_dir = Path(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results_dir, prefix=".probe-", delete=True):
            pass
    except OSError as exc:
        raise ResultsError(f"results directory {results_dir} is not writable ({exc.strerror or exc}); pass --results-dir") from exc
    return results_dir


def write_record(path: Path, record: dict, overwrite: bool = False) -> Path:
    """A result record as JSON, atomically; never over an existing record unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ResultsError(f"{path} already exists; pass --force to replace it")
    return write_json_atomic(path, record, sort_keys=True, exclusive=not overwrite)


class RunLock:
    """An exclusive lock file per result name, so two processes never run the same config and seed
    into the same folder at once. A lock whose process is gone is taken over."""

    def __init__(self, results_dir: Path, name: str):
        self.path = Path(results_dir) / ".locks" / f"{name}.lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and _alive(pid):
                    raise ResultsError(f"another process (pid {pid}) is running this config into the same results "
                                       f"folder; wait for it or remove {self.path}")
                self.path.unlink(missing_ok=True)  # stale: its process died
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return self
        raise ResultsError(f"cannot take the run lock {self.path}")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_result(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read result {path}: {exc}") from exc
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ResultsError(f"result {path} lacks {missing}")
    return record


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "timm", "wildlife-datasets", "pytorch-metric-learning", "numpy", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.cache
def git_state() -> dict:
    """HEAD's commit and whether tracked files differ from it, read once per process: the code a
    process runs is what it imported at start, so a commit made while a long sweep runs must not
    be credited to the sweep's later records (`execute` asks before its first run)."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def load_records(results_dir: Path) -> list[tuple[str, dict]]:
    """(file name, record) for every readable result in results_dir, sorted by name."""
    out = []
    for path in visible_json(results_dir):
        try:
            out.append((path.name, read_result(path)))
        except ResultsError:
            continue
    return out
