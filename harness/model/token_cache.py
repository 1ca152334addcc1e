"""Frozen-trunk tokens on disk: computed once per token set, shared by every run and seed of a sweep.

A token set is what a frozen trunk gives every decoded image of one dataset (under one set of
dataset options, at one image size and normalization). Without augmentation the tokens are a pure
function of those and of the trunk, so a sweep needs each set once: the first run computes it shard
by shard, each shard written atomically (``core.io.replace_atomic``), so a killed run resumes from
its finished shards and a half-written shard is never read; later runs, of any method and seed, load
it. Flipped or RandAugment-ed training images are not in any set: they still run the trunk (and
stay in the run's in-memory cache), so with ``--hflip`` / ``--augment`` a run computes more than once
per image, and the run record's ``trunk_forwards`` shows how much.

Where: ``<harness cache>/trunk-tokens/<key>/``. The key is a sha256 over the trunk itself (its
module tree and every tensor: architecture and weights by content), the dataset's name, options and
fingerprint, the image size, mean and std, and torch's version; inside a shard every image is also
keyed by its own content (``FrozenTrunk.key``), so a set can never answer for another image.

Budget: ``HARNESS_TOKEN_CACHE_GB`` (default 4; 0 turns the disk cache off). A new set makes room by
evicting whole other sets, least recently used first; a set larger than the whole budget is refused
(not stored: its run keeps tokens in memory, as without a disk cache) with a one-line warning.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from ..core.errors import DataError
from ..core.io import replace_atomic, write_json_atomic
from ..core.paths import cache_dir

TOKEN_DIR = "trunk-tokens"
BUDGET_ENV = "HARNESS_TOKEN_CACHE_GB"
DEFAULT_BUDGET_GB = 4.0
SHARD_IMAGES = 256  # images per shard: what a killed run can lose, and one trunk batch
ABOUT = "set.json"  # what the set holds; its modification time is the set's last use


def budget_bytes() -> int:
    raw = os.environ.get(BUDGET_ENV, "").strip()
    try:
        gb = float(raw) if raw else DEFAULT_BUDGET_GB
    except ValueError:
        gb = -1.0
    if not gb >= 0:
        raise DataError(f"{BUDGET_ENV}={raw!r}: give the token cache's size budget in GB, e.g. 4 (0 turns it off)")
    return int(gb * 2**30)


def trunk_digest(trunk: nn.Module) -> str:
    """sha256 over a module's structure (its repr: layers, strides, paddings) and every tensor of its
    state dict (names, dtypes, shapes, values): two trunks share tokens only if they compute alike."""
    digest = hashlib.sha256(repr(trunk).encode())
    for name, tensor in trunk.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def set_key(trunk: nn.Module, about: dict) -> str:
    """The token set's name: the trunk's content and ``about`` (dataset, options, fingerprint,
    image size, normalization), with torch's version (another version may round differently)."""
    blob = json.dumps({"trunk": trunk_digest(trunk), "torch": torch.__version__.split("+")[0], **about},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class TokenStore:
    """One token set's folder under ``root`` and the budget of all sets there together."""

    root: Path
    key: str
    budget: int
    about: dict = field(default_factory=dict)

    @classmethod
    def for_trunk(cls, trunk: nn.Module, about: dict) -> TokenStore:
        return cls(cache_dir() / TOKEN_DIR, set_key(trunk, about), budget_bytes(), about)

    @property
    def folder(self) -> Path:
        return self.root / self.key

    def shard_path(self, index: int) -> Path:
        return self.folder / f"shard-{index:05d}.pt"

    def read(self, index: int, images: int) -> tuple[list[bytes], torch.Tensor] | None:
        """A finished shard of ``images`` images, or None (absent, unreadable or of another size:
        recomputed). Only finished shards have this name: ``replace_atomic`` writes elsewhere first."""
        path = self.shard_path(index)
        if not path.is_file():
            return None
        try:
            saved = torch.load(path, weights_only=True)
            keys, tokens = [bytes(k) for k in saved["keys"].numpy()], saved["tokens"]
        except Exception as exc:  # a damaged file (disk trouble): say so and compute it again
            print(f"warning: token cache shard {path} is unreadable ({type(exc).__name__}): recomputing it",
                  file=sys.stderr)
            return None
        return (keys, tokens) if len(keys) == len(tokens) == images else None

    def write(self, index: int, keys: list[bytes], tokens: torch.Tensor) -> None:
        packed = torch.tensor([list(k) for k in keys], dtype=torch.uint8)
        replace_atomic(self.shard_path(index), lambda tmp: torch.save({"keys": packed, "tokens": tokens}, tmp))

    def _others(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [d for d in self.root.iterdir() if d.is_dir() and d.name != self.key]

    def used_by_others(self) -> int:
        return sum(_folder_bytes(d) for d in self._others())

    def make_room(self, set_bytes: int) -> bool:
        """Room for this whole set (``set_bytes``): other sets are evicted, least recently used first.
        False, and nothing evicted, when the set alone is larger than the budget."""
        if set_bytes > self.budget:
            return False
        others = sorted(self._others(), key=_last_use)
        while others and self.used_by_others() + set_bytes > self.budget:
            victim = others.pop(0)
            shutil.rmtree(victim, ignore_errors=True)
            print(f"token cache: evicted {victim} (least recently used) to stay within {BUDGET_ENV}", file=sys.stderr)
        return True

    def touch(self, images: int) -> None:
        """Describe the set for people and mark it used now (eviction reads the time)."""
        about = self.folder / ABOUT
        if not about.exists():
            write_json_atomic(about, {"images": images, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **self.about})
        os.utime(about)


@dataclass
class Filled:
    """What ``fill`` did, for the run record."""

    set: str
    folder: str
    images: int
    loaded: int = 0  # images whose tokens came from disk
    computed: int = 0  # images whose tokens the trunk computed here
    stored: bool = True  # False: refused by the budget, or the disk cache is off

    def record(self) -> dict:
        return dict(vars(self))


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.iterdir():
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # another process's temporary file, renamed meanwhile
            pass
    return total


def _last_use(folder: Path) -> float:
    try:
        return (folder / ABOUT).stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _refused(store: TokenStore, set_bytes: int) -> None:
    print(f"warning: token cache: this token set needs {set_bytes / 2**20:.0f} MiB, more than the whole budget "
          f"({store.budget / 2**30:.1f} GiB, {BUDGET_ENV}): not stored; this run keeps its tokens in memory only. "
          f"Raise {BUDGET_ENV} to share it across runs.", file=sys.stderr)


def fill(frozen, images: torch.Tensor, normalize: Callable, store: TokenStore, progress: bool = True) -> Filled:
    """Every image's tokens into ``frozen.shared`` (a ``frozen_trunk.FrozenTrunk``): finished shards read
    from disk, the others computed from ``normalize(images[rows])`` (exactly what training and
    evaluation feed the model, so their content keys match) and written. With the budget off
    (0) nothing happens; when the set does not fit the budget, filling stops at the first shard
    and the run's own in-memory cache takes over."""
    n = len(images)
    out = Filled(store.key, str(store.folder), n, stored=store.budget > 0)
    if not out.stored:
        return out
    store.touch(n)
    for index in tqdm(range(math.ceil(n / SHARD_IMAGES)), desc="trunk tokens", unit="shard", disable=not progress):
        start = index * SHARD_IMAGES
        stop = min(n, start + SHARD_IMAGES)
        found = store.read(index, stop - start)
        if found is not None:
            out.loaded += stop - start
        else:
            x = normalize(images[start:stop])
            found = [frozen.key(image) for image in x], frozen.featurize(x)
            out.computed += stop - start
            set_bytes = (found[1][0].nbytes + 16) * n
            if not store.make_room(set_bytes):
                _refused(store, set_bytes)
                shutil.rmtree(store.folder, ignore_errors=True)
                out.stored = False
            else:
                store.write(index, *found)
        frozen.shared.update(zip(found[0], found[1]))
        if not out.stored:
            break
    return out
