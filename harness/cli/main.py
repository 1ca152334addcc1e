"""The `harness` command line. User mistakes end in one line (click.ClickException), never a traceback."""
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
from ..engine.run import execute, plan_and_check, plan_runs
from ..evaluation.metrics import METRICS, applicable
from ..keypoints.featurizers import FEATURIZERS
from ..keypoints.references import REFERENCE_SOURCES
from ..keypoints.sources import KEYPOINT_SOURCES
from ..keypoints.template import TEMPLATE
from ..methods import METHODS
from ..model.backbones import ALIASES, describe
from ..tables.ablate import download_line, memory_line, preflight_problems
from .common import data_root_option, dataset_options_option, parse_kv, quiet_option, results_dir_option, user_errors
from .data import data_group
from .keypoints import keypoints_group
from .tables import ablate_cmd, calibrate_cmd, compare_cmd, leaderboard_cmd, tune_cmd

HELP = {
    "method": "method plugin (see `harness list`)",
    "dataset": "dataset card name (see `harness list`), `all` (the paper's four, in sequence), "
               "any wildlife-datasets class name, or folder:PATH (PATH/<identity>/<image>)",
    "protocol": "disjoint = 80/20 by individuals (paper); closed = WildlifeDatasets' ClosedSetSplit(0.8); open = "
                "identity folds with new individuals (no gallery image), answered by a threshold chosen on training "
                "identities (BAKS, BAUS)",
    "exclude": "same-day: remove from each query's gallery the images of its identity taken on its own day "
               "(cross-day re-identification; needs capture dates) [default: the whole gallery]",
    "seed": "training seed (init, batch order, augmentation, random points)",
    "split_seed": "seed of the train/test split (WildlifeDatasets uses 666)",
    "keypoints": "keypoint source for keypoint methods (see `harness list`)",
    "num_keypoints": "keep the first K keypoint categories",
    "backbone": "timm model name or alias: " + ", ".join(ALIASES) + " (sizes: `harness list`)",
    "pretrained": "load pretrained backbone weights from the Hugging Face hub (honours HF_HUB_OFFLINE)",
    "weights": "local checkpoint instead of the hub: .safetensors or a torch file (read weights-only); "
               "ViT positional embeddings are resampled to --image-size",
    "image_size": "model input size in pixels (square)",
    "folds": "identity k-fold cross-validation: K groups of identities, each the test set once (scikit-learn "
             "GroupKFold, shuffled by --split-seed); without --fold every fold runs",
    "fold": "run only this fold (0..K-1) of --folds K",
    "validate": "evaluate on an inner validation split (1/5 of the training identities) instead of the test "
                "identities: for choosing hyperparameters without looking at test folds",
    "epochs": "training epochs (0: evaluate the untrained model)",
    "batch_size": "images per optimizer step (the effective batch)",
    "accumulate": "micro-batches per optimizer step (gradient accumulation; the batch size stays the effective one); "
                  "auto: the fewest whose micro-batch fits in GPU memory (same losses; the record's history says which)",
    "optimizer": "adamw or sgd",
    "lr": "peak learning rate (warm-up, then cosine decay to --lr-min)",
    "lr_min": "learning rate at the end of the cosine decay",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay (never on norms, biases, position/cls tokens or the keypoint embedding)",
    "warmup_epochs": "linear warm-up length in epochs",
    "ce_weight": "lambda: weight of the identity cross-entropy term",
    "arcface_margin": "ArcFace additive angular margin in radians",
    "arcface_scale": "ArcFace scale",
    "hflip": "probability of horizontal flip (mirrors keypoints, swaps left/right categories)",
    "augment": "none or randaugment (torchvision's 14 operations; keypoints move with geometric ones)",
    "randaugment_ops": "RandAugment: operations per image",
    "randaugment_magnitude": "RandAugment: magnitude, 0..30",
    "device": "auto, cpu, cuda, cuda:1, ...",
    "bad_images": "unreadable image: fail (default, names the file) or skip (warn, drop it, record it)",
    "compile": "torch.compile the training step with this backend (inductor on GPUs); none = eager",
}


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


def _option_for(f) -> typing.Callable:
    flag = "--" + f.name.replace("_", "-")
    kind = typing.get_type_hints(RunConfig)[f.name]
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(a for a in args if a is not type(None))
    if f.name == "dataset_options":
        return dataset_options_option
    default = f"[default: {f.default}, unless the dataset card or method sets one]"
    if f.name == "protocol":
        return click.option(flag, type=click.Choice(PROTOCOLS), default=None, help=f"{HELP[f.name]} {default}")
    if f.name == "exclude":
        return click.option(flag, type=click.Choice(EXCLUDES), default=None, help=HELP[f.name])
    if f.name == "accumulate":
        return click.option(flag, type=ACCUMULATE, default=None, help=f"{HELP[f.name]} {default}")
    if kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", default=None, help=f"{HELP[f.name]} {default}")
    return click.option(flag, type=kind, default=None, help=f"{HELP[f.name]} {default}")


