"""One run: config -> data -> split -> keypoints -> model -> train -> evaluate -> result record."""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .distributed import pick_device
from . import results as res
from .backbones import create_backbone
from .config import RunConfig
from .data import ReidData, decode_images, get_card, load_dataset, row_bboxes
from .evaluate import retrieval_metrics
from .keypoints import KeypointSet, resolve_keypoints
from .methods import METHODS, Method
from .splits import make_split
from .tokens import flip_permutation
from .train import Checkpoint, Normalizer, TrainData, embed, reid_loss, train


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def input_points(kps: KeypointSet, sizes: np.ndarray, image_size: int) -> torch.Tensor:
    """Original-pixel keypoints -> model-input pixels (images are resized to image_size^2)."""
    scale = image_size / np.asarray(sizes, dtype=np.float64)  # (N, 2): x and y scale per image
    return torch.from_numpy((kps.points * scale[:, None, :]).astype(np.float32))


def backbone_provenance(cfg: RunConfig, backbone) -> dict:
    """Which weights the run used: random init, the hub, or a local file (with its sha256)."""
    out = {"architecture": type(backbone).__name__, "weights": getattr(backbone, "harness_weights", "random-init")}
    if out["weights"] == "file":
        import hashlib

        digest = hashlib.sha256()
        with open(Path(cfg.weights).expanduser(), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out.update(weights="file", file=str(Path(cfg.weights).expanduser().resolve()), sha256=digest.hexdigest())
    elif out["weights"] == "hub":
        out.update(checkpoint=(getattr(backbone, "pretrained_cfg", None) or {}).get("hf_hub_id"))
    return out


@dataclass
class Prepared:
    """Everything a run needs before training; shared by `run` and tests."""

    cfg: RunConfig
    method: Method
    data: ReidData
    split: object
    keypoints: KeypointSet | None


def prepare(cfg: RunConfig, data_root: Path | None = None, progress: bool = True) -> Prepared:
    method = METHODS.create(cfg.method)
    card = get_card(cfg.dataset)
    data = load_dataset(card, dict(cfg.dataset_options), data_root)
    split = make_split(data.df, cfg.protocol, cfg.split_seed)
    kps = None
    source = method.keypoint_source(cfg.keypoints)
    if source is not None:
        kps = resolve_keypoints(source, data, cfg, progress=progress)
    return Prepared(cfg, method, data, split, kps)


def execute(cfg: RunConfig, results_dir: Path, *, data_root: Path | None = None, force: bool = False,
            progress: bool = True) -> tuple[dict, Path]:
    """Run one experiment and write its record; returns (record, path). A run killed part-way
    resumes from its last finished epoch when started again with the same config and seed."""
    t0 = time.perf_counter()
    results_dir = res.check_writable(results_dir)
    out_path = res.result_path(results_dir, cfg)
    if out_path.exists() and not force:
        raise res.ResultsError(f"{out_path} already exists; pass --force to recompute it")
    dist = distributed.from_env()
    with res.RunLock(results_dir, out_path.stem) if dist.is_main else contextlib.nullcontext():
        return _execute(cfg, results_dir, out_path, dist, t0, data_root=data_root, force=force, progress=progress)


def check_batch_size(p, n_train: int, cfg: RunConfig) -> None:
    if p.method.trains and n_train < cfg.batch_size:
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the training set ({n_train} images)")


def _execute(cfg: RunConfig, results_dir: Path, out_path: Path, dist, t0: float, *, data_root, force, progress):
    device = distributed.setup(dist, pick_device(cfg.device))
    seed_everything(cfg.seed)
    p = prepare(cfg, data_root, progress=progress)
    backbone = create_backbone(cfg.backbone, cfg.image_size, cfg.pretrained, cfg.weights,
                               require_patch_grid=p.method.uses_keypoints)
    ncat = len(p.keypoints.categories) if p.keypoints is not None else 0
    model = p.method.build_model(backbone, ncat)
    pcfg = getattr(backbone, "pretrained_cfg", {}) or {}
    normalize = Normalizer(pcfg.get("mean", (0.5, 0.5, 0.5)), pcfg.get("std", (0.5, 0.5, 0.5)))

    check_batch_size(p, len(p.split.train), cfg)  # before decoding (checked again after skipped images)
    bboxes = row_bboxes(p.data, range(len(p.data.df)))  # cropped datasets
    images, sizes, bad = decode_images(p.data.root, list(p.data.df["path"]), cfg.image_size, bboxes=bboxes,
                                       bad_images=cfg.bad_images)
    if bad:
        print(f"warning: skipped {len(bad)} unreadable image(s) (--bad-images skip), e.g. "
              f"{p.data.root / p.data.df['path'].iloc[bad[0]]}", file=sys.stderr)
    points = input_points(p.keypoints, sizes, cfg.image_size) if p.keypoints is not None else None
    identities = p.data.df["identity"].astype(str).to_numpy()
    tr, te = np.setdiff1d(p.split.train, bad), np.setdiff1d(p.split.test, bad)
    classes = {name: i for i, name in enumerate(sorted(set(identities[tr])))}
    labels_train = torch.tensor([classes[x] for x in identities[tr]])
    check_batch_size(p, len(tr), cfg)
    perm = flip_permutation(p.keypoints.categories, p.keypoints.flip_pairs) if p.keypoints is not None else []
    train_data = TrainData(images, labels_train, points, perm, rows=torch.from_numpy(tr))

    history = []
    checkpoint = Checkpoint(results_dir / ".checkpoints" / f"{out_path.stem}.pt", save=dist.is_main,
                            on_resume=lambda epoch: print(f"resuming {out_path.stem} after epoch {epoch}", file=sys.stderr))
    if force:
        checkpoint.discard()
    if p.method.trains:
        losses = reid_loss(model.embed_dim, train_data.num_classes, cfg.arcface_margin, cfg.arcface_scale, cfg.ce_weight)
        history = train(
            model, losses, train_data, normalize, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
            weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs, hflip_p=cfg.hflip, seed=cfg.seed,
            device=device, progress=progress, rank=dist.rank, world=dist.world, compile_backend=cfg.compile,
            hooks=[checkpoint],
        )
    timing = [{"epoch": h["epoch"], "seconds": h.pop("seconds"), "data_share": h.pop("data_share")} for h in history]
    if not dist.is_main:  # rank 0 alone evaluates and writes
        distributed.barrier(dist)
        return None, out_path

    all_ids = {name: i for i, name in enumerate(sorted(set(identities)))}
    labels = torch.tensor([all_ids[x] for x in identities])
    q = embed(model, images, points, normalize, device, rows=te)
    if cfg.protocol == "disjoint":
        metrics = retrieval_metrics(q, labels[te], q, labels[te], exclude_self=True)
    else:
        g = embed(model, images, points, normalize, device, rows=tr)
        metrics = retrieval_metrics(q, labels[te], g, labels[tr])

    if metrics["unanswerable_queries"]:
        print(f"warning: {metrics['unanswerable_queries']} test image(s) have no other image of their identity in "
              "the gallery (identities with a single image); they are left out of the metrics and counted in "
              "metrics.unanswerable_queries", file=sys.stderr)
    record = {
        "schema": res.SCHEMA_VERSION,
        "name": res.result_name(cfg),
        "config": cfg.to_dict(),
        "experiment": cfg.experiment_hash(),
        "seed": cfg.seed,
        "protocol": cfg.protocol,
        "split": {
            "fingerprint": p.split.fingerprint,
            "seed": cfg.split_seed,
            "train_images": int(len(tr)),
            "test_images": int(len(te)),
            "train_identities": int(len(set(identities[tr]))),
            "test_identities": int(len(set(identities[te]))),
            "skipped_images": [str(p.data.df["image_id"].iloc[i]) for i in bad],
        },
        "dataset": {"name": p.data.name, "fingerprint": p.data.fingerprint, "images": int(len(p.data.df)), **p.data.info},
        "backbone": backbone_provenance(cfg, backbone),
        "caveats": p.method.caveats(cfg),
        "keypoints": None if p.keypoints is None else {
            "categories": list(p.keypoints.categories),
            "flip_pairs": [list(x) for x in p.keypoints.flip_pairs],
            "provenance": p.keypoints.provenance,
        },
        "metrics": metrics,
        "history": history,
        "timing": {"epochs": timing, "processes": dist.world},
        "wall_time_s": round(time.perf_counter() - t0, 3),
        "device": {"type": device.type, "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   "threads": torch.get_num_threads(), "processes": dist.world},
        "versions": res.package_versions(),
        "git": res.git_state(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = res.write_atomic(out_path, record, overwrite=force)
    checkpoint.discard()
    distributed.barrier(dist)
    return record, path
