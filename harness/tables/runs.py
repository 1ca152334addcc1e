"""Your runs: the records of a results folder grouped by experiment (one design: its runs differ
only in fold and seed), filtered by config values, for `harness runs` and as a side of
`harness compare` (an experiment's id, or KEY=VALUE filters that select one experiment)."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..core.errors import ResultsError
from ..engine.records import load_records
from ..evaluation.statistics import run_key
from .collect import experiments, normalised, records_of

EXPERIMENT_ID = re.compile(r"^[0-9a-f]{6,10}$")  # a record's "experiment" hash, or its first 6+ characters


@dataclass
class RunGroup:
    """One experiment's records in a results folder."""

    records: list[dict]

    @property
    def config(self) -> RunConfig:
        return normalised(self.records[0]["config"])

    @property
    def id(self) -> str:
        return self.records[0].get("experiment") or self.config.experiment_hash()

    def design(self) -> str:
        """folds x seeds actually present, e.g. '5x3'; '1x2' without folds."""
        folds = len({run_key(r)[0] for r in self.records})  # a fold is its split's fingerprint
        return f"{folds}x{len({r['seed'] for r in self.records})}"

    def mean(self, metric: str) -> float | None:
        values = [r["metrics"].get(metric) for r in self.records]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    @property
    def created(self) -> str:
        return max(r.get("created", "") for r in self.records)


def parse_filters(pairs) -> dict[str, str]:
    """KEY=VALUE pairs over RunConfig fields (- or _), unknown keys refused with a did-you-mean."""
    fields = RunConfig.field_names()
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        name = key.strip().replace("-", "_")
        if not eq:
            raise ResultsError(f"filter {pair!r}: expected KEY=VALUE, e.g. method=ckpe")
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            raise ResultsError(f"filter {pair!r}: unknown run option {key!r}"
                               + (f"; did you mean {close[0]}?" if close else f"; valid: {', '.join(fields)}"))
        out[name] = value.strip()
    return out


def matches(cfg: RunConfig, filters: dict[str, str]) -> bool:
    return all(_shown(getattr(cfg, k)) == v for k, v in filters.items())


def _shown(value) -> str:
    if isinstance(value, tuple):  # dataset options
        return ",".join(f"{k}={v}" for k, v in value)
    return str(value)


def run_groups(records: list[tuple[str, dict]], filters: dict[str, str] | None = None) -> list[RunGroup]:
    """Every experiment among ``records`` whose config matches ``filters``, oldest first."""
    groups = [RunGroup([rec for _, rec in members]) for members in experiments(records).values()]
    groups = [g for g in groups if matches(g.config, filters or {})]
    return sorted(groups, key=lambda g: (g.created, g.id))


def select_group(spec: str, records: list[tuple[str, dict]]) -> tuple[str, list[dict]] | None:
    """(label, records) of the one experiment ``spec`` names: an experiment id (as `harness runs`
    shows it) or comma-separated KEY=VALUE filters; None when ``spec`` is neither form."""
    if EXPERIMENT_ID.match(spec):
        found = [g for g in run_groups(records) if g.id.startswith(spec)]
        if not found:
            return None
        return _one(found, f"experiment {spec}")
    if "=" not in spec:
        return None
    filters = parse_filters(spec.split(","))
    return _one(run_groups(records, filters), ", ".join(f"{k}={v}" for k, v in filters.items()))


def _one(groups: list[RunGroup], label: str) -> tuple[str, list[dict]]:
    if not groups:
        raise ResultsError(f"no runs match {label} (list them: harness runs)")
    if len(groups) > 1:
        ids = ", ".join(f"{g.id} ({g.config.method}, {g.config.dataset})" for g in groups[:6])
        raise ResultsError(f"{label} matches {len(groups)} experiments: {ids}; name one by its id (harness runs) "
                           "or add filters")
    group = groups[0]
    return f"{label} [{group.id}]", group.records


def records_for(spec: str, results_dir: Path) -> tuple[str, list[dict]]:
    """A side of `harness compare`: a result file or folder (as before), an experiment id or
    KEY=VALUE filters over the records of ``results_dir``, or a table cell."""
    if not Path(spec).expanduser().exists():
        found = select_group(spec, load_records(Path(results_dir)))
        if found is not None:
            return found
    return records_of(spec, results_dir)
