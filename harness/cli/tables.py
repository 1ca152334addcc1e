"""`harness ablate` (sweep a declared table) and `harness leaderboard` (render leaderboard.md)."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from ..engine.records import check_writable
from ..tables import leaderboard as lb
from ..tables.ablate import LAUNCHERS, executor, plan, run_one, sweep_local
from ..tables.declarations import command_line
from .common import HarnessCLIError, data_root_option, results_dir_option, user_errors


def _label(job) -> str:
    return f"table {job.cell.table} [{job.cell.row} | {job.cell.col}]"


@click.command("ablate")
@click.argument("table")
@click.option("--dataset", default=None, help="run only the cells on this dataset (e.g. Table 1's giraffes column)")
@click.option("--column", "columns", multiple=True, help="run only the cells of this column label (repeatable), e.g. 100")
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True, help="seeds 0..N-1 per cell")
@click.option("--dry-run", is_flag=True, help="print the runs it would do (as `harness run` commands), run nothing")
@click.option("--tiny", is_flag=True, help="the synthetic stand-in of every cell (random-init tiny ViTs; the CI smoke)")
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="local", show_default=True,
              help="local: in this process; slurm: one submitit job per missing cell; submitit-local: submitit's "
                   "local executor (subprocesses)")
@click.option("--partition", default=None, help="slurm partition")
@click.option("--gpus", type=click.IntRange(0), default=1, show_default=True, help="GPUs per slurm job")
@click.option("--cpus", type=click.IntRange(1), default=8, show_default=True, help="CPUs per slurm job")
@click.option("--time", "time_min", type=click.IntRange(1), default=240, show_default=True, help="minutes per job")
@results_dir_option
@data_root_option
@user_errors
def ablate_cmd(table, dataset, columns, seeds, dry_run, tiny, launcher, partition, gpus, cpus, time_min, results_dir,
               data_root):
    """Run the cells of TABLE (1, 2, 3, 4, 5, 6-7 or all) that have no result yet.

    A finished cell is never recomputed. Cells run in declaration order, one progress bar over
    cells; results land in --results-dir exactly as `harness run` writes them."""
    jobs, skipped = plan(table, results_dir, seeds=seeds, tiny=tiny, dataset=dataset, columns=tuple(columns))
    todo = [j for j in jobs if not j.done]
    for cell in skipped:
        click.echo(f"not run: table {cell.table} [{cell.row} | {cell.col}]: {cell.reason}", err=True)
    click.echo(f"{len(jobs)} run(s) planned, {len(jobs) - len(todo)} already done, {len(todo)} to run", err=True)
    if dry_run:
        for j in jobs:
            click.echo(f"[{'done' if j.done else 'todo'}] {_label(j)}: {command_line(j.cfg)}")
        return
    if not todo:
        return
    check_writable(results_dir)
    if launcher == "local":
        bar = tqdm(total=len(todo), desc=f"ablate {table}", unit="cell", file=sys.stderr, dynamic_ncols=True)

        def report(job):
            bar.set_postfix_str(f"{job.cell.table}: {job.cell.row} | {job.cell.col} | seed {job.cfg.seed}")
            bar.update(1)

        def fail(job, exc):
            bar.write(f"failed: {_label(job)} seed {job.cfg.seed}: {exc}", file=sys.stderr)

        failed = sweep_local(todo, results_dir, data_root, report, fail)
        bar.close()
        if failed:
            raise HarnessCLIError(f"{len(failed)} of {len(todo)} run(s) failed (see above); the others are in {results_dir}")
        return
    ex = executor(launcher, Path(results_dir) / ".submitit", partition=partition, gpus=gpus, time_min=time_min, cpus=cpus)
    submitted = [(j, ex.submit(run_one, j.cfg.to_dict(), str(Path(results_dir).resolve()),
                               str(Path(data_root).resolve()) if data_root else None)) for j in todo]
    for j, job in submitted:
        click.echo(f"submitted {job.job_id}: {_label(j)} seed {j.cfg.seed}", err=True)
    if launcher == "submitit-local":  # wait, so the command ends when the results are there
        for j, job in tqdm(submitted, desc=f"ablate {table}", unit="cell", file=sys.stderr):
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 - a failed job is reported, the others still finish
                raise HarnessCLIError(f"job {job.job_id} ({j.path.name}) failed: {str(exc).strip().splitlines()[-1]}") from exc


@click.command("leaderboard")
@results_dir_option
@click.option("--output", type=click.Path(path_type=Path), default=Path("leaderboard.md"), show_default=True,
              help="the file to write (plots go next to it)")
@click.option("--check", is_flag=True, help="write nothing; exit 1 when the file is stale (for CI)")
@user_errors
def leaderboard_cmd(results_dir, output, check):
    """Regenerate leaderboard.md (and its plots) from the run records in --results-dir."""
    if check:
        why = lb.check(results_dir, output)
        if why:
            raise HarnessCLIError(why)
        click.echo(f"{output} is up to date")
        return
    for path in lb.write(results_dir, output):
        click.echo(f"wrote {path}")
