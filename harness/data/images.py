"""Images as the harness uses them: decoded, cropped to their box, resized, and cached.

``decode_images`` decodes a dataset's images once, in parallel threads, into a memory-mapped uint8
file under the cache; later runs with the same files, crops and size map that file instead. How it
decodes (cache, unreadable-image policy, resampling, progress bar) is one ``DecodeSettings``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from ..core.progress import progress_bar

from ..core.errors import DataError
from ..core.paths import cache_dir


def parse_bbox(value) -> tuple[float, float, float, float] | None:
    """A wildlife-datasets bbox ([x, y, w, h], a list or its JSON text) -> floats; None when the
    row has no usable box (NaN, empty, non-positive size): the whole image is used."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"bad bbox {value!r}: not [x, y, w, h]") from exc
    if value is None or np.isscalar(value):
        return None
    box = np.asarray(value, dtype=np.float64).ravel()
    if box.shape != (4,):
        raise DataError(f"bad bbox {value!r}: not [x, y, w, h]")
    if not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
        return None
    return tuple(float(v) for v in box)


def crop_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """[x, y, w, h] -> integer (left, top, right, bottom) pixels: the crop applied to the image,
    whose (left, top) is also the shift applied to its keypoints."""
    x, y, w, h = box
    left, top = int(round(x)), int(round(y))
    return left, top, left + max(1, int(round(w))), top + max(1, int(round(h)))


