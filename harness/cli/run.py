"""`harness run` and `harness list`: one run (or a plan of them) from its options, and the names
every registry knows. User mistakes end in one line (click.ClickException), never a traceback."""
from __future__ import annotations

import types
import typing
from dataclasses import fields
from pathlib import Path

import click

from ..config import EXCLUDES, PROTOCOLS, Resolved, RunConfig
from ..core import distributed
from ..core.errors import DataError
from ..data.cards import DATASETS
from ..engine.records import check_writable, load_records, read_result, result_path, summary_table
from ..engine.preflight import download_line, memory_line, preflight_problems
from ..engine.run import SMALL_TEST, data_check, execute, model_check, plan_and_check, plan_runs
from ..evaluation.metrics import METRICS, applicable
from ..keypoints.featurizers import FEATURIZERS
from ..keypoints.references import REFERENCE_SOURCES
from ..keypoints.sources import KEYPOINT_SOURCES
from ..keypoints.template import TEMPLATE
from ..method import METHODS
from ..model.backbones import ALIASES, describe
from ..model.losses import LOSS_TERMS
from ..tables.declarations import TABLES
from .common import data_root_option, dataset_options_option, parse_kv, quiet_option, results_dir_option, user_errors
from .config_file import config_option, read_config_file
from .keep import EVALUATE_FIELDS, keep_options, kept_files, saved_lines

class _Accumulate(click.ParamType):
    """--accumulate: a whole number or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a whole number nor auto", param, ctx)


ACCUMULATE = _Accumulate()


def _help(f) -> str:
    """A config field's help text, from its declaration (``config.option``)."""
    return f.metadata["help"].replace("{aliases}", ", ".join(ALIASES))


def _option_for(f) -> typing.Callable:
    flag = "--" + f.name.replace("_", "-")
    kind = typing.get_type_hints(RunConfig)[f.name]
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(a for a in args if a is not type(None))
    if f.name == "dataset_options":
        return dataset_options_option
    # click's own default stays None, so a value not given can come from the card or the method
    text = _help(f) + ("" if f.default is None else f" [default: {f.default}]")
    if f.name == "protocol":
        return click.option(flag, type=click.Choice(PROTOCOLS), default=None, help=text)
    if f.name == "exclude":
        return click.option(flag, type=click.Choice(EXCLUDES), default=None, help=_help(f))
    if f.name == "accumulate":
        return click.option(flag, type=ACCUMULATE, default=None, help=text)
    if kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", default=None, help=text)
    return click.option(flag, type=kind, default=None, help=text)


def config_options(fn):
    """One click option per RunConfig field, so the CLI maps 1:1 onto the config."""
    for f in reversed(fields(RunConfig)):
        fn = _option_for(f)(fn)
    return fn


# `harness run --help` in sections; an option named in none is listed under "Other options"
HELP_SECTIONS = {
    "Data": ("dataset", "dataset_options", "data_root", "bad_images"),
    "Model": ("method", "backbone", "pretrained", "weights", "image_size"),
    "Training": ("seed", "epochs", "batch_size", "accumulate", "optimizer", "lr", "lr_min", "momentum",
                 "weight_decay", "warmup_epochs", "ce_weight", "arcface_margin", "arcface_scale", "losses", "hflip",
                 "augment", "randaugment_ops", "randaugment_magnitude"),
    "Keypoints": ("keypoints", "num_keypoints", "kpe_init", "kpe_lr_scale"),
    "Evaluation": ("protocol", "split_seed", "folds", "fold", "validate", "exclude", "allow_small_test"),
    "Runtime": ("device", "compile", "results_dir", "force", "dry_run", "gpu_memory", "quiet", "config_file",
                "save_weights", "save_embeddings"),
}


class SectionedHelp(click.Command):
    """A command whose --help lists its options in ``HELP_SECTIONS``' sections."""

    def format_options(self, ctx, formatter) -> None:
        section_of = {name: title for title, names in HELP_SECTIONS.items() for name in names}
        rows: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record:
                title = "Runtime" if "--help" in getattr(param, "opts", ()) else section_of.get(param.name, "Other")
                rows.setdefault(title, []).append(record)
        for title in [*HELP_SECTIONS, "Other"]:
            if rows.get(title):
                with formatter.section(f"{title} options"):
                    formatter.write_dl(rows[title])


def describe_config(resolved: Resolved) -> list[str]:
    """The resolved configuration in a few lines, one per origin: what came from the command line,
    the dataset card, the method, a table cell, the defaults, and what does not apply; then its warnings."""
    cfg = resolved.config.to_dict()
    lines = ["configuration (by where each value came from):"]
    cards = sorted({o for o in resolved.origins.values() if o.startswith("card")})
    files = sorted({o for o in resolved.origins.values() if o.startswith("config ")})
    order = ["command line", *files, "table cell", "method", *cards, "default", "not applied"]
    for origin in order:
        names = [n for n in RunConfig.field_names() if resolved.origins.get(n) == origin]
        if not names:
            continue
        shown = ", ".join(n if origin == "not applied" else f"{n}={_show(cfg[n])}" for n in names)
        lines.append(f"  {origin}: {shown}")
    return lines + [f"warning: {w}" for w in resolved.warnings]


