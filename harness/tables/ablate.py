"""`harness ablate`: run a declared table's cells that have no result yet.

The plan is the table's runs (cell x fold x seed) in declaration order; a run whose result file
exists is skipped (never recomputed), so an interrupted sweep resumes where it stopped. Launchers:
`local` runs in this process; `slurm` submits one submitit job per missing run; `submitit-local`
is submitit's local executor (subprocesses; the test bed of the slurm path).
"""
from __future__ import annotations

import gc
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from ..config import RunConfig
from ..core.errors import EXPECTED_ERRORS
from ..core.io import replace_atomic
from ..engine.preflight import preflight_problems
from ..engine.records import RunInProgress, result_path
from ..engine.run import execute
from ..method import METHODS
from .cells import Cell, Retarget, cells, resolve_cell, retargeted
from .declarations import get_table, table_ids
from .settings import get_setting

LAUNCHERS = ("local", "slurm", "submitit-local")
# what one cell may fail with without stopping the sweep: the user's mistakes, and running out of
# GPU memory outside training (a featurizer, say; inside training it is already an OutOfMemory)
CELL_ERRORS = (*EXPECTED_ERRORS, torch.OutOfMemoryError)
FAILED_FOLDER = ".failed"  # under the results folder: one JSON file per failed run, removed once it succeeds


class LauncherError(ValueError):
    pass


@dataclass(frozen=True)
class Job:
    cell: Cell
    cfg: RunConfig
    path: Path  # where its result lands

    @property
    def done(self) -> bool:
        return self.path.exists()


@dataclass(frozen=True)
class Selection:
    """Which of a table's runs a sweep takes: the cells on ``dataset``, with those ``columns`` /
    ``rows`` labels, and only those identity ``folds`` (empty: all). Folds let a first answer come
    from a few folds x seeds on a laptop and the rest follow later; the statistics pair the runs
    both sides have, so a grid of 3 folds x 2 seeds already gives an interval. A cell with one split
    (no identity folds, e.g. the closed-protocol anchor) runs whole whatever ``folds`` says."""

    dataset: str | None = None
    columns: tuple[str, ...] = ()
    rows: tuple[str, ...] = ()
    folds: tuple[int, ...] = ()

    def keeps(self, cell: Cell) -> bool:
        return (not self.columns or cell.col in self.columns) and (not self.rows or cell.row in self.rows)

    def fold_ids(self, folds: int | None) -> list:
        if not folds:
            return [None]
        beyond = [f for f in self.folds if f >= folds]
        if beyond:
            raise LauncherError(f"--fold {beyond[0]}: these cells have {folds} identity folds, 0 to {folds - 1}")
        return [f for f in range(folds) if not self.folds or f in self.folds]


def plan(table: str, results_dir: Path, *, setting: str = "real", seeds: int | None = None,
         select: Selection = Selection(), target: Retarget | None = None):
    """-> (jobs, skipped): jobs = (cell, fold, seed) runs in a stable order, deduplicated (cells
    shared by two tables run once); skipped = cells that cannot run in this setting, with their
    reason. A cell with --folds K runs every fold ``select`` keeps; ``seeds`` defaults to the
    setting's. ``select`` filters before deduplication, so a shared cell is kept under the label
    asked for. ``target``: every cell run on another dataset instead (cells that become the same
    run, once)."""
    names = table_ids() if table == "all" else [get_table(table).id]
    seeds = get_setting(setting).seeds if seeds is None else seeds
    jobs, skipped, seen = [], [], set()
    for name in names:
        for cell in (retargeted(c, target) for c in cells(get_table(name), setting)):
            if not select.keeps(cell):
                continue
            if cell.overrides is None:
                skipped.append(cell)
                continue
            trains = METHODS.create(resolve_cell(cell).method).trains
            for seed in range(seeds if trains else 1):  # a frozen model is the same under every seed
                for fold in select.fold_ids(cell.overrides.get("folds")):
                    cfg = resolve_cell(cell, seed, fold)
                    if select.dataset and not get_setting(setting).on_dataset(cfg, select.dataset):
                        continue
                    path = result_path(results_dir, cfg)
                    if path in seen:
                        continue
                    seen.add(path)
                    jobs.append(Job(cell, cfg, path))
    if select.folds and jobs and all(j.cfg.fold is None for j in jobs):
        raise LauncherError(f"--fold {select.folds[0]}: none of the selected cells has identity folds (each is one "
                            "split); leave --fold out")
    return jobs, skipped


def failure_path(results_dir: Path, job: Job) -> Path:
    return Path(results_dir) / FAILED_FOLDER / f"{job.path.stem}.json"


