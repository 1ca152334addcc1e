"""Dataset cards -> DataFrames in the wildlife-datasets format, and images -> tensors.

A dataset card is a JSON file in the repository's ``datasets/`` folder (data, not Python): it names
a loader, the loader's options, the keypoint categories with their left/right flip pairs, the
default keypoint source and per-dataset run defaults. Loaders are registered by name.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .registry import REPO_ROOT, Registry, RegistryError


class DataError(ValueError):
    """Missing or malformed data; the message names the file and what to do."""


@dataclass(frozen=True)
class Card:
    name: str
    loader: str
    description: str = ""
    options: dict = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    flip_pairs: tuple[tuple[str, str], ...] = ()
    defaults: dict = field(default_factory=dict)
    reference: str | None = None  # expert reference annotation (JSON file next to the card)
    # wildlife-datasets cards (loader "wildlife"); see harness/wildlife.py
    source: str | None = None  # wildlife-datasets class name, e.g. "MacaqueFaces"
    folder: str | None = None  # folder under the data root (default: the class name)
    crop: str = "auto"  # full image, bbox crop, or auto (bbox when the metadata has one)
    expects: tuple[str, ...] = ()  # paths inside the folder that must exist for the data to count as present
    keypoint_points: tuple[tuple[int, ...], ...] = ()  # per category: metadata points averaged into it
    download: str = ""  # manual step shown when the data is missing (credentials, OS limits, ...)
    notes: dict = field(default_factory=dict)  # where each default comes from (documentation only)
    path: Path | None = None


@dataclass
class ReidData:
    """A dataset as plain data: the DataFrame (image_id, identity, path relative to ``root``)
    plus ground-truth keypoints (N, C, 2) in original-image pixels (NaN = missing) when known.

    An optional ``bbox`` column ([x, y, w, h] per row, NaN = whole image) means images are used
    cropped to that box: ``load_images`` crops them and ``keypoints`` are already in crop pixels."""

    name: str
    root: Path
    df: pd.DataFrame
    categories: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...]
    keypoints: np.ndarray | None = None
    fingerprint: str = ""
    info: dict = field(default_factory=dict)  # loader facts for the result record (class, folder, crop, ...)
    # (N, 2) image (or crop) sizes, filled on first use by keypoints.image_sizes: headers read once
    sizes: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        missing = {"image_id", "identity", "path"} - set(self.df.columns)
        if missing:
            raise DataError(f"dataset {self.name}: DataFrame lacks column(s) {sorted(missing)}")
        self.df = self.df.reset_index(drop=True)
        if self.keypoints is not None and self.keypoints.shape != (len(self.df), len(self.categories), 2):
            raise DataError(
                f"dataset {self.name}: keypoints shape {self.keypoints.shape} != "
                f"({len(self.df)}, {len(self.categories)}, 2)"
            )


Loader = Callable[[Card, dict, Path], ReidData]


def _load_builtin_loaders() -> None:
    from . import wildlife  # noqa: F401  (registers the "wildlife" and "folder" loaders)


LOADERS: Registry[Loader] = Registry("dataset loader", loader=_load_builtin_loaders)
# loader name -> check(card, data_root) -> None when its data is present, else one line saying
# what is missing and how to get it; loaders that need no files (synthetic) register none
DATA_CHECKS: dict[str, Callable[[Card, Path], str | None]] = {}


CROPS = ("auto", "full", "bbox")
# `--dataset all`: the paper's four datasets, in the order of its Table 1
PAPER_DATASETS = ("macaquefaces", "giraffes", "ipanda50", "ctai")


def dataset_names(name: str) -> list[str]:
    """`all` means the paper's four datasets; any other name is itself."""
    return list(PAPER_DATASETS) if name.lower() == "all" else [name]


def cards_dir() -> Path:
    return Path(os.environ.get("HARNESS_DATASETS", REPO_ROOT / "datasets"))


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "keypoint-reid-harness"))


