"""Choosing how the keypoint embedding starts and learns (``--kpe-init``, ``--kpe-lr-scale``) by
evidence, never on a test fold.

The paper says only that W is learnable. From zero, at the backbone's learning rate, the channel can
stay too small to matter (under SGD lr 1e-3 it reached 0.2% of the patch-token norm in 200 steps on
a probe that needs the keypoint), so the choice decides whether CKPE is CKPE at all. Every
candidate trains CKPE on the inner training part of fold 0's training identities of the
known-answer control's data and is scored on the held-out fifth (``validate=True``): in both
layouts (the standard synthetic faces, and ``scramble``, where the keypoints are necessary) and
under both recipes (the synthetic card's AdamW and the paper's SGD, the real cells' optimizer). The
same is asked of real animals: Table 1's small CKPE cell on MacaqueFaces (SIFT-propagated expert
points, the small card's AdamW), on fold 0's inner validation identities, where the data is there.
The plain ViT runs beside each group as its floor. A candidate's score per group (data x recipe) is
its mean validation top-1 over the group's layouts; a group in which no candidate beats the plain
ViT by ``INFORMATIVE`` points cannot rank them (a recipe that does not train the model, e.g. SGD at
lr 1e-3 on a random-init ViT) and chooses nothing. `harness tune --channel` runs what is missing
and prints the table.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..config import RunConfig
from ..data.loaders import get_card
from ..engine.records import read_result, result_path
from ..engine.run import resolve_run
from ..method import METHODS
from .cells import cells, resolve_cell
from .declarations import get_table
from .declared.control import NECESSARY, PAPER_SGD

# (init, lr scale): today's zero start; timm's position-embedding start; the tokens' own scale; and a
# faster-learning zero or token start (30x: where the probe's micro ViT learned the keypoint in 120 steps)
CHANNEL_CANDIDATES: tuple[tuple[str, float], ...] = (
    ("zero", 1.0), ("normal", 1.0), ("token", 1.0), ("zero", 30.0), ("token", 30.0))
LAYOUTS = {"standard": {}, "scrambled": NECESSARY}
RECIPES = {"adamw": {}, "sgd": PAPER_SGD}
# real animals: the small setting's Table 1 cells on MacaqueFaces (their card's AdamW recipe only:
# the paper's SGD does not train a random-init micro ViT, as the synthetic SGD group shows)
REAL_LAYOUT, REAL_TABLE, REAL_SETTING, REAL_COLUMN = "macaquefaces", "1", "small", "MacaqueFaces"
REAL_ROWS = {"vit": "ViT, no keypoints", "ckpe": "ours (CKPE)"}
CHANNEL_FOLDER = "channel-selection"
INFORMATIVE = 10.0  # top-1 points over the plain ViT (mean over layouts) before a recipe ranks candidates


@dataclass(frozen=True)
class ChannelTrial:
    method: str
    layout: str
    recipe: str
    channel: tuple[str, float] | None  # None: the plain ViT (no channel)

    @property
    def label(self) -> str:
        return "ViT, no keypoints" if self.channel is None else f"{self.channel[0]} x{self.channel[1]:g}"

    @property
    def group(self) -> str:
        """The evidence group it is ranked in: its data and recipe."""
        return f"{'macaquefaces' if self.layout == REAL_LAYOUT else 'synthetic'}, {self.recipe}"

    def config(self) -> RunConfig:
        if self.layout == REAL_LAYOUT:
            return self._real_config()
        given = {"dataset": "synthetic", "folds": 5, "fold": 0, "validate": True, "seed": 0, "method": self.method,
                 **LAYOUTS[self.layout], **RECIPES[self.recipe]}
        if self.channel is not None:
            given.update(kpe_init=self.channel[0], kpe_lr_scale=self.channel[1])
        given["dataset_options"] = {str(k): str(v) for k, v in (given.get("dataset_options") or {}).items()}
        return resolve_run(get_card("synthetic"), METHODS.create(self.method), cell=given).config

    def _real_config(self) -> RunConfig:
        cell = next(c for c in cells(get_table(REAL_TABLE), REAL_SETTING)
                    if c.row == REAL_ROWS[self.method] and c.col == REAL_COLUMN)
        given = {**cell.overrides, "validate": True}
        if self.channel is not None:
            given.update(kpe_init=self.channel[0], kpe_lr_scale=self.channel[1])
        return resolve_cell(replace(cell, overrides=given), seed=0, fold=0)


def _group_trials(layout: str, recipe: str) -> list[ChannelTrial]:
    return [ChannelTrial("vit", layout, recipe, None),
            *(ChannelTrial("ckpe", layout, recipe, c) for c in CHANNEL_CANDIDATES)]


def channel_trials() -> list[ChannelTrial]:
    """Per layout and recipe: the plain ViT, then CKPE under every candidate; the synthetic layouts
    first, then MacaqueFaces."""
    synthetic = [t for layout in LAYOUTS for recipe in RECIPES for t in _group_trials(layout, recipe)]
    return synthetic + _group_trials(REAL_LAYOUT, "adamw")


def channel_scores(folder: Path) -> list[tuple[ChannelTrial, dict | None]]:
    """Each trial and its record's validation top-1 and last-epoch channel share (None: not run)."""
    out = []
    for trial in channel_trials():
        path = result_path(folder, trial.config())
        if not path.exists():
            out.append((trial, None))
            continue
        record = read_result(path)
        last = (record.get("history") or [{}])[-1]
        out.append((trial, {"top1": record["metrics"]["top1"], "kpe_share": last.get("kpe_share"),
                            "top1_removed": record["metrics"].get("top1_keypoints_removed")}))
    return out


