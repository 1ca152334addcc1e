"""`harness calibrate`: does the interval hold on real records? A/A comparisons (every experiment
of a folder compared with itself across disjoint seed groups) under the pooled interval, the
former per-comparison interval and the identity-only bootstrap on the same pairs for contrast,
and the power argument for the number of seeds: each table's design MDE per setting.

The A/A pairs of one folder are not independent draws: cells of one setting share their seeds'
initialisations and their folds, so a lucky seed shows in every cell at once. The binomial
interval of the rate treats them as independent and is therefore optimistic about its own width.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..engine.records import load_records
from ..evaluation import statistics
from .collect import TableResult, collect_all, design_key, distinct_grids, experiments, index_records, normalised
from .declarations import declared_tables, get_table
from .settings import SETTINGS

SEED_OPTIONS = (2, 3, 4, 5, 6)  # seed counts the power argument projects
TARGET_MDE = 1.0  # points: the effect the small setting's seed count is chosen to detect same-day


@dataclass(frozen=True)
class Report:
    design: str  # "<data set>, <optimizer>"
    ours: statistics.Calibration
    identity_only: tuple[int, int]  # significant, decided (one seed per side)
    own: statistics.Calibration | None = None  # each pair's own components: the former interval


def _by_design(records: list[tuple[str, dict]]) -> dict[str, list[list[dict]]]:
    """"<data set>, <optimizer>" -> its experiments: A/A pairs pool their ratios per design, as the
    comparisons do (``collect.design_of``), so the test judges the interval the tables use. A frozen
    model has no optimizer and no seed to vary: it has no A/A pair and is left out."""
    out: dict[str, list[list[dict]]] = {}
    for members in experiments(records).values():
        recs = [rec for _, rec in members]
        config = normalised(recs[0]["config"])
        if config.folds and config.optimizer:  # A/A pairs are paired on identity folds
            out.setdefault(design_key(config), []).append(recs)
    return out


def _identity_only(cells: list[list[dict]], metric: str) -> tuple[int, int]:
    significant = decided = 0
    if metric not in statistics.pooled_metrics():  # it pools per-query means only
        return 0, 0
    for recs in cells:
        split = statistics.seed_groups(recs, per_side=1)
        result = None if isinstance(split, str) else statistics.identity_only_paired(*split, metric)
        if result is not None:
            low, high = result[1]
            decided += 1
            significant += not (low <= 0.0 <= high)
    return significant, decided


def reports(records: list[tuple[str, dict]], metric: str = "top1") -> list[Report]:
    """Per design (data set, optimizer) of a folder's ``(file, record)`` list: the A/A calibration of
    its experiments."""
    return [Report(design, statistics.calibrate(cells, metric), _identity_only(cells, metric),
                   statistics.calibrate(cells, metric, pooled=False))
            for design, cells in sorted(_by_design(records).items())]


def table_results(records: list[tuple[str, dict]]) -> list[TableResult]:
    return collect_all(declared_tables(), index_records(records))


@dataclass(frozen=True)
class Design:
    """What a table's comparisons in a setting can detect: the setting's pool, the table's residual
    variance (points^2) and fold count, from its distinct trained comparisons."""

    table: str
    setting: str
    pool: statistics.Pool | None
    residual: float | None
    folds: int
    comparisons: int
    data_and_optimizer: str = ""  # the pool's design (``collect.design_of``), named in the line

    def mde(self, seeds: int) -> float:
        return statistics.design_mde(self.pool, self.residual, self.folds, seeds)

    def seeds_for(self, target: float) -> int | None:
        return statistics.seeds_needed(target, self.pool, self.residual, self.folds)


def designs(results: list[TableResult], setting: str) -> list[Design]:
    """Per table and design (data set, optimizer) with distinct trained comparisons in the setting:
    its design (pool None where that design has too few comparisons in the table's metric to pool)."""
    out = []
    by_metric = {metric: distinct_grids(results, setting, metric) for metric in {r.table.metric for r in results}}
    for result in results:
        metric = result.table.metric
        for (table_id, design), found in by_metric[metric].items():
            grids = [g for g in found if min(g.shape) >= 2]
            if table_id != result.table.id or not grids:
                continue
            pool = result.pools.get((setting, metric, design))
            residual = pool.residual_of(grids) if pool else None
            out.append(Design(table_id, setting, pool, residual, max(g.shape[0] for g in grids), len(grids), design))
    return out


def design_line(design: Design, seeds: tuple[int, ...] = SEED_OPTIONS, target: float = TARGET_MDE) -> str:
    where = f"{design.setting}, {design.data_and_optimizer}" if design.data_and_optimizer else design.setting
    head = f"Table {design.table} ({where}; {design.comparisons} distinct trained comparison(s))"
    if design.pool is None or design.residual is None:
        return (f"{head}: no design MDE (fewer than {statistics.MIN_POOL} trained comparisons in its metric to pool "
                "the variance ratios over)")
    need = design.seeds_for(target)
    projected = ", ".join(f"{s} seeds {design.mde(s):.2f}" for s in seeds)
    return (f"{head}: residual {design.residual:.2f} points^2, ratios fold {design.pool.fold:.2f} and seed "
            f"{design.pool.seed:.2f} pooled over {design.pool.comparisons}: design MDE (80% power, 95%) with "
            f"{design.folds} folds x {projected} points; a {target:g}-point MDE needs "
            + (f"{need} seeds" if need else f"more than {statistics.MOST_SEEDS} seeds"))


def power_lines(results: list[TableResult]) -> list[str]:
    """The power argument per table and setting (tiny excluded: a smoke test decides nothing)."""
    lines = [design_line(d) for setting in SETTINGS if setting.name != "tiny" for d in designs(results, setting.name)]
    return lines or ["no setting has a trained comparison with 2 or more folds and seeds yet"]


def dry_run_lines(table: str, setting: str, results_dir: Path, seeds: int, target: float,
                  folds: int | None = None) -> list[str]:
    """For `harness ablate --dry-run`: the design MDE of the planned seeds (and ``folds``, where
    --fold keeps fewer than the records have) per table, and the seeds a ``target`` MDE needs, from
    the setting's records in ``results_dir``."""
    wanted = {t.id for t in declared_tables()} if table == "all" else {get_table(table).id}
    found = [d for d in designs(table_results(load_records(Path(results_dir))), setting) if d.table in wanted]
    if not found:
        return [f"design MDE ({setting}): no records of a trained comparison of this table yet to estimate the "
                "variance from"]
    return [design_line(replace(d, folds=folds) if folds else d, (seeds,), target) for d in found]
