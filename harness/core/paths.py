"""Where things live: the repository (built-in cards and method plugins), the cache, the data root
and the results folder. Every default is declared here once; commands read them from here."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import DataError

# the source tree (an editable install or a clone); a wheel install keeps the built-in cards and
# method plugins under <prefix>/share/keypoint-reid-harness instead (see pyproject's data-files)
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARE_DIR = Path(sys.prefix) / "share" / "keypoint-reid-harness"

# `--results-dir` of every command (env HARNESS_RESULTS): relative to the working directory
DEFAULT_RESULTS_DIR = Path("results")
RESULTS_ENV = "HARNESS_RESULTS"
DATA_ENV = "HARNESS_DATA"


def _bundled(folder: str) -> Path:
    """A built-in folder (datasets/ or methods/): from the source tree, else from the install."""
    local = REPO_ROOT / folder
    return local if local.is_dir() or not (SHARE_DIR / folder).is_dir() else SHARE_DIR / folder


def cards_dir() -> Path:
    """Dataset cards (env HARNESS_DATASETS overrides the built-in datasets/ folder)."""
    given = os.environ.get("HARNESS_DATASETS", "").strip()
    if not given:
        return _bundled("datasets")
    path = Path(given).expanduser()
    if not path.is_dir():
        raise DataError(f"HARNESS_DATASETS={given}: {_not_a_folder(path)}; point it at a folder of dataset cards "
                        "(<name>.json) or unset it")
    return path


def _not_a_folder(path: Path) -> str:
    return "is a file, not a folder" if path.exists() else "no such folder"


def builtin_methods_dir() -> Path:
    return _bundled("methods")


def cache_dir() -> Path:
    """Generated data, decoded images, keypoint sets, test-bed models (env HARNESS_CACHE)."""
    path = Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "keypoint-reid-harness")).expanduser()
    if path.exists() and not path.is_dir():
        raise DataError(f"the harness cache {path} (env HARNESS_CACHE) is a file, not a folder; point HARNESS_CACHE "
                        "at a folder")
    return path


def data_root_or_default(data_root: Path | str | None) -> Path:
    """Where datasets live: the given folder (``~`` expanded; it need not exist yet: synthetic
    data is generated there, downloads land there), else the harness cache."""
    if not data_root:
        return cache_dir()
    path = Path(data_root).expanduser()
    if path.exists() and not path.is_dir():
        raise DataError(f"--data-root {data_root} (env {DATA_ENV}) is a file, not a folder; pass the folder that holds "
                        "the datasets (<data root>/<ClassName>/)")
    return path
