"""The one-command GPU check: what a GPU owner runs first (goal: at most 10 minutes, no downloads).

    python benchmarks/gpu_check.py            # on a CUDA GPU
    python benchmarks/gpu_check.py --tiny     # the same checks with tiny models on a CPU (seconds)

Every model is random-init and built from its configuration, so nothing is downloaded:
- training steps of full-size timm ViT-B/16, ViT-L/16 and ViT-H/14 at 224 px, batch 64, bf16
  autocast (the harness's own Objective, loss and fused AdamW): images/s of the plain ViT, CKPE's
  step time over the plain one (4 keypoints, token masks built per step), peak GPU memory;
- a model of SD 2.1's UNet and VAE configuration (diffusers, from config dicts) through the
  `dift` (fp32, sampled latent, 8 draws) and `sd` (fp16) featurizers at 768 px: images/s, memory;
- the default synthetic job (`harness run --method ckpe --dataset synthetic`) on the GPU;
- one epoch of ViT-B/16 with RandAugment on a MacaqueFaces-sized synthetic set: the share of the
  epoch spent waiting for batches.
It prints one table (a row as each check ends, the table at the end) and appends one row per
check to benchmarks/RESULTS.md (`--results PATH` for another file). A check that runs out of
memory says so in its row and the others still run.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

COLUMNS = ("check", "setting", "img/s", "CKPE/plain", "peak GB", "data wait", "wall s")


@dataclass(frozen=True)
class Sizes:
    """What each check runs: the full sizes on a GPU, or tiny ones on a CPU (``--tiny``)."""

    vits: tuple  # (label, backbone name or alias)
    image_size: int
    batch: int
    steps: int
    warmup: int
    sd: str  # testbed config name: SD21_CONFIG or TINY_SD_CONFIG
    sd_size: int
    sd_batch: int
    job: dict = field(default_factory=dict)  # extra `harness run` options of the default job
    augment: dict = field(default_factory=dict)  # the RandAugment epoch's options


FULL = Sizes(vits=(("ViT-B/16", "vit_base_patch16_224"), ("ViT-L/16", "vit_large_patch16_224"),
                   ("ViT-H/14", "vit_huge_patch14_224")),
             image_size=224, batch=64, steps=10, warmup=3, sd="SD21_CONFIG", sd_size=768, sd_batch=4,
             augment={"backbone": "vit_base_patch16_224", "image_size": 224, "batch_size": 64,
                      "dataset_options": {"identities": "34", "images_per_identity": "60", "image_size": "100"}})
TINY_OPTIONS = {"identities": "10", "images_per_identity": "6", "image_size": "32"}
TINY = Sizes(vits=(("nano", "nano"), ("mini", "mini"), ("micro", "micro")), image_size=32, batch=8, steps=3,
             warmup=2, sd="TINY_SD_CONFIG", sd_size=64, sd_batch=2,
             job={"backbone": "nano", "image_size": 32, "epochs": 2, "batch_size": 16, "dataset_options": TINY_OPTIONS},
             augment={"backbone": "nano", "image_size": 32, "batch_size": 16, "dataset_options": TINY_OPTIONS})
TARGETS = {"train": "CKPE/plain <= 1.02", "dift": "-", "sd": "-", "default job": "-",
           "randaugment epoch": "data wait <= 10%", "total": "<= 600 s"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}" if device.type == "cuda" else "-"


def row(check: str, setting: str, **values) -> dict:
    return {"check": check, "setting": setting, **{c: values.get(c, "-") for c in COLUMNS[2:]}}


def train_step(model, sizes: Sizes, device: torch.device, keypoints: int = 4) -> float:
    """Median seconds of one optimizer step (forward, backward, AdamW) after warm-up steps."""
    from harness.engine.train import Objective, batch_masks, reid_loss

    objective = Objective(model, reid_loss(model.embed_dim, 16, 0.5, 64.0, 0.2)).to(device).train()
    opt = torch.optim.AdamW(objective.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    b, s = sizes.batch, sizes.image_size
    x = torch.randn(b, 3, s, s, device=device)
    labels = torch.randint(0, 16, (b,), device=device)
    points = torch.rand(b, keypoints, 2) * s

    def step():
        loss, _ = objective(x, batch_masks(model, points, device), labels)  # masks: None for the plain ViT
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(sizes.warmup):
        step()
    times = []
    for _ in range(sizes.steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def vit_check(label: str, name: str, sizes: Sizes, device: torch.device) -> dict:
    """Plain ViT and CKPE on the same random-init backbone, one after the other (one in memory at a time)."""
    from harness.model.backbones import create_backbone, skeleton, training_memory_gb
    from harness.model.keypoint_vit import KeypointViT

    t0 = time.perf_counter()
    estimate = training_memory_gb(skeleton(name, sizes.image_size), sizes.batch, "adamw")  # the dry-run's figure
    setting = (f"{name} {sizes.image_size}px batch {sizes.batch}" + (" bf16" if device.type == "cuda" else "")
               + f", estimated {estimate:.1f} GB")
    torch.manual_seed(0)
    with device:  # built on the device: initialising ViT-H on a CPU alone takes longer than its check
        backbone = create_backbone(name, sizes.image_size)
    try:
        reset_peak(device)
        plain = train_step(KeypointViT(copy.deepcopy(backbone), "none", 0), sizes, device)
        ckpe = train_step(KeypointViT(backbone, "categorical", 4), sizes, device)
    except torch.OutOfMemoryError:
        return row(f"train {label}", setting, **{"img/s": "out of memory", "wall s": f"{time.perf_counter() - t0:.0f}"})
    return row(f"train {label}", setting, **{"img/s": f"{sizes.batch / plain:.3g}", "CKPE/plain": f"{ckpe / plain:.3f}",
                                             "peak GB": peak_gb(device), "wall s": f"{time.perf_counter() - t0:.0f}"})


def sd_check(featurizer: str, sizes: Sizes, device: torch.device, rounds: int = 2) -> dict:
    """A featurizer with random-init models of SD's shape handed in (``SDFeaturizer.install``)."""
    from harness.keypoints import testbed
    from harness.keypoints.featurizers import create_featurizer

    t0 = time.perf_counter()
    feat = create_featurizer(featurizer, size=sizes.sd_size, device=device.type, batch_size=sizes.sd_batch)
    scheduler = testbed.SD21_SCHEDULER if sizes.sd == "SD21_CONFIG" else None
    with device:
        feat.install(*testbed.random_sd(getattr(testbed, sizes.sd), scheduler))
    setting = (f"{sizes.sd.removesuffix('_CONFIG')} random-init, {sizes.sd_size}px, {feat.ensemble} draws, "
               f"{str(feat.dtype).removeprefix('torch.')}")
    images = torch.rand(sizes.sd_batch, 3, sizes.sd_size, sizes.sd_size)
    try:
        feat(images)  # warm-up (kernel selection)
        reset_peak(device)
        sync(device)
        t1 = time.perf_counter()
        for _ in range(rounds):
            feat(images)
        sync(device)
        rate = rounds * sizes.sd_batch / (time.perf_counter() - t1)
    except torch.OutOfMemoryError:
        return row(featurizer, setting, **{"img/s": "out of memory", "wall s": f"{time.perf_counter() - t0:.0f}"})
    return row(featurizer, setting, **{"img/s": f"{rate:.2f}", "peak GB": peak_gb(device),
                                       "wall s": f"{time.perf_counter() - t0:.0f}"})


