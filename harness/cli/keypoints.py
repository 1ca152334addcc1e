"""`harness keypoints ...`: annotate one reference image, propagate it, look at it, score it."""
from __future__ import annotations

import inspect
import shlex
from dataclasses import dataclass
from pathlib import Path

import click

from ..config import resolve
from ..core import distributed
from ..core.errors import DataError
from ..core.io import read_json_object
from ..data.dataset import open_row
from ..data.loaders import get_card, load_dataset
from ..keypoints.featurizers import FEATURIZERS, create_featurizer, featurizer_options, option_value
from ..keypoints.pck import pck, table
from ..keypoints.propagate import MODES, PIXELS, PropagateSettings, propagate
from ..keypoints.references import (REFERENCE_SOURCES, AnnotateOptions, annotate_options, declared_options,
                                    reference_name)
from ..keypoints.references.base import reference_row
from ..keypoints.references.marked import marked_name, marked_reference, names_to_mark
from ..keypoints.show import draw_grid
from ..keypoints.sets import KeypointSet, Target
from ..keypoints.sources import patch_pixels, resolve_keypoints, resolve_origin
from ..keypoints.store import (REFERENCE_FORMAT, entry_path, load_reference, read_reference, save_reference,
                               store_dir, store_score, store_template_share, stored_names, stored_path)
from ..keypoints.template import share_table, template_row, template_share
from .common import data_root_option, dataset_options_option, new_file, parse_kv, user_errors
from .mark_page import MarkPage, MarkServer

_dataset = click.option("--dataset", required=True, help="dataset card name (see `harness list`)")
_dataset_options = dataset_options_option
_data_root = data_root_option
_plugin_option = click.option(
    "--option", "plugin_options", multiple=True, metavar="KEY=VALUE",
    help="an option of the chosen plugin (repeatable); each plugin's are listed below, read from the plugin")


class PluginHelp(click.Command):
    """A command whose --help ends with every plugin's options, read from the registry when the
    help is shown, so a plugin installed later (entry point, HARNESS_PLUGIN_PATH) lists its own."""

    def __init__(self, *args, plugin_help=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.plugin_help = plugin_help

    def format_epilog(self, ctx, formatter):
        super().format_epilog(ctx, formatter)
        title, rows = self.plugin_help()
        with formatter.section(title):
            formatter.write_dl(rows)


def _featurizer_help() -> tuple[str, list[tuple[str, str]]]:
    def shown(key, default):
        if default is inspect.Parameter.empty:
            return key
        return f"{key}={default!r}" if default == "" else f"{key}={default}"  # an empty default stays visible

    return ("Featurizer options (--option KEY=VALUE, also a recipe's keys; shown with their defaults)",
            [(e.name, ", ".join(shown(k, d) for k, d in featurizer_options(e.name).items())) for e in FEATURIZERS])


def _reference_help() -> tuple[str, list[tuple[str, str]]]:
    return ("Reference source options (--option KEY=VALUE)",
            [(e.name, "; ".join(f"{k}: {h}" for k, h in declared_options(e.name).items()) or "(none)")
             for e in REFERENCE_SOURCES])


def merged_options(pairs, aliases: dict) -> dict:
    """--option KEY=VALUE pairs over the old per-plugin flags given (``aliases``, None = not given);
    a key given both ways with different values is an error rather than a silent choice."""
    given = parse_kv(pairs, "--option")
    for key, value in aliases.items():
        if value is None:
            continue
        if key in given and given[key] != str(value):
            raise click.UsageError(f"--{key.replace('_', '-')} {value} and --option {key}={given[key]} disagree")
        given.setdefault(key, str(value))
    return given


def _load(dataset: str, dataset_options, data_root):
    """(card, data) with the card's dataset options under the given ones, as `harness run` loads it."""
    card, data, _ = _load_with_config(dataset, dataset_options, data_root)
    return card, data


def _load_with_config(dataset: str, dataset_options, data_root):
    """(card, data, run config): the config resolved exactly as `harness run` resolves it (card
    defaults: keypoint seed, --num-keypoints, ...), for commands that read keypoint sources."""
    card = get_card(dataset)
    cfg = resolve([(f"card {card.name}", card.defaults),
                   ("command line", {"dataset": dataset, "dataset_options": parse_kv(dataset_options)})]).config
    return card, load_dataset(card, dict(cfg.dataset_options), data_root), cfg


@click.group("keypoints")
def keypoints_group():
    """Reference keypoints on one image -> every image (diffusion/DINOv2/SIFT matching) -> show, score."""


@keypoints_group.command("annotate", cls=PluginHelp, plugin_help=_reference_help)
@_dataset
@click.option("--source", default=None, help="a reference source: expert, gpt4, gradcam-resnet, gradcam-vit, "
              "ground-truth or a plugin's (see `harness list`) [default: none: a local page where you click the "
              "points yourself]")
@click.option("--names", default=None, help="page: the points to mark, comma-separated, e.g. left_eye,right_eye,nose "
              "[default: the dataset's keypoint categories]")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="page: the port on 127.0.0.1 (0: a free one)")
