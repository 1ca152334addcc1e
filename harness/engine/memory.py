"""Running out of accelerator memory: the one-line error that says what to try, and
``--accumulate auto``, which finds the fewest micro-batches per optimizer step that fit."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.distributed as torch_dist
from torch import nn

from ..core.distributed import DistInfo
from .settings import TrainSettings


class OutOfMemory(ValueError):
    """Training ran out of accelerator memory. A ValueError on purpose: the CLI reports it in one line
    and `harness ablate` records the cell and goes on (``core.errors.EXPECTED_ERRORS``)."""


def micro_batch(settings: TrainSettings, dist: DistInfo, accumulate: int) -> int:
    """The largest micro-batch one rank runs (``tensor_split`` makes the first pieces the larger)."""
    return math.ceil(math.ceil(settings.batch_size / dist.world) / accumulate)


def accumulations(settings: TrainSettings, dist: DistInfo) -> list[int]:
    """Valid --accumulate values, fewest first: divisors of the batch size leaving every rank's
    micro-batch at least one image."""
    b = settings.batch_size
    return [d for d in range(1, b + 1) if b % d == 0 and b >= dist.world * d]


def oom_message(settings: TrainSettings, dist: DistInfo, accumulate: int) -> str:
    """One line: where memory ran out and the --accumulate to try (half the micro-batch or less)."""
    over = f" over {dist.world} processes" if dist.world > 1 else ""
    where = (f"out of GPU memory training micro-batches of {micro_batch(settings, dist, accumulate)} image(s) "
             f"(--batch-size {settings.batch_size}{over}, --accumulate {accumulate})")
    now = micro_batch(settings, dist, accumulate)
    more = [a for a in accumulations(settings, dist) if 2 * micro_batch(settings, dist, a) <= now]
    if not more:
        return f"{where}; not even one image per micro-batch fits: use a smaller --backbone or --image-size"
    return (f"{where}; try --accumulate {more[0]} (half the micro-batch, same effective batch and results), "
            "or --accumulate auto to find the fewest micro-batches that fit")


def optimizer_reserve(objective: nn.Module, settings: TrainSettings, device) -> torch.Tensor | None:
    """On a GPU, the memory the optimizer's state takes from its first step on (AdamW: two fp32
    copies of the trainable parameters, SGD: one), held while probing, so the micro-batch chosen
    still fits once that state exists."""
    if device.type != "cuda":
        return None
    copies = 2 if settings.optimizer == "adamw" else 1
    size = copies * sum(4 * p.numel() for p in objective.parameters() if p.requires_grad)
    return torch.empty(size, dtype=torch.uint8, device=device)


def auto_accumulate(objective: nn.Module, fits: Callable[[int], bool], settings: TrainSettings, device,
                    dist: DistInfo) -> int:
    """``--accumulate auto``: the fewest micro-batches per step whose micro-batch survives one
    forward and backward pass (``fits(images)``). The probe leaves no trace (gradients cleared, buffers and the global
    RNG restored, the sampling generator untouched), so training then is exactly the run with a
    fixed ``--accumulate`` of that value: the same effective batch and the same losses."""
    candidates = accumulations(settings, dist)
    buffers = [b.detach().clone() for b in objective.buffers()]
    chosen = len(candidates)  # none fits
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            reserve = optimizer_reserve(objective, settings, device)
        except torch.OutOfMemoryError:
            raise OutOfMemory(f"out of GPU memory before training: the {settings.optimizer} state alone does not "
                              "fit; use a smaller --backbone") from None
        for i, a in enumerate(candidates):
            if fits(micro_batch(settings, dist, a)):
                chosen = i
                break
            if device.type == "cuda":
                torch.cuda.empty_cache()
        del reserve
    with torch.no_grad():
        for b, saved in zip(objective.buffers(), buffers):
            b.copy_(saved)
    if dist.world > 1:  # every rank must step alike: the most micro-batches any rank needs
        agreed = torch.tensor([chosen], device=device)
        torch_dist.all_reduce(agreed, op=torch_dist.ReduceOp.MAX)
        chosen = int(agreed)
    if chosen == len(candidates):
        raise OutOfMemory(oom_message(settings, dist, candidates[-1]))
    return candidates[chosen]
