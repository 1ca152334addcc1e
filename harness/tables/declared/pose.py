"""The positive control: pose-perturbed faces, scored across days, CKPE on oracle points beside the
propagated ones."""
from __future__ import annotations

from ..cells import Axis, Table
from ..declarations import declare
from ._parts import POSE_BASE, POSE_COL, POSE_SETTINGS_BASE, TINY_PROPAGATED, oracle_axis, task_row

# the task rows, except that KPE/CKPE propagate in the tiny stand-in too (the perturbed images' own
# points), and the oracle row beside them
POSE_ROWS = (task_row("WildLife Dataset"),
             Axis("ours (KPE)", {"method": "kpe"}, tiny={"method": "kpe", **TINY_PROPAGATED}),
             Axis("ours (CKPE)", {"method": "ckpe"}, tiny={"method": "ckpe", **TINY_PROPAGATED}),
             oracle_axis("CKPE, oracle points"),
             *(task_row(label) for label in ("fixed template", "random points", "ViT, no keypoints")))
POSE_COMPARISONS = tuple((f"{a}|{POSE_COL}", f"{b}|{POSE_COL}") for a, b in (
    ("ours (CKPE)", "ViT, no keypoints"), ("ours (CKPE)", "fixed template"), ("CKPE, oracle points", "ViT, no keypoints"),
    ("CKPE, oracle points", "fixed template"), ("ours (KPE)", "ViT, no keypoints"), ("ours (CKPE)", "random points"),
    ("CKPE, oracle points", "ours (CKPE)"), ("ours (CKPE)", "WildLife Dataset")))


TABLE = declare(Table(
    id="pose", title="Positive control: pose-perturbed faces, another day (top-1 %)",
    rows=POSE_ROWS, cols=(Axis(POSE_COL, {"dataset": "macaquefaces"}),),
    paper=((None,),) * len(POSE_ROWS), base=POSE_BASE, settings_base=POSE_SETTINGS_BASE,
    comparisons=POSE_COMPARISONS,
    note="Every image (and its keypoints) moved by its own similarity transform (`--dataset-option "
         "perturb=strong`: rotation +-30 degrees, scale 0.8-1.2, shift +-10%; transform seed 0), scored across "
         "days (`--exclude same-day`; each run also writes its whole-gallery twin). KPE/CKPE propagate the "
         "expert's reference afresh onto the perturbed images; the oracle row gets the aligned set's points "
         "moved by each image's exact transform; the fixed template is wrong here by construction. The "
         "question: does CKPE beat the plain ViT and the template when pose varies?",
    order=90,
))