@click.option("--image", default=None, help="image id of the reference image [default: the card's reference_image, "
              "else the first image (ground-truth: the first with every keypoint)]")
@click.option("--num-keypoints", type=int, default=None,
              help="K keypoints [default: the card's num_keypoints (its paper K), else all its categories]")
@_plugin_option
@click.option("--reference-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="alias of --option reference_file=PATH (expert)")
@click.option("--model", default=None, help="alias of --option model=NAME (gpt4, gradcam-*)")
@click.option("--base-url", default=None, envvar="OPENAI_BASE_URL", help="alias of --option base_url=URL (gpt4)")
@click.option("--max-retries", type=int, default=None, help="alias of --option max_retries=N (gpt4)")
@click.option("--timeout", type=float, default=None, help="alias of --option timeout=SECONDS (gpt4)")
@click.option("--device", default="auto", show_default=True)
@click.option("--name", default=None, help="store under this name [default: ref-<source>-<hash of what was asked>, "
              "the name a recipe SOURCE@FEATURIZER asking the same uses]")
@click.option("--force", is_flag=True, help="annotate again even if this reference is stored")
@_dataset_options
@_data_root
@user_errors
def annotate(dataset, source, names, port, image, num_keypoints, plugin_options, device, name, force, dataset_options,
             data_root, **aliases):
    """Choose K keypoints on ONE reference image and store them.

    Without --source: serves a page on 127.0.0.1 showing the reference image; click each named
    point (Undo moves the last one back), then Save: the reference is stored and the propagate
    command printed. On a remote machine forward the printed port (ssh -L PORT:127.0.0.1:PORT)."""
    if source is None:
        card, data = _load(dataset, dataset_options, data_root)
        page = mark_page(dataset, dataset_options, (card, data), MarkRequest(names, image, num_keypoints, name, force))
        answer = serve_page(page, port)
        click.echo(f"{answer['name']} | {answer['path']}")
        click.echo(f"next: {answer['next']}")
        return
    if names is not None:
        raise click.UsageError("--names is for the page (no --source); a reference source chooses its own points")
    entry = REFERENCE_SOURCES.get(source)
    given = parse_kv(plugin_options, "--option")
    # the old flags reach the source as before, unchecked (OPENAI_BASE_URL fills --base-url for any source)
    common = {k: v for k, v in aliases.items() if v is not None and k not in given}
    card, data = _load(dataset, dataset_options, data_root)
    # K as a run with this card asks a recipe for it, so both store one reference under one name
    num_keypoints = num_keypoints or card.defaults.get("num_keypoints")
    opts = annotate_options(entry.name, given, image=image, num_keypoints=num_keypoints, device=device, **common)
    annotator = entry.factory()
    name = name or reference_name(entry.name, annotator.request(data, card, opts))
    stored = stored_path(name, data)
    if stored is not None and not force:
        click.echo(f"already annotated, not asked again (pass --force to redo): {name}", err=True)
        ref, path = read_reference(stored, data), stored
    else:
        ref = annotator.annotate(data, card, opts)
        path = save_reference(ref, data, name)
    click.echo(f"reference image {ref.image_id}: " + ", ".join(
        f"{c} ({x:.0f}, {y:.0f})" for c, (x, y) in zip(ref.categories, ref.points)))
    click.echo(f"{name} | {path}")


@dataclass(frozen=True)
class MarkRequest:
    """What `annotate` without --source was asked: the names, the image, K, the stored name."""

    names: str | None
    image: str | None
    num_keypoints: int | None
    name: str | None
    force: bool


def mark_page(dataset: str, dataset_options, loaded, asked: MarkRequest) -> MarkPage:
    """The page for marking the reference image of ``loaded`` (card, data) by hand; saving stores the
    reference under ``asked.name`` (default: from its content) and answers with the propagate command."""
    card, data = loaded
    cats, pairs = names_to_mark(data, card, asked.names, asked.num_keypoints)
    row = reference_row(data, card, AnnotateOptions(image=asked.image))
    image_id = str(data.df["image_id"].iloc[row])
    if asked.name and stored_path(asked.name, data) is not None and not asked.force:
        raise DataError(f"a reference {asked.name} is stored already ({entry_path(asked.name, data)}); pass --force "
                        "to replace it or another --name")
    picture = open_row(data, row)

    def save(points) -> dict:
        ref = marked_reference(image_id, cats, pairs, points, picture.size)
        name = asked.name or marked_name(ref)
        path = save_reference(ref, data, name)
        read_reference(path, data)  # read back as propagation will: a file it refuses is said now
        return {"name": name, "path": str(path), "next": propagate_command(dataset, dataset_options, card, name)}

    return MarkPage(dataset, image_id, cats, picture, save)


def propagate_command(dataset: str, dataset_options, card, reference: str) -> str:
    """The command that propagates a stored reference: the card's featurizer if it names one in its
    default recipe, else sift (offline, seconds on a CPU)."""
    recipe = card.defaults.get("keypoints") or ""
    featurizer = recipe.partition("@")[2].partition(":")[0] or "sift"
    options = "".join(f" --dataset-option {shlex.quote(o)}" for o in dataset_options)
    return (f"harness keypoints propagate --dataset {shlex.quote(dataset)}{options} --reference {reference} "
            f"--featurizer {featurizer}")


def serve_page(page: MarkPage, port: int) -> dict:
    try:
        server = MarkServer(page, port)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on 127.0.0.1:{port} ({exc.strerror or exc}); pass another --port "
                                   "(0: a free one)") from exc
    click.echo(f"mark {len(page.names)} point(s) on image {page.image_id}: open {server.url} in a browser "
               f"(remote machine: ssh -L {server.server_address[1]}:127.0.0.1:{server.server_address[1]} HOST, "
               "then the same URL on yours); Ctrl-C stops without saving", err=True)
    click.echo(server.url)
    try:
        answer = server.serve_until_saved()
    except KeyboardInterrupt:
        raise click.Abort() from None
    return answer


