"""`harness ablate` (sweep a declared table), `harness leaderboard` (render leaderboard.md) and
`harness report` (the HTML site)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ..core.errors import RegistryError
from ..core.progress import progress_bar
from ..evaluation import metrics, statistics
from ..data.loaders import data_problem, get_card
from ..engine.records import check_writable, load_records
from ..tables.runs import parse_filters, records_for, run_groups
from ..engine.run import execute
from ..tables import calibration
from ..tables import leaderboard as lb
from ..tables import channel_choice, doc_blocks, trunk_choice, tuning
from ..tables import report as html_report
from ..engine.preflight import download_line, memory_line
from ..tables.ablate import LAUNCHERS, Selection, SweepEvents, executor, plan, run_one, sweep_local
from ..tables.cells import Retarget, command_line
from ..tables.settings import SETTINGS
from .common import HarnessCLIError, data_root_option, new_file, parse_kv, results_dir_option, user_errors


def _label(job) -> str:
    return f"table {job.cell.table} [{job.cell.row} | {job.cell.col}]"


def dry_run_lines(jobs) -> list[str]:
    """Per cell: the command of its first run, its fully resolved configuration (the fields that
    apply) and how many of its runs (folds x seeds) are done."""
    by_cell: dict = {}
    for job in jobs:
        by_cell.setdefault((job.cell.table, job.cell.row, job.cell.col), []).append(job)
    lines = []
    for runs in by_cell.values():
        first = runs[0]
        done = sum(j.done for j in runs)
        folds, seeds = len({j.cfg.fold for j in runs}), len({j.cfg.seed for j in runs})
        lines.append(f"{_label(first)}: {done} of {len(runs)} runs done ({folds} fold(s) x "
                     f"{seeds} seed(s)); first: {command_line(first.cfg)}")
        config = ", ".join(f"{k}={v}" for k, v in first.cfg.experiment().items())
        lines.append(f"    config: {config}")
        lines.append(f"    {memory_line(first.cfg)}; {download_line(first.cfg)}")
    return lines


def setting_flags(command):
    """One flag per setting that has one (``Setting.flag``), all into ``setting``."""
    for chosen in reversed([x for x in SETTINGS if x.flag]):
        command = click.option(chosen.flag, "setting", flag_value=chosen.name, help=chosen.summary)(command)
    return command


ABLATE_HELP = """Run the cells of TABLE (an id or alias `harness list` shows, or all) that have no result yet,
    every fold (or those --fold names) and seed of each (the paper's setting by default; a setting's
    flag, e.g. --small or --tiny, for the others).

    A finished run is never recomputed, so an interrupted sweep resumes. Runs go in declaration
    order, one progress bar over them; results land in --results-dir exactly as `harness run`
    writes them."""


class _Metric(click.ParamType):
    """A registered metric's name in any case, given back as the records spell it (``mAP``); an
    unknown one is refused with the registry's did-you-mean."""

    name = "METRIC"

    def convert(self, value, param, ctx):
        try:
            return metrics.METRICS.get(value).factory.name
        except RegistryError as exc:
            self.fail(str(exc), param, ctx)


METRIC = _Metric()


@click.command("ablate", help=ABLATE_HELP)
@click.argument("table")
@click.option("--dataset", default=None, help="run only the cells on this dataset (e.g. Table 1's giraffes column)")
@click.option("--column", "columns", multiple=True, help="run only the cells of this column label (repeatable), e.g. 100")
@click.option("--row", "rows", multiple=True, help="run only the cells of this row label (repeatable), e.g. large")
@click.option("--fold", "folds", type=click.IntRange(0), multiple=True,
              help="run only this identity fold of each cell (repeatable), e.g. --fold 0 --fold 1 --fold 2: a "
                   "first answer from a few folds, the rest later; a cell with one split (no folds) runs "
                   "whole [default: every fold]")
@click.option("--seeds", type=click.IntRange(1), default=None,
              help="training seeds 0..N-1 per cell and fold [default: "
                   + ", ".join(f"{s.name} {s.seeds}" for s in SETTINGS) + "]")
@click.option("--dry-run", is_flag=True, help="print every cell's resolved configuration and runs, and the design's "
              "minimum detectable effect from the setting's records, run nothing")
@click.option("--target-mde", type=click.FloatRange(min=0.0, min_open=True), default=calibration.TARGET_MDE,
              show_default=True, help="with --dry-run: the effect (points) to print the seeds needed for")
@setting_flags
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="local", show_default=True,
              help="local: in this process; slurm: one submitit job per missing run; submitit-local: submitit's "
                   "local executor (subprocesses)")
