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

With ``mirror`` the reference is also featurized mirrored (its points mirrored, their names kept)
and each target takes the points of whichever view matches it better: the sum over keypoints of
the best similarity decides. For animals seen from either side (a mirrored pose moves the left
eye to where the right eye was); wrong for frontal faces, so off by default.
"""
from __future__ import annotations

import glob
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..core.progress import progress_bar

from ..core import distributed
from ..core.distributed import DistInfo
from ..core.errors import DataError
from ..core.io import config_hash, replace_atomic
from ..data.dataset import ReidData, load_rows, row_of_image
from .featurizers import Featurizer
from .sets import KeypointSet, Reference
from .store import load_keypoint_set, save_keypoint_set, store_dir


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


def pick_views(sims: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, B, K, h, w) similarity maps of V reference views -> each target's maps from the view whose
    best matches are strongest (largest sum over keypoints of the maximum similarity), and (B,) views."""
    if sims.shape[0] == 1:
        return sims[0], torch.zeros(sims.shape[1], dtype=torch.long)
    view = sims.flatten(3).amax(-1).sum(-1).argmax(0)
    return sims[view, torch.arange(sims.shape[1])], view.cpu()


def _views(ref_vec: torch.Tensor) -> torch.Tensor:
    return ref_vec if ref_vec.dim() == 3 else ref_vec[None]  # (K, D) -> one view (1, K, D)


