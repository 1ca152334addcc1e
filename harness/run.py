"""One run: config -> data -> split -> keypoints -> model -> train -> evaluate -> result record."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from . import results as res
from .backbones import create_backbone
from .config import RunConfig
from .data import ReidData, get_card, load_dataset, load_images
from .evaluate import retrieval_metrics
from .keypoints import KeypointSet, resolve_keypoints
from .methods import METHODS, Method
from .splits import make_split
from .tokens import flip_permutation
from .train import Normalizer, TrainData, embed, reid_loss, train


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def input_points(kps: KeypointSet, sizes: np.ndarray, image_size: int) -> torch.Tensor:
    """Original-pixel keypoints -> model-input pixels (images are resized to image_size^2)."""
    scale = image_size / np.asarray(sizes, dtype=np.float64)  # (N, 2): x and y scale per image
    return torch.from_numpy((kps.points * scale[:, None, :]).astype(np.float32))


@dataclass
class Prepared:
    """Everything a run needs before training; shared by `run` and tests."""

    cfg: RunConfig
    method: Method
    data: ReidData
    split: object
    keypoints: KeypointSet | None


def prepare(cfg: RunConfig, data_root: Path | None = None) -> Prepared:
    method = METHODS.create(cfg.method)
    card = get_card(cfg.dataset)
    data = load_dataset(card, dict(cfg.dataset_options), data_root)
    split = make_split(data.df, cfg.protocol, cfg.split_seed)
    kps = None
    source = method.keypoint_source(cfg.keypoints)
    if source is not None:
        kps = resolve_keypoints(source, data, cfg)
    return Prepared(cfg, method, data, split, kps)


def execute(cfg: RunConfig, results_dir: Path, *, data_root: Path | None = None, force: bool = False,
            progress: bool = True) -> tuple[dict, Path]:
    """Run one experiment and write its record; returns (record, path)."""
    t0 = time.perf_counter()
    results_dir = res.check_writable(results_dir)
    out_path = res.result_path(results_dir, cfg)
    if out_path.exists() and not force:
        raise res.ResultsError(f"{out_path} already exists; pass --force to recompute it")
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    p = prepare(cfg, data_root)
    backbone = create_backbone(cfg.backbone, cfg.image_size, cfg.pretrained)
    ncat = len(p.keypoints.categories) if p.keypoints is not None else 0
    model = p.method.build_model(backbone, ncat)
    pcfg = getattr(backbone, "pretrained_cfg", {}) or {}
    normalize = Normalizer(pcfg.get("mean", (0.5, 0.5, 0.5)), pcfg.get("std", (0.5, 0.5, 0.5)))

    images, sizes = load_images(p.data.root, list(p.data.df["path"]), cfg.image_size)
    points = input_points(p.keypoints, sizes, cfg.image_size) if p.keypoints is not None else None
    identities = p.data.df["identity"].astype(str).to_numpy()
    tr, te = p.split.train, p.split.test
    classes = {name: i for i, name in enumerate(sorted(set(identities[tr])))}
    labels_train = torch.tensor([classes[x] for x in identities[tr]])
    if len(tr) < cfg.batch_size:
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the training set ({len(tr)} images)")
    perm = flip_permutation(p.keypoints.categories, p.keypoints.flip_pairs) if p.keypoints is not None else []
    train_data = TrainData(images[tr], labels_train, points[tr] if points is not None else None, perm)

    history = []
    if p.method.trains:
        losses = reid_loss(model.embed_dim, train_data.num_classes, cfg.arcface_margin, cfg.arcface_scale, cfg.ce_weight)
        history = train(
            model, losses, train_data, normalize, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
            weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs, hflip_p=cfg.hflip, seed=cfg.seed,
            device=device, progress=progress,
        )

    all_ids = {name: i for i, name in enumerate(sorted(set(identities)))}
    labels = torch.tensor([all_ids[x] for x in identities])
    pts = lambda idx: points[idx] if points is not None else None  # noqa: E731
    q = embed(model, images[te], pts(te), normalize, device)
    if cfg.protocol == "disjoint":
        metrics = retrieval_metrics(q, labels[te], q, labels[te], exclude_self=True)
    else:
        g = embed(model, images[tr], pts(tr), normalize, device)
        metrics = retrieval_metrics(q, labels[te], g, labels[tr])

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
        },
        "dataset": {"name": p.data.name, "fingerprint": p.data.fingerprint, "images": int(len(p.data.df))},
        "keypoints": None if p.keypoints is None else {
            "categories": list(p.keypoints.categories),
            "flip_pairs": [list(x) for x in p.keypoints.flip_pairs],
            "provenance": p.keypoints.provenance,
        },
        "metrics": metrics,
        "history": history,
        "wall_time_s": round(time.perf_counter() - t0, 3),
        "device": {"type": device.type, "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   "threads": torch.get_num_threads()},
        "versions": res.package_versions(),
        "git": res.git_state(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = res.write_atomic(out_path, record, overwrite=force)
    return record, path