def harness_run(given: dict, device: torch.device) -> dict:
    """One `harness run` in this process into a temporary results folder -> its record."""
    from harness.engine.run import execute, plan_runs

    with tempfile.TemporaryDirectory() as tmp:
        (resolved,) = plan_runs({"method": "ckpe", "dataset": "synthetic", **given, "device": str(device)})
        record, _ = execute(resolved.config, Path(tmp), progress=False, origins=resolved.origins)
    return record


def job_check(check: str, given: dict, device: torch.device) -> dict:
    t0 = time.perf_counter()
    try:
        rec = harness_run(given, device)
    except torch.OutOfMemoryError:
        return row(check, str(given), **{"img/s": "out of memory"})
    except ValueError as exc:  # the harness's one-line errors (its OutOfMemory among them)
        return row(check, f"failed: {exc}", **{"wall s": f"{time.perf_counter() - t0:.0f}"})
    cfg, epochs = rec["config"], rec["timing"]["epochs"]
    seconds = sum(e["seconds"] for e in epochs)
    wait = sum(e["data_share"] * e["seconds"] for e in epochs) / max(seconds, 1e-9)
    setting = (f"{cfg['method']} {cfg['backbone']} {cfg['image_size']}px, {rec['split']['train_images']} training "
               f"images x {len(epochs)} epoch(s), augment {cfg['augment']}, top-1 {rec['metrics']['top1']:.1f}")
    return row(check, setting, **{"img/s": f"{rec['split']['train_images'] * len(epochs) / max(seconds, 1e-9):.3g}",
                                  "data wait": f"{100 * wait:.1f}%", "wall s": f"{time.perf_counter() - t0:.0f}"})


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows])


def checks(sizes: Sizes, device: torch.device):
    """The checks in order, each a zero-argument callable returning its row."""
    out = [lambda label=label, name=name: vit_check(label, name, sizes, device) for label, name in sizes.vits]
    out += [lambda name=name: sd_check(name, sizes, device) for name in ("dift", "sd")]
    out.append(lambda: job_check("default job", dict(sizes.job), device))
    out.append(lambda: job_check("randaugment epoch", {**sizes.augment, "epochs": 1, "augment": "randaugment"}, device))
    return out


def run(tiny: bool, results: Path | None = None) -> list[dict]:
    """All checks -> their rows; prints each row as it ends and the table at the end; appends the rows."""
    from _common import record

    from harness.core.distributed import cuda_unusable_reason

    if not tiny and not torch.cuda.is_available():
        why = cuda_unusable_reason() or "torch sees no CUDA GPU"
        raise SystemExit(f"error: the GPU check needs a CUDA GPU ({why}); `--tiny` runs it on a CPU")
    device = torch.device("cpu" if tiny else "cuda")
    sizes = TINY if tiny else FULL
    t0, rows = time.perf_counter(), []
    for check in checks(sizes, device):
        rows.append(check())
        print(" | ".join(str(rows[-1][c]) for c in COLUMNS), file=sys.stderr, flush=True)
    rows.append(row("total", "tiny models on a CPU" if tiny else "full sizes on CUDA",
                    **{"wall s": f"{time.perf_counter() - t0:.0f}"}))
    print(table(rows))
    for r in rows:
        kind = "train" if r["check"].startswith("train") else r["check"]
        figures = f"{r['setting']}: " + ", ".join(f"{c} {r[c]}" for c in COLUMNS[2:] if r[c] != "-")
        record(f"GPU check{' (tiny)' if tiny else ''}: {r['check']}", figures, TARGETS[kind], results, quiet=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU: checks the script itself in seconds")
    ap.add_argument("--results", type=Path, default=None, help="the log to append to [default: benchmarks/RESULTS.md]")
    args = ap.parse_args()
    run(args.tiny, args.results)


if __name__ == "__main__":
    main()