def read_card(path: Path) -> Card:
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"dataset card {path} is not valid JSON: {exc}") from exc
    known = {f.name for f in fields(Card)} - {"path"}
    unknown = set(raw) - known
    if unknown:
        raise DataError(f"dataset card {path}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    for key in ("name", "loader"):
        if key not in raw:
            raise DataError(f"dataset card {path}: missing field {key!r}")
    raw["categories"] = tuple(raw.get("categories", ()))
    raw["flip_pairs"] = tuple(tuple(p) for p in raw.get("flip_pairs", ()))
    raw["expects"] = tuple(raw.get("expects", ()))
    raw["keypoint_points"] = tuple(tuple(int(i) for i in g) for g in raw.get("keypoint_points", ()))
    if raw.get("crop", "auto") not in CROPS:
        raise DataError(f"dataset card {path}: crop must be one of {', '.join(CROPS)}, got {raw['crop']!r}")
    if raw["keypoint_points"] and len(raw["keypoint_points"]) != len(raw["categories"]):
        raise DataError(f"dataset card {path}: keypoint_points needs one entry per category")
    return Card(**raw, path=Path(path))


def _register_cards() -> None:
    folder = cards_dir()
    paths = sorted(folder.glob("*.json"))
    references = set()  # reference annotations live next to the cards; they are not cards
    for path in paths:
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue  # read_card reports it
        if isinstance(raw, dict) and isinstance(raw.get("reference"), str):
            references.add(raw["reference"])
    for path in paths:
        if path.name in references:
            continue
        card = read_card(path)
        DATASETS.register(card.name, card.description, factory=lambda card=card: card)


DATASETS: Registry[Card] = Registry("dataset", loader=_register_cards)


def get_card(name: str) -> Card:
    """A dataset card by name: a card in datasets/, ``folder:PATH`` (identity/image.jpg), or any
    wildlife-datasets class name (e.g. ``SeaTurtleIDHeads``)."""
    try:
        return DATASETS.create(name)
    except RegistryError as exc:
        from .wildlife import adhoc_card

        card = adhoc_card(name)
        if card is None:
            raise RegistryError(f"{exc}; or a wildlife-datasets class name (e.g. SeaTurtleIDHeads), "
                                "or folder:PATH (PATH/<identity>/<image>)") from None
        return card


def data_root_or_default(data_root: Path | str | None) -> Path:
    """Where datasets live: the given folder (``~`` expanded), else the harness cache."""
    return Path(data_root).expanduser() if data_root else cache_dir()


def data_problem(card: Card, data_root: Path | None = None) -> str | None:
    """None when the card's data is present under the data root, else one line saying what is
    missing and how to get it (no loading, no side effects)."""
    LOADERS.get(card.loader)  # loads the built-in loaders (and their checks); unknown -> error
    check = DATA_CHECKS.get(card.loader)
    return check(card, data_root_or_default(data_root)) if check else None


def load_dataset(card: Card, options: dict | None = None, data_root: Path | None = None) -> ReidData:
    opts = {**card.options, **(options or {})}
    return LOADERS.create(card.loader, card, opts, data_root_or_default(data_root))


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


def _decode(path: Path, box, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """One image -> (size, size, 3) uint8 array and the (width, height) it had before resizing."""
    im = open_rgb(path, box)
    return np.asarray(im.resize((size, size), Image.BILINEAR)), im.size


def row_bboxes(data: "ReidData", rows) -> list | None:
    """The crop box of each row (None for an uncropped dataset): images and keypoints of a
    dataset with a ``bbox`` column are always used in crop pixels."""
    return [data.df["bbox"].iloc[r] for r in rows] if "bbox" in data.df else None


def open_row(data: "ReidData", row: int) -> Image.Image:
    """Row ``row``'s image as the harness uses it: RGB, cropped when the dataset is."""
    box = row_bboxes(data, [row])
    return open_rgb(data.root / data.df["path"].iloc[row], parse_bbox(box[0]) if box else None)


def load_rows(data: "ReidData", rows, size: int, desc: str = "images") -> tuple[torch.Tensor, np.ndarray]:
    """``load_images`` for rows of a dataset, cropped when the dataset is."""
    return load_images(data.root, [data.df["path"].iloc[r] for r in rows], size, desc=desc,
                       bboxes=row_bboxes(data, rows))


IMAGE_CACHE_VERSION = "v2"  # bump when the cache layout changes: old folders are then never read
IMAGE_CACHE_FILES = ("pixels.npy", "sizes.npy", "bad.npy")


def _cache_key(root: Path, paths: list[str], boxes: list, size: int) -> str:
    """Identifies the decoded pixels: the files (path, size, mtime), the crops and the image size.
    A changed image, crop or size gives another key, so a stale cache is never read."""
    h = hashlib.sha256(f"{IMAGE_CACHE_VERSION}|{Path(root).resolve()}|{size}".encode())
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
                bboxes=None, cache: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """Decode, optionally crop (``bboxes``: one [x, y, w, h] or None per path) and resize images to
    (size, size): uint8 tensor (N, 3, size, size) and the (width, height) of each image as used
    (the crop's size when cropped), needed to map keypoints into the resized image.
    A missing or unreadable image is an error naming the file."""
    pixels, sizes, _ = decode_images(root, paths, size, desc=desc, bboxes=bboxes, cache=cache, bad_images="fail")
    return pixels, sizes


def decode_images(root: Path, paths: list[str], size: int, *, desc: str = "images", bboxes=None,
                  cache: bool = True, bad_images: str = "fail") -> tuple[torch.Tensor, np.ndarray, list[int]]:
    """``load_images`` for training runs: returns also the rows whose image could not be read.

    With ``bad_images="fail"`` the first unreadable image is an error naming it; with "skip" its
    pixels stay zero and its row is returned in the list (the caller drops and reports it).
    With ``cache``, images are decoded once, in parallel threads, into a memory-mapped uint8 file
    under ``cache_dir()/images``; later runs with the same files, crops and size map that file
    instead of decoding again."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    if bad_images not in BAD_IMAGES:
        raise DataError(f"unknown bad-images policy {bad_images!r}; valid: {', '.join(BAD_IMAGES)}")
    boxes = [None] * len(paths) if bboxes is None else [parse_bbox(b) for b in bboxes]
    folder = cache_dir() / "images" / _cache_key(root, paths, boxes, size) if cache else None
    if folder is not None and all((folder / f).exists() for f in IMAGE_CACHE_FILES):
        bad = np.load(folder / "bad.npy").tolist()
        if bad and bad_images == "fail":
            raise DataError(f"cannot read image {Path(root) / paths[bad[0]]} ({len(bad)} unreadable in all); "
                            "fix or remove it, or pass --bad-images skip")
        return torch.from_numpy(np.load(folder / "pixels.npy", mmap_mode="c")), np.load(folder / "sizes.npy"), bad
    tmp = None
    if folder is not None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
        pixels = np.lib.format.open_memmap(tmp / "pixels.npy", mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))
    else:
        pixels = np.zeros((len(paths), 3, size, size), dtype=np.uint8)
    sizes = np.zeros((len(paths), 2), dtype=np.float64)
    bad: list[int] = []

    def one(i):
        try:
            return _decode(Path(root) / paths[i], boxes[i], size)
        except DataError as exc:
            if bad_images == "fail":
                raise DataError(f"{exc}; fix or remove it, or pass --bad-images skip") from exc
            return exc

    try:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            jobs = pool.map(one, range(len(paths)))
            for i, got in enumerate(tqdm(jobs, total=len(paths), desc=f"decoding {desc}", leave=False,
                                         disable=len(paths) < 2000)):
                if isinstance(got, DataError):
                    bad.append(i)
                    sizes[i] = (size, size)
                    continue
                arr, used = got
                pixels[i] = arr.transpose(2, 0, 1)
                sizes[i] = used
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if tmp is None:
        return torch.from_numpy(pixels), sizes, bad
    pixels.flush()
    del pixels
    np.save(tmp / "sizes.npy", sizes)
    np.save(tmp / "bad.npy", np.asarray(bad, dtype=np.int64))
    if folder.exists() and not all((folder / f).exists() for f in IMAGE_CACHE_FILES):
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder (older layout): replace it
    try:
        tmp.rename(folder)
    except OSError:  # another process cached the same images first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return torch.from_numpy(np.load(folder / "pixels.npy", mmap_mode="c")), np.load(folder / "sizes.npy"), bad


# ---------------------------------------------------------------- built-in loaders


def _typed_options(cls, options: dict, dataset: str) -> dict:
    """Parse string options into the types of ``cls``'s dataclass fields."""
    types = {f.name: f.default for f in fields(cls)}
    parsed = {}
    for key, value in options.items():
        if key not in types:
            raise DataError(f"dataset {dataset}: unknown option {key!r}; valid: {', '.join(sorted(types))}")
        default = types[key]
        try:
            if isinstance(default, bool):
                parsed[key] = str(value).lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
            elif isinstance(default, tuple):
                parsed[key] = tuple(float(x) for x in (value.split(",") if isinstance(value, str) else value))
            else:
                parsed[key] = type(default)(value)
        except (TypeError, ValueError) as exc:
            raise DataError(f"dataset {dataset}: option {key}={value!r} is not a valid {type(default).__name__}") from exc
    return parsed


@LOADERS.register("synthetic", "generated keypoint dataset (no downloads)")
def _load_synthetic(card: Card, options: dict, data_root: Path) -> ReidData:
    from . import synthetic

    try:
        spec = synthetic.SyntheticSpec(**_typed_options(synthetic.SyntheticSpec, options, card.name))
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    root, df, kps = synthetic.load(spec, Path(data_root))
    return ReidData(
        name=card.name,
        root=root,
        df=df,
        categories=spec.categories,
        flip_pairs=spec.flip_pairs,
        keypoints=kps,
        fingerprint=spec.fingerprint(),
    )