def config_options(fn):
    """One click option per RunConfig field, so the CLI maps 1:1 onto the config."""
    for f in reversed(fields(RunConfig)):
        fn = _option_for(f)(fn)
    return fn


def describe_config(resolved: Resolved) -> list[str]:
    """The resolved configuration in a few lines, one per origin: what came from the command line,
    the dataset card, the method, a table cell, the defaults, and what does not apply; then its warnings."""
    cfg = resolved.config.to_dict()
    lines = ["configuration (by where each value came from):"]
    cards = sorted({o for o in resolved.origins.values() if o.startswith("card")})
    order = ["command line", "table cell", "method", *cards, "default", "not applied"]
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
    values = " | ".join(f"{METRICS.get(name).factory.label} {_number(m[name])}" for name in applicable(record))
    line = (f"{config['method']} | {config['dataset']} | {record['protocol']} | {rule}{fold}seed {record['seed']} | "
            f"{values} | {record['wall_time_s']:.1f} s")
    return line + (f" | {path}" if path else "")


def _number(value) -> str:
    return "-" if value is None else f"{value:.1f}"


# the other cli files' commands join where the root group is defined (they cannot import it: it imports them)
@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             commands=[data_group, keypoints_group, ablate_cmd, leaderboard_cmd, compare_cmd, calibrate_cmd, tune_cmd])
@click.version_option(package_name="keypoint-reid-harness")
def main():
    """Keypoint-aware animal re-identification benchmark harness."""


def dry_run_plans(given: dict, data_root, results_dir, gpu_memory: float | None) -> None:
    """Every planned run's configuration, result file and estimates (memory, downloads), then the
    data problems, if any, as the one-line error: a dry run shows the cost even with no data."""
    plans, problems = plan_and_check(given, data_root)
    for resolved in plans:
        existing = result_path(results_dir, resolved.config)
        click.echo("\n".join(describe_config(resolved)))
        click.echo(f"result: {existing}{' (already done)' if existing.exists() else ''}")
        click.echo(f"  {memory_line(resolved.config, gpu_memory)}")
        click.echo(f"  {download_line(resolved.config)}")
    if problems:
        raise DataError(problems)


@main.command("run")
@config_options
@results_dir_option
@data_root_option
@click.option("--force", is_flag=True, help="recompute and replace an existing result")
@click.option("--dry-run", is_flag=True, help="print each run's resolved configuration, result file, memory and "
              "download estimates, and what data is missing; train nothing")
@click.option("--gpu-memory", type=click.FloatRange(min=1), default=None,
              help="with --dry-run: GB of GPU memory to fit, prints the --accumulate that fits it")
@quiet_option
@user_errors
def run_cmd(results_dir, data_root, force, dry_run, gpu_memory, quiet, **given):
    """Train and evaluate one method on one dataset; write results/<name>.json.

    Every value not given here comes from the dataset card's `defaults` (datasets/<name>.json,
    e.g. the paper's settings for the real datasets), then the method's, then the defaults shown;
    each run prints its resolved configuration with the origin of every value."""
    given["dataset_options"] = parse_kv(given.get("dataset_options") or ())
    if dry_run:
        dry_run_plans(given, data_root, results_dir, gpu_memory)
        return
    plans = plan_runs(given, data_root)  # every dataset checked before any training starts
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
                                       origins=resolved.origins)
            if record is None:  # under torchrun only rank 0 evaluates and reports
                continue
            click.echo(summary_line(record, path))
            records.append(record)
    finally:  # under torchrun: close the process group the runs opened
        distributed.teardown(distributed.from_env())
    if len(plans) > 1 and records:  # Table 1 shape: every method with results on these datasets
        click.echo(summary_table(all_methods_records(results_dir, [p.config for p in plans], records)))


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


@main.command("list")
@user_errors
def list_cmd():
    """Methods, keypoint sources, reference sources, featurizers, datasets and backbones, one line each."""
    for title, reg in (("methods", METHODS),
                       ("keypoint sources (--keypoints NAME; also a stored set, or a recipe SOURCE@FEATURIZER)",
                        KEYPOINT_SOURCES),
                       ("reference sources (the SOURCE of a recipe; `harness keypoints annotate --source`)",
                        REFERENCE_SOURCES),
                       ("featurizers (the FEATURIZER of a recipe; `harness keypoints propagate --featurizer`)",
                        FEATURIZERS),
                       ("datasets", DATASETS),
                       ("metrics (a record holds every one whose per-query fields it has)", METRICS)):
        click.echo(f"{title}:")
        for e in reg:
            click.echo(f"  {e.name:<22} {e.description}")
        if reg is FEATURIZERS:
            click.echo(f"  {TEMPLATE:<22} recipes only (SOURCE@template): the reference's points at the same place on "
                       "every image, no matching (control)")
    click.echo("backbones (aliases, smallest first; any timm model name or hf-hub:<repo> also works):")
    for name in ALIASES:
        click.echo(f"  {name:<22} {describe(name)}")


if __name__ == "__main__":
    main()