@click.option("--partition", default=None, help="slurm partition")
@click.option("--gpus", type=click.IntRange(0), default=1, show_default=True, help="GPUs per slurm job")
@click.option("--cpus", type=click.IntRange(1), default=8, show_default=True, help="CPUs per slurm job")
@click.option("--time", "time_min", type=click.IntRange(1), default=240, show_default=True, help="minutes per job")
@click.option("--retarget", default=None, metavar="DATASET",
              help="run every cell on this dataset instead of its own, e.g. folder:data/my_animals (the cells' "
                   "dataset options are dropped)")
@click.option("--retarget-option", "retarget_options", multiple=True, metavar="KEY=VALUE",
              help="with --retarget: a dataset option of DATASET (repeatable)")
@click.option("--retarget-keypoints", default=None, metavar="SOURCE",
              help="with --retarget: the keypoints of every cell that reads them, e.g. a set made by "
                   "`harness keypoints propagate` on DATASET")
@results_dir_option
@data_root_option
@user_errors
def ablate_cmd(table, dataset, columns, rows, folds, seeds, dry_run, target_mde, setting, launcher, partition, gpus, cpus,
               time_min, retarget, retarget_options, retarget_keypoints, results_dir, data_root):
    setting = setting or next(x.name for x in SETTINGS if x.flag is None)
    if retarget is None and (retarget_options or retarget_keypoints):
        raise HarnessCLIError("--retarget-option and --retarget-keypoints need --retarget DATASET")
    target = Retarget(retarget, tuple(sorted(parse_kv(retarget_options, "--retarget-option").items())),
                      retarget_keypoints) if retarget else None
    jobs, skipped = plan(table, results_dir, setting=setting, seeds=seeds, target=target,
                         select=Selection(dataset, tuple(columns), tuple(rows), tuple(sorted(set(folds)))))
    todo = [j for j in jobs if not j.done]
    for cell in skipped:
        click.echo(f"not run ({setting}): table {cell.table} [{cell.row} | {cell.col}]: {cell.reason}", err=True)
    click.echo(f"{len(jobs)} run(s) planned ({setting}), {len(jobs) - len(todo)} already done, {len(todo)} to run",
               err=True)
    if dry_run:
        for line in dry_run_lines(jobs):
            click.echo(line)
        planned = seeds or next(x.seeds for x in SETTINGS if x.name == setting)
        kept_folds = len(set(folds)) or None
        for line in calibration.dry_run_lines(table, setting, results_dir, planned, target_mde, kept_folds):
            click.echo(line)
        return
    if not todo:
        return
    check_writable(results_dir)
    if launcher == "local":
        bar = progress_bar(total=len(todo), desc=f"ablate {table}", unit="run", file=sys.stderr, dynamic_ncols=True)

        events = SweepEvents(
            started=lambda job: bar.set_postfix_str(f"{job.cell.table}: {job.cell.row} | {job.cell.col} | "
                                                    f"seed {job.cfg.seed}"),
            failed=lambda job, exc: bar.write(f"failed: {_label(job)} seed {job.cfg.seed}: {exc}", file=sys.stderr),
            busy=lambda job, exc: bar.write(f"skipped: {_label(job)} seed {job.cfg.seed}: {exc}", file=sys.stderr),
            ended=lambda job: bar.update(1))
        failed = sweep_local(todo, results_dir, data_root, events)
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
        for j, job in progress_bar(submitted, desc=f"ablate {table}", unit="run", file=sys.stderr):
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 - a failed job is reported, the others still finish
                raise HarnessCLIError(f"job {job.job_id} ({j.path.name}) failed: {str(exc).strip().splitlines()[-1]}") from exc


@click.command("leaderboard")
@results_dir_option
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default=Path("leaderboard.md"),
              show_default=True, callback=new_file,
              help="the file to write (plots go next to it)")
@click.option("--check", is_flag=True, help="write nothing; exit 1 when the file is stale (for CI)")
@user_errors
def leaderboard_cmd(results_dir, output, check):
    """Regenerate leaderboard.md, its plots and the pages' generated blocks from --results-dir.

    The pages are README.md and docs/*.md beside --output (harness/tables/doc_blocks.py)."""
    root = Path(output).parent
    if check:
        why, results = lb.check(results_dir, output)
        why = why or doc_blocks.stale_page(root, doc_blocks.Sources(results_dir, results))
        if why:
            raise HarnessCLIError(why)
        click.echo(f"{output} and the pages' generated blocks are up to date")
        return
    written, results = lb.write(results_dir, output)
    written += doc_blocks.write_pages(root, doc_blocks.Sources(results_dir, results))
    for path in written:
        click.echo(f"wrote {path}")


