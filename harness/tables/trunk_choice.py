"""Choosing the pretrained table's ImageNet trunk by evidence, never on a test fold.

The `pretrained` table asks whether CKPE helps a model built on pretrained features; which trunk
supplies them (MobileNetV2, EfficientNet-Lite0/1/2: ``settings.PRETRAINED_TRUNKS``) is a choice the
table's answer should not depend on having been made on its own test folds. Every candidate runs the
table's frozen-features row (pooled features, cosine 1-NN, no training, 224 px) on fold 0's inner
validation identities of MacaqueFaces, in both of the table's columns (aligned and pose-perturbed
faces, scored across days like the table). A frozen model has no training seed, so one run per
candidate and column is the whole design. The candidate with the highest mean validation top-1 over
the columns is the choice (ties: the earlier candidate). `harness tune --trunk` runs what is missing
and prints the table; the records stay in ``results/trunk-selection/``.

Frozen pooled features are a proxy for the tokens the hybrid rows train on (the same trunk cut at its
stride-16 stage): they rank what the trunk has learnt about faces, at a small fraction of a hybrid
run's cost.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..config import RunConfig
from ..engine.records import read_result, result_path
from .cells import cells, resolve_cell
from .declarations import get_table
from .settings import PRETRAINED_TRUNKS

TRUNK_FOLDER = "trunk-selection"
TRUNK_TABLE, TRUNK_SETTING = "pretrained", "small"


@dataclass(frozen=True)
class TrunkTrial:
    trunk: str
    column: str  # a column label of the pretrained table

    def config(self) -> RunConfig:
        table = get_table(TRUNK_TABLE)
        frozen_row = table.rows[0].label  # the frozen-features row comes first
        cell = next(c for c in cells(table, TRUNK_SETTING) if c.row == frozen_row and c.col == self.column)
        given = {**cell.overrides, "backbone": self.trunk, "validate": True}
        return resolve_cell(replace(cell, overrides=given), seed=0, fold=0)


def trunk_trials() -> list[TrunkTrial]:
    """Every candidate trunk in every column of the table, candidates in their declared order."""
    columns = [col.label for col in get_table(TRUNK_TABLE).cols]
    return [TrunkTrial(trunk, column) for trunk in PRETRAINED_TRUNKS for column in columns]


def trunk_scores(folder: Path) -> list[tuple[TrunkTrial, float | None]]:
    """Each trial and its record's validation top-1 (None: not run)."""
    out = []
    for trial in trunk_trials():
        path = result_path(folder, trial.config())
        out.append((trial, read_result(path)["metrics"]["top1"] if path.exists() else None))
    return out


def best_trunk(scores: list[tuple[TrunkTrial, float | None]]) -> str | None:
    """The trunk with the highest mean validation top-1 over the columns; None while one has no record."""
    means = {}
    for trunk in PRETRAINED_TRUNKS:
        values = [value for trial, value in scores if trial.trunk == trunk]
        if not values or None in values:
            return None
        means[trunk] = sum(values) / len(values)
    return max(PRETRAINED_TRUNKS, key=lambda trunk: means[trunk])


def trunk_lines(folder: Path) -> list[str]:
    """The validation table and the choice, as `harness tune --trunk` prints it."""
    scores = trunk_scores(folder)
    lines = ["validation top-1 (%) of each trunk's frozen pooled features, fold 0's inner split of MacaqueFaces, "
             "across days"]
    lines += [f"  {trial.trunk}, {trial.column}: {'-' if value is None else f'{value:.1f}'}" for trial, value in scores]
    chosen = best_trunk(scores)
    lines.append(f"best trunk: {chosen or '(incomplete)'}")
    return lines