def _mean(scores: list[tuple[ChannelTrial, dict | None]], group: str, channel) -> float | None:
    values = [s["top1"] if s else None for t, s in scores if t.group == group and t.channel == channel]
    return None if None in values or not values else sum(values) / len(values)


def best_channel(scores: list[tuple[ChannelTrial, dict | None]]) -> dict[str, tuple[str, float] | str | None]:
    """Per evidence group (data, recipe), in the order of ``scores``: the candidate with the highest
    mean CKPE validation top-1 over the group's layouts (ties: the earlier candidate); None while a
    trial of that group has no record; a sentence instead when no candidate beats the plain ViT by
    ``INFORMATIVE`` points (the group cannot rank them)."""
    chosen: dict[str, tuple[str, float] | str | None] = {}
    for group in dict.fromkeys(t.group for t, _ in scores):
        means = {c: _mean(scores, group, c) for c in CHANNEL_CANDIDATES}
        floor = _mean(scores, group, None)
        if floor is None or None in means.values():
            chosen[group] = None
            continue
        best = max(CHANNEL_CANDIDATES, key=lambda c: means[c])
        gain = means[best] - floor
        chosen[group] = best if gain >= INFORMATIVE else (
            f"uninformative: no candidate beats the plain ViT by {INFORMATIVE:g} points (best {best[0]} "
            f"x{best[1]:g}, {gain:+.1f})")
    return chosen


def channel_lines(folder: Path) -> list[str]:
    """The validation table and each group's choice, as `harness tune --channel` prints it."""
    scores = channel_scores(folder)
    lines = ["validation top-1 (%), fold 0's inner split (the control's data; MacaqueFaces, Table 1's small cells); "
             "CKPE's last-epoch kpe_share and top-1 with its keypoints removed in brackets"]
    for trial, value in scores:
        shown = "-" if value is None else f"{value['top1']:.1f}"
        if value and value["kpe_share"] is not None:
            shown += f" [share {value['kpe_share']:.3f}, removed {value['top1_removed']:.1f}]"
        lines.append(f"  {trial.layout}, {trial.recipe}, {trial.label}: {shown}")
    for group, best in best_channel(scores).items():
        shown = best if isinstance(best, str) else f"--kpe-init {best[0]} --kpe-lr-scale {best[1]:g}" if best else None
        lines.append(f"best for {group}: {shown or '(incomplete)'}")
    return lines
