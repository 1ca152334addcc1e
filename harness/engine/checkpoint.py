"""Checkpoints as a training hook: what a hook may read or restore (``TrainState``), the hook
interface, when a finished epoch is written (``SavePolicy``) and the checkpoint itself, written
atomically and resumed from."""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..core.io import leftover_temps, replace_atomic


@dataclass
class TrainState:
    """What a hook may read or restore: everything that determines the rest of training."""

    objective: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    generator: torch.Generator
    history: list
    epoch: int = 0  # epochs completed
    total: int | None = None  # epochs planned (None: unknown; hooks then never treat an epoch as the last)


class Hook:
    """Training extras (checkpoints, logging, ...) without branches in the loop."""

    def on_start(self, state: TrainState) -> None:
        """Called once before the first epoch; may restore ``state`` (e.g. from a checkpoint)."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after every epoch with ``state.epoch`` epochs completed."""


CHECKPOINT_ENV = "HARNESS_CHECKPOINT_MINUTES"  # at most one checkpoint per this many minutes (default 0)


def checkpoint_minutes() -> float:
    raw = os.environ.get(CHECKPOINT_ENV, "0")
    try:
        minutes = float(raw)
    except ValueError:
        raise ValueError(f"{CHECKPOINT_ENV}={raw!r}: give the minutes between checkpoints as a number (0: the "
                         "overhead bound alone)") from None
    if minutes < 0 or not math.isfinite(minutes):
        raise ValueError(f"{CHECKPOINT_ENV}={raw!r}: the minutes between checkpoints must be >= 0")
    return minutes


@dataclass
class SavePolicy:
    """When a finished epoch is checkpointed: always after the last one; otherwise only when at least
    ``every_s`` seconds have passed since the last write ended AND that time is at least
    1 / ``max_share`` times what the last write took. So writing costs at most ~``max_share`` of
    training (a 2.4 GB ViT-L state after 1.5 s epochs is written about once a minute), and an
    interruption loses at most that much training. A write of at most ``cheap_s`` (a small model's)
    is always allowed, so such a run is checkpointed after every epoch however short."""

    every_s: float = 0.0
    max_share: float = 0.05
    last_end: float = 0.0  # perf_counter when the last write ended (or training started)
    last_cost: float = 0.0  # seconds the last write took
    cheap_s: float = 0.1  # a write this quick is always allowed: a small model's state, seconds over a whole run

    def due(self, now: float, final: bool) -> bool:
        since = now - self.last_end
        affordable = since * self.max_share >= self.last_cost or self.last_cost <= self.cheap_s
        return final or (since >= self.every_s and affordable)


def _frozen(module: nn.Module) -> set[str]:
    """Parameters training never changes: rebuilt identically from the seed and weights on resume."""
    return {name for name, p in module.named_parameters() if not p.requires_grad}


class Checkpoint(Hook):
    """Saves what resuming needs (trained parameters and buffers, loss heads, optimizer, scheduler,
    RNG, history; not the frozen parameters) atomically under ``SavePolicy`` and resumes from it: a
    run killed at any point continues after its last checkpointed epoch and, on a CPU, ends with
    exactly the metrics of an uninterrupted run. The global torch RNG (dropout, drop-path) is saved
    with the sampling generator, so that holds for backbones that draw random numbers too.
    ``seconds`` / ``writes`` say what writing cost (the benchmark reads them)."""

    def __init__(self, path: Path, on_resume: Callable[[int], None] | None = None, save: bool = True,
                 policy: SavePolicy | None = None):
        self.path = Path(path)
        self.on_resume = on_resume
        self.save = save  # under DDP every rank restores, rank 0 alone saves
        self.policy = policy or SavePolicy(every_s=60.0 * checkpoint_minutes())
        self.seconds, self.writes = 0.0, 0

    def on_start(self, state: TrainState) -> None:
        self.policy.last_end = time.perf_counter()
        if not self.path.exists():
            return
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged checkpoint must not block a fresh start
            warnings.warn(f"ignoring unreadable checkpoint {self.path}: {exc}")
            return
        every = set(state.objective.state_dict())
        needed = every - _frozen(state.objective)
        if not needed <= set(saved["objective"]) <= every:  # another model's: loading part would mix two runs
            warnings.warn(f"ignoring checkpoint {self.path}: it holds another model's parameters")
            return  # (a checkpoint that also holds the frozen ones, as written before they were left out, is fine)
        state.objective.load_state_dict(saved["objective"], strict=False)
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        state.generator.set_state(saved["generator"])
        if "torch_rng" in saved:  # checkpoints written before it was saved resume without it
            torch.set_rng_state(saved["torch_rng"])
        state.history[:] = saved["history"]
        state.epoch = int(saved["epoch"])
        if self.on_resume:
            self.on_resume(state.epoch)

    def on_epoch_end(self, state: TrainState) -> None:
        t0 = time.perf_counter()
        if not self.save or not self.policy.due(t0, final=state.total is not None and state.epoch >= state.total):
            return
        frozen = _frozen(state.objective)
        replace_atomic(self.path, lambda tmp: torch.save({
            "objective": {k: v for k, v in state.objective.state_dict().items() if k not in frozen},
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "generator": state.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": state.history,
            "epoch": state.epoch,
        }, tmp))
        end = time.perf_counter()
        self.policy.last_end, self.policy.last_cost = end, end - t0
        self.seconds += end - t0
        self.writes += 1

    def discard(self) -> None:
        for p in [self.path, *leftover_temps(self.path)]:  # also what a killed run left mid-write
            p.unlink(missing_ok=True)