def match_fast(ref_vec: torch.Tensor, target_feats: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine at feature resolution, then upsample the K maps: (K, D) or (V, K, D) reference views,
    (B, D, h, w) -> (B, K, 2) points and (B,) the view each target matched."""
    t = F.normalize(target_feats, dim=1)
    sim, view = pick_views(torch.einsum("vkd,bdhw->vbkhw", _views(ref_vec).to(t), t))
    h, w = t.shape[-2:]
    sim = F.interpolate(sim, size=(h * stride, w * stride), mode="bilinear", align_corners=False)
    return argmax_points(sim), view


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


def match_exact(ref_vec: torch.Tensor, target_feats: torch.Tensor, stride: int,
                chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Upsample each target's features to the image, then cosine per pixel (DIFT's order). Reference
    vectors and return value as for ``match_fast``."""
    views = _views(ref_vec)
    out, picked = [], []
    for feats in target_feats:
        up = F.normalize(upsample(feats[None], stride)[0], dim=0)  # (D, S, S)
        sims = torch.stack([torch.cat([torch.einsum("kd,dhw->khw", v[i : i + chunk].to(up), up)
                                       for i in range(0, len(v), chunk)]) for v in views])  # (V, K, S, S)
        sim, view = pick_views(sims[:, None])
        out.append(argmax_points(sim)[0])
        picked.append(view)
    return torch.stack(out), torch.cat(picked)


# mode -> (reference vectors from the reference's features, matcher of the targets' features)
MATCHERS = {"fast": (reference_vectors, match_fast), "exact": (exact_reference_vectors, match_exact)}
MODES = tuple(MATCHERS)


def reference_views(featurizer: Featurizer, ref_img: torch.Tensor, ref_pts: torch.Tensor, mode: str = "fast",
                    mirror: bool = False) -> torch.Tensor:
    """Reference vectors (V, K, D) of one uint8 reference image (1, 3, S, S) and its K points (input
    pixels): V = 1, or 2 with ``mirror`` (the mirrored image, points mirrored, names kept). A
    continuous x mirrors to S - x (fast mode samples there); exact mode reads whole pixels, and
    pixel floor(x) mirrors to pixel S - 1 - floor(x), whose centre is taken."""
    images = to_input(ref_img)
    pts = [ref_pts]
    if mirror:
        images = torch.cat([images, images.flip(-1)])
        x = ref_pts[:, 0] if mode == "fast" else ref_pts[:, 0].floor() + 0.5
        pts.append(torch.stack([featurizer.size - x, ref_pts[:, 1]], 1))
    feats = featurizer(images)
    vectors = MATCHERS[mode][0]
    return torch.stack([vectors(f, p, featurizer.stride) for f, p in zip(feats, pts)])


def match(ref_feats: torch.Tensor, ref_points: torch.Tensor, target_feats: torch.Tensor, stride: int,
          mode: str = "fast") -> torch.Tensor:
    """Reference features (D, h, w) + K points (input pixels) -> (B, K, 2) points in each target."""
    check_mode(mode)
    vectors, matcher = MATCHERS[mode]
    return matcher(vectors(ref_feats, ref_points, stride), target_feats, stride)[0]


def check_mode(mode: str) -> None:
    if mode not in MATCHERS:
        raise ValueError(f"unknown matching mode {mode!r}; valid: {', '.join(MODES)}")


PIXELS = ("continuous", "centres")


def propagation_name(reference_hash: str, featurizer: Featurizer, mode: str, mirror: bool = False,
                     pixels: str = "continuous") -> tuple[str, str]:
    """(name, hash) of a propagation: the featurizer's name plus a hash of everything that defines it."""
    config = {"reference": reference_hash, "featurizer": featurizer.config(), "mode": mode}
    if mirror:  # only when on, so sets made before the option existed keep their names
        config["mirror"] = True
    if pixels != "continuous":
        config["pixels"] = pixels
    h = config_hash(config)
    return f"{featurizer.name}-{h}", h


# Partial results: every process (one, or each torchrun rank) saves after every batch a partial file
# with the points found so far and a per-image done mask. A new start merges every partial file of
# the set first, so an interrupted run resumes with any number of processes.


def _partial_path(folder: Path, name: str, info: DistInfo) -> Path:
    return folder / (f".{name}.partial.npz" if info.world <= 1 else f".{name}.rank{info.rank}.partial.npz")


def partial_files(folder: Path, name: str) -> list[Path]:
    """Every partial file of keypoint set ``name`` (single-process and per-rank ones)."""
    own = re.compile(rf"\.{re.escape(name)}(\.rank\d+)?\.partial\.npz")
    return sorted(p for p in folder.glob(f".{glob.escape(name)}*.partial.npz") if own.fullmatch(p.name))


def _save_partial(path: Path, points: np.ndarray, mask: np.ndarray, views: np.ndarray, chash: str,
                  featurized: int) -> None:
    replace_atomic(path, lambda tmp: np.savez(tmp, points=points, mask=mask, views=views, done=np.array(int(mask.sum())),
                                              config=np.array(chash), featurized=np.array(featurized)))


def _merge_partials(files: list[Path], shape: tuple, chash: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Union of the images done in ``files``: (points, done mask, reference view matched per image,
    {file: images it featurized}).
    Files of another shape or configuration, or unreadable ones, are skipped (their images are
    computed again); a file without a mask (older format) holds the first ``done`` images."""
    points, mask, views, featurized = np.full(shape, np.nan), np.zeros(shape[0], bool), np.zeros(shape[0], np.int8), {}
    for f in files:
        try:
            with np.load(f) as saved:
                if saved["points"].shape != shape or ("config" in saved and str(saved["config"]) != chash):
                    continue
                got = saved["mask"] if "mask" in saved else np.arange(shape[0]) < int(saved["done"])
                new = got & ~mask
                points[new] = saved["points"][new]
                if "views" in saved:
                    views[new] = saved["views"][new]
                mask |= got
                featurized[f] = int(saved["featurized"]) if "featurized" in saved else 0
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            continue
    return points, mask, views, featurized


def featurizer_device(featurizer: Featurizer) -> torch.device:
    device = getattr(featurizer, "device", None)
    return device if isinstance(device, torch.device) else torch.device("cpu")


@dataclass(frozen=True)
class PropagateSettings:
    """How one propagation runs; the defaults are `harness keypoints propagate`'s."""

    mode: str | None = None  # fast / exact [default: the featurizer's ``matching``]
    pixels: str | None = None  # continuous / centres [default: the featurizer's ``matching``]
    mirror: bool = False  # also match the mirrored reference; per target the stronger view wins
    batch_size: int | None = None  # target images per batch [default: the featurizer's]
    name: str | None = None  # store under this name [default: <featurizer>-<config hash>]
    force: bool = False  # recompute even if stored
    progress: bool = True  # a progress bar


@dataclass
class _Work:
    """One propagation in progress: what it is (matching, hash) and what is done (points per image,
    the done mask, the reference view each image matched)."""

    name: str
    chash: str
    folder: Path
    mode: str
    pixels: str
    mirror: bool
    points: np.ndarray
    mask: np.ndarray
    views: np.ndarray


def _featurize_share(data: ReidData, ref: Reference, featurizer: Featurizer, work: _Work, mine: np.ndarray,
                     info: DistInfo, batch_size: int, progress: bool) -> int:
    """Featurize and match this process's images ``mine``, saving the partial file after every
    batch; returns how many images it featurized."""
    row = row_of_image(data, ref.image_id)
    ref_img, ref_size = load_rows(data, [row], featurizer.size, desc="reference", resize=featurizer.resize)
    offset = 0.5 if work.pixels == "centres" else 0.0  # x = 31 read as the centre of pixel 31
    ref_pts = torch.from_numpy((ref.points + offset) * (featurizer.size / ref_size[0])[None, :]).float()
    ref_vec = reference_views(featurizer, ref_img, ref_pts, work.mode, work.mirror)  # once
    matcher = MATCHERS[work.mode][1]
    n = len(data.df)
    desc = f"propagating ({featurizer.name}, {work.mode})"
    if info.world > 1:
        bar = progress_bar(total=len(mine), desc=f"{desc}, rank 0's share of {info.world}", unit="img",
                   disable=not (progress and info.is_main))
    else:
        bar = progress_bar(total=n, initial=n - len(mine), desc=desc, disable=not progress, unit="img")
    own, featurized = _partial_path(work.folder, work.name, info), 0
    for start in range(0, len(mine), batch_size):
        rows = mine[start : start + batch_size]
        imgs, sizes = load_rows(data, rows, featurizer.size, desc="targets", resize=featurizer.resize)
        found, view = matcher(ref_vec, featurizer(to_input(imgs)), featurizer.stride)
        work.points[rows] = found.cpu().numpy() * (sizes / featurizer.size)[:, None, :]
        work.views[rows] = view.numpy()
        work.mask[rows] = True
        featurized += len(rows)
        _save_partial(own, work.points, work.mask, work.views, work.chash, featurized)
        bar.update(len(rows))
    bar.close()
    return featurized


def _write_set(data: ReidData, ref: Reference, featurizer: Featurizer, work: _Work, reference_name: str,
               info: DistInfo, report: Callable[[str], None] | None) -> None:
    """Rank 0: merge the ranks' partial files (under torchrun), store the set, remove the partials."""
    if info.world > 1:
        files = [_partial_path(work.folder, work.name, DistInfo(r, info.world)) for r in range(info.world)]
        work.points, work.mask, work.views, counts = _merge_partials(files, work.points.shape, work.chash)
        if not work.mask.all():
            raise DataError(f"{int((~work.mask).sum())} of {len(work.mask)} images are missing from the ranks' partial "
                            f"files in {work.folder}; all ranks must share the keypoint cache (HARNESS_CACHE)")
        if report is not None:
            report(f"propagated on {info.world} processes; images featurized per rank: "
                   + ", ".join(str(counts.get(f, 0)) for f in files))
    provenance = {
        "source": "propagated",
        "reference": {"name": reference_name, "image_id": ref.image_id, **ref.provenance},
        "featurizer": featurizer.config(),
        "matching": work.mode,
        "pixels": work.pixels,
        "config_hash": work.chash,
    }
    if work.mirror:
        provenance["mirror"] = {"images_matched_to_mirrored_reference": int(work.views.sum())}
    save_keypoint_set(KeypointSet(ref.categories, ref.flip_pairs, work.points, provenance), data, work.name)
    for f in partial_files(work.folder, work.name):
        f.unlink(missing_ok=True)


def _stored_set(path: Path, data: ReidData, name: str, chash: str) -> KeypointSet:
    """The stored set at ``path``, when it was made with this configuration (hash ``chash``)."""
    kps, raw = load_keypoint_set(path, data)
    if (raw.get("provenance") or {}).get("config_hash") != chash:
        raise DataError(f"keypoint set {name} already exists with another configuration; choose another --name "
                        "or pass --force")
    return kps


def propagate(data: ReidData, ref: Reference, featurizer: Featurizer, settings: PropagateSettings = PropagateSettings(),
              *, reference_name: str, dist: DistInfo | None = None,
              report: Callable[[str], None] | None = None) -> tuple[KeypointSet, str, bool]:
    """Propagate ``ref`` to every image of ``data``; store and return (set, name, computed).

    A stored set with the same configuration is returned as is (no feature extraction). Progress is
    saved after every batch, so an interrupted propagation resumes where it stopped.

    ``settings.mirror``: match every target against the reference AND its mirror image (points
    mirrored, names kept: the same animal seen from its other side) and take, per target, the view
    whose matches are stronger; for animals photographed from either side. Off by default: on
    frontal faces the mirrored view of a left eye is a right eye.

    Under torchrun (``dist``, default: from the environment) every rank featurizes and matches its
    own block of the images not done yet and saves its own partial file; after a barrier rank 0
    merges the partial files and writes the set, the other ranks wait and then read it. The ranks
    must share the keypoint cache folder. Rank 0 passes ``report`` one line saying how many images
    each rank featurized.

    ``settings.mode`` and ``settings.pixels`` default to the featurizer's ``matching`` (``dift``:
    exact, centres)."""
    mode = settings.mode or featurizer.matching["mode"]
    pixels = settings.pixels or featurizer.matching["pixels"]
    mirror, force = settings.mirror, settings.force
    check_mode(mode)
    if pixels not in PIXELS:
        raise ValueError(f"unknown pixel convention {pixels!r}; valid: {', '.join(PIXELS)}")
    info = distributed.from_env() if dist is None else dist
    if info.world > 1:
        distributed.setup(info, featurizer_device(featurizer))  # no-op when the process group is already up
    auto_name, chash = propagation_name(ref.content_hash(), featurizer, mode, mirror, pixels)
    name = settings.name or auto_name
    folder = store_dir(data)
    final = folder / f"{name}.json"
    if final.exists() and not force:
        return _stored_set(final, data, name, chash), name, False
    folder.mkdir(parents=True, exist_ok=True)
    shape = (len(data.df), len(ref.categories), 2)
    work = _Work(name, chash, folder, mode, pixels, mirror,
                 *_merge_partials([] if force else partial_files(folder, name), shape, chash)[:3])
    distributed.barrier(info)  # every rank has read the old partial files before any rank writes its own
    mine = np.array_split(np.flatnonzero(~work.mask), info.world)[info.rank]  # this rank's block of what is left
    featurized = _featurize_share(data, ref, featurizer, work, mine, info, settings.batch_size or featurizer.batch_size,
                                  settings.progress) if len(mine) else 0
    if info.world > 1:
        if not featurized:  # an empty share: still say so, and replace a stale file of this rank
            _save_partial(_partial_path(folder, name, info), work.points, work.mask, work.views, chash, featurized)
        distributed.barrier(info)  # every rank's share is in its partial file
    if info.is_main:
        _write_set(data, ref, featurizer, work, reference_name, info, report)
    distributed.barrier(info)  # the other ranks read the set once rank 0 has written it
    kps = load_keypoint_set(final, data)[0]  # exactly what later runs will read
    return kps, name, True