@click.command("runs")
@click.option("--method", default=None, help="only this method's runs")
@click.option("--dataset", default=None, help="only runs on this dataset (as the record names it, e.g. folder:PATH)")
@click.option("--protocol", default=None, help="only runs under this protocol")
@click.option("--backbone", default=None, help="only runs with this backbone")
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE",
              help="only runs whose run option KEY has VALUE (repeatable), e.g. keypoints=sift-1e25ee278c")
@click.option("--metric", type=click.Choice(metrics.ORDER), default="top1", show_default=True,
              help="the metric shown (mean over the experiment's runs)")
@results_dir_option
@user_errors
def runs_cmd(method, dataset, protocol, backbone, where, metric, results_dir):
    """The experiments in --results-dir, oldest first: id, method, dataset, protocol, backbone, the
    folds x seeds run, the mean of --metric and the date of the latest run. Compare two of them:
    harness compare ID ID (or KEY=VALUE,... filters that select one experiment each)."""
    chosen = {"method": method, "dataset": dataset, "protocol": protocol, "backbone": backbone}
    filters = {**{k: v for k, v in chosen.items() if v is not None}, **parse_filters(where)}
    groups = run_groups(load_records(Path(results_dir)), filters)
    if not groups:
        what = f" matching {', '.join(f'{k}={v}' for k, v in filters.items())}" if filters else ""
        raise HarnessCLIError(f"no runs{what} in {results_dir}")
    header = ["id", "method", "dataset", "protocol", "backbone", "folds x seeds", metric, "date"]
    rows = [[g.id, g.config.method, g.config.dataset, g.config.protocol, g.config.backbone, g.design(),
             "-" if g.mean(metric) is None else f"{g.mean(metric):.1f}", g.created[:16].replace("T", " ")]
            for g in groups]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


@click.command("report")
@results_dir_option
@data_root_option
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=Path("report"), show_default=True,
              help="the folder to write (index.html, runs/, thumbs/); never commit it: thumbnails are your data")
@click.option("--run", "runs", multiple=True, help="a gallery page for this run (record file name without .json; "
              "repeatable) [default: every run with a per-query log, up to --max-runs]")
@click.option("--max-runs", type=click.IntRange(0), default=20, show_default=True)
@click.option("--queries", type=click.IntRange(1), default=60, show_default=True, help="queries shown per run")
@user_errors
def report_cmd(results_dir, data_root, output, runs, max_runs, queries):
    """Write a static HTML site of the results (opens from disk, loads nothing from the internet):
    the answers and their forest plot, every table, the calibration, and per run its queries' best
    matches with thumbnails read from --data-root."""
    index = html_report.write_report(html_report.ReportSettings(Path(results_dir), output, data_root, tuple(runs),
                                                                max_runs, queries))
    click.echo(f"wrote {index} (open it in a browser)")


@click.command("compare")
@click.argument("first")
@click.argument("second")
@click.option("--metric", type=METRIC, default="top1", show_default=True,
              help="a registered metric (`harness list`; any case: map is mAP)")
@results_dir_option
@user_errors
def compare_cmd(first, second, metric, results_dir):
    """Paired comparison FIRST - SECOND: each a result file, a folder of one experiment's runs, an
    experiment's id from `harness runs`, KEY=VALUE,... filters that select one experiment in
    --results-dir (e.g. method=ckpe,dataset=folder:data/my_animals), or a table cell
    TABLE:ROW|COL[@small|@tiny] (e.g. '6-7:large|keypoint (3)@small'). Runs pair on their common
    folds and seeds.

    Prints each side's mean and 95% interval over folds x seeds (test animals and training
    randomness), then the paired difference on identical folds and seeds with its interval (from its
    own components: the pooled interval needs a setting's comparisons, see `harness leaderboard`) and
    decision, or why the two cannot be paired or decided."""
    sides = [records_for(spec, results_dir) for spec in (first, second)]
    for name, (label, recs) in zip("AB", sides):
        summary = statistics.summarize(recs, metric)
        ci = f"no interval ({summary.why})" if summary.ci is None else \
            f"95% CI [{summary.ci[0]:.1f}, {summary.ci[1]:.1f}]"
        click.echo(f"{name}: {label}: {metric} {summary.mean:.1f}, {ci} ({summary.runs} runs, {summary.seeds} "
                   f"seed(s), {summary.identities} identities)")
    click.echo(f"A - B: {lb.verdict(statistics.paired(sides[0][1], sides[1][1], metric))}")


