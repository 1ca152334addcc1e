"""Training: the loss is a weighted list of registered terms (``model/losses.py``; by default
L = L_arcface + lambda * L_ce); hooks for extras.

The loop knows nothing about checkpoints, logging or evaluation: those are hooks called at the end
of each epoch. Batches are built on tensors (images already decoded and resized; keypoints already
in model-input pixels), so the loop stays simple and fast.
"""
from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as torch_dist
from torch import _dynamo, nn
from torch.nn.parallel import DistributedDataParallel
from ..core.progress import progress_bar

from ..config import SETTING_FIELDS, RunConfig
from ..core.distributed import DistInfo
from ..core.io import leftover_temps, replace_atomic
from ..model.losses import build_losses
from ..model.tokens import hflip, token_mask
from .augment import RandAugment, default_workers, image_seed


@dataclass
class TrainData:
    """The training rows of a dataset. ``images``/``points`` cover the whole dataset (the images
    usually a memory-mapped decode cache) and ``rows`` picks the training images, so the training
    set is never copied; ``labels`` has one entry per row of ``rows``."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    labels: torch.Tensor  # (n,) int64, 0..num_classes-1
    points: torch.Tensor | None  # (N, K, 2) float32 in model-input pixels, NaN = missing
    flip_perm: list[int] = field(default_factory=list)
    rows: torch.Tensor | None = None  # (n,) row positions into images/points; None: all rows

    def __post_init__(self):
        if self.rows is None:
            self.rows = torch.arange(len(self.labels))
        self.rows = torch.as_tensor(self.rows, dtype=torch.long)
        if len(self.rows) != len(self.labels):
            raise ValueError(f"{len(self.labels)} labels for {len(self.rows)} training rows")

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1


def reid_loss(dim: int, num_classes: int, margin_rad: float, scale: float, ce_weight: float) -> nn.ModuleList:
    """The default objective, ArcFace + ce_weight * cross-entropy, from its settings alone (for
    callers without a run config: tests, benchmarks)."""
    cfg = replace(RunConfig(), arcface_margin=margin_rad, arcface_scale=scale, ce_weight=ce_weight)
    return build_losses(None, dim, num_classes, cfg)


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


class Normalizer(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return (images_uint8.float() / 255.0 - self.mean) / self.std


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def batch_starts(n: int, batch_size: int, world: int = 1) -> list[int]:
    """First index of every global batch of an epoch. Under DDP a last batch with fewer images than
    processes would leave some rank an empty slice (a NaN loss that DDP averages into every rank):
    that batch is dropped, on every rank alike."""
    return [s for s in range(0, n, batch_size) if min(batch_size, n - s) >= world]


def batch_masks(model, points: torch.Tensor | None, device) -> torch.Tensor | None:
    if points is None or getattr(model, "encoding", None) is None:
        return None
    k = points.shape[1]
    category = torch.arange(k, device=device)
    return token_mask(points.to(device), category, model.num_categories, model.grid, model.patch)


def prefetched(make: Callable, keys, depth: int):
    """Yield ``make(k)`` for each key; with depth > 0 a background thread builds up to ``depth``
    batches ahead (slicing, flips, pinned host-to-device copies) while the model computes."""
    if depth <= 0:
        for k in keys:
            yield make(k)
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def work():
        try:
            for k in keys:
                q.put(make(k))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
        q.put(done)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


class Objective(nn.Module):
    """Model + loss terms as one module, so one DDP wrapper covers every trained parameter."""

    def __init__(self, model: nn.Module, losses: nn.ModuleList):
        super().__init__()
        self.model, self.losses = model, losses

    def forward(self, x, mask, labels):
        with autocast(x.device):
            emb = self.model(x, mask)
        emb = emb.float()
        parts = {}
        loss = emb.new_zeros(())
        for term in self.losses:
            value = term(emb, labels)
            parts[term.name] = value.detach()
            loss = loss + term.weight * value
        return loss, parts


@dataclass(frozen=True)
class TrainSettings:
    """How to train: the training fields of a run config."""

    epochs: int
    batch_size: int  # images per optimizer step (all ranks, all micro-batches)
    lr: float
    weight_decay: float
    warmup_epochs: float
    hflip: float  # probability of the left/right-swapping horizontal flip
    seed: int
    optimizer: str = "adamw"
    momentum: float = 0.9  # sgd
    lr_min: float = 0.0  # the cosine decay ends here
    accumulate: int | str = 1  # micro-batches per optimizer step; "auto": the fewest that fit (``auto_accumulate``)
    augment: RandAugment | None = None
    compile_backend: str = "none"  # torch.compile backend; none = eager

    @classmethod
    def from_config(cls, cfg) -> TrainSettings:
        """The config fields declared with ``setting`` (``config.SETTING_FIELDS``), copied; one that
        is None (not applied, e.g. momentum without SGD) keeps this class's default. RandAugment is
        built from its three fields."""
        copied = {name: getattr(cfg, field) for field, name in SETTING_FIELDS.items() if getattr(cfg, field) is not None}
        augment = RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude) if cfg.augment == "randaugment" else None
        return cls(**copied, augment=augment)


@dataclass(frozen=True)
class Runtime:
    """Where and how a training loop runs, apart from what it computes: the device, the torchrun
    processes, the hooks (checkpoints, ...) and whether a progress bar shows."""

    device: torch.device
    dist: DistInfo = DistInfo()
    hooks: tuple = ()
    progress: bool = True


def compiled(objective: nn.Module, backend: str) -> nn.Module:
    """``objective`` itself (backend none) or torch.compile'd with a known backend."""
    if backend == "none":
        return objective
    known = _dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise ValueError(f"unknown --compile backend {backend!r}; valid: none, {', '.join(known)}")
    return torch.compile(objective, backend=backend)


