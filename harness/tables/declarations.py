"""The paper's Tables 1-7, declared once as data: rows x columns -> run-config overrides, plus the
paper's published number per cell. `harness ablate` sweeps these declarations and
`harness leaderboard` renders them; adding a table or a row is editing the data below only.

A cell's run config is resolved exactly as `harness run` resolves it: the dataset card's
defaults < the method's defaults < the cell's overrides (table `base`, then row, then column).

Tiny mode (`--tiny`, the CI smoke) maps every cell to a synthetic counterpart: the table's
`tiny_base`, then the row's and column's `tiny` overrides (when an axis entry gives none, its
real overrides pass through `tiny_overrides`, which maps datasets and ViT sizes to synthetic ones
and drops keypoint recipes). A `tiny` given as a string is the reason the cell cannot run in tiny
mode: it is rendered "not run" with that reason, never filled in.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..config import RunConfig, resolve
from ..data.loaders import get_card
from ..keypoints.testbed import TINY_SD
from ..methods import METHODS

# --- tiny mode: the synthetic stand-ins -------------------------------------------------------
# every tiny cell: seconds on a CPU core (ViT "mini" stands in for the default ViT-large)
TINY_COMMON = {
    "dataset": "synthetic", "backbone": "mini", "image_size": 32, "epochs": 12, "batch_size": 16,
    "dataset_options": {"identities": 20, "images_per_identity": 8, "image_size": 32},
}
# the paper's ViT sizes -> three random-init test-bed ViTs of increasing size
TINY_BACKBONES = {"base": "nano", "large": "mini", "huge": "micro"}
# the paper's datasets -> synthetic variants (different generation seeds)
TINY_DATASETS = {"macaquefaces": 1, "giraffes": 2, "ipanda50": 3, "ctai": 4}
# the `sd` featurizer on the tiny random SD folder, small and with one noise draw
TINY_SD_OPTS = f"model={TINY_SD},size=64,ensemble=1"
NOT_OFFLINE_GPT4 = "needs the OpenAI API (GPT-4 picks the keypoints); no offline stand-in"


@dataclass(frozen=True)
class Axis:
    """One row or column: its label, its run-config overrides, and its tiny-mode overrides
    (None: derived from `overrides`; a string: why this entry cannot run in tiny mode)."""

    label: str
    overrides: dict = field(default_factory=dict)
    tiny: dict | str | None = None


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    rows: tuple[Axis, ...]
    cols: tuple[Axis, ...]
    paper: tuple[tuple[float | None, ...], ...]  # the paper's top-1 (%) per row, per column, in declaration order
    base: dict = field(default_factory=dict)
    tiny_base: dict = field(default_factory=dict)
    note: str = ""
    plot: dict | None = None  # {"x": "cols", "xlabel": ...}: a PNG of accuracy vs the column value

    def __post_init__(self):
        if len(self.paper) != len(self.rows) or any(len(line) != len(self.cols) for line in self.paper):
            raise ValueError(f"table {self.id}: the paper's numbers must be a {len(self.rows)} x {len(self.cols)} grid")


VIT_SIZES = ("base", "large", "huge")
T1_COLS = ("MacaqueFaces", "Giraffe", "IPandas", "CTai")
T3_STEPS = (0, 50, 100, 150, 200, 250, 300, 500, 1000)
T5_KS = (1, 3, 6, 10)
VIT_ROWS = tuple(Axis(size, {"backbone": size}) for size in VIT_SIZES)  # Tables 4, 5, 6-7
TEN_PARTS = {"dataset_options": {"parts": "10"}}  # tiny Tables 5 and 6-7: room for K up to 10

TABLES: tuple[Table, ...] = (
    Table(
        id="1", title="Main comparison (top-1 %, disjoint 80/20 by individuals)",
        rows=(Axis("WildLife Dataset", {"method": "wildlife-baseline"},
                   tiny={"method": "wildlife-baseline", "pretrained": False}),
              Axis("ours (KPE)", {"method": "kpe"}), Axis("ours (CKPE)", {"method": "ckpe"})),
        cols=tuple(Axis(label, {"dataset": card}) for label, card in
                   zip(T1_COLS, ("macaquefaces", "giraffes", "ipanda50", "ctai"))),
        paper=((93.4, 41.0, 69.3, 59.2), (99.1, 89.6, 88.2, 81.6), (99.6, 91.1, 90.3, 83.4)),
        note="Keypoints are each card's default (expert@sd, gpt4@sd or the dataset's own). The paper's baseline "
             "row most likely used WildlifeDatasets' closed-set protocol; here every row uses the same disjoint "
             "split. Tiny: the baseline is a frozen random-init mini ViT (no pretrained weights offline).",
    ),
    Table(
        id="2", title="Keypoint source of the reference image (CKPE, ViT-large, MacaqueFaces)",
        rows=(Axis("CKPE"),),
        cols=(Axis("Grad-CAM (ResNet)", {"keypoints": "gradcam-resnet@sd"},
                   tiny={"keypoints": f"gradcam-resnet@sd:{TINY_SD_OPTS},ref_model=tiny-random-resnet"}),
              Axis("Grad-CAM (ViT)", {"keypoints": "gradcam-vit@sd"},
                   tiny={"keypoints": f"gradcam-vit@sd:{TINY_SD_OPTS},ref_model=tiny-random-vit"}),
              Axis("Expert", {"keypoints": "expert@sd"}, tiny={"keypoints": f"ground-truth@sd:{TINY_SD_OPTS}"}),
              Axis("GPT-4", {"keypoints": "gpt4@sd"}, tiny=NOT_OFFLINE_GPT4)),
        paper=((96.9, 97.7, 99.2, 99.2),),
        base={"method": "ckpe", "dataset": "macaquefaces"},
        tiny_base={"dataset_options": {"part_markers": "true"}},
        note="Tiny: the synthetic ground truth of the reference image stands in for the expert; Grad-CAM runs "
             "on tiny random-init timm classifiers (tiny-random-resnet / tiny-random-vit) instead of ImageNet "
             "ones; keypoints are propagated with a tiny random-init SD (real pipelines, random weights).",
    ),
    Table(
        id="3", title="Diffusion timestep of the propagation features (CKPE, ViT-large, MacaqueFaces)",
        rows=(Axis("CKPE"),),
        cols=tuple(Axis(str(t), {"keypoints": f"expert@sd:timestep={min(t, 999)}"},
                        tiny={"keypoints": f"ground-truth@sd:{TINY_SD_OPTS},timestep={min(t, 999)}"})
                   for t in T3_STEPS),
        paper=((98.9, 98.9, 98.2, 98.9, 99.2, 99.2, 99.2, 97.2, 96.9),),
        base={"method": "ckpe", "dataset": "macaquefaces"},
        tiny_base={"dataset_options": {"part_markers": "true"}},
        note="The paper's GPT-4 keypoints are replaced by the expert reference (Table 2: both 99.2). The "
             "scheduler's last timestep is 999: column 1000 runs t = 999. Tiny: synthetic ground truth of the "
             "reference image, tiny random-init SD.",
        plot={"xlabel": "diffusion timestep t"},
    ),
    Table(
        id="4", title="ViT scale (MacaqueFaces)",
        rows=VIT_ROWS,
        cols=(Axis("without keypoints", {"method": "vit"}), Axis("KPE", {"method": "kpe"}),
              Axis("CKPE", {"method": "ckpe"})),
        paper=((92.5, 98.5, 97.3), (96.9, 98.9, 99.2), (98.9, 99.1, 99.6)),
        base={"dataset": "macaquefaces"},
        note="Tiny: base/large/huge = random-init nano/mini/micro ViTs, synthetic ground-truth keypoints.",
    ),
    Table(
        id="5", title="Number of keypoints (CKPE, MacaqueFaces)",
        rows=VIT_ROWS,
        cols=tuple(Axis(str(k), {"keypoints": f"gpt4@sd:k={k}"}, tiny={"num_keypoints": k}) for k in T5_KS),
        paper=((97.3, 97.3, 97.8, 96.9), (97.6, 99.2, 98.9, 97.3), (98.8, 99.6, 99.2, 98.3)),
        base={"method": "ckpe", "dataset": "macaquefaces"},
        tiny_base=TEN_PARTS,
        note="GPT-4 chooses K keypoints on the reference image (recipe gpt4@sd:k=K). Tiny: a synthetic variant "
             "with 10 parts, the first K ground-truth categories.",
        plot={"xlabel": "number of keypoints K"},
    ),
    Table(
        id="6-7", title="Keypoints vs random points, 1 then 3 points (MacaqueFaces)",
        rows=VIT_ROWS,
        cols=(Axis("random (1)", {"method": "random", "num_keypoints": 1}, tiny={"method": "random", "num_keypoints": 1}),
              Axis("keypoint (1)", {"method": "ckpe", "keypoints": "gpt4@sd:k=1"}, tiny={"method": "ckpe", "num_keypoints": 1}),
              Axis("random (3)", {"method": "random", "num_keypoints": 3}, tiny={"method": "random", "num_keypoints": 3}),
              Axis("keypoint (3)", {"method": "ckpe", "keypoints": "gpt4@sd:k=3"}, tiny={"method": "ckpe", "num_keypoints": 3})),
        paper=((95.6, 97.3, 96.9, 98.5), (96.2, 97.6, 98.8, 99.2), (98.8, 98.8, 99.2, 99.6)),
        base={"dataset": "macaquefaces"},
        tiny_base=TEN_PARTS,
        note="Keypoint cells are the same experiments as Table 5's K = 1 and 3 (run once, shown in both). "
             "Tiny: the same synthetic variant as Table 5.",
    ),
)


def table_ids() -> list[str]:
    return [t.id for t in TABLES]


def get_table(table_id: str) -> Table:
    aliases = {"6": "6-7", "7": "6-7"}
    key = aliases.get(table_id, table_id)
    for t in TABLES:
        if t.id == key:
            return t
    raise ValueError(f"unknown table {table_id!r}; valid: {', '.join(table_ids())}, all")


def tiny_overrides(overrides: dict) -> dict:
    """Map real overrides to tiny ones: datasets -> synthetic variants, ViT sizes -> test-bed ViTs,
    keypoint recipes dropped (the synthetic card's ground truth is used)."""
    out = {}
    for key, value in overrides.items():
        if key == "dataset" and value in TINY_DATASETS:
            out["dataset_options"] = {"seed": str(TINY_DATASETS[value])}
        elif key == "backbone":
            out["backbone"] = TINY_BACKBONES.get(value, value)
        elif key == "keypoints":
            continue
        else:
            out[key] = value
    return out


def _merge(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if key == "dataset_options":
                out[key] = {**out.get(key, {}), **value}
            else:
                out[key] = value
    return out


@dataclass(frozen=True)
class Cell:
    table: str
    row: str
    col: str
    paper: float | None
    overrides: dict | None  # None: cannot run in this mode
    reason: str | None = None  # why it cannot run


def cells(table: Table, tiny: bool = False) -> list[Cell]:
    """The table's cells in declaration order (rows, then columns), with their overrides."""
    out = []
    base = tiny_overrides(table.base) if tiny else None
    for row, paper_row in zip(table.rows, table.paper):
        for col, paper in zip(table.cols, paper_row):
            if not tiny:
                out.append(Cell(table.id, row.label, col.label, paper, _merge(table.base, row.overrides, col.overrides)))
                continue
            parts, reason = [], None
            for axis in (row, col):
                t = axis.tiny if axis.tiny is not None else tiny_overrides(axis.overrides)
                if isinstance(t, str):
                    reason = t
                else:
                    parts.append(t)
            if reason:
                out.append(Cell(table.id, row.label, col.label, paper, None, reason))
            else:
                out.append(Cell(table.id, row.label, col.label, paper, _merge(TINY_COMMON, base, table.tiny_base, *parts)))
    return out


def resolve_cell(cell: Cell, seed: int = 0) -> RunConfig:
    """The cell's RunConfig, resolved exactly as `harness run` resolves its options."""
    given = {k: v for k, v in cell.overrides.items()}
    method = METHODS.create(given.get("method", "ckpe"))
    card = get_card(given.get("dataset", "synthetic"))
    given = {**given, "dataset": card.name, "seed": seed, "method": given.get("method", "ckpe")}
    given["dataset_options"] = {str(k): str(v) for k, v in (given.get("dataset_options") or {}).items()}
    return resolve(card.defaults, given, method.defaults)


def command_line(cfg: RunConfig) -> str:
    """The `harness run` command that reproduces a resolved config: --method, --dataset, --seed and
    every option whose value differs from what `harness run` would resolve without it."""
    base = resolve(get_card(cfg.dataset).defaults, {"method": cfg.method, "dataset": cfg.dataset},
                   METHODS.create(cfg.method).defaults)
    parts = ["harness run", f"--method {cfg.method}", f"--dataset {cfg.dataset}", f"--seed {cfg.seed}"]
    for f in fields(cfg):
        value, default = getattr(cfg, f.name), getattr(base, f.name)
        if f.name in ("method", "dataset", "seed", "device") or value == default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name == "dataset_options":
            base_opts = dict(default)
            parts += [f"--dataset-option {k}={v}" for k, v in value if base_opts.get(k) != v]
        elif isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)
