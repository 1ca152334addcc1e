"""Training: the loss is a weighted list of registered terms (``model/losses.py``; by default
L = L_arcface + lambda * L_ce); hooks for extras.

The loop knows nothing about checkpoints, logging or evaluation: those are hooks called at the end
of each epoch (``checkpoint.py``); running out of memory is ``memory.py``'s. Batches are built on tensors (images already decoded and resized; keypoints already
in model-input pixels), so the loop stays simple and fast.
"""
from __future__ import annotations

import contextlib
import functools
import math
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from ..core.progress import progress_bar

from ..config import RunConfig
from ..core.distributed import DistInfo
from ..model.losses import build_losses
from ..model.tokens import hflip, token_mask
from .workers import default_workers, image_seed
from .checkpoint import TrainState
from .memory import OutOfMemory, auto_accumulate, oom_message
from .settings import TrainSettings


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
    known = torch.compiler.list_backends(exclude_tags=())
    if backend not in known:
        raise ValueError(f"unknown --compile backend {backend!r}; valid: none, {', '.join(known)}")
    return torch.compile(objective, backend=backend)


# parameters weight decay never touches (besides every bias and norm: all 1-d parameters)
NO_DECAY = ("pos_embed", "cls_token", "reg_token", "dist_token", "encoding.weight")
KEYPOINT_EMBEDDING = "encoding.weight"  # KeypointViT's W: its own learning rate (--kpe-lr-scale)


def parameter_groups(module: nn.Module, weight_decay: float, kpe_lr: float | None = None) -> list[dict]:
    """Decayed and undecayed trainable parameters: norms, biases, position/class tokens and the
    keypoint embedding are never decayed (decay pulls them towards zero for no benefit). With
    ``kpe_lr`` the keypoint embedding is a third group at that learning rate."""
    decay, keep, channel = [], [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if kpe_lr is not None and name.endswith(KEYPOINT_EMBEDDING):
            channel.append(param)
            continue
        exempt = param.ndim <= 1 or any(part in name for part in NO_DECAY)
        (keep if exempt else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return groups + ([{"params": channel, "weight_decay": 0.0, "lr": kpe_lr}] if channel else [])


def make_optimizer(module: nn.Module, settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    """SGD or AdamW at ``settings.lr``; the keypoint embedding at ``kpe_lr_scale`` times that (the
    scheduler scales every group's rate alike)."""
    kpe_lr = settings.lr * settings.kpe_lr_scale if settings.kpe_lr_scale != 1.0 else None
    groups = parameter_groups(module, settings.weight_decay, kpe_lr)
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
        fits = functools.partial(_fits, inner, model, data, normalize, device)
        settings = replace(settings, accumulate=auto_accumulate(inner, fits, settings, device, dist))
    if settings.batch_size < dist.world * settings.accumulate:
        raise ValueError(f"--batch-size {settings.batch_size} gives fewer than one image per process and micro-batch "
                         f"({dist.world} processes x --accumulate {settings.accumulate})")
    return inner, objective, settings


def start_channel(model: nn.Module, data: TrainData, normalize: Normalizer, settings: TrainSettings, device) -> None:
    """Before the first step: a ``token``-initialised keypoint embedding takes the scale of the
    patch tokens of the first ``batch_size`` training rows (the same on every rank; a checkpoint
    restored afterwards overrides it), and token statistics from memory probes are dropped."""
    match = getattr(model, "match_token_scale", None)
    if match is None:
        return
    match(normalize(data.images[data.rows[: settings.batch_size]].to(device)))
    model.channel_share()


def channel_stats(model: nn.Module) -> dict:
    """The keypoint channel's share of the token norm over the epoch just trained ({} for a model
    without one): what a record's history shows about whether the channel ever carried weight."""
    share = getattr(model, "channel_share", None)
    return share() if share is not None else {}


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
    start_channel(model, data, normalize, settings, device)
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
                 "data_share": round(data_time / max(wall, 1e-9), 4), **channel_stats(model),
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
