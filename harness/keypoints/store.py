"""The JSON files of keypoints: sets for every image, and reference annotations of one image.

Both live in ``<cache>/keypoints/<dataset>[-<fingerprint>]/<name>.json``; a set is tagged
``"format": "harness-keypoints"``, a reference ``"format": "harness-reference"`` (the format of
datasets/macaquefaces-expert.json). Loading checks everything against the dataset and reports a
violation in one line naming the file.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.io import read_json_object, visible_json, write_json_atomic
from ..core.paths import cache_dir
from ..data.dataset import ReidData, image_sizes, row_of_image
from .sets import KeypointSet, Reference, check_inside

# A keypoint set file is JSON (docs/keypoint-pipeline.md, "Keypoint set files"):
#   {"format": "harness-keypoints", "version": 1, "name": ..., "dataset": ..., "dataset_fingerprint": ...,
#    "categories": [...], "flip_pairs": [[a, b], ...], "provenance": {...},
#    "points": {"<image_id>": {"<category>": [x, y] | null, ...}, ...}, "score": {...} | null,
#    "template_share": {"<image px>px/<patch px>px": {...}}}   (optional: added by `keypoints score`)
# Points are original-image pixels (x right, y down); a category absent from an image's entry, or
# null, is a missing point. Files live in <cache>/keypoints/<dataset>[-<fingerprint>]/<name>.json.

SET_FORMAT = "harness-keypoints"
REFERENCE_FORMAT = "harness-reference"
FORMAT_VERSION = 1


def store_dir(data: ReidData) -> Path:
    """Folder of the stored keypoint sets and references of one dataset (name + generator fingerprint)."""
    key = data.name + (f"-{data.fingerprint}" if data.fingerprint else "")
    return cache_dir() / "keypoints" / key


def entry_path(name: str, data: ReidData) -> Path:
    """Where a set or reference named ``name`` of ``data`` is (or will be) stored."""
    return store_dir(data) / f"{name}.json"


def _finite_point(value, where: str):
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise DataError(f"{where}: a point must be [x, y] numbers or null, got {value!r}")
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise DataError(f"{where}: point {value!r} is not finite")
    return x, y


def keypoint_set_to_json(kps: KeypointSet, data: ReidData, name: str, score: dict | None = None) -> dict:
    points = {}
    for image_id, row in zip(data.df["image_id"].astype(str), kps.points):
        points[image_id] = {
            c: (None if not np.isfinite(p).all() else [round(float(p[0]), 2), round(float(p[1]), 2)])
            for c, p in zip(kps.categories, row)
        }
    return {
        "format": SET_FORMAT,
        "version": FORMAT_VERSION,
        "name": name,
        "dataset": data.name,
        "dataset_fingerprint": data.fingerprint,
        "categories": list(kps.categories),
        "flip_pairs": [list(p) for p in kps.flip_pairs],
        "provenance": kps.provenance,
        "points": points,
        "score": score,
    }


def save_keypoint_set(kps: KeypointSet, data: ReidData, name: str, score: dict | None = None) -> Path:
    return write_json_atomic(entry_path(name, data), keypoint_set_to_json(kps, data, name, score))


def _categories_and_pairs(raw: dict, where: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    cats = raw.get("categories")
    if not isinstance(cats, list) or not cats or not all(isinstance(c, str) and c for c in cats):
        raise DataError(f"{where}: 'categories' must be a non-empty list of names")
    if len(set(cats)) != len(cats):
        raise DataError(f"{where}: duplicate category names in {cats}")
    pairs = raw.get("flip_pairs") or []
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise DataError(f"{where}: 'flip_pairs' must be a list of [left, right] name pairs")
    for a, b in pairs:
        if a not in cats or b not in cats:
            raise DataError(f"{where}: flip pair [{a}, {b}] names a category not in {cats}")
    return tuple(cats), tuple((str(a), str(b)) for a, b in pairs)


def load_keypoint_set(path: Path, data: ReidData, sizes: np.ndarray | None = None) -> tuple[KeypointSet, dict]:
    """Read a stored keypoint set and validate it against ``data`` (``sizes``: its images' (N, 2)
    sizes, when the caller holds them); returns the set aligned with the dataset's rows and the raw
    JSON (for its name and score)."""
    where = f"keypoint set {path}"
    raw = read_json_object(path, "keypoint set")
    if raw.get("format") == REFERENCE_FORMAT:
        raise DataError(
            f"{path} is a reference annotation of one image, not a keypoint set for every image; "
            f"propagate it first: harness keypoints propagate --dataset {data.name} --reference {Path(path).stem} ..."
        )
    if raw.get("format") != SET_FORMAT or raw.get("version") != FORMAT_VERSION:
        raise DataError(f"{where}: not a '{SET_FORMAT}' version {FORMAT_VERSION} file")
    if raw.get("dataset") not in (None, data.name):
        raise DataError(f"{where} belongs to dataset {raw.get('dataset')!r}, not {data.name!r}")
    if raw.get("dataset_fingerprint") and data.fingerprint and raw["dataset_fingerprint"] != data.fingerprint:
        raise DataError(
            f"{where} was made for another version of dataset {data.name} (fingerprint "
            f"{raw['dataset_fingerprint']} != {data.fingerprint}); check --dataset-option values or propagate again"
        )
    cats, pairs = _categories_and_pairs(raw, where)
    entries = raw.get("points")
    if not isinstance(entries, dict):
        raise DataError(f"{where}: 'points' must map image ids to {{category: [x, y]}}")
    ids = data.df["image_id"].astype(str).tolist()
    row_of = {i: r for r, i in enumerate(ids)}
    unknown = [i for i in entries if i not in row_of]
    if unknown:
        raise DataError(f"{where}: {len(unknown)} image id(s) not in dataset {data.name}, e.g. {unknown[:3]}")
    missing = [i for i in ids if i not in entries]
    if missing:
        raise DataError(f"{where}: no entry for {len(missing)} image(s) of dataset {data.name}, e.g. {missing[:3]}")
    sizes = image_sizes(data) if sizes is None else sizes
    pts = np.full((len(ids), len(cats), 2), np.nan)
    index = {c: k for k, c in enumerate(cats)}
    for image_id, per_cat in entries.items():
        row = row_of[image_id]
        if not isinstance(per_cat, dict):
            raise DataError(f"{where}: image {image_id}: expected {{category: [x, y]}}, got {type(per_cat).__name__}")
        for cat, value in per_cat.items():
            if cat not in index:
                raise DataError(f"{where}: image {image_id}: category {cat!r} is not one of {list(cats)}")
            point = _finite_point(value, f"{where}: image {image_id}, {cat}")
            if point is None:
                continue
            w, h = sizes[row]
            if not (0 <= point[0] <= w and 0 <= point[1] <= h):
                raise DataError(f"{where}: image {image_id}, {cat}: point ({point[0]:g}, {point[1]:g}) is outside "
                                f"the {w:g}x{h:g} image")
            pts[row, index[cat]] = point
    provenance = dict(raw.get("provenance") or {})
    provenance.setdefault("keypoint_set", raw.get("name") or Path(path).stem)
    return KeypointSet(cats, pairs, pts, provenance), raw


def store_score(path: Path, score: dict, key: str | None = None) -> None:
    """Keep a PCK result in the keypoint set file, under its alpha ("score": {"0.1": {...}}), or
    under ``key`` (a score against another set: "0.1 vs oracle:...")."""
    _store_entry(path, "score", key or f"{score['alpha']:g}", score)


def store_template_share(path: Path, share: dict) -> None:
    """Keep a template share in the keypoint set file, per input geometry
    ("template_share": {"64px/8px": {...}}). Files written before it existed simply lack the key."""
    _store_entry(path, "template_share", f"{share['image_size']}px/{share['patch']}px", share)


def _store_entry(path: Path, field: str, key: str, value: dict) -> None:
    raw = read_json_object(path, "keypoint set")
    entries = raw.get(field) if isinstance(raw.get(field), dict) else {}
    entries[key] = value
    raw[field] = entries
    write_json_atomic(path, raw)


def stored_names(data: ReidData) -> list[str]:
    folder = store_dir(data)
    return [p.stem for p in visible_json(folder)] if folder.is_dir() else []


def stored_path(name: str, data: ReidData) -> Path | None:
    """Path of stored keypoint set/reference ``name`` of ``data``, or an explicit ``*.json`` path."""
    if name.endswith(".json") and Path(name).expanduser().is_file():
        return Path(name).expanduser()
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    path = entry_path(name, data)
    return path if path.is_file() else None


def read_reference(path: Path, data: ReidData | None = None, sizes: np.ndarray | None = None) -> Reference:
    """Read a reference annotation (format of datasets/<card reference>, e.g. the shared
    datasets/macaquefaces-expert.json) and, given ``data``, check its image id and that its points
    lie inside (``sizes``: the (N, 2) sizes of ``data``'s images, when the caller holds them)."""
    where = f"reference annotation {path}"
    raw = read_json_object(path, "reference annotation")
    if raw.get("format") == SET_FORMAT:
        raise DataError(f"{path} is a keypoint set for every image, not a reference annotation of one image")
    image = raw.get("image")
    if not isinstance(image, dict) or "image_id" not in image:
        raise DataError(f"{where}: needs an 'image' object with an 'image_id'")
    cats, pairs = _categories_and_pairs(raw, where)
    kp = raw.get("keypoints")
    if not isinstance(kp, dict):
        raise DataError(f"{where}: 'keypoints' must map category names to [x, y]")
    extra = sorted(set(kp) - set(cats))
    if extra:
        raise DataError(f"{where}: keypoint(s) {extra} are not in categories {list(cats)}")
    absent = [c for c in cats if kp.get(c) is None]
    if absent:
        raise DataError(f"{where}: no position for categor(ies) {absent}")
    pts = np.array([_finite_point(kp[c], f"{where}: {c}") for c in cats], dtype=np.float64)
    image_id = str(image["image_id"])
    provenance = dict(raw.get("provenance") or {"source": "expert", "file": str(path)})
    ref = Reference(image_id, cats, pairs, pts, provenance)
    if data is not None:
        w, h = _image_size(data, image_id, sizes)
        for k in ("width", "height"):
            if k in image and float(image[k]) != (w if k == "width" else h):
                raise DataError(f"{where}: image {image_id} is {w:g}x{h:g} in dataset {data.name}, the file says "
                                f"{image.get('width')}x{image.get('height')}")
        check_inside(pts, w, h, where, cats)
        ref = _in_frame_of(ref, data, image.get("perturb"), (w, h), where)
    return ref


def _in_frame_of(ref: Reference, data: ReidData, frame, size, where: str) -> Reference:
    """A reference in the pixels of ``data``'s images. A file without ``image.perturb`` (an expert's
    file) is in the unperturbed image: on a perturbed dataset its points move with the reference
    image's pixels. A stored reference made on perturbed images says so (``image.perturb``: the
    perturbation's key) and is already in them; one of another perturbation is an error."""
    mine = data.perturbation.key if data.perturbation is not None else None
    if frame is not None:
        if frame != mine:
            raise DataError(f"{where} was made on images perturbed by {frame}, not on this dataset's "
                            f"({mine or 'unperturbed'}); annotate it again on this dataset")
        return ref
    if mine is None:
        return ref
    moved = data.perturbation.points(ref.points, ref.image_id, size)
    lost = [c for c, p in zip(ref.categories, moved) if not np.isfinite(p).all()]
    if lost:
        raise DataError(f"{where}: the perturbation ({data.perturbation.key}) moves {', '.join(lost)} of the reference "
                        f"image {ref.image_id} out of the frame; pass another --dataset-option perturb_seed")
    provenance = {**ref.provenance, "moved_by_perturbation": data.perturbation.key}
    return Reference(ref.image_id, ref.categories, ref.flip_pairs, moved, provenance)


def _image_size(data: ReidData, image_id, sizes: np.ndarray | None) -> np.ndarray:
    row = row_of_image(data, image_id)
    return image_sizes(data, [row])[0] if sizes is None else sizes[row]


def save_reference(ref: Reference, data: ReidData, name: str, sizes: np.ndarray | None = None) -> Path:
    return write_json_atomic(entry_path(name, data), reference_to_json(ref, data, name, sizes))


def load_reference(name: str, data: ReidData) -> Reference:
    path = stored_path(name, data)
    if path is None:
        refs = [n for n in stored_names(data) if read_json_object(entry_path(n, data), "file").get("format") == REFERENCE_FORMAT]
        raise DataError(
            f"no reference annotation {name!r} for dataset {data.name}; stored: {', '.join(refs) or 'none'} "
            f"(make one with `harness keypoints annotate`, or pass a JSON file path)"
        )
    return read_reference(path, data)


def reference_to_json(ref: Reference, data: ReidData | None = None, name: str | None = None,
                      sizes: np.ndarray | None = None) -> dict:
    """A reference annotation in the format of datasets/<card reference> (plus its image's facts)."""
    out = {"format": REFERENCE_FORMAT, "version": FORMAT_VERSION, "name": name,
           "dataset": data.name if data is not None else None,
           "image": {"image_id": ref.image_id},
           "categories": list(ref.categories), "flip_pairs": [list(p) for p in ref.flip_pairs],
           "keypoints": {c: [round(float(x), 2), round(float(y), 2)] for c, (x, y) in zip(ref.categories, ref.points)},
           "provenance": ref.provenance}
    if data is not None:
        row = row_of_image(data, ref.image_id)
        w, h = image_sizes(data, [row])[0] if sizes is None else sizes[row]
        out["image"].update(identity=str(data.df["identity"].iloc[row]), path=str(data.df["path"].iloc[row]),
                            width=int(w), height=int(h))
        if data.perturbation is not None:  # its points are in the perturbed image (read_reference)
            out["image"]["perturb"] = data.perturbation.key
    return out