# parameters weight decay never touches (besides every bias and norm: all 1-d parameters)
NO_DECAY = ("pos_embed", "cls_token", "reg_token", "dist_token", "encoding.weight")


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Decayed and undecayed trainable parameters: norms, biases, position/class tokens and the
    keypoint embedding are never decayed (decay pulls them towards zero for no benefit)."""
    decay, keep = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim <= 1 or any(part in name for part in NO_DECAY)
        (keep if exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def make_optimizer(module: nn.Module, settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    groups = parameter_groups(module, settings.weight_decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum)
    return torch.optim.AdamW(groups, lr=settings.lr, **({"fused": True} if device.type == "cuda" else {}))


def warmup_cosine(total_steps: int, warmup_steps: int, floor: float = 0.0) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up, then cosine decay to ``floor`` (lr_min / lr)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        done = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * done))

    return factor


def batch_maker(model, data: TrainData, normalize: Normalizer, settings: TrainSettings, device, dist: DistInfo):
    """-> make((start, part), order, flips, epoch): micro-batch ``part`` (of ``accumulate``) of this
    rank's slice of the global batch starting at ``start``: (row indices, normalized images, token
    masks, labels, loss weight). Augmentation draws per image from (seed, epoch,
    place in the order), never from the generator that orders the epochs, which every rank advances
    alike."""
    pin = device.type == "cuda"
    workers = default_workers(device.type) if settings.augment is not None else 1

    def make(key, order, flips, epoch=0):
        start, part = key
        mine = torch.arange(start, min(start + settings.batch_size, len(order)))[dist.rank :: dist.world]
        places = mine.tensor_split(settings.accumulate)[part]  # places in the epoch's order
        idx = order[places]
        rows = data.rows[idx]
        images = data.images[rows]
        points = data.points[rows] if data.points is not None else None
        images, points = hflip(images, points, flips[idx], data.flip_perm)
        if settings.augment is not None:
            seeds = [image_seed(settings.seed, epoch, int(p)) for p in places]
            images, points = settings.augment.seeded(images, points, seeds, workers)
        if pin:
            images = images.pin_memory()
        labels = data.labels[idx].to(device, non_blocking=True)
        x = normalize(images.to(device, non_blocking=True))
        # the loss weight: this micro-batch's share of the GLOBAL batch, times world because DDP
        # averages the ranks' gradients; so slices of 6 and 5 images still give the 11-image mean
        share = len(idx) * dist.world / max(1, min(settings.batch_size, len(order) - start))
        return idx, x, batch_masks(model, points, device), labels, share

    return make


@dataclass
class Loop:
    """The moving parts of one training loop, built once by ``train`` and used by every epoch."""

    objective: nn.Module  # model + losses (DDP-wrapped under torchrun)
    step_fn: Callable  # the objective, compiled or not
    optimizer: torch.optim.Optimizer
    scheduler: object
    make: Callable  # (key, order, flips) -> a micro-batch
    starts: list[int]  # first index of every global batch
    settings: TrainSettings
    dist: DistInfo
    bar: object  # the progress bar
    progress: bool


def run_epoch(loop: Loop, order: torch.Tensor, flips: torch.Tensor, sums: torch.Tensor, epoch: int = 0) -> float:
    """One epoch of optimizer steps; adds (loss terms..., loss) x images into ``sums`` on the device
    (no GPU sync per step) and returns the seconds spent waiting for batches."""
    settings, dist = loop.settings, loop.dist
    keys = [(start, part) for start in loop.starts for part in range(settings.accumulate)]
    prefetch = 2 if sums.device.type == "cuda" else 0  # on a CPU the worker would steal the model's cores
    batches = prefetched(lambda key: loop.make(key, order, flips, epoch), keys, depth=prefetch)
    shown = max(1, len(loop.starts) // 20)  # the loss on the bar is refreshed ~20 times an epoch
    seen, data_time = 0, 0.0
    for step in range(len(loop.starts)):
        for part in range(settings.accumulate):
            t0 = time.perf_counter()
            idx, x, mask, labels, share = next(batches)
            data_time += time.perf_counter() - t0
            last = part == settings.accumulate - 1
            with loop.objective.no_sync() if dist.world > 1 and not last else contextlib.nullcontext():
                loss, parts = loop.step_fn(x, mask, labels)
                (loss * share).backward()
            sums += torch.stack([*parts.values(), loss]).detach().double() * len(idx)
            seen += len(idx)
        loop.optimizer.step()
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scheduler.step()
        loop.bar.update(1)
        if loop.progress and step % shown == 0:
            loop.bar.set_postfix(loss=f"{float(sums[-1]) / max(seen, 1):.3f}")
    return data_time


class OutOfMemory(ValueError):
    """Training ran out of accelerator memory. A ValueError on purpose: the CLI reports it in one line
    and `harness ablate` records the cell and goes on (``core.errors.EXPECTED_ERRORS``)."""


def _micro_batch(settings: TrainSettings, dist: DistInfo, accumulate: int) -> int:
    """The largest micro-batch one rank runs (``tensor_split`` makes the first pieces the larger)."""
    return math.ceil(math.ceil(settings.batch_size / dist.world) / accumulate)


def _accumulations(settings: TrainSettings, dist: DistInfo) -> list[int]:
    """Valid --accumulate values, fewest first: divisors of the batch size leaving every rank's
    micro-batch at least one image."""
    b = settings.batch_size
    return [d for d in range(1, b + 1) if b % d == 0 and b >= dist.world * d]


def oom_message(settings: TrainSettings, dist: DistInfo, accumulate: int) -> str:
    """One line: where memory ran out and the --accumulate to try (half the micro-batch or less)."""
    over = f" over {dist.world} processes" if dist.world > 1 else ""
    where = (f"out of GPU memory training micro-batches of {_micro_batch(settings, dist, accumulate)} image(s) "
             f"(--batch-size {settings.batch_size}{over}, --accumulate {accumulate})")
    now = _micro_batch(settings, dist, accumulate)
    more = [a for a in _accumulations(settings, dist) if 2 * _micro_batch(settings, dist, a) <= now]
    if not more:
        return f"{where}; not even one image per micro-batch fits: use a smaller --backbone or --image-size"
    return (f"{where}; try --accumulate {more[0]} (half the micro-batch, same effective batch and results), "
            "or --accumulate auto to find the fewest micro-batches that fit")


def _fits(objective: nn.Module, model: nn.Module, data: TrainData, normalize: Normalizer, device, micro: int) -> bool:
    """Whether one forward and backward pass over ``micro`` training images fits in memory. Run on
    the unwrapped objective: DDP's gradient hooks stay idle without a DDP forward."""
    rows = data.rows[:micro]
    try:
        points = data.points[rows] if data.points is not None else None
        loss, _ = objective(normalize(data.images[rows].to(device)), batch_masks(model, points, device),
                            data.labels[:micro].to(device))
        loss.backward()
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        objective.zero_grad(set_to_none=True)


