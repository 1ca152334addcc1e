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

import numpy as np

from ..core.errors import ResultsError
from ..core.io import replace_atomic, visible_json, write_json_atomic
from ..core.paths import REPO_ROOT

# 2: per-query outcomes ("queries"), folds, config origins; 3: best match per query, open set, exclude;
# 4: per-query top-k matches in a side file the record names ("query_log")
SCHEMA_VERSION = 4
# The per-query log: beside each record, `<name>.topk.npz` (numpy's compressed npz, no pickles):
#   query_image_id (n,)      the record's queries, in the order of its "queries" lists
#   match (n, k) int16/32    index into gallery_image_id / gallery_identity, -1: no item (small gallery)
#   score (n, k) float16     cosine similarity, best first (float16: 3 significant digits, half the bytes)
#   gallery_image_id, gallery_identity (m,)  only the gallery images some query's top k holds
#   decision, decided_new (n,)  open protocol only: the identity answered ("" when "new")
# Committed with the records: the trained model is not kept, so a lost log costs a whole rerun.
# Budget: QUERY_LOG_BUDGET_BYTES for all logs under results/ (tests/test_query_log.py checks it).
QUERY_LOG_SUFFIX = ".topk.npz"
QUERY_LOG_BUDGET_BYTES = 50 * 2**20
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


class RunInProgress(ResultsError):
    """Another live process holds this run's lock: the run is under way there, not failed here."""


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
                    raise RunInProgress(f"another process (pid {pid}) is running this config into the same results "
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


def query_log_path(record_path: Path) -> Path:
    """Where the per-query log of the record at ``record_path`` lives: beside it."""
    record_path = Path(record_path)
    return record_path.with_name(record_path.stem + QUERY_LOG_SUFFIX)


def write_query_log(path: Path, top: dict, query_ids, image_ids: np.ndarray, identities: np.ndarray) -> dict:
    """Write a per-query log (``top``: "rows" (n, k) dataset rows or -1, "score", optionally
    "decision" per query with None for "new"; ``image_ids`` / ``identities``: per dataset row) and
    return what the record says about it."""
    rows = np.asarray(top["rows"])
    used = np.unique(rows[rows >= 0])
    kind = np.int16 if len(used) < 2**15 else np.int32
    arrays = {"query_image_id": np.asarray(query_ids, dtype=str),
              "match": np.where(rows >= 0, np.searchsorted(used, rows), -1).astype(kind),
              "score": np.asarray(top["score"], dtype=np.float32).astype(np.float16),
              "gallery_image_id": np.asarray(image_ids)[used].astype(str),
              "gallery_identity": np.asarray(identities)[used].astype(str)}
    if "decision" in top:
        arrays["decided_new"] = np.array([d is None for d in top["decision"]], dtype=bool)
        arrays["decision"] = np.array(["" if d is None else str(d) for d in top["decision"]], dtype=str)
    replace_atomic(path, lambda tmp: np.savez_compressed(tmp, **arrays))
    return {"file": Path(path).name, "k": int(rows.shape[1]), "bytes": Path(path).stat().st_size,
            "format": "numpy npz; see harness/engine/records.py (QUERY_LOG_SUFFIX)"}


def read_query_log(record_path: Path, record: dict) -> dict | None:
    """A record's per-query log as arrays: "image_id" and "identity" (n, k) of each query's best
    matches ("" past the gallery's end), "score" (n, k) (NaN there), "query_image_id", and
    "decision" (open protocol; None = "new"). None when the record names none or it is missing."""
    about = record.get("query_log")
    path = Path(record_path).with_name(about["file"]) if about else None
    if path is None or not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as raw:
            data = {name: raw[name] for name in raw.files}
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read the per-query log {path}: {exc}") from exc
    match = data["match"].astype(np.int64)  # -1 picks the "" appended to each table
    out = {"query_image_id": data["query_image_id"],
           "image_id": np.append(data["gallery_image_id"], "")[match],
           "identity": np.append(data["gallery_identity"], "")[match],
           "score": np.where(match < 0, np.nan, data["score"].astype(np.float64))}
    if "decision" in data:
        out["decision"] = [None if new else d for d, new in zip(data["decision"].tolist(), data["decided_new"].tolist())]
    return out
