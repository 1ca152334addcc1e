"""`harness ablate` (sweep a declared table) and `harness leaderboard` (render leaderboard.md)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .ablate import LAUNCHERS
from .cli_common import HarnessCLIError, expected_errors, user_errors
from .registry import REPO_ROOT

RESULTS_HELP = "where run records are read and written"


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
@click.option("--results-dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              envvar="HARNESS_RESULTS", help=RESULTS_HELP)
@click.option("--data-root", type=click.Path(path_type=Path), default=None, envvar="HARNESS_DATA",
              help="where datasets live (synthetic: where it is generated)")
@user_errors
def ablate(table, dataset, columns, seeds, dry_run, tiny, launcher, partition, gpus, cpus, time_min, results_dir, data_root):
    """Run the cells of TABLE (1, 2, 3, 4, 5, 6-7 or all) that have no result yet.

    A finished cell is never recomputed. Cells run in declaration order, one progress bar over
    cells; results land in --results-dir exactly as `harness run` writes them."""
    from tqdm import tqdm

    from .ablate import executor, plan, run_one
    from .tables import command_line

    jobs, skipped = plan(table, results_dir, seeds=seeds, tiny=tiny, dataset=dataset, columns=tuple(columns))
    todo = [j for j in jobs if not j.done]
    for cell in skipped:
        click.echo(f"not run: table {cell.table} [{cell.row} | {cell.col}]: {cell.reason}", err=True)
    click.echo(f"{len(jobs)} run(s) planned, {len(jobs) - len(todo)} already done, {len(todo)} to run", err=True)
    if dry_run:
        for j in jobs:
            state = "done" if j.done else "todo"
            click.echo(f"[{state}] table {j.cell.table} [{j.cell.row} | {j.cell.col}]: {command_line(j.cfg)}")
        return
    if not todo:
        return
    from .results import check_writable

    check_writable(results_dir)
    if launcher == "local":
        from .run import execute

        failed = []
        bar = tqdm(todo, desc=f"ablate {table}", unit="cell", file=sys.stderr, dynamic_ncols=True)
        for j in bar:
            bar.set_postfix_str(f"{j.cell.table}: {j.cell.row} | {j.cell.col} | seed {j.cfg.seed}")
            if j.done:  # finished meanwhile (another sweep on the same folder)
                continue
            try:
                execute(j.cfg, results_dir, data_root=data_root, progress=False)
            except expected_errors() as exc:
                # one cell that cannot run (no data, no API key, diverged, ...) does not stop the others
                failed.append(j)
                bar.write(f"failed: table {j.cell.table} [{j.cell.row} | {j.cell.col}] seed {j.cfg.seed}: {exc}",
                          file=sys.stderr)
        if failed:
            raise HarnessCLIError(f"{len(failed)} of {len(todo)} run(s) failed (see above); the others are in {results_dir}")
        return
    ex = executor(launcher, Path(results_dir) / ".submitit", partition=partition, gpus=gpus, time_min=time_min, cpus=cpus)
    submitted = [(j, ex.submit(run_one, j.cfg.to_dict(), str(Path(results_dir).resolve()),
                               str(Path(data_root).resolve()) if data_root else None)) for j in todo]
    for j, job in submitted:
        click.echo(f"submitted {job.job_id}: table {j.cell.table} [{j.cell.row} | {j.cell.col}] seed {j.cfg.seed}", err=True)
    if launcher == "submitit-local":  # wait, so the command ends when the results are there
        for j, job in tqdm(submitted, desc=f"ablate {table}", unit="cell", file=sys.stderr):
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 - a failed job is reported, the others still finish
                raise HarnessCLIError(f"job {job.job_id} ({j.path.name}) failed: {str(exc).strip().splitlines()[-1]}") from exc


@click.command("leaderboard")
@click.option("--results-dir", type=click.Path(path_type=Path), default=REPO_ROOT / "results", show_default=True,
              envvar="HARNESS_RESULTS", help=RESULTS_HELP)
@click.option("--output", type=click.Path(path_type=Path), default=REPO_ROOT / "leaderboard.md", show_default=True,
              help="the file to write (plots go next to it)")
@click.option("--check", is_flag=True, help="write nothing; exit 1 when the file is stale (for CI)")
@user_errors
def leaderboard(results_dir, output, check):
    """Regenerate leaderboard.md (and its plots) from the run records in --results-dir."""
    from . import leaderboard as lb

    if check:
        why = lb.check(results_dir, output)
        if why:
            raise HarnessCLIError(why)
        click.echo(f"{output} is up to date")
        return
    for path in lb.write(results_dir, output):
        click.echo(f"wrote {path}")