@keypoints_group.command("propagate", cls=PluginHelp, plugin_help=_featurizer_help)
@_dataset
@click.option("--reference", required=True, help="stored reference name (from `annotate`) or a JSON file")
@click.option("--featurizer", required=True, help="sd, dift, dinov2, sift, spin or a plugin's (see `harness list`)")
@_plugin_option
@click.option("--size", type=int, default=None, help="alias of --option size=N: featurizer input size in pixels")
@click.option("--model", default=None, help="alias of --option model=ID: hub id, timm name or local folder")
@click.option("--timestep", type=int, default=None, help="alias of --option timestep=N (sd, dift)")
@click.option("--block", type=int, default=None, help="alias of --option block=N (sd, dift)")
@click.option("--ensemble", type=int, default=None, help="alias of --option ensemble=N (sd, dift)")
@click.option("--seed", type=int, default=None, help="alias of --option seed=N (sd, dift)")
@click.option("--unet-batch", type=int, default=None, help="alias of --option unet_batch=N (sd, dift)")
@click.option("--step", type=int, default=None, help="alias of --option step=N (sift, spin)")
@click.option("--patch", type=float, default=None, help="alias of --option patch=PX (sift)")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="fast: cosine at feature resolution, then upsample the K maps; exact: DIFT's upsample-then-cosine "
                   "[default: the featurizer's: exact for dift, fast for the others]")
@click.option("--pixels", type=click.Choice(PIXELS), default=None,
              help="how the reference's coordinates are read: continuous (x = 31 is pixel 31's left edge) or centres "
                   "(pixel 31's centre, as DIFT reads integer annotations) [default: the featurizer's]")
