"""Choosing the small setting's hyperparameters and featurizer without looking at any test fold.

Every candidate trains on the inner training part of fold 0's training identities and is scored
on the held-out fifth of them (``validate=True``: the outer test identities are not touched). Each
candidate runs with the plain ViT and with CKPE, so the choice favours neither; the score is the
mean of their validation top-1. Candidates are the overrides below on top of the small setting;
the featurizer step scores the offline featurizers' keypoints by CKPE's validation top-1 with the
chosen training settings (when that does not separate them, where the points land decides; the
docs/small-setting.md says which). `harness tune` runs what is missing and prints the table the choice in
``declarations.SMALL_CHOICE`` / ``SMALL_KEYPOINTS`` was read from; the records stay in
``results/small-validation/``.

Fold 0's validation identities are test identities of other folds: the choice is made once, for
every method alike, before any test fold is looked at, but it is not a nested cross-validation.

The choice was made before the keypoint channel became an option, so its CKPE trials are pinned to
the channel every run then had (``ZERO_CHANNEL``): the table shows the evidence the choice rests on,
and `harness tune` does not quietly re-run it under another channel.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..data.loaders import get_card
from ..engine.records import read_result, result_path
from ..engine.run import resolve_run
from ..method import METHODS
from .settings import SMALL_COMMON, ZERO_CHANNEL

TUNING_METHODS = ("vit", "ckpe")
# training settings: a first guess, then one axis at a time around it (lr, epochs, ArcFace scale and
# margin, augmentation); the single best candidate is chosen, no combination of axes
_GUESS = {"lr": 0.002, "epochs": 15, "arcface_scale": 16.0, "arcface_margin": 0.2, "augment": "none", "hflip": 0.0}
TRAINING_CANDIDATES: tuple[dict, ...] = (
    _GUESS,
    {**_GUESS, "lr": 0.001}, {**_GUESS, "lr": 0.004},
    {**_GUESS, "epochs": 10}, {**_GUESS, "epochs": 25},
    {**_GUESS, "arcface_scale": 32.0, "arcface_margin": 0.3}, {**_GUESS, "arcface_scale": 64.0, "arcface_margin": 0.5},
    {**_GUESS, "hflip": 0.5}, {**_GUESS, "augment": "randaugment", "randaugment_magnitude": 9},
)
FEATURIZER_CANDIDATES = ("expert@sift", "expert@spin")
TUNING_KEYPOINTS = FEATURIZER_CANDIDATES[0]  # the training candidates' CKPE keypoints (fixed, so no circle)
VALIDATION_FOLDER = "small-validation"


@dataclass(frozen=True)
class Trial:
    label: str
    overrides: dict
    method: str

    def config(self) -> RunConfig:
        card = get_card("macaquefaces")
        given = {**SMALL_COMMON, "keypoints": TUNING_KEYPOINTS, **self.overrides, "method": self.method,
                 "fold": 0, "validate": True, "seed": 0}
        if METHODS.create(self.method).encoding != "none":  # a keypoint method: the channel it was tuned with
            given.update(ZERO_CHANNEL)
        return resolve_run(card, METHODS.create(self.method), cell=given).config


def trials(choice: dict | None = None) -> list[Trial]:
    """Every tuning run: the training candidates (both methods), then the featurizers (CKPE) with
    the training settings ``choice``."""
    out = [Trial(describe(c), c, method) for c in TRAINING_CANDIDATES for method in TUNING_METHODS]
    for recipe in FEATURIZER_CANDIDATES:
        out.append(Trial(f"keypoints {recipe}", {**(choice or TRAINING_CANDIDATES[0]), "keypoints": recipe}, "ckpe"))
    return out


def describe(overrides: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items())


def scores(results_dir: Path, chosen: dict | None = None) -> list[tuple[Trial, float | None]]:
    """Each trial and its validation top-1 (None: not run yet)."""
    out = []
    for trial in trials(chosen):
        path = result_path(results_dir, trial.config())
        out.append((trial, read_result(path)["metrics"]["top1"] if path.exists() else None))
    return out


def best_training(results_dir: Path) -> tuple[dict, list[tuple[str, dict]]]:
    """The training candidate with the highest mean validation top-1 over the tuning methods (ties:
    the earlier, i.e. simpler, candidate), and every candidate's per-method scores."""
    table = []
    by_label = {}
    for trial, value in scores(results_dir):
        if trial.label.startswith("keypoints "):
            continue
        by_label.setdefault(trial.label, {"overrides": trial.overrides})[trial.method] = value
    for label, row in by_label.items():
        table.append((label, row))
    complete = [(label, row) for label, row in table if all(row.get(m) is not None for m in TUNING_METHODS)]
    if not complete:
        return {}, table
    best = max(complete, key=lambda item: sum(item[1][m] for m in TUNING_METHODS))
    return best[1]["overrides"], table


def tuning_lines(folder: Path) -> list[str]:
    """The validation table of the small setting's training candidates and featurizers, and the
    choice, as `harness tune` prints it."""
    chosen, table = best_training(folder)
    lines = ["validation top-1 (%), fold 0's inner split; candidate: " + " | ".join(TUNING_METHODS) + " | mean"]
    for label, row in table:
        values = [row.get(m) for m in TUNING_METHODS]
        shown = " | ".join("-" if v is None else f"{v:.1f}" for v in values)
        mean = "-" if None in values else f"{sum(values) / len(values):.1f}"
        lines.append(f"  {label}: {shown} | {mean}")
    lines.append(f"chosen training settings: {describe(chosen) if chosen else '(incomplete)'}")
    lines += [f"  {trial.label} (ckpe): {'-' if value is None else f'{value:.1f}'}"
              for trial, value in scores(folder, chosen or None) if trial.label.startswith("keypoints ")]
    return lines
