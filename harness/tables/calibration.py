"""`harness calibrate`: does the interval hold on real records? A/A comparisons (every experiment
of a folder compared with itself across disjoint seed groups), the identity-only bootstrap on the
same pairs for contrast, and the power argument for the number of seeds.

The A/A pairs of one folder are not independent draws: cells of one setting share their seeds'
initialisations and their folds, so a lucky seed shows in every cell at once. The binomial
interval of the rate treats them as independent and is therefore optimistic about its own width.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from ..evaluation import statistics
from .collect import TableResult, collect_all, experiments, index_records
from .declarations import TABLES

SEED_OPTIONS = (2, 3, 4, 5, 6)  # seed counts the power argument projects


@dataclass(frozen=True)
class Report:
    dataset: str
    ours: statistics.Calibration
    identity_only: tuple[int, int]  # significant, decided (one seed per side)


def _by_dataset(records: list[tuple[str, dict]]) -> dict[str, list[list[dict]]]:
    out: dict[str, list[list[dict]]] = {}
    for members in experiments(records).values():
        recs = [rec for _, rec in members]
        if recs[0]["config"].get("folds"):  # A/A pairs are paired on identity folds
            out.setdefault(recs[0]["config"]["dataset"], []).append(recs)
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
    """Per dataset of a folder's ``(file, record)`` list: the A/A calibration of its experiments."""
    return [Report(dataset, statistics.calibrate(cells, metric), _identity_only(cells, metric))
            for dataset, cells in sorted(_by_dataset(records).items())]


def table_results(records: list[tuple[str, dict]]) -> list[TableResult]:
    return collect_all(TABLES, index_records(records))


def power_lines(results: list[TableResult], setting: str = "small", metric: str = "top1") -> list[str]:
    """Projected minimum detectable effects for 5 folds x S seeds, from the variance components of
    the setting's declared paired comparisons (each distinct pair of cells once; their mean)."""
    parts, folds, seen = [], 5, set()
    for result in results:
        for a_key, b_key in result.table.comparisons:
            a, b = result.cell(setting, a_key), result.cell(setting, b_key)
            if a is None or b is None or not a.records or not b.records:
                continue
            if not (statistics.trained(a.recs) and statistics.trained(b.recs)):
                continue  # a frozen side has no seed variance: it says nothing about how many seeds to train
            names = (tuple(sorted(n for n, _ in a.records)), tuple(sorted(n for n, _ in b.records)))
            if names in seen:
                continue
            seen.add(names)
            grid = statistics.difference_grid(a.recs, b.recs, metric)
            if len(grid.seeds) >= 2 and len(grid.folds) >= 2:
                parts.append(statistics.components(grid.values))
                folds = len(grid.folds)
    if not parts:
        return [f"power: no {setting} comparison with 2 or more seeds and folds"]
    mean = tuple(float(x) for x in np.mean(parts, axis=0))
    projected = ", ".join(f"{s} seeds {statistics.projected_mde(mean, folds, s):.1f}" for s in SEED_OPTIONS)
    return [f"power ({setting}, {len(parts)} paired comparisons; variance components fold {mean[0]:.2f}, "
            f"seed {mean[1]:.2f}, residual {mean[2]:.2f} points^2): minimum detectable effect (80% power, 95%) "
            f"with {folds} folds x {projected} points"]
