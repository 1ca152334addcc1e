"""Real datasets: the wildlife-datasets classes (pinned 1.0.8, MIT).

A card with ``"loader": "wildlife"`` names a wildlife-datasets class (``wildlife_class``). Its data lives in
``<data root>/<folder>`` (folder defaults to the class name, as in WildlifeDatasets' examples),
is fetched by that class's own download code (``harness data download``) and is catalogued by the
class itself; this module only turns the class's DataFrame into a ``ReidData``:

- identities as strings; the class's unknown identity dropped (option ``unknown=keep`` keeps it;
  the splits skip it either way);
- the metadata's flat keypoint list [x1, y1, x2, y2, ...] -> (N, C, 2) in the card's categories
  (``keypoint_points`` averages several metadata points into one category); Inf/NaN -> missing;
- ``crop``: ``full`` image, ``bbox`` crop (keypoints shifted into crop pixels), or ``auto``.

Any other wildlife-datasets class works by its name. wildlife_datasets is imported lazily: it
imports Hugging Face ``datasets`` (slow).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import DataError
from .cards import CROPS, DATASETS, Card
from .dataset import LOADERS, Loader, ReidData, content_fingerprint
from .images import crop_box, parse_bbox

UNKNOWN_MODES = ("drop", "keep")
DOWNLOAD_DOCS = "https://wildlifedatasets.github.io/wildlife-datasets/downloads"


# ---------------------------------------------------------------- names -> cards


def wildlife_classes() -> dict[str, type]:
    """Every dataset class wildlife-datasets exports, keyed by lower-case name."""
    import wildlife_datasets.datasets as wd

    out = {}
    for name in dir(wd):
        obj = getattr(wd, name)
        if isinstance(obj, type) and issubclass(obj, wd.WildlifeDataset) and isinstance(getattr(obj, "summary", None), dict):
            out[name.lower()] = obj
    return out


def wildlife_class(name: str) -> type:
    cls = wildlife_classes().get(name.lower())
    if cls is None:
        raise DataError(f"{name!r} is not a wildlife-datasets class")
    return cls


def dataset_folder(card: Card, data_root: Path) -> Path:
    return Path(data_root).expanduser() / (card.folder or card.wildlife_class or card.name)


def manual_step(card: Card, folder: Path) -> str:
    if card.download:
        return card.download.replace("<folder>", str(folder))
    try:
        from wildlife_datasets.datasets import DownloadKaggle

        if issubclass(wildlife_class(card.wildlife_class), DownloadKaggle):
            return "needs Kaggle API credentials (~/.kaggle/kaggle.json) and the dataset's terms accepted on kaggle.com"
    except DataError:
        pass
    return f"if the download fails, see {DOWNLOAD_DOCS}#{(card.wildlife_class or card.name).lower()}"


def missing_message(card: Card, data_root: Path) -> str | None:
    """None when the data is present, else one line: dataset, expected folder, how to get it."""
    folder = dataset_folder(card, data_root)
    if not folder.is_dir():
        what = f"folder {folder} does not exist"
    else:
        lacking = [p for p in card.expects if not (folder / p).exists()]
        if lacking:
            what = f"{folder} lacks {', '.join(lacking)}"
        elif not card.expects and not any(folder.iterdir()):
            what = f"folder {folder} is empty"
        else:
            return None
    return (f"dataset {card.name} ({card.wildlife_class}) not found: {what}; get it with "
            f"`harness data download {card.name} --data-root {data_root}` ({manual_step(card, folder)})")


def download(card: Card, data_root: Path, force: bool = False) -> Path:
    """Fetch a dataset with wildlife-datasets' own download + extract code (``get_data``)."""
    folder = dataset_folder(card, data_root)
    if not force and missing_message(card, data_root) is None:
        return folder
    cls = wildlife_class(card.wildlife_class)
    try:
        cls.get_data(str(folder), force=True)
    except Exception as exc:  # network, quota, credentials, archive errors: all the user's to fix
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"download of dataset {card.name} ({card.wildlife_class}) into {folder} failed: {reason}; {manual_step(card, folder)}"
        ) from exc
    problem = missing_message(card, data_root)
    if problem:
        raise DataError(f"download of dataset {card.name} finished but the data is incomplete: {problem}")
    return folder


# ---------------------------------------------------------------- wildlife loader


