"""Propagation: keypoints of ONE reference image -> every image, by dense feature matching (Sec. 3.2).

For keypoint k at reference position p_k: f_k = F_r(p_k) / ||F_r(p_k)||, S_k(q) = <f_k, F_t(q)/||F_t(q)||>,
and the propagated keypoint is argmax_q S_k(q). Two ways to evaluate S_k:

fast   (default) the reference vectors are sampled bilinearly from F_r at p_k; cosine similarity is
       taken at feature resolution (K x D x h x w) and only the K similarity maps are upsampled
       bilinearly to the image before the argmax. The reference features are computed once; the
       targets are featurized in batches.
exact  DIFT's order: F_r and F_t are upsampled bilinearly to the image size first, the reference
       vector is read at the integer pixel of p_k, and cosine is taken per pixel (D x S x S per
       image). Normalising after upsampling is not linear, so the two differ slightly; tests hold
       them within one feature cell.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data import DataError, ReidData, load_images
from .featurizers import Featurizer
from .keypoints import KeypointSet, Reference, config_hash, row_of_image, save_keypoint_set, store_dir

MODES = ("fast", "exact")


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float() / 255.0


def reference_vectors(feats: torch.Tensor, points: torch.Tensor, stride: int) -> torch.Tensor:
    """feats (D, h, w), points (K, 2) in featurizer-input pixels -> (K, D) unit vectors, bilinear."""
    d, h, w = feats.shape
    grid = torch.stack([2 * points[:, 0] / (w * stride) - 1, 2 * points[:, 1] / (h * stride) - 1], -1)
    v = F.grid_sample(feats[None], grid.view(1, 1, -1, 2).to(feats), mode="bilinear", align_corners=False,
                      padding_mode="border")
    return F.normalize(v[0, :, 0].T, dim=1)


def argmax_points(sim: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) similarity -> (B, K, 2) pixel centres (x + 0.5, y + 0.5) of the maxima."""
    b, k, h, w = sim.shape
    idx = sim.flatten(2).argmax(-1)
    return torch.stack([(idx % w).float() + 0.5, (idx // w).float() + 0.5], -1)


def match_fast(ref_vec: torch.Tensor, target_feats: torch.Tensor, stride: int) -> torch.Tensor:
    """Cosine at feature resolution, then upsample the K maps: (K, D), (B, D, h, w) -> (B, K, 2)."""
    t = F.normalize(target_feats, dim=1)
    sim = torch.einsum("kd,bdhw->bkhw", ref_vec.to(t), t)
    h, w = t.shape[-2:]
    sim = F.interpolate(sim, size=(h * stride, w * stride), mode="bilinear", align_corners=False)
    return argmax_points(sim)


def upsample(feats: torch.Tensor, stride: int) -> torch.Tensor:
    h, w = feats.shape[-2:]
    return F.interpolate(feats, size=(h * stride, w * stride), mode="bilinear", align_corners=False)


def exact_reference_vectors(ref_feats: torch.Tensor, points: torch.Tensor, stride: int) -> torch.Tensor:
    """DIFT: upsample F_r to the image, read the vector at the integer pixel of each point."""
    up = upsample(ref_feats[None], stride)[0]
    size_h, size_w = up.shape[-2:]
    x = points[:, 0].floor().long().clamp(0, size_w - 1)
    y = points[:, 1].floor().long().clamp(0, size_h - 1)
    return F.normalize(up[:, y, x].T, dim=1)


def match_exact(ref_vec: torch.Tensor, target_feats: torch.Tensor, stride: int, chunk: int = 64) -> torch.Tensor:
    """Upsample each target's features to the image, then cosine per pixel (DIFT's order)."""
    out = []
    for feats in target_feats:
        up = F.normalize(upsample(feats[None], stride)[0], dim=0)  # (D, S, S)
        sims = [torch.einsum("kd,dhw->khw", ref_vec[i : i + chunk].to(up), up) for i in range(0, len(ref_vec), chunk)]
        out.append(argmax_points(torch.cat(sims)[None])[0])
    return torch.stack(out)


def match(ref_feats: torch.Tensor, ref_points: torch.Tensor, target_feats: torch.Tensor, stride: int,
          mode: str = "fast") -> torch.Tensor:
    """Reference features (D, h, w) + K points (input pixels) -> (B, K, 2) points in each target."""
    if mode == "fast":
        return match_fast(reference_vectors(ref_feats, ref_points, stride), target_feats, stride)
    if mode == "exact":
        return match_exact(exact_reference_vectors(ref_feats, ref_points, stride), target_feats, stride)
    raise ValueError(f"unknown matching mode {mode!r}; valid: {', '.join(MODES)}")


def propagation_name(reference_hash: str, featurizer: Featurizer, mode: str) -> tuple[str, str]:
    """(name, hash) of a propagation: the featurizer's name plus a hash of everything that defines it."""
    h = config_hash({"reference": reference_hash, "featurizer": featurizer.config(), "mode": mode})
    return f"{featurizer.name}-{h}", h


def _save_partial(path, points: np.ndarray, done: int) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, points=points, done=np.array(done))
    tmp.replace(path)


def propagate(data: ReidData, ref: Reference, featurizer: Featurizer, *, reference_name: str, mode: str = "fast",
              name: str | None = None, batch_size: int | None = None, progress: bool = True,
              force: bool = False) -> tuple[KeypointSet, str, bool]:
    """Propagate ``ref`` to every image of ``data``; store and return (set, name, computed).

    A stored set with the same configuration is returned as is (no feature extraction). Progress is
    saved after every batch, so an interrupted propagation resumes where it stopped."""
    from tqdm import tqdm

    from .keypoints import load_keypoint_set

    if mode not in MODES:
        raise ValueError(f"unknown matching mode {mode!r}; valid: {', '.join(MODES)}")
    auto_name, chash = propagation_name(ref.content_hash(), featurizer, mode)
    name = name or auto_name
    folder = store_dir(data)
    final = folder / f"{name}.json"
    if final.exists() and not force:
        kps, raw = load_keypoint_set(final, data)
        if (raw.get("provenance") or {}).get("config_hash") == chash:
            return kps, name, False
        raise DataError(f"keypoint set {name} already exists with another configuration; choose another --name or pass --force")
    partial = folder / f".{name}.partial.npz"
    folder.mkdir(parents=True, exist_ok=True)
    n, k = len(data.df), len(ref.categories)
    points, done = np.full((n, k, 2), np.nan), 0
    if partial.exists() and not force:
        saved = np.load(partial)
        if saved["points"].shape == points.shape:
            points, done = saved["points"].copy(), int(saved["done"])

    paths = list(data.df["path"])
    bs = batch_size or featurizer.batch_size
    if done < n:
        r = row_of_image(data, ref.image_id)
        ref_img, ref_size = load_images(data.root, [paths[r]], featurizer.size, desc="reference")
        ref_feats = featurizer(to_input(ref_img))[0]
        scale = featurizer.size / ref_size[0]
        ref_pts = torch.from_numpy(ref.points * scale[None, :]).float()
        if mode == "fast":  # reference vectors once
            ref_vec = reference_vectors(ref_feats, ref_pts, featurizer.stride)
        else:
            ref_vec = exact_reference_vectors(ref_feats, ref_pts, featurizer.stride)
        bar = tqdm(total=n, initial=done, desc=f"propagating ({featurizer.name}, {mode})", disable=not progress, unit="img")
        for start in range(done, n, bs):
            imgs, sizes = load_images(data.root, paths[start : start + bs], featurizer.size, desc="targets")
            feats = featurizer(to_input(imgs))
            if mode == "fast":
                found = match_fast(ref_vec, feats, featurizer.stride)
            else:
                found = match_exact(ref_vec, feats, featurizer.stride)
            points[start : start + len(imgs)] = found.cpu().numpy() * (sizes / featurizer.size)[:, None, :]
            done = start + len(imgs)
            _save_partial(partial, points, done)
            bar.update(len(imgs))
        bar.close()
    provenance = {
        "source": "propagated",
        "reference": {"name": reference_name, "image_id": ref.image_id, **ref.provenance},
        "featurizer": featurizer.config(),
        "matching": mode,
        "config_hash": chash,
    }
    kps = KeypointSet(ref.categories, ref.flip_pairs, points, provenance)
    save_keypoint_set(kps, data, name)
    partial.unlink(missing_ok=True)
    kps = load_keypoint_set(final, data)[0]  # exactly what later runs will read
    return kps, name, True
