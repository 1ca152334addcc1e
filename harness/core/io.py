"""Files written atomically, read without half-written ones, and hashes of configurations.

Every file the harness writes (run records, checkpoints, keypoint sets, plots) goes through
``replace_atomic``: readers see the old file or the new one, never half of one. A process killed
mid-write leaves a hidden temporary ``.<name>-XXXX<suffix>`` beside the target, which
``visible_json`` never lists and ``leftover_temps`` finds for clean-up.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import DataError, ResultsError


def config_hash(obj) -> str:
    """10 hex digits naming a configuration (JSON with sorted keys; anything else by its str)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def replace_atomic(path: Path, write: Callable[[Path], None], *, exclusive: bool = False) -> Path:
    """Write a file through ``write(tmp)`` into a temporary name beside it, flush it to disk, then
    move it into place. With ``exclusive`` the file must not exist yet: it is hard-linked into
    place, which fails if another process got there first (no check-then-write race), and a
    ResultsError says so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)  # see leftover_temps
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if not exclusive:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise ResultsError(f"{path} already exists; pass --force to replace it") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_json_atomic(path: Path, obj: dict, *, sort_keys: bool = False, exclusive: bool = False) -> Path:
    """``obj`` as indented JSON, atomically (``exclusive``: see ``replace_atomic``)."""
    text = json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n"
    return replace_atomic(Path(path), lambda tmp: tmp.write_text(text), exclusive=exclusive)


def read_json_object(path: Path, what: str) -> dict:
    """A JSON file holding one object; anything else is a one-line DataError naming ``what``."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise DataError(f"{what} {path} does not exist") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{what} {path} is not readable JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{what} {path} must hold a JSON object")
    return raw


def visible_json(folder: Path) -> list[Path]:
    """The JSON files of a folder, sorted, without the hidden ones: ``replace_atomic``'s temporary
    files (being written or left by a killed process) are never read."""
    return sorted(p for p in Path(folder).glob("*.json") if not p.name.startswith("."))


def leftover_temps(path: Path) -> list[Path]:
    """Temporary files ``replace_atomic`` left beside ``path`` when its process was killed mid-write."""
    path = Path(path)
    return [p for p in path.parent.glob(f".{glob.escape(path.stem)}-*{path.suffix}")
            if p.name[len(path.stem) + 2 :].count("-") == 0]