def _show(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def summary_line(record: dict, path: Path | None = None) -> str:
    m = record["metrics"]
    config = record["config"]
    fold = f"fold {config['fold']} | " if config.get("fold") is not None else ""
    rule = f"exclude {config['exclude']} | " if config.get("exclude") else ""
    chance = (record.get("split") or {}).get("chance_top1")
    values = " | ".join(f"{METRICS.get(name).factory.label} {_number(m[name])}"
                        + (f" (chance {_number(chance)})" if name == "top1" and chance is not None else "")
                        for name in applicable(record))
    line = (f"{config['method']} | {config['dataset']} | {record['protocol']} | {rule}{fold}seed {record['seed']} | "
            f"{values} | {record['wall_time_s']:.1f} s")
    small = [c for c in record.get("caveats") or [] if c.get("id") == SMALL_TEST]
    line += "".join(f" | caveat: {c['text']}" for c in small)
    return line + (f" | {path}" if path else "")


def _number(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def dry_run_plans(given: dict, data_root, results_dir, gpu_memory: float | None, file=None) -> None:
    """Every planned run's configuration and result file, then what the run would check before it
    trains, the first problem as the one-line error. The data checks (split, batch size, keypoints)
    come first and build no model, so a run that would stop is told so in seconds; the estimates
    (memory, downloads) follow for runs whose data passes, and also where the data is missing (a dry
    run shows the cost with no data); weights and disk last. ``file``: a configuration file's layer."""
    plans, problems = plan_and_check(given, data_root, file)
    stopped = None
    if not problems:
        try:
            for resolved in plans:
                data_check(resolved.config, data_root)
        except DataError as exc:
            stopped = exc
    for resolved in plans:
        existing = result_path(results_dir, resolved.config)
        click.echo("\n".join(describe_config(resolved)))
        click.echo(f"result: {existing}{' (already done)' if existing.exists() else ''}")
        if stopped is None:
            click.echo(f"  {memory_line(resolved.config, gpu_memory)}")
            click.echo(f"  {download_line(resolved.config)}")
    if problems:
        raise DataError(problems)
    if stopped is not None:
        raise stopped
    for resolved in plans:
        model_check(resolved.config, results_dir)
    click.echo(f"dry run: {len(plans)} run(s) would start training; nothing found that would stop them")


@click.command("run", cls=SectionedHelp)
@config_options
@results_dir_option
@data_root_option
@click.option("--force", is_flag=True, help="recompute and replace an existing result")
@click.option("--dry-run", is_flag=True, help="print each run's resolved configuration, result file, memory and "
              "download estimates, and what data is missing; train nothing")
@click.option("--gpu-memory", type=click.FloatRange(min=1), default=None,
              help="with --dry-run: GB of GPU memory to fit, prints the --accumulate that fits it")
@keep_options
@config_option
@quiet_option
@user_errors
def run_cmd(results_dir, data_root, force, dry_run, gpu_memory, quiet, save_weights, save_embeddings, config_file,
            **given):
    """Train and evaluate one method on one dataset; write results/<name>.json.

    Every value not given here comes from the dataset card's `defaults` (datasets/<name>.json,
    e.g. the paper's settings for the real datasets), then the method's, then the defaults shown;
    each run prints its resolved configuration with the origin of every value. Check a run first
    with --dry-run: it stops at the first problem the run would meet before training."""
    given["dataset_options"] = parse_kv(given.get("dataset_options") or ())
    file = read_config_file(config_file, click.get_current_context()) if config_file else None
    if dry_run:
        dry_run_plans(given, data_root, results_dir, gpu_memory, file)
        return
    plans = plan_runs(given, data_root, file)  # every dataset checked before any training starts
    blocked = list(dict.fromkeys(p for r in plans for p in preflight_problems(r.config, results_dir)))
    if blocked:  # weights that cannot load, too little disk: said before the first run trains
        raise DataError(f"{len(blocked)} problem(s) would stop a run after it started:\n" + "\n".join(blocked))
    if len(plans) > 1:
        check_writable(results_dir)
    records = []
    try:
        for resolved in plans:
            cfg = resolved.config
            existing = result_path(results_dir, cfg)
            if existing.exists() and not force:
                click.echo(f"already done, not recomputed (pass --force to redo): {existing}", err=True)
                record, path = read_result(existing), existing
            else:
                if distributed.from_env().is_main:
                    click.echo("\n".join(describe_config(resolved)), err=True)
                record, path = execute(cfg, results_dir, data_root=data_root, force=force, progress=not quiet,
                                       origins=resolved.origins,
                                       keep=kept_files(existing, save_weights, save_embeddings, len(plans) > 1))
            if record is None:  # under torchrun only rank 0 evaluates and reports
                continue
            click.echo(summary_line(record, path))
            for line in saved_lines(record):
                click.echo(line, err=True)
            records.append(record)
    finally:  # under torchrun: close the process group the runs opened
        distributed.teardown(distributed.from_env())
    if len(plans) > 1 and records:  # Table 1 shape: every method with results on these datasets
        click.echo(summary_table(all_methods_records(results_dir, [p.config for p in plans], records)))


def evaluate_options(fn):
    """The run options `harness evaluate` takes (``EVALUATE_FIELDS``), as `harness run` declares them."""
    for f in reversed([f for f in fields(RunConfig) if f.name in EVALUATE_FIELDS]):
        fn = _option_for(f)(fn)
    return fn


@click.command("evaluate")
@evaluate_options
@results_dir_option
@data_root_option
@click.option("--force", is_flag=True, help="recompute and replace an existing result")
@click.option("--dry-run", is_flag=True, help="print the resolved configuration and what data is missing; score nothing")
@click.option("--save-embeddings", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="also write the embeddings: PATH.npz (numpy: embeddings, image_id, identity, split) and PATH.csv "
                   "(pandas: the same rows; `row` indexes the vectors); several runs: PATH-<run name>.npz each")
@config_option
@quiet_option
@click.pass_context
def evaluate_cmd(ctx, method, config_file, **given):
    """Score a backbone without training: every metric and protocol, an ordinary record.

    The backbone is a registered alias, any timm name or hf-hub:<repo> (--pretrained), or a local
    file (--weights, e.g. one kept by `harness run --save-weights`). --method wildlife-baseline (the
    default) scores its pooled features with ImageNet normalisation; a method that trains (vit, ...)
    is scored with --epochs 0, its own normalisation and model, untrained beyond the backbone."""
    in_file = read_config_file(config_file, ctx, run_cmd)[1] if config_file else {}  # its method counts
    chosen = method or in_file.get("method") or "wildlife-baseline"
    trains = METHODS.create(chosen).trains if chosen in METHODS else False
    ctx.invoke(run_cmd, method=method or (None if "method" in in_file else chosen), config_file=config_file, **given,
               **({"epochs": 0} if trains else {}))


def all_methods_records(results_dir: Path, plans: list, records: list[dict]) -> list[dict]:
    """The records of this run plus every other method's records in results_dir on the same
    datasets, protocol and split seed (dataset order as planned, then sorted by method and file)."""
    want = {(c.dataset, c.protocol, c.split_seed) for c in plans}
    names = {r["name"] for r in records}
    others = [r for _, r in load_records(results_dir)
              if r["name"] not in names and (r["config"]["dataset"], r["protocol"], r["config"]["split_seed"]) in want]
    order = {c.dataset: i for i, c in enumerate(plans)}
    ordered = sorted([*records, *others], key=lambda r: (order.get(r["config"]["dataset"], 99), r["config"]["method"], r["name"]))
    return ordered


@click.command("list")
@user_errors
def list_cmd():
    """Methods, keypoint sources, reference sources, featurizers, datasets, metrics, loss terms, tables and
    backbones, one line each."""
    for title, reg in (("methods", METHODS),
                       ("keypoint sources (--keypoints NAME; also a stored set, or a recipe SOURCE@FEATURIZER)",
                        KEYPOINT_SOURCES),
                       ("reference sources (the SOURCE of a recipe; `harness keypoints annotate --source`)",
                        REFERENCE_SOURCES),
                       ("featurizers (the FEATURIZER of a recipe; `harness keypoints propagate --featurizer`)",
                        FEATURIZERS),
                       ("datasets", DATASETS),
                       ("metrics (a record holds every one whose per-query fields it has)", METRICS),
                       ("loss terms (--losses NAME[=WEIGHT],...; a method may declare its own)", LOSS_TERMS),
                       ("tables (harness ablate TABLE --small; also all)", TABLES)):
        click.echo(f"{title}:")
        for e in reg:
            click.echo(f"  {e.name:<22} {e.description}")
        if reg is FEATURIZERS:
            click.echo(f"  {TEMPLATE:<22} recipes only (SOURCE@template): the reference's points at the same place on "
                       "every image, no matching (control)")
    click.echo("backbones (aliases, smallest first; any timm model name or hf-hub:<repo> also works):")
    for name in ALIASES:
        click.echo(f"  {name:<22} {describe(name)}")