def parse_options(card: Card, options: dict, allowed: dict) -> dict:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(f"dataset {card.name}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}")
    out = {**allowed, **options}
    for key, valid in (("crop", CROPS), ("unknown", UNKNOWN_MODES)):
        if key in allowed and out[key] not in valid:
            raise DataError(f"dataset {card.name}: option {key}={out[key]!r}; valid: {', '.join(valid)}")
    return out


def flat_points(values) -> np.ndarray:
    """Per-row flat keypoint lists [x1, y1, x2, y2, ...] (or NaN) -> (N, P, 2); Inf/NaN -> NaN."""
    rows = []
    for v in values:
        if v is None or (np.isscalar(v) and pd.isna(v)):
            rows.append(None)
            continue
        a = np.asarray(v, dtype=np.float64).ravel()
        if a.size % 2:
            raise DataError(f"keypoint list of odd length {a.size}: {list(a)[:6]}...")
        rows.append(a.reshape(-1, 2))
    n_points = max((len(r) for r in rows if r is not None), default=0)
    out = np.full((len(rows), n_points, 2), np.nan)
    for i, r in enumerate(rows):
        if r is not None:
            out[i, : len(r)] = r
    out[~np.isfinite(out).all(axis=-1)] = np.nan
    return out


def card_keypoints(card: Card, points: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """(N, P, 2) metadata points -> the card's categories (N, C, 2); a category built from several
    points is their mean (missing if any of them is)."""
    if not card.categories:
        return tuple(f"point_{i + 1}" for i in range(points.shape[1])), points
    groups = card.keypoint_points or tuple((i,) for i in range(len(card.categories)))
    top = max(i for g in groups for i in g)
    if top >= points.shape[1]:
        raise DataError(
            f"dataset {card.name}: the card maps categories onto {top + 1} metadata points, "
            f"but the metadata has {points.shape[1]}"
        )
    out = np.stack([points[:, list(g)].mean(axis=1) for g in groups], axis=1)
    return card.categories, out


def _ipanda_eye_values(label_file: Path) -> np.ndarray:
    """IPanda50 eye labels (labelme JSON) -> 8 values like wildlife-datasets: right eye, left eye."""
    out = np.full(8, np.nan)
    for shape in json.loads(label_file.read_text())["shapes"]:
        slot = {"right_eye": 0, "left_eye": 4}.get(shape.get("label"))
        if slot is not None:
            out[slot : slot + 4] = np.reshape(shape["points"], 4)
    return out


def _ipanda_renamed_eyes(df: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """wildlife-datasets renames IPanda50 images with non-ASCII names on the first load (and records
    it in changes.csv); on later loads it looks for their eye labels under the new name and finds
    none. Re-attach those labels by the original file name, so every load gives the same keypoints."""
    changes = folder / "changes.csv"
    if not changes.exists() or "keypoints" not in df:
        return df
    renamed = set(pd.read_csv(changes)["id_old"].astype(str))
    lost = df["image_id"].astype(str).isin(renamed) & df["keypoints"].apply(lambda v: bool(np.isnan(np.asarray(v, float)).all()))
    if not lost.any():
        return df
    df = df.copy()
    index: dict[str, Path] = {}
    for ident in {Path(p).parts[1] for p in df.loc[lost, "path"]}:
        for label in (folder / "iPanda50-eyes-labels" / ident).glob("*.json"):
            for ext in (".jpg", ".jpeg", ".png"):
                index[hashlib.md5((label.stem + ext).encode()).hexdigest()[:16]] = label
    for i in np.flatnonzero(lost.to_numpy()):
        label = index.get(str(df["image_id"].iat[i]))
        if label is not None:
            df.at[df.index[i], "keypoints"] = list(_ipanda_eye_values(label))
    return df


POSTPROCESS = {"IPanda50": _ipanda_renamed_eyes}


def load_wildlife(card: Card, options: dict, data_root: Path) -> ReidData:
    opts = parse_options(card, options, {"crop": card.crop, "unknown": "drop"})
    problem = missing_message(card, data_root)
    if problem:
        raise DataError(problem)
    folder = dataset_folder(card, data_root)
    cls = wildlife_class(card.wildlife_class)
    df = _read_class(card, cls, folder)
    if cls.__name__ in POSTPROCESS:
        df = POSTPROCESS[cls.__name__](df, folder)
    df["identity"] = df["identity"].astype(str)

    points = flat_points(df["keypoints"]) if "keypoints" in df else None
    categories, keypoints = card_keypoints(card, points) if points is not None else (card.categories, None)
    crop = opts["crop"]
    if crop == "auto":
        crop = "bbox" if "bbox" in df else "full"
    if crop == "bbox":
        _crop_to_boxes(card, cls, df, keypoints)
    columns = ["image_id", "identity", "path"] + (["bbox"] if crop == "bbox" else []) + (["date"] if "date" in df else [])

    unknown = df["identity"] == str(cls.unknown_name)
    n_unknown = int(unknown.sum())
    if opts["unknown"] == "drop" and n_unknown:
        keep = ~unknown.to_numpy()
        df = df[keep]
        keypoints = keypoints[keep] if keypoints is not None else None
    df = df[columns].reset_index(drop=True)
    return ReidData(
        name=card.name,
        root=folder,
        df=df,
        categories=tuple(categories),
        flip_pairs=card.flip_pairs if card.categories else (),
        keypoints=keypoints,
        fingerprint=content_fingerprint(df, f"crop={crop}"),
        info={"loader": "wildlife", "class": cls.__name__, "folder": str(folder), "crop": crop,
              "unknown_identity": str(cls.unknown_name), "unknown_images": n_unknown, "unknown": opts["unknown"]},
    )


def _read_class(card: Card, cls, folder: Path) -> pd.DataFrame:
    """The wildlife-datasets class's own DataFrame (a copy); its failures become one DataError."""
    printed = io.StringIO()
    marker = folder / "changes.csv"  # IPanda50 renames non-ASCII files on its first load ...
    renamed_before = marker.exists()
    try:
        with contextlib.redirect_stdout(printed):
            try:
                ds = cls(root=str(folder))
            except Exception:
                # ... and then fails its own file check on that load (1.0.8 renames the files but not
                # its DataFrame); the second load reads the renamed files. Retry exactly that case.
                if cls.__name__ != "IPanda50" or renamed_before or not marker.exists():
                    raise
                ds = cls(root=str(folder))
    except Exception as exc:  # the class's own checks (missing files, bad names, bad columns)
        said = " | ".join(printed.getvalue().strip().splitlines()[-3:])
        raise DataError(
            f"dataset {card.name}: wildlife-datasets {cls.__name__} cannot read {folder}: {exc}"
            + (f" ({said})" if said else "")
        ) from exc
    return ds.df.copy()


def _crop_to_boxes(card: Card, cls, df: pd.DataFrame, keypoints: np.ndarray | None) -> None:
    """crop=bbox: parse the boxes into df["bbox"] and move keypoints into crop pixels (in place)."""
    if "bbox" not in df:
        raise DataError(f"dataset {card.name}: crop=bbox, but {cls.__name__}'s metadata has no bbox; use crop=full")
    boxes = [parse_bbox(b) for b in df["bbox"]]
    df["bbox"] = [list(b) if b is not None else np.nan for b in boxes]
    if keypoints is not None:
        for i, box in enumerate(boxes):
            if box is not None:
                left, top, _, _ = crop_box(box)
                keypoints[i] -= (left, top)


@LOADERS.register("wildlife", "a wildlife-datasets class (pinned 1.0.8), read from <data root>/<class name>")
class WildlifeLoader(Loader):
    def load(self, card: Card, options: dict, data_root: Path) -> ReidData:
        return load_wildlife(card, options, data_root)

    def missing(self, card: Card, data_root: Path) -> str | None:
        return missing_message(card, data_root)

    def location(self, card: Card, data_root: Path) -> str:
        return str(dataset_folder(card, data_root))

    def adhoc_card(self, name: str) -> Card | None:
        """The card of a wildlife-datasets class: its own card when one names it, else a bare one."""
        cls = wildlife_classes().get(name.lower())
        if cls is None:
            return None
        for entry in DATASETS:
            card = entry.factory()
            if card.wildlife_class and card.wildlife_class.lower() == name.lower():
                return card
        return Card(name=cls.__name__, loader="wildlife", wildlife_class=cls.__name__,
                    description=f"wildlife-datasets {cls.__name__} (no card: no keypoint categories)")

    def download(self, card: Card, data_root: Path, force: bool = False) -> Path:
        return download(card, data_root, force)