def record_failure(results_dir: Path, job: Job, exc: Exception) -> Path:
    """Keep why a run failed (cell, config, the one-line error) next to the results, so a sweep
    that scrolled away still says which cells are missing and why."""
    path = failure_path(results_dir, job)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"table": job.cell.table, "row": job.cell.row, "col": job.cell.col, "seed": job.cfg.seed,
             "fold": job.cfg.fold, "result": job.path.name, "error": " ".join(str(exc).split()),
             "kind": type(exc).__name__, "config": job.cfg.to_dict(),
             "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    replace_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(entry, indent=1)))
    return path


def failure_lines(results_dir: Path, failed: list[Job]) -> list[str]:
    """The end-of-sweep list: one line per failed run, with its recorded error."""
    lines = [f"{len(failed)} run(s) failed, recorded in {Path(results_dir) / FAILED_FOLDER}:"]
    for job in failed:
        error = json.loads(failure_path(results_dir, job).read_text())["error"]
        lines.append(f"  table {job.cell.table} [{job.cell.row} | {job.cell.col}] seed {job.cfg.seed}"
                     f"{'' if job.cfg.fold is None else f' fold {job.cfg.fold}'}: {error}")
    return lines


def release_gpu_memory() -> None:
    """After a failed run, give its cached GPU blocks back before the next cell builds its model."""
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def blocked_jobs(todo: list[Job], results_dir: Path) -> dict[Path, str]:
    """result path -> why that job would fail after the sweep started (``preflight_problems``)."""
    blocked, seen = {}, {}
    for job in todo:
        c = job.cfg  # the fields the checks read: jobs differing only in seed or fold are checked once
        key = (c.method, c.dataset, c.backbone, c.image_size, c.pretrained, c.weights, c.optimizer, c.keypoints)
        if key not in seen:
            try:
                seen[key] = preflight_problems(c, results_dir)
            except CELL_ERRORS as exc:  # e.g. a recipe's bad featurizer option: the run would fail the same way
                seen[key] = [str(exc)]
        if seen[key]:
            blocked[job.path] = "; ".join(seen[key])
    return blocked


def _ignore(*_args) -> None:
    pass


@dataclass(frozen=True)
class SweepEvents:
    """What a local sweep tells its caller about each job: it starts, it failed (with the error), it
    is under way in another process (``busy``: skipped, not failed), it ended (trained, failed,
    skipped, or found finished by another sweep). A progress bar counts ``ended``, so it reaches its
    total only once the last run's records are written."""
    started: Callable[[Job], None] = _ignore
    failed: Callable[[Job, Exception], None] = _ignore
    busy: Callable[[Job, Exception], None] = _ignore
    ended: Callable[[Job], None] = _ignore


def sweep_local(todo: list[Job], results_dir: Path, data_root: Path | None,
                events: SweepEvents = SweepEvents()) -> list[Job]:
    """Run the jobs in this process, in order; returns those that failed. A job finished meanwhile
    (another sweep on the same folder) is skipped; one that cannot run (no data, no API key,
    diverged, out of GPU memory, ...) is recorded under ``.failed/``, handed to ``events.failed`` and
    does not stop the others; the failures are listed again on stderr at the end. One that another
    live process is running (two sweeps sharing a folder, as on a 2-core machine) is handed to
    ``events.busy`` and skipped: that process writes its record. Every job's
    ``preflight_problems`` are checked before the first one trains: a job with one fails at once."""
    failed = []
    blocked = blocked_jobs(todo, results_dir)
    for job in todo:
        events.started(job)
        if not job.done:
            try:
                if job.path in blocked:
                    raise ValueError(blocked[job.path])
                execute(job.cfg, results_dir, data_root=data_root, progress=False)
            except RunInProgress as exc:
                events.busy(job, exc)
            except CELL_ERRORS as exc:
                failed.append(job)
                record_failure(results_dir, job, exc)
                events.failed(job, exc)
                release_gpu_memory()
            else:
                failure_path(results_dir, job).unlink(missing_ok=True)  # an earlier failure is history now
        events.ended(job)
    if failed:
        print("\n".join(failure_lines(results_dir, failed)), file=sys.stderr)
    return failed


def run_one(cfg_dict: dict, results_dir: str, data_root: str | None) -> str:
    """One cell; the unit a cluster job runs (plain arguments, so it pickles)."""
    cfg = RunConfig.from_dict(cfg_dict)
    _, path = execute(cfg, Path(results_dir), data_root=Path(data_root) if data_root else None, progress=False)
    return str(path)


def executor(launcher: str, folder: Path, *, partition: str | None, gpus: int, time_min: int, cpus: int):
    import submitit

    if launcher == "submitit-local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=time_min)
        return ex
    try:
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    except RuntimeError as exc:  # no sbatch/srun here
        raise LauncherError(f"--launcher slurm: {exc} (use --launcher local here)") from exc
    params = {"timeout_min": time_min, "gpus_per_node": gpus, "cpus_per_task": cpus, "name": "harness-ablate"}
    if partition:
        params["slurm_partition"] = partition
    ex.update_parameters(**params)
    return ex
