"""Records -> table cells: which run records belong to which declared cell, in which setting.

A record belongs to a cell when its config, normalised to what applied (``Method.applied``),
equals the cell's resolved config up to the fields that tell a cell's runs apart (seed, device,
fold). Records of a cell under another protocol, split seed or number of folds, and records whose
split fingerprint differs from the one the table's other results on that data and fold share, are
refused with a reason, never averaged in.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..core.errors import ResultsError
from ..evaluation import statistics
from ..engine.records import load_records, read_result
from ..method import METHODS
from .cells import Cell, Table, cells, resolve_cell
from .declarations import get_table
from .settings import SETTINGS

SPLIT_FIELDS = ("protocol", "split_seed", "folds")  # a mismatch here is refused, with a reason


def normalised(config: dict) -> RunConfig:
    """A record's config as the current code resolves it: later fields at their defaults, and what
    did not apply to its method set to None."""
    cfg = RunConfig.from_dict(config)
    return METHODS.create(cfg.method).applied(cfg) if cfg.method in METHODS else cfg


def cell_key(cfg: RunConfig) -> str:
    return json.dumps({k: v for k, v in cfg.experiment().items() if k not in SPLIT_FIELDS}, sort_keys=True)


@dataclass
class CellResult:
    cell: Cell
    cfg: RunConfig | None = None
    records: list = field(default_factory=list)  # (file, record)

    @property
    def recs(self) -> list[dict]:
        return [r for _, r in self.records]

    def summary(self, metric: str = "top1") -> statistics.Summary | None:
        return statistics.summarize(self.recs, metric) if self.records else None

    @property
    def chance(self) -> float | None:
        values = [r["metrics"]["chance_top1"] for r in self.recs if "chance_top1" in r["metrics"]]
        return sum(values) / len(values) if values else None


@dataclass
class TableResult:
    table: Table
    cells: dict = field(default_factory=dict)  # (setting, row, col) -> CellResult
    refused: list = field(default_factory=list)  # (setting, file, reason)
    other_split: list = field(default_factory=list)  # the refusals for protocol, split seed or folds alone
    pools: dict = field(default_factory=dict)  # (setting, metric, design_of) -> statistics.Pool | None, by collect_all

    def cell(self, setting: str, key: str) -> CellResult | None:
        row, _, col = key.partition("|")
        return self.cells.get((setting, row, col))


def index_records(records: list[tuple[str, dict]]) -> dict[str, list]:
    by_key: dict[str, list] = {}
    for name, rec in records:
        try:
            key = cell_key(normalised(rec["config"]))
        except (TypeError, ValueError):  # a record of a config this code cannot read: it matches no cell
            continue
        by_key.setdefault(key, []).append((name, rec))
    return by_key


def collect(table: Table, by_key: dict[str, list]) -> TableResult:
    out = TableResult(table)
    for setting in SETTINGS:
        for cell in cells(table, setting.name):
            result = CellResult(cell)
            out.cells[(setting.name, cell.row, cell.col)] = result
            if cell.overrides is None:
                continue
            result.cfg = resolve_cell(cell)
            for name, rec in by_key.get(cell_key(result.cfg), []):
                cfg = normalised(rec["config"])
                wrong = [f for f in SPLIT_FIELDS if getattr(cfg, f) != getattr(result.cfg, f)]
                if wrong:
                    got = ", ".join(f"{f} {getattr(cfg, f)}" for f in wrong)
                    want = ", ".join(f"{f} {getattr(result.cfg, f)}" for f in wrong)
                    out.other_split.append((setting.name, name, f"{got}; this table uses {want}"))
                else:
                    result.records.append((name, rec))
        _refuse_other_splits(out, setting.name)
    # a record another cell of the table accepted (e.g. the closed-protocol row's) is no refusal
    mine = averaged_in([out])
    out.refused += [item for item in out.other_split if item[:2] not in mine]
    return out


def averaged_in(results: list[TableResult]) -> set[tuple[str, str]]:
    return {(s, name) for result in results for (s, _, _), cell in result.cells.items() for name, _ in cell.records}


def collect_all(tables: list[Table], by_key: dict[str, list]) -> list[TableResult]:
    """Every table, where a record under another protocol or split that some other table averages
    in (Table 1's records seen from the open-set table) is that table's, not a refusal here."""
    results = [collect(table, by_key) for table in tables]
    used = averaged_in(results)
    for result in results:
        elsewhere = {item for item in result.other_split if item[:2] in used}
        result.refused = [item for item in result.refused if item not in elsewhere]
    # fitted once per family of settings that share cells, then filed under each member's name
    pools = {(name, metric, design): pool for metric in {result.table.metric for result in results}
             for family in setting_families()
             for design, pool in family_pools(results, family, metric).items() for name in family}
    for result in results:
        result.pools = pools
    return results


def _refuse_other_splits(out: TableResult, setting: str) -> None:
    """One split per data set and fold within a table: the fingerprint most results share wins."""
    mine = [r for (s, _, _), r in out.cells.items() if s == setting and r.cfg is not None]
    votes: dict[str, Counter] = {}
    for result in mine:
        for _, rec in result.records:
            votes.setdefault(_data_key(result.cfg, rec), Counter())[rec["split"]["fingerprint"]] += 1
    for result in mine:
        keep = []
        for name, rec in result.records:
            count = votes[_data_key(result.cfg, rec)]
            best = sorted(count.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            if rec["split"]["fingerprint"] == best:
                keep.append((name, rec))
            else:
                out.refused.append((setting, name, f"split fingerprint {rec['split']['fingerprint'][:8]} differs from "
                                    f"{best[:8]}, the split of this table's other results on {result.cfg.dataset}"))
        result.records = keep


def _data_key(cfg: RunConfig, rec: dict) -> str:
    fold = rec.get("split", {}).get("fold", (rec.get("config") or {}).get("fold"))
    return json.dumps([cfg.dataset, list(cfg.dataset_options), cfg.protocol, cfg.split_seed, cfg.folds, fold])


def with_records(result: TableResult, setting: str) -> list[tuple[str, str, CellResult, CellResult]]:
    """The table's declared comparisons (A key, B key, A cell, B cell) with records on both sides."""
    out = []
    for a_key, b_key in result.table.comparisons:
        a, b = result.cell(setting, a_key), result.cell(setting, b_key)
        if a is not None and b is not None and a.records and b.records:
            out.append((a_key, b_key, a, b))
    return out


def comparison_id(a: CellResult, b: CellResult) -> tuple:
    """What a comparison is, whichever table declares it: the record files of its two sides."""
    return tuple(sorted(name for name, _ in a.records)), tuple(sorted(name for name, _ in b.records))


def first_declared(results: list[TableResult], setting: str) -> dict[tuple, tuple[str, str, str]]:
    """comparison_id -> (table id, A key, B key) of the first table (declaration order) that
    declares that comparison in the setting: a later table repeating its cells points there."""
    first: dict = {}
    for result in results:
        for a_key, b_key, a, b in with_records(result, setting):
            first.setdefault(comparison_id(a, b), (result.table.id, a_key, b_key))
    return first


def first_answered(results: list[TableResult]) -> dict[str, dict[tuple, tuple[str, str, str, str]]]:
    """setting name -> comparison_id -> (table id, A key, B key, setting) where that comparison is
    answered: the first table that declares it, in the first setting (declaration order) of its
    family (``setting_families``) that has it. A comparison without keypoints on either side holds
    the same records in small and small-zero-channel, so it is answered once, under small."""
    out: dict[str, dict] = {}
    for family in setting_families():
        seen: dict = {}
        for name in family:
            mine = {key: (*origin, name) for key, origin in first_declared(results, name).items()}
            out[name] = {key: seen.get(key, origin) for key, origin in mine.items()}
            for key, origin in mine.items():
                seen.setdefault(key, origin)
    return out


def design_of(a: CellResult, b: CellResult) -> str | None:
    """The data set a comparison's records ran on and the optimizer that trained them, or None when
    its two sides differ in either: a pool's ratios describe one design, and runs that train (AdamW
    on the control) and runs that stay at chance (the paper's SGD on a random-init micro ViT) do not
    share how fold and seed move a result. Dataset options stay out of the key: MacaqueFaces' pool
    spans aligned and perturbed faces, on both of which every model trains (docs/statistics.md)."""
    if a.cfg is None or b.cfg is None:
        return None
    designs = {design_key(cell.cfg) for cell in (a, b)}
    return designs.pop() if len(designs) == 1 else None


def design_key(cfg: RunConfig) -> str:
    """"<data set>, <optimizer>": the name a design's pool and its A/A lines go by."""
    return f"{cfg.dataset}, {cfg.optimizer}"


def distinct_comparisons(results: list[TableResult], setting: str, metric: str) -> list[tuple[str, tuple, str, np.ndarray]]:
    """(table id, comparison_id, design (``design_of``), difference grid) of the setting's comparisons in
    ``metric`` that a pool may hold: both sides trained, each distinct comparison once (under the
    first table that declares it)."""
    first = first_declared(results, setting)
    out = []
    for result in results:
        if result.table.metric != metric:
            continue
        for a_key, b_key, a, b in with_records(result, setting):
            key, design = comparison_id(a, b), design_of(a, b)
            if first[key] == (result.table.id, a_key, b_key) and design and statistics.pooled_with(a.recs, b.recs):
                out.append((result.table.id, key, design, statistics.difference_grid(a.recs, b.recs, metric).values))
    return out


def distinct_grids(results: list[TableResult], setting: str, metric: str) -> dict[tuple[str, str], list]:
    """(table id, design) -> the difference grids of its distinct trained comparisons in ``metric``."""
    out: dict[tuple[str, str], list] = {}
    for table_id, _, design, grid in distinct_comparisons(results, setting, metric):
        out.setdefault((table_id, design), []).append(grid)
    return out


def setting_families() -> list[list[str]]:
    """The settings grouped by the cells they run (``Setting.like``): one variance pool per group."""
    groups: dict[str, list[str]] = {}
    for s in SETTINGS:
        groups.setdefault(s.cells_of, []).append(s.name)
    return list(groups.values())  # each in declaration order: its first member answers shared comparisons


def family_pools(results: list[TableResult], family: list[str], metric: str) -> dict[str, statistics.Pool | None]:
    """design (data set, optimizer: ``design_of``) -> the variance ratios pooled over the distinct
    trained comparisons of that design in ``metric`` of every setting in ``family`` (settings that
    take the same cells: small and small-zero-channel run the same data, models, folds and seeds;
    only the keypoint channel differs). The ratios (fold and seed variance to the residual) describe
    one design, so the synthetic control does not pool with MacaqueFaces, nor its SGD runs with its
    AdamW ones; each comparison keeps its own residual and its own guard, and one shared by two
    settings of the family counts once."""
    grids: dict[str, dict] = {}
    for name in family:
        for _, key, design, grid in distinct_comparisons(results, name, metric):
            grids.setdefault(design, {})[key] = grid
    return {design: statistics.fit_pool(list(found.values())) for design, found in grids.items()}


def setting_pools(results: list[TableResult], setting: str, metric: str) -> dict[tuple, statistics.Pool | None]:
    """(setting, metric, design) -> the pool of the setting's family (``family_pools``)."""
    family = next(names for names in setting_families() if setting in names)
    return {(setting, metric, design): pool for design, pool in family_pools(results, family, metric).items()}


def paired_comparisons(result: TableResult, setting: str, metric: str = "top1") -> list[tuple[str, str, statistics.Paired]]:
    """The table's declared comparisons that have records on both sides, A - B each under the
    setting's pool (``collect_all`` fits it), with Holm's correction over the decided ones of this
    table and setting (one family)."""
    found = with_records(result, setting)
    pairs = [statistics.paired(a.recs, b.recs, metric, pool=result.pools.get((setting, metric, design_of(a, b))))
             for _, _, a, b in found]
    return [(a_key, b_key, pair) for (a_key, b_key, _, _), pair in zip(found, statistics.holm(pairs))]


def experiments(records: list[tuple[str, dict]]) -> dict[str, list]:
    """Records grouped by experiment INCLUDING the split fields (protocol, split seed, folds): one
    group is one design, whose runs differ only in fold and seed."""
    groups: dict[str, list] = {}
    for key, members in index_records(records).items():
        for name, rec in members:
            cfg = normalised(rec["config"])
            split = json.dumps([getattr(cfg, f) for f in SPLIT_FIELDS])
            groups.setdefault(key + split, []).append((name, rec))
    return groups



def records_of(spec: str, results_dir: Path) -> tuple[str, list[dict]]:
    """(label, records) for `harness compare`: a result file, a folder of one experiment's records,
    or a table cell ``TABLE:ROW|COL`` (``@small`` / ``@tiny`` for another setting) in results_dir."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path.name, [read_result(path)]
    if path.is_dir():
        groups = experiments(load_records(path))
        if len(groups) != 1:
            designs = {tuple(getattr(normalised(rec["config"]), f) for f in SPLIT_FIELDS)
                       for members in groups.values() for _, rec in members}
            mixed = " (they mix protocols, split seeds or fold counts)" if len(designs) > 1 else ""
            raise ResultsError(f"{path} holds records of {len(groups)} experiments{mixed}; name one file, or a folder "
                               "of one experiment's runs, or a table cell TABLE:ROW|COL")
        return str(path), [rec for _, rec in next(iter(groups.values()))]
    table_id, sep, rest = spec.partition(":")
    cell_spec, _, setting = rest.partition("@")
    if not sep or "|" not in cell_spec:
        raise ResultsError(f"{spec!r} is neither a result file, a folder, nor a table cell TABLE:ROW|COL[@setting]")
    result = collect(get_table(table_id), index_records(load_records(results_dir)))
    cell = result.cell(setting or "real", cell_spec)
    if cell is None:
        rows = ", ".join(sorted({f"{r}|{c}" for (_, r, c) in result.cells}))
        raise ResultsError(f"table {table_id} has no cell {cell_spec!r} in setting {setting or 'real'}; cells: {rows}")
    if not cell.records:
        raise ResultsError(f"table {table_id} cell {cell_spec!r} ({setting or 'real'}) has no records in {results_dir}")
    return f"table {table_id} {cell_spec} ({setting or 'real'})", cell.recs
