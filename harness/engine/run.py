"""One run: config -> data -> split -> keypoints -> model -> train -> evaluate -> result record.

``plan_runs`` resolves and checks the runs of one `harness run` (several for `--dataset all`)
before anything trains; ``execute`` runs one of them in named steps.
"""
from __future__ import annotations

import contextlib
import hashlib
import random
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import Resolved, RunConfig, resolve
from ..core import distributed
from ..core.distributed import DistInfo, pick_device
from ..core.errors import DataError, ResultsError
from ..data.cards import Card, dataset_names
from ..data.dataset import ReidData, capture_days, row_bboxes, row_perturbations
from ..data.images import DecodeSettings, decode_images
from ..data.loaders import data_problem, get_card, load_dataset, loader_of
from ..data.splits import HeldOut, QuerySide, Split, make_split, query_side, small_test_message
from ..keypoints.sets import KeypointSet, Target
from ..keypoints.sources import keypoints_problem, resolve_keypoints, source_problem
from ..method import METHODS, Method
from ..model.backbones import create_backbone, kept_channel
from ..model.frozen_trunk import frozen_trunk
from ..model.keypoint_vit import KeypointViT
from ..model.losses import build_losses
from ..model.token_cache import TokenStore, fill
from ..model.tokens import flip_permutation
from . import records
from ..evaluation.scoring import (Scored, gallery_rules, needed_rows, reliance_metrics, removed_points, same_day_matters,
                                  score, shuffle_point_sets, table_lookup)
from .export import Keep, save_embeddings, save_weights
from .preflight import preflight_problems
from .checkpoint import Checkpoint
from .settings import TrainSettings
from .train import Normalizer, Runtime, TrainData, embed, train


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_run(card: Card, method: Method, *, cell: dict | None = None, given: dict | None = None,
                file: tuple[str, dict] | None = None) -> Resolved:
    """A run's config from its layers (defaults < card < method < table cell < a configuration
    file ``file``: (its origin, its values) < command line), with the fields that cannot influence
    this method's run set to None (origin "not applied")."""
    layers = [(f"card {card.name}", card.defaults), ("method", method.layer()),
              ("table cell", cell or {}), *([file] if file else []), ("command line", given or {})]
    resolved = resolve(layers)
    config = method.applied(resolved.config)
    origins = {name: ("not applied" if getattr(config, name) is None and getattr(resolved.config, name) is not None
                      else origin) for name, origin in resolved.origins.items()}
    return Resolved(config, origins, tuple(config_warnings(config, origins, card)))


def config_warnings(cfg: RunConfig, origins: dict, card: Card) -> list[str]:
    """What in a resolved config is likely a mistake: a dataset card's training settings, meant for
    fine-tuning a pretrained backbone, applied to a random-init one."""
    from_card = [name for name in ("optimizer", "lr", "epochs") if origins.get(name, "").startswith("card")]
    random_init = cfg.weights is None and not cfg.pretrained
    if not (random_init and from_card and cfg.epochs and card.defaults.get("pretrained")):
        return []
    values = ", ".join(f"{name} {getattr(cfg, name)}" for name in from_card)
    return [f"{values} come from the card {card.name}, whose defaults fine-tune a pretrained backbone; "
            f"{cfg.backbone} starts from random weights here and usually needs other settings (e.g. --optimizer "
            "adamw --lr 1e-3): pass them on the command line"]


def fold_runs(cfg: RunConfig) -> list[RunConfig]:
    """One config per fold when --folds K is given without --fold, else the config itself."""
    if cfg.folds is None or cfg.fold is not None:
        return [cfg]
    return [replace(cfg, fold=i) for i in range(cfg.folds)]


def plan_runs(given: dict, data_root: Path | None = None, file: tuple[str, dict] | None = None) -> list[Resolved]:
    """The resolved configs of one `harness run` (one per dataset, `all` = the paper's four, and
    one per fold with --folds K), after checking every dataset's data and keypoint recipe: all
    problems are reported at once, in one DataError, before anything trains."""
    plans, problems = plan_and_check(given, data_root, file)
    if problems:
        raise DataError(problems)
    return plans