def _optimizer_reserve(objective: nn.Module, settings: TrainSettings, device) -> torch.Tensor | None:
    """On a GPU, the memory the optimizer's state takes from its first step on (AdamW: two fp32
    copies of the trainable parameters, SGD: one), held while probing, so the micro-batch chosen
    still fits once that state exists."""
    if device.type != "cuda":
        return None
    copies = 2 if settings.optimizer == "adamw" else 1
    size = copies * sum(4 * p.numel() for p in objective.parameters() if p.requires_grad)
    return torch.empty(size, dtype=torch.uint8, device=device)


def auto_accumulate(objective: nn.Module, model: nn.Module, data: TrainData, normalize: Normalizer,
                    settings: TrainSettings, device, dist: DistInfo) -> int:
    """``--accumulate auto``: the fewest micro-batches per step whose micro-batch survives one
    forward and backward pass. The probe leaves no trace (gradients cleared, buffers and the global
    RNG restored, the sampling generator untouched), so training then is exactly the run with a
    fixed ``--accumulate`` of that value: the same effective batch and the same losses."""
    candidates = _accumulations(settings, dist)
    buffers = [b.detach().clone() for b in objective.buffers()]
    chosen = len(candidates)  # none fits
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            reserve = _optimizer_reserve(objective, settings, device)
        except torch.OutOfMemoryError:
            raise OutOfMemory(f"out of GPU memory before training: the {settings.optimizer} state alone does not "
                              "fit; use a smaller --backbone") from None
        for i, a in enumerate(candidates):
            if _fits(objective, model, data, normalize, device, _micro_batch(settings, dist, a)):
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