@click.option("--mirror", is_flag=True, help="also match the mirrored reference; per image the better view wins "
              "(animals seen from either side; not for frontal faces)")
@click.option("--batch-size", type=int, default=None, help="target images per batch")
@click.option("--device", default=None, help="auto, cpu, cuda, ...")
@click.option("--name", default=None, help="store under this name [default: <featurizer>-<config hash>]")
@click.option("--force", is_flag=True, help="recompute even if stored")
@click.option("--quiet", is_flag=True, help="no progress bar")
@_dataset_options
@_data_root
@user_errors
def propagate_cmd(dataset, reference, featurizer, plugin_options, mode, pixels, mirror, batch_size, name, force, quiet,
                  dataset_options, data_root, **aliases):
    """Propagate a reference annotation to every image by feature matching; store the keypoint set.

    Under `torchrun --nproc_per_node N` the images are shared out among the ranks; rank 0 writes
    the set and alone reports."""
    given = merged_options(plugin_options, {**aliases, "batch_size": batch_size})
    # checked against the featurizer's own constructor, as a recipe's keys are
    feat = create_featurizer(featurizer, **{k: option_value(v) for k, v in given.items()})
    card, data = _load(dataset, dataset_options, data_root)
    ref = load_reference(reference, data)
    dist = distributed.from_env()
    settings = PropagateSettings(mode=mode, pixels=pixels, mirror=mirror, name=name, force=force,
                                 progress=not quiet and dist.is_main)
    kps, name, computed = propagate(data, ref, feat, settings, reference_name=reference, dist=dist,
                                    report=lambda line: click.echo(line, err=True))
    distributed.teardown(dist)
    if not dist.is_main:  # rank 0 alone reports
        return
    if not computed:
        click.echo(f"already propagated, not recomputed (pass --force to redo): {name}", err=True)
    click.echo(f"{name} | {len(data.df)} images x {len(kps.categories)} keypoints | "
               f"use: harness run --method ckpe --dataset {dataset} --keypoints {name}")


_image_size = click.option("--image-size", type=int, default=None,
                           help="template share: model-input size [the run's --image-size]")
_patch_size = click.option("--patch-size", type=int, default=None,
                           help="template share: patch width in input pixels [the run's backbone's]")


def _share(kps: KeypointSet, data, card, cfg, image_size: int | None, patch_size: int | None) -> dict:
    """The template share at the run's input geometry unless given: `score` and `show` report the same."""
    row = template_row(kps, data, card)
    return template_share(kps, data, row, image_size or cfg.image_size, patch_size or patch_pixels(cfg))


@keypoints_group.command("show")
@_dataset
@click.option("--keypoints", "name", required=True, help="stored keypoint set (or source, e.g. ground-truth)")
@click.option("--n", type=int, default=16, show_default=True, help="number of images in the grid")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None, callback=new_file,
              help="PNG path [default: next to the set]")
@click.option("--blank", is_flag=True, help="draw the points on grey, without the images (for datasets whose "
              "images may not be redistributed)")
@_image_size
@_patch_size
@_dataset_options
@_data_root
@user_errors
def show_cmd(dataset, name, n, out, blank, image_size, patch_size, dataset_options, data_root):
    """Draw a PNG grid of images with their keypoints, coloured by category, and print the share of
    points in another patch than the fixed template's (as `score` does; the PNG's path comes last)."""
    card, data, cfg = _load_with_config(dataset, dataset_options, data_root)
    kps = resolve_keypoints(name, data, cfg, card=card)
    out = out or store_dir(data) / f"{Path(name).stem}.png"
    png = draw_grid(data, kps, out, n=n, title=f"{dataset}: {Path(name).stem}", blank=blank)
    click.echo(share_table(_share(kps, data, card, cfg, image_size, patch_size)))
    click.echo(str(png))


def scored_keypoints(name: str, data, cfg, card) -> tuple[KeypointSet, Path | None, str | None]:
    """(keypoints, the stored set file their scores are kept in, why none when that is None)."""
    got = resolve_origin(name, Target(data, card, cfg))
    return got.keypoints, (stored_path(got.stored_set, data) if got.stored_set else None), got.not_stored