def plan_and_check(given: dict, data_root: Path | None = None,
                   file: tuple[str, dict] | None = None) -> tuple[list[Resolved], str | None]:
    """``plan_runs`` without raising: (every resolved config, the data problems in one message or
    None), so a dry run can show what it would run before it says what is missing. ``file``: the
    layer of a configuration file (its origin, its values), under the command line."""
    given = {k: v for k, v in given.items() if v is not None}
    values = file[1] if file else {}
    if "method" not in values:
        given["method"] = given.get("method") or RunConfig.method
    method = METHODS.create(given.get("method") or values["method"])  # unknown method: fail before anything else
    names = dataset_names(given.get("dataset") or values.get("dataset") or RunConfig.dataset)
    plans, problems = [], []
    for name in names:
        card = get_card(name)
        # a dataset the file names keeps its origin, unless `all` is expanded into one run per card
        named = {} if "dataset" in values and "dataset" not in given and len(names) == 1 else \
            {"dataset": card.name if len(names) > 1 else name}
        resolved = resolve_run(card, method, given={**given, **named}, file=file)
        cfg = resolved.config
        problem = data_problem(card, data_root)
        source = method.keypoint_source(cfg.keypoints)
        if problem is None and source is not None:
            why = source_problem(source)  # a recipe's names, also inside oracle: / +noise= wrappers
            problem = f"dataset {card.name}: {why}" if why else None
        undated = loader_of(card).has_dates(card, dict(cfg.dataset_options)) is False
        if problem is None and cfg.exclude == "same-day" and undated:
            problem = no_dates_message(card.name)  # else a dry run passes and `prepare` fails
        if problem:
            problems.append(problem)
        plans += [Resolved(run, resolved.origins, resolved.warnings) for run in fold_runs(cfg)]
    if not problems:
        return plans, None
    head = f"{len(problems)} of {len(names)} datasets cannot run:\n" if len(names) > 1 else ""
    return plans, head + "\n".join(problems)


def input_points(kps: KeypointSet, sizes: np.ndarray, image_size: int) -> torch.Tensor:
    """Original-pixel keypoints -> model-input pixels (images are resized to image_size^2)."""
    scale = image_size / np.asarray(sizes, dtype=np.float64)  # (N, 2): x and y scale per image
    return torch.from_numpy((kps.points * scale[:, None, :]).astype(np.float32))


