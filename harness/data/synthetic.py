"""The built-in synthetic keypoint dataset.

Each identity is a code: one colour (from a small shared palette) per body part. An image shows
the parts as small discs at their keypoints, under a random pose (translation, scale, rotation,
mirror) on a cluttered background that also contains distractor discs in the same palette.
What tells identities apart is *which colour sits at which part*; pose and clutter carry no
identity. A model that is told where each part is (CKPE) can read the code directly; one that
must find the parts among the distractors from their geometry alone (plain ViT) has a much
harder problem. Everything is generated deterministically from a seed.

With ``scramble`` the keypoints become *necessary* by construction: every identity wears the same
``parts`` colours (identities are permutations of them) and the parts sit at independent random
places, so an image's pixels have the same distribution whatever its identity. Only a model told
which part is where (CKPE) can read the code; a plain ViT, KPE (told where parts are, not which)
and random points can do no better than chance.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ..core.errors import DataError
from .cards import Card
from .dataset import LOADERS, Loader, ReidData

# Part name -> canonical position (x, y) in units of the face radius; +x is the viewer's right.
# Left/right are the animal's own sides, so in a frontal view its left eye is on the viewer's right.
PARTS: dict[str, tuple[float, float]] = {
    "left_eye": (0.40, -0.25),
    "right_eye": (-0.40, -0.25),
    "nose": (0.0, 0.15),
    "mouth": (0.0, 0.55),
    "left_ear": (0.75, -0.75),
    "right_ear": (-0.75, -0.75),
    "left_cheek": (0.70, 0.25),
    "right_cheek": (-0.70, 0.25),
    "forehead": (0.0, -0.70),
    "chin": (0.0, 0.95),
}

PALETTE = np.array(
    [
        (230, 25, 75),  # red
        (60, 180, 75),  # green
        (255, 225, 25),  # yellow
        (0, 130, 200),  # blue
        (245, 130, 48),  # orange
        (145, 30, 180),  # purple
        (70, 240, 240),  # cyan
        (240, 50, 230),  # magenta
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class SyntheticSpec:
    identities: int = 50
    images_per_identity: int = 16
    image_size: int = 64
    parts: int = 4
    colours: int = 6
    distractors: int = 4
    clutter: int = 6
    max_rotation: float = 30.0
    scale_range: tuple[float, float] = (0.8, 1.2)
    mirror: bool = True
    noise: float = 8.0
    seed: int = 0
    # Give every part an identity-independent marker (grey-level rings whose pattern depends only
    # on the part category) around its identity-coloured disc: parts become findable by local
    # appearance (as real eyes or noses are), while identity stays in the colour code alone.
    part_markers: bool = False
    # Capture days per identity (0: no dates). Image j of an identity is taken on day
    # j * sessions // images_per_identity, and the frames of one day share their lighting and
    # background level, as frames of one recording session do: same-day images are near-duplicates
    # in a way other-day ones are not (what `--exclude same-day` removes from the gallery).
    sessions: int = 0
    # keypoints necessary: identities are permutations of one colour set, parts at random places
    scramble: bool = False

    def __post_init__(self):
        if not 1 <= self.parts <= len(PARTS):
            raise ValueError(f"synthetic parts must be in 1..{len(PARTS)}, got {self.parts}")
        if not 2 <= self.colours <= len(PALETTE):
            raise ValueError(f"synthetic colours must be in 2..{len(PALETTE)}, got {self.colours}")
        if self.scramble:
            self._check_scramble()
        elif self.colours**self.parts < self.identities:
            raise ValueError(
                f"synthetic: {self.colours}^{self.parts} colour codes cannot give {self.identities} distinct identities"
            )
        if self.identities < 2 or self.images_per_identity < 2:
            raise ValueError("synthetic needs at least 2 identities and 2 images per identity")
        if self.image_size < 16:
            raise ValueError("synthetic image_size must be >= 16")
        if not 0 <= self.sessions <= self.images_per_identity:
            raise ValueError(f"synthetic sessions must be in 0..images_per_identity ({self.images_per_identity}), "
                             f"got {self.sessions}")

    def _check_scramble(self) -> None:
        if self.colours < self.parts:
            raise ValueError(f"synthetic scramble gives every part its own colour: colours ({self.colours}) must be "
                             f">= parts ({self.parts})")
        if math.factorial(self.parts) < self.identities:
            raise ValueError(f"synthetic scramble: {self.parts}! orderings of the colours cannot give "
                             f"{self.identities} distinct identities; use more parts")
        if self.part_markers:
            raise ValueError("synthetic scramble and part_markers exclude each other: markers would tell the parts "
                             "apart without keypoints")

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(list(PARTS)[: self.parts])

    @property
    def flip_pairs(self) -> tuple[tuple[str, str], ...]:
        if self.scramble:  # parts at random places have no sides: a mirror image keeps each part's name
            return ()
        cats = set(self.categories)
        pairs = []
        for name in self.categories:
            if name.startswith("left_") and "right_" + name[5:] in cats:
                pairs.append((name, "right_" + name[5:]))
        return tuple(pairs)

    def fingerprint(self) -> str:
        d = asdict(self)
        for name in ("part_markers", "sessions", "scramble"):  # datasets made before an option existed keep their fingerprint
            if not d[name]:
                d.pop(name)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def identity_codes(spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """Distinct colour codes, one row of ``parts`` palette indices per identity (with ``scramble``:
    distinct orderings of the palette's first ``parts`` colours)."""
    if spec.scramble:
        orders = np.array(list(itertools.permutations(range(spec.parts))), dtype=np.int64)
        return orders[rng.choice(len(orders), size=spec.identities, replace=False)]
    total = spec.colours**spec.parts
    flat = rng.choice(total, size=spec.identities, replace=False)
    digits = np.zeros((spec.identities, spec.parts), dtype=np.int64)
    for p in range(spec.parts):
        digits[:, p] = flat % spec.colours
        flat = flat // spec.colours
    return digits


def render(spec: SyntheticSpec, code: np.ndarray, rng: np.random.Generator,
           light: np.ndarray | None = None) -> tuple[Image.Image, np.ndarray]:
    """One image of an identity with the given colour code; returns the image and (parts, 2) keypoints.
    ``light``: the background's RGB level (one per capture day), else drawn for this image."""
    size = spec.image_size
    if light is None:
        light = rng.uniform(70, 150) + rng.normal(0, 12, size=3)
    arr = np.full((size, size, 3), 1.0, dtype=np.float64) * light
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)

    def colour(rgb):
        return tuple(int(c) for c in np.clip(rgb + rng.normal(0, 10, 3), 0, 255))

    for _ in range(spec.clutter):  # clutter: rectangles and lines of arbitrary dull colours
        x0, y0 = rng.uniform(0, size, 2)
        w, h = rng.uniform(size * 0.05, size * 0.35, 2)
        c = colour(rng.uniform(40, 200, 3))
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=c)
        else:
            draw.line([x0, y0, x0 + w * rng.choice([-1, 1]), y0 + h], fill=c, width=max(1, size // 32))

    scale = rng.uniform(*spec.scale_range)
    face_r = 0.28 * size * scale
    disc_r = max(1.5, 0.055 * size * scale)
    for _ in range(spec.distractors):  # distractors: discs of palette colours anywhere
        x, y = rng.uniform(disc_r, size - disc_r, 2)
        c = colour(PALETTE[rng.integers(spec.colours)])
        draw.ellipse([x - disc_r, y - disc_r, x + disc_r, y + disc_r], fill=c)

    if spec.scramble:
        points = scattered(spec.parts, size, disc_r, rng)
    else:
        points = face_points(spec, rng, size, face_r)
    if spec.part_markers:  # all markers first, so no marker hides another part's colour
        for p, (x, y) in enumerate(points):
            draw_marker(draw, p, x, y, disc_r)
    for p, (x, y) in enumerate(points):
        c = colour(PALETTE[code[p]])
        draw.ellipse([x - disc_r, y - disc_r, x + disc_r, y + disc_r], fill=c)

    arr = np.asarray(img, dtype=np.float64) + rng.normal(0, spec.noise, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), points


def face_points(spec: SyntheticSpec, rng: np.random.Generator, size: int, face_r: float) -> np.ndarray:
    """(parts, 2) keypoints at the face's canonical places under a random pose."""
    theta = math.radians(rng.uniform(-spec.max_rotation, spec.max_rotation))
    mirror = -1.0 if (spec.mirror and rng.random() < 0.5) else 1.0
    reach = face_r * 1.25
    cx = rng.uniform(reach, size - reach) if size - 2 * reach > 0 else size / 2
    cy = rng.uniform(reach, size - reach) if size - 2 * reach > 0 else size / 2
    cos, sin = math.cos(theta), math.sin(theta)
    points = np.zeros((spec.parts, 2))
    for p, name in enumerate(spec.categories):
        u, v = PARTS[name]
        u *= mirror
        points[p] = (cx + face_r * (cos * u - sin * v), cy + face_r * (sin * u + cos * v))
    return points


def scattered(parts: int, size: int, disc_r: float, rng: np.random.Generator, tries: int = 200) -> np.ndarray:
    """(parts, 2) keypoints at independent uniform places, no two discs overlapping (so every colour
    stays visible and none is hidden more often at one part than another)."""
    points = np.zeros((parts, 2))
    for p in range(parts):
        for _ in range(tries):
            points[p] = rng.uniform(disc_r, size - disc_r, 2)
            if p == 0 or np.min(np.linalg.norm(points[:p] - points[p], axis=1)) > 2.2 * disc_r:
                break
        else:
            raise ValueError(f"synthetic scramble: {parts} discs do not fit apart in {size} px; use a larger image")
    return points


# Marker of part category p: rings (outermost first) as (radius in disc radii, grey level).
# Grey levels 0 and 255 are outside the palette, so markers never look like an identity colour.
MARKERS: tuple[tuple[tuple[float, int], ...], ...] = (
    ((2.2, 0),),  # black ring
    ((2.2, 255),),  # white ring
    ((2.2, 255), (1.6, 0)),  # black inside, white outside
    ((2.2, 0), (1.6, 255)),  # white inside, black outside
    ((2.2, 0), (1.8, 255), (1.4, 0)),
    ((2.2, 255), (1.8, 0), (1.4, 255)),
    ((2.2, 128), (1.6, 0)),
    ((2.2, 128), (1.6, 255)),
    ((2.2, 0), (1.6, 128)),
    ((2.2, 255), (1.6, 128)),
)


def draw_marker(draw: ImageDraw.ImageDraw, category: int, x: float, y: float, disc_r: float) -> None:
    for radius, grey in MARKERS[category]:
        r = radius * disc_r
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(grey, grey, grey))


def generate(spec: SyntheticSpec, cache_dir: Path) -> Path:
    """Generate the dataset into ``cache_dir/synthetic-<fingerprint>`` (idempotent) and return it."""
    root = Path(cache_dir) / f"synthetic-{spec.fingerprint()}"
    meta = root / "metadata.csv"
    if meta.exists():
        return root
    tmp = root.with_name(root.name + f".tmp{np.random.SeedSequence().entropy % 10**8}")
    rng = np.random.default_rng(spec.seed)
    codes = identity_codes(spec, rng)
    rows = []
    image_id = 0
    for i, code in enumerate(codes):
        identity = f"id_{i:03d}"
        (tmp / "images" / identity).mkdir(parents=True, exist_ok=True)
        lights = [rng.uniform(70, 150) + rng.normal(0, 12, size=3) for _ in range(spec.sessions)]
        for j in range(spec.images_per_identity):
            day = j * spec.sessions // spec.images_per_identity
            img, pts = render(spec, code, rng, lights[day] if spec.sessions else None)
            rel = f"images/{identity}/{j:03d}.png"
            img.save(tmp / rel)
            row = {"image_id": image_id, "identity": identity, "path": rel, "keypoints": json.dumps(pts.round(2).tolist())}
            if spec.sessions:
                row["date"] = (date(2024, 1, 1) + timedelta(days=day)).isoformat()
            rows.append(row)
            image_id += 1
    pd.DataFrame(rows).to_csv(tmp / "metadata.csv", index=False)
    (tmp / "spec.json").write_text(json.dumps({**asdict(spec), "categories": spec.categories}, indent=1))
    try:
        tmp.rename(root)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def load(spec: SyntheticSpec, cache_dir: Path) -> tuple[Path, pd.DataFrame, np.ndarray]:
    root = generate(spec, cache_dir)
    df = pd.read_csv(root / "metadata.csv")
    kps = np.array([json.loads(k) for k in df["keypoints"]], dtype=np.float64).reshape(len(df), spec.parts, 2)
    return root, df.drop(columns=["keypoints"]), kps


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
class SyntheticLoader(Loader):
    def has_dates(self, card: Card, options: dict) -> bool | None:
        try:  # its images are dated only with the sessions option
            return int({**card.options, **options}.get("sessions", 0)) > 0
        except (TypeError, ValueError):
            return None  # a bad value: load() names it

    def load(self, card: Card, options: dict, data_root: Path) -> ReidData:
        try:
            spec = SyntheticSpec(**_typed_options(SyntheticSpec, options, card.name))
        except ValueError as exc:
            raise DataError(str(exc)) from exc
        root, df, kps = load(spec, Path(data_root))
        return ReidData(name=card.name, root=root, df=df, categories=spec.categories, flip_pairs=spec.flip_pairs,
                        keypoints=kps, fingerprint=spec.fingerprint())
