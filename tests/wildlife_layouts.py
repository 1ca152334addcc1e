"""Tiny stand-ins for the paper's four datasets, laid out exactly as wildlife-datasets 1.0.8 finds
them after its own download + extract (folder names, metadata files and their formats), filled with
small generated images. ``make_all(root)`` builds ``root/<ClassName>/...`` for all four.

What each mimics (from the public sources):
- MacaqueFaces: MacaqueFaces_ImageInfo.csv (FileName,Path,ID,Group,Category,DateTaken; Path like
  "/Good/Dan", dates dd-mm-yyyy) + MacaqueFaces/<Category>/<ID>/Macaque_Face_<n>.jpg, 100x100.
  Row 20 is MacaqueFaces/Good/Dan/Macaque_Face_21.jpg, the image of the expert reference.
- Giraffes: the wget mirror pbil.univ-lyon1.fr/pub/datasets/miele2021/, identities are the
  folders under clusters/; images elsewhere in the mirror are not part of the dataset.
- IPanda50: iPanda50-images/<NN_name>/<file>.jpg, iPanda50-split/splitK/splitK_{train,test}.txt,
  iPanda50-eyes-labels/<NN_name>/<stem>.json (labelme shapes "right_eye"/"left_eye", two points
  each); one file name with non-ASCII characters (the real data has such names).
- CTai: chimpanzee_faces-master/datasets_cropped_chimpanzee_faces/data_CTai/annotations_ctai.txt
  ("Filename face_images/... Name X Age N Age_Group G Gender S RightEye x y LeftEye x y MouthCenter
  x y LeftEarlobe x y RightEarlobe x y ", Inf = missing) + face_images/*.png; the names include
  ones wildlife-datasets fixes ("Freddy" -> "Fredy") and "Adult" (-> unknown).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(200, 40, 40), (40, 160, 40), (40, 60, 200), (200, 180, 30), (150, 40, 170), (30, 170, 170)]


def _image(path: Path, size: tuple[int, int], identity: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    img = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = COLOURS[identity % len(COLOURS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def make_macaquefaces(root: Path) -> Path:
    folder = Path(root) / "MacaqueFaces"
    rows = []
    plan = [("Dan", "G58", [("Contrast", 10), ("Expression", 10), ("Good", 3)]),
            ("Judd", "G46", [("Good", 4)]),
            ("Abel", "G12", [("Good", 2), ("Obscured", 2)]),
            ("Bree", "G12", [("Good", 2), ("Rotated", 2)]),
            ("Cora", "G30", [("Random", 4)])]
    n = 0
    for k, (ident, group, parts) in enumerate(plan):
        for category, count in parts:
            for _ in range(count):
                n += 1
                name = f"Macaque_Face_{n}.jpg"
                # consecutive images share a day, as frames of one session do (the same-day rule has work)
                day = f"{1 + n // 2 % 28:02d}-0{1 + n // 2 % 9}-2014"
                rows.append(f"{name},/{category}/{ident},{ident},{group},{category},{day}")
                _image(folder / "MacaqueFaces" / category / ident / name, (100, 100), k, n)
    (folder / "MacaqueFaces_ImageInfo.csv").write_text("FileName,Path,ID,Group,Category,DateTaken\n" + "\n".join(rows) + "\n")
    (folder / "already_downloaded").touch()
    return folder


def make_giraffes(root: Path) -> Path:
    folder = Path(root) / "Giraffes"
    mirror = folder / "pbil.univ-lyon1.fr" / "pub" / "datasets" / "miele2021"
    n = 0
    for k, ident in enumerate(["1", "2", "3", "4", "5"]):
        for j in range(4):
            n += 1
            date = "None" if n == 3 else f"2016{1 + n // 2 % 9:02d}{10 + n // 2:02d}"  # pairs share a day too
            _image(mirror / "clusters" / ident / f"img_{date}_{n:04d}.jpg", (48, 64), k, 100 + n)
    for j in range(2):  # raw photographs outside clusters/: not part of the dataset
        _image(mirror / "images" / f"raw_2016010{j + 1}_{j:04d}.jpg", (64, 48), 0, 200 + j)
    (mirror / "README").write_text("giraffe photo-identification data (fixture)\n")
    (folder / "already_downloaded").touch()
    return folder


IPANDA = ["00_aibang", "01_aoliao", "02_baolan", "03_bingbing", "49_yuanrun"]
IPANDA_ODD = "49_20150403-094000_幼年园_园润_1890.jpg"


def _labelme(points: dict, file_name: str, size: tuple[int, int]) -> dict:
    shapes = [{"label": label, "points": pts, "group_id": None, "shape_type": "line", "flags": {}}
              for label, pts in points.items()]
    return {"version": "4.2.9", "flags": {}, "shapes": shapes, "imagePath": file_name, "imageData": None,
            "imageHeight": size[1], "imageWidth": size[0]}


def make_ipanda50(root: Path) -> tuple[Path, dict]:
    """Returns the folder and {file name: (right eye centre, left eye centre)} of the labels written."""
    folder = Path(root) / "IPanda50"
    size = (64, 56)
    written = {}
    files = []
    for k, ident in enumerate(IPANDA):
        prefix = ident[:2]
        names = [f"{prefix}_v{j + 1:03d}_f{5 * (j + 1):06d}.jpg" for j in range(4)]
        if ident == "49_yuanrun":
            names[-1] = IPANDA_ODD
        for j, name in enumerate(names):
            _image(folder / "iPanda50-images" / ident / name, size, k, 300 + 10 * k + j)
            files.append(name)
            right = [[10.0 + j, 20.0], [18.0 + j, 18.0]]
            left = [[40.0, 21.0 + j], [48.0, 19.0 + j]]
            if j == 0:
                labels = {"right_eye": right, "left_eye": left}
            elif j == 1:
                labels = {"left_eye": left, "right_eye": right}  # order differs between files
            elif j == 2 and ident != "49_yuanrun":
                labels = {"right_eye": right}  # one eye hidden
            else:
                labels = {"right_eye": right, "left_eye": left} if name == IPANDA_ODD else None
            if labels is not None:
                path = folder / "iPanda50-eyes-labels" / ident / (Path(name).stem + ".json")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(_labelme(labels, name, size), ensure_ascii=False))
                centre = lambda pts: tuple(np.mean(pts, axis=0)) if pts else (np.nan, np.nan)  # noqa: E731
                written[name] = (centre(labels.get("right_eye")), centre(labels.get("left_eye")))
    for s in range(2):
        split = folder / "iPanda50-split" / f"split{s}"
        split.mkdir(parents=True, exist_ok=True)
        (split / f"split{s}_train.txt").write_text("\n".join(files[s::2]) + "\n", encoding="utf-8")
        (split / f"split{s}_test.txt").write_text("\n".join(files[1 - s::2]) + "\n", encoding="utf-8")
    return folder, written


CTAI_ROWS = [  # name, age, group, gender, (RightEye, LeftEye, MouthCenter, LeftEarlobe, RightEarlobe)
    ("Fredy", 32, "Adult", "Male", ((10, 12), (30, 13), (20, 30), (40, 25), None)),
    ("Fredy", 32, "Adult", "Male", ((11, 12), (31, 12), None, None, (3, 20))),
    ("Freddy", 32, "Adult", "Male", ((9, 11), (29, 14), (19, 31), None, None)),
    ("Victor", 3, "Infant", "Male", ((12, 10), None, (22, 28), (41, 24), None)),
    ("Victor", 3, "Infant", "Male", ((10, 10), (30, 11), (21, 29), None, None)),
    ("Victor", 3, "Infant", "Male", (None, (29, 12), (20, 27), None, (2, 22))),
    ("Akouba", 20, "Adult", "Female", ((10, 13), (28, 13), (19, 33), None, None)),
    ("Akrouba", 20, "Adult", "Female", ((11, 14), (29, 15), (18, 32), (40, 26), None)),
    ("Akrouba", 20, "Adult", "Female", ((12, 12), (30, 13), (20, 30), None, None)),
    ("Lilou", 12, "Juvenile", "Female", ((10, 12), (30, 12), (20, 30), None, None)),
    ("Liliou", 12, "Juvenile", "Female", ((10, 11), (31, 12), (21, 31), None, (1, 21))),
    ("Lilou", 12, "Juvenile", "Female", ((9, 12), (29, 12), (19, 29), None, None)),
    ("Woodstock", 8, "Juvenile", "Male", ((10, 12), (30, 12), (20, 30), (41, 23), None)),
    ("Woodstiock", 8, "Juvenile", "Male", ((11, 12), (31, 13), (21, 30), None, None)),
    ("Woodstock", 8, "Juvenile", "Male", ((10, 13), (30, 14), (20, 31), None, None)),
    ("Adult", 25, "Adult", "Female", ((10, 12), (30, 12), (20, 30), None, None)),
    ("Adult", 25, "Adult", "Female", ((11, 12), (31, 12), (20, 29), None, None)),
]
CTAI_FIXES = {"Freddy": "Fredy", "Akouba": "Akrouba", "Liliou": "Lilou", "Woodstiock": "Woodstock"}


def make_ctai(root: Path) -> Path:
    folder = Path(root) / "CTai"
    data = folder / "chimpanzee_faces-master" / "datasets_cropped_chimpanzee_faces" / "data_CTai"
    lines = []
    names = sorted({CTAI_FIXES.get(r[0], r[0]) for r in CTAI_ROWS})
    for i, (name, age, group, gender, pts) in enumerate(CTAI_ROWS):
        image = f"face_images/img-id{i + 1}-object-1.png"
        _image(data / image, (48, 40), names.index(CTAI_FIXES.get(name, name)), 400 + i)
        coords = " ".join(
            f"{label} {'Inf Inf' if p is None else f'{p[0]} {p[1]}'}"
            for label, p in zip(("RightEye", "LeftEye", "MouthCenter", "LeftEarlobe", "RightEarlobe"), pts)
        )
        lines.append(f"Filename {image} Name {name} Age {age} Age_Group {group} Gender {gender} {coords} ")
    (data / "annotations_ctai.txt").write_text("\n".join(lines) + "\n")
    (folder / "already_downloaded").touch()
    return folder


def make_all(root: Path) -> Path:
    make_macaquefaces(root)
    make_giraffes(root)
    make_ipanda50(root)
    make_ctai(root)
    return Path(root)
