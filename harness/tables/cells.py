"""Cells of the declared tables: a table (rows x columns) in a setting -> each cell's overrides or
the reason it cannot run, and its resolved run config.

A cell's run config is resolved exactly as `harness run` resolves it: defaults < the dataset
card's < the method's < the cell's (setting, table base, row, column) < nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from ..config import RunConfig
from ..data.loaders import get_card
from ..engine.run import resolve_run
from ..keypoints.recipes import is_recipe
from ..method import METHODS
from .settings import CARD_TEMPLATE, SETTINGS, Setting, get_setting, replace_recipe


class Axis:
    """One row or column: its label, its real overrides, and per setting (keyword = the setting's
    name, e.g. ``small=...``) either its own overrides (replacing the translated ones) or the reason
    it cannot run there. ``cite``: whose published number the row shows."""

    def __init__(self, label: str, overrides: dict | None = None, cite: str = "paper", **per_setting):
        unknown = sorted(set(per_setting) - {s.name for s in SETTINGS})
        if unknown:
            raise ValueError(f"axis {label!r}: unknown setting(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(s.name for s in SETTINGS)}")
        self.label, self.overrides, self.cite = label, dict(overrides or {}), cite
        self.per_setting = dict(per_setting)

    def setting(self, name: str) -> dict | str | None:
        return self.per_setting.get(name)


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    rows: tuple[Axis, ...]
    cols: tuple[Axis, ...]
    paper: tuple[tuple[float | None, ...], ...]  # the published top-1 (%) per row, per column
    base: dict = field(default_factory=dict)
    settings_base: dict = field(default_factory=dict)  # setting name -> overrides of every cell, after translation
    not_applicable: tuple[tuple[str, str, str], ...] = ()  # (row, column, why) in every setting
    comparisons: tuple[tuple[str, str], ...] = ()  # ("row|col", "row|col") pairs the table exists for
    note: str = ""
    plot: dict | None = None  # {"xlabel": ..., "axis": "cols" | "rows"}: a PNG of accuracy along an ordered axis
    metric: str = "top1"  # the registered metric its cells and comparisons report
    # False: the cells' overrides are whole in every setting (no translation, no setting common part):
    # a table on the built-in synthetic data needs no stand-in; a string in settings_base is then
    # the reason none of its cells runs in that setting
    translated: bool = True
    order: int = 1000  # where it stands among the tables (leaderboard, report, `ablate all`); built-ins 10-120
    aliases: tuple[str, ...] = ()  # other names `harness ablate` accepts, e.g. "6" and "7" for "6-7"

    def __post_init__(self):
        if len(self.paper) != len(self.rows) or any(len(line) != len(self.cols) for line in self.paper):
            raise ValueError(f"table {self.id}: the published numbers must be a {len(self.rows)} x {len(self.cols)} grid")


def _merge(*parts: dict) -> dict:
    """Later parts win; ``dataset_options`` merge key by key; a None value unsets an earlier one
    (e.g. ``"folds": None`` for the single closed split)."""
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
    setting: str
    overrides: dict | None  # None: cannot run in this setting
    reason: str | None = None  # why it cannot run

    @property
    def key(self) -> str:
        return f"{self.row}|{self.col}"


def _cell_overrides(table: Table, row: Axis, col: Axis, setting: Setting) -> dict | str:
    """The cell's overrides in ``setting``, or the reason it cannot run there."""
    for r, c, why in table.not_applicable:
        if (r, c) == (row.label, col.label):
            return why
    own = [axis.setting(setting.cells_of) for axis in (row, col)]
    base = table.settings_base.get(setting.cells_of, {})
    reasons = [part for part in (*own, base) if isinstance(part, str)]
    if reasons:
        return reasons[0]
    if not table.translated:
        merged = _merge(table.base, base, *(part if part is not None else axis.overrides
                                            for axis, part in zip((row, col), own)))
    else:
        real = _merge(table.base, *(axis.overrides for axis, part in zip((row, col), own) if part is None))
        translated = setting.translate(real)
        if isinstance(translated, str):
            return translated
        merged = _merge(setting.common, translated, base, *(part for part in own if part is not None))
    merged = _merge(merged, setting.pins)
    return {key: value for key, value in merged.items() if value is not None}


def cells(table: Table, setting: str = "real") -> list[Cell]:
    """The table's cells in declaration order (rows, then columns), with their overrides."""
    chosen = get_setting(setting)
    out = []
    for row, paper_row in zip(table.rows, table.paper):
        for col, paper in zip(table.cols, paper_row):
            got = _cell_overrides(table, row, col, chosen)
            if isinstance(got, str):
                out.append(Cell(table.id, row.label, col.label, paper, setting, None, got))
            else:
                out.append(Cell(table.id, row.label, col.label, paper, setting, got))
    return out


@dataclass(frozen=True)
class Retarget:
    """A declared table run on another dataset (`harness ablate TABLE --retarget DATASET`): every
    cell's dataset and dataset options replaced by these, and, when given, the keypoints of every
    cell that reads them (a table's sources may not exist for the new data)."""

    dataset: str
    options: tuple[tuple[str, str], ...] = ()
    keypoints: str | None = None


def retargeted(cell: Cell, target: Retarget | None) -> Cell:
    """``cell`` on ``target``'s dataset; the cell's own dataset options belong to its old dataset's
    loader, so they go (a cell that cannot run stays as it is)."""
    if target is None or cell.overrides is None:
        return cell
    overrides = {k: v for k, v in cell.overrides.items() if k != "dataset_options"}
    overrides.update(dataset=target.dataset, dataset_options=dict(target.options))
    if target.keypoints is not None and METHODS.create(overrides.get("method", "ckpe")).point_source == "keypoints":
        overrides["keypoints"] = target.keypoints
    return replace(cell, overrides=overrides)


def resolve_cell(cell: Cell, seed: int = 0, fold: int | None = None) -> RunConfig:
    """The cell's RunConfig, resolved exactly as `harness run` resolves its options; the
    fixed-template placeholder becomes the card's reference source placed as a template."""
    given = dict(cell.overrides)
    method = METHODS.create(given.get("method", "ckpe"))
    card = get_card(given.get("dataset", "synthetic"))
    if given.get("keypoints") == CARD_TEMPLATE:
        recipe = card.defaults.get("keypoints", "")
        if not is_recipe(recipe):
            raise ValueError(f"table {cell.table}: {card.name} has no reference recipe to place as a template")
        given["keypoints"] = replace_recipe(recipe, "template")
    given.update(dataset=card.name, seed=seed, method=given.get("method", "ckpe"), fold=fold)
    given["dataset_options"] = {str(k): str(v) for k, v in (given.get("dataset_options") or {}).items()}
    cfg = resolve_run(card, method, cell=given).config
    return cfg


def command_line(cfg: RunConfig) -> str:
    """The `harness run` command that reproduces a resolved config: --method, --dataset, --seed and
    every option whose value differs from what `harness run` would resolve without it."""
    base = resolve_run(get_card(cfg.dataset), METHODS.create(cfg.method),
                       given={"method": cfg.method, "dataset": cfg.dataset}).config
    parts = ["harness run", f"--method {cfg.method}", f"--dataset {cfg.dataset}", f"--seed {cfg.seed}"]
    for f in fields(cfg):
        value, default = getattr(cfg, f.name), getattr(base, f.name)
        if f.name in ("method", "dataset", "seed", "device") or value == default or value is None:
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
