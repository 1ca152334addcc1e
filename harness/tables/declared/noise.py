"""How good must propagation be: CKPE on perturbed faces, the oracle points plus Gaussian noise."""
from __future__ import annotations

from ..cells import Axis, Table
from ..declarations import declare
from ._parts import POSE_BASE, POSE_COL, POSE_SETTINGS_BASE, oracle_axis

NOISE_SIGMAS = ("0", "0.25", "0.5", "1", "2")  # patch widths


TABLE = declare(Table(
    id="noise", title="How good must propagation be: CKPE on perturbed faces, oracle points + noise (top-1 %)",
    rows=tuple(oracle_axis(sigma, "" if sigma == "0" else f"+noise={sigma}") for sigma in NOISE_SIGMAS),
    cols=(Axis(POSE_COL, {"dataset": "macaquefaces"}),),
    paper=((None,),) * len(NOISE_SIGMAS), base=POSE_BASE, settings_base=POSE_SETTINGS_BASE,
    comparisons=tuple((f"{s}|{POSE_COL}", f"0|{POSE_COL}") for s in NOISE_SIGMAS[1:]),
    plot={"xlabel": "Gaussian noise on the oracle keypoints, sigma (patch widths)", "axis": "rows"},
    note="The pose table's oracle cell (sigma 0, the same runs) with Gaussian noise of sigma patch widths "
         "added to every point, the same points at training and test, drawn per image from its id. Where "
         "the curve falls to the plain ViT's level of the pose table, propagation that bad is worth nothing.",
    order=100,
))
