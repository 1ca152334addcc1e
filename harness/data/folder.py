"""Plain folders of identities: ``--dataset folder:PATH`` reads PATH/<identity>/<image>."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.errors import DataError
from .cards import Card
from .dataset import LOADERS, Loader, ReidData, content_fingerprint

FOLDER_PREFIX = "folder:"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(path: Path):
    """(identity, relative path) of every image in path/<identity>/, in order, lazily."""
    for ident in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for image in sorted(ident.iterdir()):
            if image.is_file() and image.suffix.lower() in IMAGE_EXTS:
                yield ident.name, f"{ident.name}/{image.name}"


@LOADERS.register("folder", "a folder of <identity>/<image> files (--dataset folder:PATH)")
class FolderLoader(Loader):
    def adhoc_card(self, name: str) -> Card | None:
        if not name.startswith(FOLDER_PREFIX):
            return None
        path = name[len(FOLDER_PREFIX):]
        if not path:
            raise DataError("--dataset folder:PATH needs a path, e.g. folder:data/my_animals")
        return Card(name=name, loader="folder", description=f"identity folders under {path}", options={"path": path})

    def has_dates(self, card: Card, options: dict) -> bool | None:
        return False  # identity folders of image files carry no capture date

    def location(self, card: Card, data_root: Path) -> str:
        return str(Path(card.options["path"]).expanduser())

    def missing(self, card: Card, data_root: Path) -> str | None:
        path = Path(card.options["path"]).expanduser()
        if not path.is_dir():
            return f"dataset {card.name}: folder {path} does not exist (expected {path}/<identity>/<image>.jpg)"
        if next(image_files(path), None) is None:
            return f"dataset {card.name}: no images in {path}/<identity>/ (expected {path}/<identity>/<image>.jpg)"
        return None

    def load(self, card: Card, options: dict, data_root: Path) -> ReidData:
        unknown = sorted(set(options) - {"path"})
        if unknown:
            raise DataError(f"dataset {card.name}: unknown option(s) {', '.join(unknown)}; valid: (none)")
        problem = self.missing(card, data_root)
        if problem:
            raise DataError(problem)
        path = Path(card.options["path"]).expanduser()
        rows = list(image_files(path))  # one walk of the tree (the check above stops at the first image)
        df = pd.DataFrame({"image_id": [r[1] for r in rows], "identity": [r[0] for r in rows],
                           "path": [r[1] for r in rows]})
        return ReidData(name=card.name, root=path, df=df, categories=(), flip_pairs=(), keypoints=None,
                        fingerprint=content_fingerprint(df), info={"loader": "folder", "folder": str(path.resolve())})