def backbone_provenance(cfg: RunConfig, backbone) -> dict:
    """Which weights the run used: random init, the hub, or a local file (with its sha256)."""
    out = {"architecture": type(backbone).__name__, "weights": getattr(backbone, "harness_weights", "random-init")}
    if out["weights"] == "file":
        digest = hashlib.sha256()
        with open(Path(cfg.weights).expanduser(), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out.update(weights="file", file=str(Path(cfg.weights).expanduser().resolve()), sha256=digest.hexdigest())
    elif out["weights"] == "hub":
        out.update(checkpoint=(getattr(backbone, "pretrained_cfg", None) or {}).get("hf_hub_id"))
    tokens = getattr(backbone, "harness_tokens", None)
    if tokens is not None:  # a frozen trunk's disk token set: how many images it ran on in this run
        out["token_cache"] = {**tokens.record(), "trunk_forwards": frozen_trunk(backbone).forwards}
    return out


@dataclass
class Prepared:
    """Everything a run needs before training; shared by `run` and tests."""

    cfg: RunConfig
    method: Method
    data: ReidData
    split: Split
    keypoints: KeypointSet | None
    days: np.ndarray | None = None  # each row's capture day (None: the dataset has no dates)
    side: QuerySide | None = None  # how much the split's test side can tell (chance top-1)


def no_dates_message(name: str) -> str:
    hint = " (the synthetic dataset has them with --dataset-option sessions=4)" if name == "synthetic" else ""
    return (f"--exclude same-day needs capture dates, and dataset {name} has none (no `date` column){hint}; "
            "run without --exclude")


def check_dates(cfg: RunConfig, data: ReidData, days: np.ndarray | None) -> None:
    if cfg.exclude == "same-day" and days is None:
        raise DataError(no_dates_message(data.name))


def prepare(cfg: RunConfig, data_root: Path | None = None, progress: bool = True) -> Prepared:
    prepared = prepare_split(cfg, data_root)
    source = prepared.method.keypoint_source(cfg.keypoints)
    if source is not None:
        card = get_card(cfg.dataset)
        prepared.keypoints = resolve_keypoints(source, prepared.data, cfg, progress=progress, card=card)
    return prepared


def prepare_split(cfg: RunConfig, data_root: Path | None = None) -> Prepared:
    """The data and the split, checked (capture dates, the test side, the batch size), without keypoints."""
    method = METHODS.create(cfg.method)
    card = get_card(cfg.dataset)
    data = load_dataset(card, dict(cfg.dataset_options), data_root)
    days = capture_days(data.df)
    check_dates(cfg, data, days)
    split = make_split(data.df, cfg.protocol, cfg.split_seed, dataset=data.split_key,
                       held_out=HeldOut(folds=cfg.folds, fold=cfg.fold, validate=cfg.validate), days=days)
    prepared = Prepared(cfg, method, data, split, None, days, query_side(data.df, split))
    check_test_side(prepared)
    check_batch_size(prepared, len(split.train))  # before any keypoint work: a propagation can take hours
    return prepared


def data_check(cfg: RunConfig, data_root: Path | None) -> None:
    """What a run checks of its data before it trains, raising the first problem: the data, the
    split's test side and the batch size against the training set (``prepare_split``), and whether
    the keypoints can be had for this data. Builds no model: seconds, even for a large dataset."""
    prepared = prepare_split(cfg, data_root)
    source = prepared.method.keypoint_source(cfg.keypoints)
    if source is not None:
        problem = keypoints_problem(source, Target(prepared.data, get_card(cfg.dataset), cfg, progress=False))
        if problem:  # most name the dataset already; those that do not get it in front
            raise DataError(problem if cfg.dataset in problem else f"dataset {cfg.dataset}: {problem}")


def model_check(cfg: RunConfig, results_dir: Path) -> None:
    """The first of the problems that would stop a run after it started that are not its data's:
    weights that cannot load, too little disk (``preflight_problems``)."""
    first = next(iter(preflight_problems(cfg, results_dir)), None)
    if first:
        raise DataError(first)


@dataclass
class Inputs:
    """Decoded images and keypoints of the whole dataset, and the rows each part of the split uses."""

    images: torch.Tensor  # (N, 3, S, S) uint8, usually memory-mapped
    points: torch.Tensor | None  # (N, K, 2) in model-input pixels
    identities: np.ndarray  # (N,) str
    train_rows: np.ndarray
    test_rows: np.ndarray
    skipped: list[int]  # rows whose image could not be read (--bad-images skip)


@dataclass
class Model:
    network: torch.nn.Module
    backbone: torch.nn.Module
    normalize: Normalizer


def check_test_side(prepared: Prepared) -> None:
    """Refuse a test side too small to mean anything (its top-1 would pass for a result) unless the
    run allows it; the open protocol has its own minimum (``check_open_size``) and its metrics are
    not top-1, so it is only recorded there."""
    side, cfg = prepared.side, prepared.cfg
    if side.small() and prepared.split.open is None and not cfg.allow_small_test:
        raise DataError(small_test_message(prepared.data.df, side, cfg.split_seed, prepared.data.name))


SMALL_TEST = "small-test-split"  # the caveat's id


def small_test_caveat(side: QuerySide) -> dict:
    return {"id": SMALL_TEST, "text": f"small test split ({side.describe()}), run with --allow-small-test: "
                                      "its numbers say little"}


def run_caveats(prepared: Prepared) -> list[dict]:
    """The method's caveats, and the small test side's when the run was allowed one."""
    small = prepared.side is not None and prepared.side.small() and prepared.split.open is None
    return list(prepared.method.caveats(prepared.cfg)) + ([small_test_caveat(prepared.side)] if small else [])


def check_batch_size(prepared: Prepared, n_train: int) -> None:
    if prepared.method.trains and prepared.cfg.epochs and n_train < prepared.cfg.batch_size:  # 0: no training
        raise ValueError(f"--batch-size {prepared.cfg.batch_size} is larger than the training set ({n_train} images): "
                         f"pass --batch-size {n_train} or less")


def make_backbone(cfg: RunConfig, method: Method):
    """The backbone, built first: a wrong backbone is reported before any data or keypoint work."""
    return create_backbone(cfg.backbone, cfg.image_size, bool(cfg.pretrained), cfg.weights,
                           require_patch_grid=method.uses_keypoints)


def build_model(prepared: Prepared, backbone) -> Model:
    categories = len(prepared.keypoints.categories) if prepared.keypoints is not None else 0
    normalize = Normalizer(*prepared.method.normalization(backbone))
    network = prepared.method.build_model(backbone, categories, init=prepared.cfg.kpe_init or "zero")
    if prepared.cfg.weights and isinstance(network, KeypointViT):  # a kept network: its keypoint embedding too
        network.restore_channel(kept_channel(prepared.cfg.weights), prepared.cfg.weights)
    return Model(network, backbone, normalize)


def decode_inputs(prepared: Prepared, progress: bool = True) -> Inputs:
    """Every image decoded once (cached), keypoints moved into model-input pixels; unreadable
    images dropped from the split (``--bad-images skip``) or a one-line error."""
    cfg, data = prepared.cfg, prepared.data
    images, sizes, bad = decode_images(data.root, list(data.df["path"]), cfg.image_size,
                                       bboxes=row_bboxes(data, range(len(data.df))),
                                       perturb=row_perturbations(data, range(len(data.df))),
                                       settings=DecodeSettings(bad_images=cfg.bad_images, progress=progress))
    if bad:
        print(f"warning: skipped {len(bad)} unreadable image(s) (--bad-images skip), e.g. "
              f"{data.root / data.df['path'].iloc[bad[0]]}", file=sys.stderr)
    points = input_points(prepared.keypoints, sizes, cfg.image_size) if prepared.keypoints is not None else None
    inputs = Inputs(images, points, data.df["identity"].astype(str).to_numpy(),
                    np.setdiff1d(prepared.split.train, bad), np.setdiff1d(prepared.split.test, bad), bad)
    check_batch_size(prepared, len(inputs.train_rows))  # again: skipped images may have shrunk it
    return inputs


def share_trunk_tokens(prepared: Prepared, model: Model, inputs: Inputs, device, progress: bool) -> None:
    """A frozen pretrained trunk's tokens of every decoded image from the disk token cache (computed
    once per token set: ``model/token_cache.py``). Not for a random-init trunk (it differs with the
    seed: nothing to share) nor on a GPU (where the trunk costs less than hashing its inputs)."""
    frozen = frozen_trunk(model.backbone)
    if frozen is None or device.type != "cpu" or model.backbone.harness_weights == "random-init":
        return
    cfg, data = prepared.cfg, prepared.data
    about = {"dataset": cfg.dataset, "dataset_options": dict(cfg.dataset_options), "fingerprint": data.fingerprint,
             "image_size": cfg.image_size, "mean": [round(v, 6) for v in model.normalize.mean.flatten().tolist()],
             "std": [round(v, 6) for v in model.normalize.std.flatten().tolist()],
             "weights": model.backbone.harness_weights}
    store = TokenStore.for_trunk(frozen.trunk, about)
    model.backbone.harness_tokens = fill(frozen, inputs.images, model.normalize, store, progress)


def train_model(prepared: Prepared, model: Model, inputs: Inputs, checkpoint: Checkpoint, device, dist: DistInfo,
                progress: bool) -> list[dict]:
    """Train (methods that train) with the run's loss terms (``--losses``, set by the method; by
    default ArcFace + lambda * CE); returns the per-epoch history."""
    if not prepared.method.trains:
        return []
    cfg = prepared.cfg
    identities = inputs.identities[inputs.train_rows]
    classes = {name: i for i, name in enumerate(sorted(set(identities)))}
    kps = prepared.keypoints
    perm = flip_permutation(kps.categories, kps.flip_pairs) if kps is not None else []
    train_data = TrainData(inputs.images, torch.tensor([classes[x] for x in identities]), inputs.points, perm,
                           rows=torch.from_numpy(inputs.train_rows))
    losses = build_losses(cfg.losses, model.network.embed_dim, train_data.num_classes, cfg)
    return train(model.network, losses, train_data, model.normalize, TrainSettings.from_config(cfg),
                 Runtime(device, dist, (checkpoint,), progress))


def embeddings(prepared: Prepared, model: Model, inputs: Inputs, device) -> tuple[dict, object]:
    """(the rows evaluation reads, ``take(rows)``): every needed image embedded once, whichever
    gallery rules the run is scored under."""
    rows = needed_rows(prepared.split, inputs.train_rows, inputs.test_rows, np.asarray(inputs.skipped, dtype=np.int64))
    vectors = embed(model.network, inputs.images, inputs.points, model.normalize, device, rows=rows["all"])
    return rows, table_lookup(rows["all"], vectors)


def reliance_embeddings(prepared: Prepared, model: Model, inputs: Inputs, rows: dict,
                        device) -> tuple[dict, dict] | None:
    """Keypoint reliance (methods that feed keypoints): the same trained model's embeddings of the
    evaluated rows with the keypoints removed and with whole point sets shuffled among those rows,
    as ``({variant: take}, how they were made)``; None for a method without keypoints."""
    if not prepared.method.uses_keypoints or inputs.points is None:
        return None
    t0 = time.perf_counter()
    # seeded by the run's --seed: runs of different methods on one fold and seed get the same permutation
    shuffled, shuffle = shuffle_point_sets(inputs.points, rows["all"], prepared.cfg.seed)
    points = {"keypoints_removed": removed_points(inputs.points), "keypoints_shuffled": shuffled}
    takes = {variant: table_lookup(rows["all"], embed(model.network, inputs.images, pts, model.normalize, device,
                                                      rows=rows["all"]))
             for variant, pts in points.items()}
    about = {"training": "none: the run's trained model, evaluated again with its keypoints altered",
             "keypoints_removed": "every point NaN: no patch holds a keypoint, so the keypoint embedding adds nothing",
             "keypoints_shuffled": "each evaluated image (query and gallery alike) gets the whole point set of "
                                   "another one: a random cycle over the evaluated images, seeded by shuffle.seed",
             "shuffle": shuffle, "seconds": round(time.perf_counter() - t0, 3)}
    return takes, about


def query_outcomes(prepared: Prepared, inputs: Inputs, per_query: dict) -> dict:
    """Every test query's outcome, columnwise: image id, identity, rank of the first correct match
    and average precision (None when the query cannot be answered)."""
    test = inputs.test_rows
    return {"image_id": prepared.data.df["image_id"].astype(str).to_numpy()[test].tolist(),
            "identity": inputs.identities[test].tolist(), **per_query}


@dataclass
class Outcome:
    """What training and evaluation produced."""
    scored: Scored
    history: list[dict]
    timing: list[dict]  # per epoch: seconds and the share spent waiting for data
    wall_time: float
    reliance: dict | None = None  # how the keypoint reliance metrics were computed (methods with keypoints)
    keep: Keep | None = None  # files asked for besides the record
    saved: dict | None = None  # what of them was written: {"weights": path, "embeddings": path}


@dataclass
class Provenance:
    """Where and from what code a run ran."""
    device: torch.device
    dist: DistInfo
    git: dict  # the commit this process started from (`records.git_state`)
    origins: dict  # config field -> where its value came from


def build_record(prepared: Prepared, model: Model, inputs: Inputs, outcome: Outcome, prov: Provenance) -> dict:
    cfg, data, ids = prepared.cfg, prepared.data, inputs.identities
    kps = prepared.keypoints
    device, dist = prov.device, prov.dist
    metrics, per_query = dict(outcome.scored.metrics), outcome.scored.per_query
    extra = {} if outcome.scored.open_set is None else {"open_set": outcome.scored.open_set}
    if outcome.reliance is not None:
        extra["keypoint_reliance"] = outcome.reliance
    if outcome.saved:
        extra["saved"] = dict(outcome.saved)
    return {**extra,
        "schema": records.SCHEMA_VERSION,
        "name": records.result_name(cfg),
        "config": cfg.to_dict(),
        "config_origins": prov.origins,
        "experiment": cfg.experiment_hash(),
        "seed": cfg.seed,
        "protocol": cfg.protocol,
        "split": {
            "fingerprint": prepared.split.fingerprint,
            "seed": cfg.split_seed,
            "folds": cfg.folds,
            "fold": cfg.fold,
            "validation": cfg.validate,
            "train_images": int(len(inputs.train_rows)),
            "test_images": int(len(inputs.test_rows)),
            "train_identities": int(len(set(ids[inputs.train_rows]))),
            "test_identities": int(len(set(ids[inputs.test_rows]))),
            "skipped_images": [str(data.df["image_id"].iloc[i]) for i in inputs.skipped],
            # expected top-1 (%) of a uniformly random ranking of each query's whole gallery (``QuerySide``)
            "chance_top1": _percent(prepared.side.chance_top1 if prepared.side else None),
        },
        "dataset": {"name": data.name, "fingerprint": data.fingerprint, "images": int(len(data.df)), **data.info},
        "backbone": backbone_provenance(cfg, model.backbone),
        "preprocessing": {"image_size": cfg.image_size, "resize": "PIL bilinear, straight to a square",
                          "mean": [round(float(v), 4) for v in model.normalize.mean.flatten()],
                          "std": [round(float(v), 4) for v in model.normalize.std.flatten()]},
        "caveats": run_caveats(prepared),
        "keypoints": None if kps is None else {
            "categories": list(kps.categories),
            "flip_pairs": [list(x) for x in kps.flip_pairs],
            "provenance": kps.provenance,
        },
        "metrics": metrics,
        "queries": query_outcomes(prepared, inputs, per_query),
        "history": outcome.history,
        "timing": {"epochs": outcome.timing, "processes": dist.world},
        "wall_time_s": round(outcome.wall_time, 3),
        "device": {"type": device.type, "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   "threads": torch.get_num_threads(), "processes": dist.world},
        "versions": records.package_versions(),
        "git": dict(prov.git),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100 * share, 2)


def score_rule(prepared: Prepared, inputs: Inputs, take, rows: dict, rule: str | None,
               reliance: tuple[dict, dict] | None) -> tuple[Scored, dict | None]:
    """The run's metrics under one gallery rule and, for a method with keypoints, its keypoint
    reliance metrics under the same rule (``<metric>_keypoints_removed`` / ``_shuffled``)."""
    scored = score(take, inputs.identities, prepared.split, rows, prepared.days, rule)
    if reliance is None:
        return scored, None
    takes, about = reliance
    variants = {variant: score(other, inputs.identities, prepared.split, rows, prepared.days, rule, warn=False)
                for variant, other in takes.items()}
    extra = reliance_metrics(variants)
    scored.metrics.update(extra)
    return scored, {"metrics": list(extra), **about, "exclude": rule}


def _shared_with(path: Path) -> str | None:
    """The run whose training an existing twin record was scored from (None: no such file, or the
    twin is a run of its own)."""
    try:
        return records.read_result(path).get("training_shared_with") if path.exists() else None
    except ResultsError:
        return None


def write_query_log(prepared: Prepared, inputs: Inputs, scored: Scored, record_path: Path) -> dict:
    """The record's per-query log (each query's top-k matches), written beside it before it."""
    image_ids = prepared.data.df["image_id"].astype(str).to_numpy()
    return records.write_query_log(records.query_log_path(record_path), scored.top, image_ids[inputs.test_rows],
                                   image_ids, inputs.identities)


def score_and_write(prepared: Prepared, model: Model, inputs: Inputs, trained: Outcome, prov: Provenance,
                    results_dir: Path, force: bool) -> tuple[dict, Path]:
    """Score the trained model and write the run's record; on a dataset with capture days also its
    twin under the other gallery rule (``exclude`` flipped between None and same-day), from the same
    training: the rule changes evaluation only. A twin whose record exists is never replaced, except
    under ``force`` when it came from this run's own earlier training (``training_shared_with``):
    recomputing a run must not leave its twin from the old training.
    ``trained.wall_time`` holds the run's start time here. Returns the run's own (record, path)."""
    cfg, own = prepared.cfg, None
    rows, take = embeddings(prepared, model, inputs, prov.device)
    if trained.keep is not None and trained.keep.embeddings is not None:
        trained.saved = {**(trained.saved or {}), "embeddings": str(export_embeddings(prepared, inputs, rows, take,
                                                                                     trained.keep.embeddings))}
    reliance = reliance_embeddings(prepared, model, inputs, rows, prov.device)
    # a dataset without days, or a split the rule changes nothing in, has no twin
    days = prepared.days if same_day_matters(inputs.identities, prepared.days, prepared.split, rows) else None
    for rule in gallery_rules(cfg.exclude, days):
        run = replace(prepared, cfg=replace(cfg, exclude=rule))
        path = records.result_path(results_dir, run.cfg)
        twin = rule != cfg.exclude
        replace_twin = twin and force and _shared_with(path) == records.result_name(cfg)
        if twin and path.exists() and not replace_twin:
            continue
        scored, about = score_rule(run, inputs, take, rows, rule, reliance)
        outcome = replace(trained, scored=scored, reliance=about, wall_time=time.perf_counter() - trained.wall_time)
        origins = {**prov.origins, "exclude": f"the training of {records.result_name(cfg)}"} if twin else prov.origins
        record = build_record(run, model, inputs, outcome, replace(prov, origins=origins))
        record["query_log"] = write_query_log(prepared, inputs, scored, path)
        if not twin:
            own = (record, records.write_record(path, record, overwrite=force))
            continue
        record["training_shared_with"] = records.result_name(cfg)
        try:
            written = records.write_record(path, record, overwrite=replace_twin)
        except ResultsError:  # another process wrote it meanwhile: theirs stays
            continue
        print(f"also wrote {written}: the same training scored with exclude={rule}", file=sys.stderr)
    return own


def export_embeddings(prepared: Prepared, inputs: Inputs, rows: dict, take, path: Path) -> Path:
    """The evaluated rows' embeddings with their image ids, identities and side of the split."""
    evaluated = rows["all"]
    table = pd.DataFrame({"image_id": prepared.data.df["image_id"].astype(str).to_numpy()[evaluated],
                          "identity": inputs.identities[evaluated],
                          "split": np.where(np.isin(evaluated, inputs.test_rows), "test", "train")})
    return save_embeddings(path, take(evaluated), table)


def execute(cfg: RunConfig, results_dir: Path, *, data_root: Path | None = None, force: bool = False,
            progress: bool = True, origins: dict | None = None, keep: Keep | None = None) -> tuple[dict | None, Path]:
    """Run one experiment and write its record; returns (record, path); under torchrun the other
    ranks return (None, path). A run killed part-way resumes from its last finished epoch when
    started again with the same config and seed. ``keep``: files to write besides the record
    (embeddings, the trained backbone's weights), named in the record's ``saved``."""
    t0 = time.perf_counter()
    started_from = records.git_state()  # read before the long part: a commit made meanwhile is not this code
    results_dir = records.check_writable(results_dir)
    out_path = records.result_path(results_dir, cfg)
    if out_path.exists() and not force:
        raise ResultsError(f"{out_path} already exists; pass --force to recompute it")
    dist = distributed.from_env()
    with records.RunLock(results_dir, out_path.stem) if dist.is_main else contextlib.nullcontext():
        device = distributed.setup(dist, pick_device(cfg.device))
        seed_everything(cfg.seed)
        backbone = make_backbone(cfg, METHODS.create(cfg.method))
        with torch.random.fork_rng(devices=[]):  # a reference source that builds a model (Grad-CAM,
            prepared = prepare(cfg, data_root, progress=progress)  # DINOv2) must not move the heads' init
        model = build_model(prepared, backbone)
        inputs = decode_inputs(prepared, progress)
        share_trunk_tokens(prepared, model, inputs, device, progress)
        checkpoint = Checkpoint(results_dir / ".checkpoints" / f"{out_path.stem}.pt", save=dist.is_main,
                                on_resume=lambda epoch: print(f"resuming {out_path.stem} after epoch {epoch}",
                                                              file=sys.stderr))
        if force:
            checkpoint.discard()
        history = train_model(prepared, model, inputs, checkpoint, device, dist, progress)
        timing = [{"epoch": h["epoch"], "seconds": h.pop("seconds"), "data_share": h.pop("data_share")}
                  for h in history]
        if not dist.is_main:  # rank 0 alone evaluates and writes
            distributed.barrier(dist)
            return None, out_path
        saved = {"weights": str(save_weights(keep.weights, model.network))} if keep and keep.weights else None
        trained = Outcome(None, history, timing, t0, keep=keep, saved=saved)
        record, path = score_and_write(prepared, model, inputs, trained,
                                       Provenance(device, dist, started_from, origins or {}), results_dir, force)
        checkpoint.discard()
        distributed.barrier(dist)
        return record, path