@click.command("calibrate")
@click.option("--metric", type=METRIC, default="top1", show_default=True,
              help="a registered metric (`harness list`; any case: map is mAP)")
@results_dir_option
@user_errors
def calibrate_cmd(metric, results_dir):
    """A/A test of the intervals on RESULTS_DIR's records: every experiment with identity folds and
    at least 4 seeds is split into two disjoint seed groups (2 or more seeds each) and compared with
    itself; a calibrated interval is significant in about 5% of the pairs and its p-values are
    uniform (median, Kolmogorov-Smirnov test; approximate, as the pairs share folds and seeds).
    Also: the former per-comparison interval and the identity-only bootstrap (one seed per side) on
    the same experiments, and the power argument for the number of seeds (each table's design MDE)."""
    records = load_records(Path(results_dir))
    reports = calibration.reports(records, metric)
    if not reports:
        raise HarnessCLIError(f"{results_dir} holds no records with identity folds; run `harness ablate TABLE`")
    for report in reports:
        click.echo(f"{report.design}: {report.ours.line()}")
        if report.own is not None:
            click.echo(f"{report.design}: the former interval, for contrast: {report.own.line()}")
        significant, decided = report.identity_only
        if decided:
            click.echo(f"{report.design}: identity-only bootstrap, one seed per side (for contrast): {significant} "
                       f"of {decided} significant")
    for line in calibration.power_lines(calibration.table_results(records)):
        click.echo(f"power: {line}")


@click.command("tune")
@results_dir_option
@data_root_option
@click.option("--channel", is_flag=True, help="choose the keypoint channel's init and learning-rate scale instead, "
              "on the known-answer control's data and MacaqueFaces (RESULTS_DIR/channel-selection)")
@click.option("--trunk", is_flag=True, help="choose the pretrained table's ImageNet trunk instead, by its frozen "
              "features on MacaqueFaces (RESULTS_DIR/trunk-selection)")
@user_errors
def tune_cmd(results_dir, data_root, channel, trunk):
    """Choose the small setting's training settings and featurizer on an inner validation split of
    fold 0's training identities (never a test fold): runs the missing candidates into
    RESULTS_DIR/small-validation and prints each one's validation top-1 (plain ViT, CKPE)."""
    if channel and trunk:
        raise HarnessCLIError("--channel and --trunk are two choices: run them one at a time")
    if channel:
        return tune_channel(Path(results_dir) / channel_choice.CHANNEL_FOLDER, data_root)
    if trunk:
        return tune_trunk(Path(results_dir) / trunk_choice.TRUNK_FOLDER, data_root)
    folder = Path(results_dir) / tuning.VALIDATION_FOLDER
    check_writable(folder)
    for phase in ("training", "keypoints"):  # the featurizers run with the chosen training settings
        chosen, _ = tuning.best_training(folder)
        todo = [t for t, value in tuning.scores(folder, chosen or None)
                if value is None and t.label.startswith("keypoints ") == (phase == "keypoints")]
        for trial in progress_bar(todo, desc=f"tuning: {phase}", unit="run", file=sys.stderr):
            execute(trial.config(), folder, data_root=data_root, progress=False)
    for line in tuning.tuning_lines(folder):
        click.echo(line)


def run_trials(todo: list, folder: Path, data_root, what: str, label) -> None:
    """Run the trials whose data is present (each names the others, ``label(trial)``, as not run)."""
    check_writable(folder)
    absent = {t: data_problem(get_card(t.config().dataset), data_root) for t in todo}
    for trial in [t for t in todo if absent[t]]:
        click.echo(f"not run: {label(trial)}: {absent[trial]}", err=True)
    for trial in progress_bar([t for t in todo if not absent[t]], desc=f"tuning: {what}", unit="run", file=sys.stderr):
        execute(trial.config(), folder, data_root=data_root, progress=False)


def tune_channel(folder: Path, data_root) -> None:
    """`harness tune --channel`: the missing channel candidates, then the table and the choice."""
    todo = [t for t, value in channel_choice.channel_scores(folder) if value is None]
    run_trials(todo, folder, data_root, "keypoint channel", lambda t: f"{t.layout}, {t.recipe}, {t.label}")
    for line in channel_choice.channel_lines(folder):
        click.echo(line)


def tune_trunk(folder: Path, data_root) -> None:
    """`harness tune --trunk`: the missing trunk candidates, then the table and the choice."""
    todo = [t for t, value in trunk_choice.trunk_scores(folder) if value is None]
    run_trials(todo, folder, data_root, "pretrained trunk", lambda t: f"{t.trunk}, {t.column}")
    for line in trunk_choice.trunk_lines(folder):
        click.echo(line)