def _epoch_or_none(loop: Loop, order: torch.Tensor, flips: torch.Tensor, sums: torch.Tensor,
                   epoch: int) -> float | None:
    """``run_epoch``, or None when it ran out of GPU memory."""
    try:
        return run_epoch(loop, order, flips, sums, epoch)
    except torch.OutOfMemoryError:
        loop.optimizer.zero_grad(set_to_none=True)
        return None


def _objective(model, losses, data: TrainData, normalize: Normalizer, settings: TrainSettings, device,
               dist: DistInfo) -> tuple[nn.Module, nn.Module, TrainSettings]:
    """(model + losses on the device, the same DDP-wrapped under torchrun, the settings with
    ``--accumulate auto`` resolved to a number), checked: every rank needs an image per micro-batch."""
    model.to(device).train()
    losses.to(device).train()
    normalize.to(device)
    inner = Objective(model, losses)
    objective: nn.Module = inner
    if dist.world > 1:
        objective = DistributedDataParallel(inner, device_ids=[device.index] if device.type == "cuda" else None)
    if settings.accumulate == "auto":
        settings = replace(settings, accumulate=auto_accumulate(inner, model, data, normalize, settings, device, dist))
    if settings.batch_size < dist.world * settings.accumulate:
        raise ValueError(f"--batch-size {settings.batch_size} gives fewer than one image per process and micro-batch "
                         f"({dist.world} processes x --accumulate {settings.accumulate})")
    return inner, objective, settings