@keypoints_group.command("score")
@_dataset
@click.option("--keypoints", "name", required=True, help="stored keypoint set (or any keypoint source)")
@click.option("--alpha", type=float, default=0.1, show_default=True, help="PCK threshold, fraction of max(h, w)")
@click.option("--against", default=None, help="score against this keypoint source instead of the ground truth, "
              "e.g. oracle:SOURCE on a perturbed dataset (--dataset-option perturb=...)")
@_image_size
@_patch_size
@_dataset_options
@_data_root
@user_errors
def score_cmd(dataset, name, alpha, against, image_size, patch_size, dataset_options, data_root):
    """PCK@alpha against the ground truth (or --against a keypoint source), per category and per
    image, and the share of points in another patch than the fixed template's; stored with the set
    (a recipe's: with the set it resolved to)."""
    card, data, cfg = _load_with_config(dataset, dataset_options, data_root)
    kps, path, why = scored_keypoints(name, data, cfg, card)
    if against is not None or data.keypoints is not None:
        truth = resolve_keypoints(against, data, cfg, card=card) if against is not None else None
        score = {**pck(kps, data, alpha, truth=truth), "against": against or "ground-truth"}
        click.echo(f"against {against}" if against else "against the ground truth")
        click.echo(table(score))
        if path is not None:  # a stored set keeps its scores, one per alpha (and per --against)
            store_score(path, score, f"{alpha:g} vs {against}" if against else None)
    else:
        click.echo(f"no PCK: dataset {dataset} has no ground-truth keypoints (on a perturbed dataset pass "
                   "--against oracle:SOURCE)")
    share = _share(kps, data, card, cfg, image_size, patch_size)
    click.echo(share_table(share))
    if path is None:
        click.echo(f"scores not stored: {name}: {why}")
        return
    store_template_share(path, share)
    click.echo(f"stored with {path}")


def how_to_start(card) -> list[str]:
    """What a user with nothing stored can do: the card's reference and the one command for it."""
    recipe = card.defaults.get("keypoints")
    lines = []
    if card.reference_path is not None:
        lines.append(f"this dataset's expert reference annotation: {card.reference_path}")
        recipe = recipe if recipe and recipe.startswith("expert@") else "expert@dift"
    if recipe and "@" in recipe:
        source, _, rest = recipe.partition("@")
        lines += [f"annotate and propagate it in one step (stored for every later run): harness run --method ckpe "
                  f"--dataset {card.name} --keypoints {recipe}",
                  f"or step by step: harness keypoints annotate --dataset {card.name} --source {source}, then "
                  f"harness keypoints propagate --dataset {card.name} --reference <printed name> --featurizer "
                  f"{rest.partition(':')[0]}; offline featurizers: sift, spin"]
    else:
        lines.append(f"mark one image yourself on a local page: harness keypoints annotate --dataset {card.name} "
                     f"--names NAME,NAME,... (or choose the points with --source {'|'.join(REFERENCE_SOURCES.names())})")
    return lines


@keypoints_group.command("list")
@_dataset
@_dataset_options
@_data_root
@user_errors
def list_cmd(dataset, dataset_options, data_root):
    """Stored references and keypoint sets of a dataset."""
    card, data = _load(dataset, dataset_options, data_root)
    names = stored_names(data)
    if not names:
        click.echo(f"nothing stored for {dataset} in {store_dir(data)}")
        for line in how_to_start(card):
            click.echo(line)
    for n in names:
        try:
            raw = read_json_object(store_dir(data) / f"{n}.json", "stored file")
        except DataError as exc:  # one damaged file does not hide the others
            click.echo(f"{n:<28} {'unreadable':<10} {exc}")
            continue
        prov = raw.get("provenance") or {}
        kind = "reference" if raw.get("format") == REFERENCE_FORMAT else "keypoints"
        what = prov.get("source", "?")
        if kind == "keypoints" and isinstance(prov.get("featurizer"), dict):
            what = ", ".join(f"{k}={v}" for k, v in prov["featurizer"].items())
            what += f"; matching {prov.get('matching', '?')}" + (", mirror" if prov.get("mirror") else "")
        click.echo(f"{n:<28} {kind:<10} {what}")
