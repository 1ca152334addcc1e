"""Where per-image augmentation comes from and where it runs: each image's seed and the threads that
augment a batch. Free of torchvision (``augment.py`` applies the operations), so the training loop
and every command that imports it start without paying for torchvision's import.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache


def image_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the operations for the image at ``position`` of epoch ``epoch``'s order. Training
    draws them per image from (seed, epoch, position), not from the generator that orders the
    epochs: the same image at the same place gets the same operations whatever the number of
    processes or micro-batches, two images of one batch never share them, and drawing them moves no
    generator, so torchrun ranks that slice a batch unevenly keep identical orders (and one
    checkpoint serves every rank)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: torch.Generator seeds are signed


WORKERS_ENV = "HARNESS_AUGMENT_WORKERS"


def default_workers(device_type: str) -> int:
    """Threads that augment a batch: on a GPU box all but one core (the main thread feeds the GPU),
    at most 8; on a CPU 1, since the model's own threads need those cores. ``HARNESS_AUGMENT_WORKERS``
    overrides either."""
    raw = os.environ.get(WORKERS_ENV)
    if raw is not None:
        if not raw.strip().isdigit() or int(raw) < 1:
            raise ValueError(f"{WORKERS_ENV}={raw!r}: give a whole number of threads >= 1")
        return int(raw)
    if device_type != "cuda":
        return 1
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@lru_cache(maxsize=4)
def pool(workers: int) -> ThreadPoolExecutor:
    """One pool per size for the process: torch's kernels release the GIL, so images augment in parallel."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="augment")