def train(model: nn.Module, losses: nn.ModuleList, data: TrainData, normalize: Normalizer, settings: TrainSettings,
          runtime: Runtime) -> list[dict]:
    """Train in place; returns per-epoch stats. Under torchrun (``dist.world`` > 1, process group
    up) every rank draws the same global batch from the shared seed and trains on its slice
    ``batch[rank::world]``; DDP averages the gradients, so the global batch is ``batch_size``.
    With ``accumulate`` > 1 each rank's slice runs as that many micro-batches whose gradients add
    up to the slice's before the one optimizer step."""
    device, dist, hooks, progress = runtime.device, runtime.dist, runtime.hooks, runtime.progress
    auto = settings.accumulate == "auto"  # the history records the value found
    inner, objective, settings = _objective(model, losses, data, normalize, settings, device, dist)
    n = len(data.labels)
    starts = batch_starts(n, settings.batch_size, dist.world * settings.accumulate)
    used = sum(min(settings.batch_size, n - s) for s in starts)  # images per epoch the losses average over
    steps_per_epoch = max(1, len(starts))
    opt = make_optimizer(objective, settings, device)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(
        settings.epochs * steps_per_epoch, int(settings.warmup_epochs * steps_per_epoch),
        settings.lr_min / settings.lr if settings.lr else 0.0))
    gen = torch.Generator().manual_seed(settings.seed)
    history: list = []
    state = TrainState(inner, opt, sched, gen, history, total=settings.epochs)
    for hook in hooks:
        hook.on_start(state)
    bar = progress_bar(total=settings.epochs * steps_per_epoch, desc="training", disable=not progress or not dist.is_main,
                       leave=False, initial=state.epoch * steps_per_epoch)
    loop = Loop(objective, compiled(objective, settings.compile_backend), opt, sched,
                batch_maker(model, data, normalize, settings, device, dist), starts, settings, dist, bar, progress)
    names = [t.name for t in losses] + ["loss"]
    for epoch in range(state.epoch, settings.epochs):
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < settings.hflip
        sums = torch.zeros(len(losses) + 1, dtype=torch.float64, device=device)
        t_epoch = time.perf_counter()
        data_time = _epoch_or_none(loop, order, flips, sums, epoch)
        if data_time is None:  # raised here, outside the handler: the failed step's tensors are freed first
            bar.close()
            raise OutOfMemory(oom_message(settings, dist, settings.accumulate))
        if dist.world > 1:
            torch_dist.all_reduce(sums)
        wall = time.perf_counter() - t_epoch
        stats = {"epoch": epoch + 1, **{k: float(v) / used for k, v in zip(names, sums.cpu())},
                 "lr": sched.get_last_lr()[0], "seconds": round(wall, 3),
                 "data_share": round(data_time / max(wall, 1e-9), 4),
                 **({"accumulate": settings.accumulate} if auto else {})}
        if not math.isfinite(stats["loss"]):
            bar.close()
            raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {stats['loss']}); lower --lr")
        history.append(stats)
        bar.set_postfix(loss=f"{stats['loss']:.3f}")
        state.epoch = epoch + 1
        for hook in hooks:
            hook.on_epoch_end(state)
    bar.close()
    return history


@torch.no_grad()
def embed(model, images: torch.Tensor, points, normalize, device, batch_size: int = 256, rows=None) -> torch.Tensor:
    """[CLS] embeddings of ``images[rows]`` (all images when ``rows`` is None), read batch by batch."""
    model.to(device).eval()
    rows = torch.arange(len(images)) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    out, start = [], 0
    while start < len(rows):
        batch = rows[start : start + batch_size]
        try:
            x = normalize(images[batch].to(device))
            pts = points[batch] if points is not None else None
            # fp32 even on a GPU: bf16 rounding would decide near-ties between gallery images
            out.append(model(x, batch_masks(model, pts, device)).float().cpu())
        except torch.OutOfMemoryError:  # each image's embedding is its own: smaller batches, same result
            if batch_size == 1:
                raise OutOfMemory("out of GPU memory embedding one image at a time: use a smaller --backbone "
                                  "or --image-size") from None
            batch_size = max(1, batch_size // 2)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        start += len(batch)
    return torch.cat(out) if out else torch.empty(0)
