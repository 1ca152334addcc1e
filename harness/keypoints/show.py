"""A PNG grid of images with their keypoints, coloured by category, with a legend: to look at
propagation quality."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..data.dataset import ReidData, image_sizes, open_row
from .sets import KeypointSet

# distinct colours (Tableau 10) for categories; a white outline keeps them visible on any image
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def category_colour(k: int) -> tuple[int, int, int]:
    if k < len(COLOURS):
        return COLOURS[k]
    rng = np.random.default_rng(k)
    return tuple(int(c) for c in rng.integers(40, 230, 3))


def pick_rows(n_images: int, n: int) -> list[int]:
    """n rows spread evenly over the dataset (rows are grouped by identity, so this shows many)."""
    n = max(1, min(n, n_images))
    return sorted(set(np.linspace(0, n_images - 1, n).round().astype(int).tolist()))


def draw_grid(data: ReidData, kps: KeypointSet, out: Path, n: int = 16, cell: int = 192, title: str = "",
              blank: bool = False) -> Path:
    """A grid of ``n`` images spread over the dataset with their keypoints. ``blank`` draws the
    points on grey instead of the images: a picture of the coordinates alone, for datasets whose
    licence forbids redistributing their images."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    rows = pick_rows(len(data.df), n)
    cols = int(np.ceil(np.sqrt(len(rows))))
    nrows = int(np.ceil(len(rows) / cols))
    line = 16
    legend_h = line * (int(np.ceil(len(kps.categories) / 3)) + 1) + 8
    canvas = Image.new("RGB", (cols * cell, nrows * (cell + line) + legend_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    r = max(3, cell // 40)
    for i, row in enumerate(rows):
        x0, y0 = (i % cols) * cell, (i // cols) * (cell + line)
        if blank:
            w, h = image_sizes(data, [row])[0]
            draw.rectangle([x0, y0 + line, x0 + cell - 1, y0 + line + cell - 1], fill=(200, 200, 200),
                           outline=(255, 255, 255))
        else:
            im = open_row(data, row)  # cropped like the keypoints when the dataset is
            w, h = im.size
            canvas.paste(im.resize((cell, cell), Image.BILINEAR), (x0, y0 + line))
        draw.text((x0 + 3, y0 + 2), f"{data.df['image_id'].iloc[row]} | {data.df['identity'].iloc[row]}", fill=(0, 0, 0))
        for k, (px, py) in enumerate(kps.points[row]):
            if not (np.isfinite(px) and np.isfinite(py)):
                continue
            cx, cy = x0 + px * cell / w, y0 + line + py * cell / h
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=category_colour(k), outline=(255, 255, 255), width=2)
    ly = nrows * (cell + line) + 4
    if title:
        draw.text((4, ly), title, fill=(0, 0, 0))
    for k, name in enumerate(kps.categories):
        lx = 4 + (k % 3) * (canvas.width // 3)
        yy = ly + line * (1 + k // 3)
        draw.ellipse([lx, yy + 2, lx + 10, yy + 12], fill=category_colour(k), outline=(0, 0, 0))
        draw.text((lx + 16, yy + 1), name, fill=(0, 0, 0))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