def open_rgb(path: Path, box=None) -> Image.Image:
    """One image as RGB, cropped to ``box`` ([x, y, w, h] or None); unreadable -> one-line error."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            return im.crop(crop_box(box)) if box is not None else im
    except FileNotFoundError as exc:
        raise DataError(f"image not found: {path}") from exc
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


RESAMPLING = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def _decode(path: Path, box, size: int, resize: str = "bilinear", perturb=None) -> tuple[np.ndarray, tuple[int, int]]:
    """One image -> (size, size, 3) uint8 array and the (width, height) it had before resizing.
    ``perturb`` (a function of the image, or None) transforms it after the crop, before resizing."""
    im = open_rgb(path, box)
    if perturb is not None:
        im = perturb(im)
    return np.asarray(im.resize((size, size), RESAMPLING[resize])), im.size


IMAGE_CACHE_VERSION = "v2"  # bump when the cache layout changes: old folders are then never read
IMAGE_CACHE_FILES = ("pixels.npy", "sizes.npy", "bad.npy")


def _cache_key(root: Path, paths: list[str], boxes: list, size: int, perturb: str = "") -> str:
    """Identifies the decoded pixels: the files (path, size, mtime), the crops, the image size and
    the perturbation (``--dataset-option perturb``; absent: the key of unperturbed images, as before
    perturbations existed). A changed image, crop, size or perturbation gives another key, so a
    stale cache is never read and perturbed and aligned images never mix."""
    h = hashlib.sha256(f"{IMAGE_CACHE_VERSION}|{Path(root).resolve()}|{size}".encode())
    if perturb:
        h.update(f"|{perturb}".encode())
    for rel, box in zip(paths, boxes):
        try:
            st = (Path(root) / rel).stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"|{rel}|{box}|{stamp}".encode())
    return h.hexdigest()[:20]


BAD_IMAGES = ("fail", "skip")


def load_images(root: Path, paths: list[str], size: int, desc: str = "images",
                bboxes=None, cache: bool = False, resize: str = "bilinear",
                perturb=None) -> tuple[torch.Tensor, np.ndarray]:
    """Decode, optionally crop (``bboxes``: one [x, y, w, h] or None per path) and resize images to
    (size, size): uint8 tensor (N, 3, size, size) and the (width, height) of each image as used
    (the crop's size when cropped), needed to map keypoints into the resized image.
    A missing or unreadable image is an error naming the file."""
    settings = DecodeSettings(desc=desc, cache=cache, bad_images="fail", resize=resize, progress=False)
    pixels, sizes, _ = decode_images(root, paths, size, bboxes=bboxes, perturb=perturb, settings=settings)
    return pixels, sizes


@dataclass(frozen=True)
class DecodeSettings:
    """How ``decode_images`` decodes: whether it caches, what an unreadable image does, the
    resampling filter, and its progress bar (``desc`` names the images in it)."""

    cache: bool = True
    bad_images: str = "fail"  # one of BAD_IMAGES
    resize: str = "bilinear"  # one of RESAMPLING
    progress: bool = True
    desc: str = "images"

    def __post_init__(self):
        if self.bad_images not in BAD_IMAGES:
            raise DataError(f"unknown bad-images policy {self.bad_images!r}; valid: {', '.join(BAD_IMAGES)}")
        if self.resize not in RESAMPLING:
            raise DataError(f"unknown resize {self.resize!r}; valid: {', '.join(RESAMPLING)}")


def decode_images(root: Path, paths: list[str], size: int, *, bboxes=None, perturb=None,
                  settings: DecodeSettings = DecodeSettings()) -> tuple[torch.Tensor, np.ndarray, list[int]]:
    """``load_images`` for training runs: returns also the rows whose image could not be read.

    With ``settings.bad_images="fail"`` the first unreadable image is an error naming it; with
    "skip" its pixels stay zero and its row is returned in the list (the caller drops and reports
    it). With ``settings.cache``, images are decoded once, in parallel threads, into a memory-mapped
    uint8 file under ``cache_dir()/images``; later runs with the same files, crops and size map that
    file instead of decoding again. ``perturb`` (``harness.data.perturb.ImagePerturbations`` for
    these paths, or None) transforms each image once, before it is resized and cached."""
    boxes = [None] * len(paths) if bboxes is None else [parse_bbox(b) for b in bboxes]
    key = _cache_key(root, paths, boxes, size, perturb.key if perturb is not None else "") + (
        "" if settings.resize == "bilinear" else f"-{settings.resize}")
    folder = cache_dir() / "images" / key if settings.cache else None
    if folder is not None and _cache_complete(folder):
        return _read_cache(folder, root, paths, settings.bad_images)
    if folder is None:
        pixels = np.zeros((len(paths), 3, size, size), dtype=np.uint8)
        sizes, bad = _decode_into(pixels, root, paths, boxes, settings, perturb)
        return torch.from_numpy(pixels), sizes, bad
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        pixels = np.lib.format.open_memmap(tmp / "pixels.npy", mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))
        sizes, bad = _decode_into(pixels, root, paths, boxes, settings, perturb)
        pixels.flush()
        del pixels
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish_cache(tmp, folder, sizes, bad)
    return _read_cache(folder, root, paths, settings.bad_images)  # the published copy: another process's if it won


def _cache_complete(folder: Path) -> bool:
    return all((folder / f).exists() for f in IMAGE_CACHE_FILES)


def _read_cache(folder: Path, root: Path, paths: list[str], bad_images: str):
    bad = np.load(folder / "bad.npy").tolist()
    if bad and bad_images == "fail":
        raise DataError(f"cannot read image {Path(root) / paths[bad[0]]} ({len(bad)} unreadable in all); "
                        "fix or remove it, or pass --bad-images skip")
    return torch.from_numpy(np.load(folder / "pixels.npy", mmap_mode="c")), np.load(folder / "sizes.npy"), bad


def _decode_into(pixels: np.ndarray, root: Path, paths: list[str], boxes: list, settings: DecodeSettings,
                 perturb=None) -> tuple[np.ndarray, list[int]]:
    """Decode every image into ``pixels`` (N x 3 x S x S) in parallel threads; -> (sizes, bad rows)."""
    size = pixels.shape[-1]
    sizes = np.zeros((len(paths), 2), dtype=np.float64)
    bad: list[int] = []

    def one(i):
        try:
            move = (lambda im: perturb.apply(i, im)) if perturb is not None else None
            return _decode(Path(root) / paths[i], boxes[i], size, settings.resize, move)
        except DataError as exc:
            if settings.bad_images == "fail":
                raise DataError(f"{exc}; fix or remove it, or pass --bad-images skip") from exc
            return exc

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        jobs = pool.map(one, range(len(paths)))
        for i, got in enumerate(progress_bar(jobs, total=len(paths), desc=f"decoding {settings.desc}", leave=False,
                                             disable=not settings.progress, unit="img")):
            if isinstance(got, DataError):
                bad.append(i)
                sizes[i] = (size, size)
                continue
            arr, used = got
            pixels[i] = arr.transpose(2, 0, 1)
            sizes[i] = used
    return sizes, bad


def _publish_cache(tmp: Path, folder: Path, sizes: np.ndarray, bad: list[int]) -> None:
    """Move a finished cache folder into place (atomically: a rename)."""
    np.save(tmp / "sizes.npy", sizes)
    np.save(tmp / "bad.npy", np.asarray(bad, dtype=np.int64))
    if folder.exists() and not _cache_complete(folder):
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder (older layout): replace it
    try:
        tmp.rename(folder)
    except OSError:  # another process cached the same images first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- built-in loaders
