"""Table 3: the diffusion timestep of the features that propagate the reference's keypoints."""
from __future__ import annotations

from ..cells import Axis, Table
from ..declarations import declare
from ..settings import TINY_SD_OPTS

T3_STEPS = (0, 50, 100, 150, 200, 250, 300, 500, 1000)


TABLE = declare(Table(
    id="3", title="Diffusion timestep of the propagation features (CKPE, ViT-large, MacaqueFaces)",
    rows=(Axis("CKPE"),),
    cols=tuple(Axis(str(t), {"keypoints": f"expert@dift:timestep={min(t, 999)}"},
                    tiny={"keypoints": f"ground-truth@sd:{TINY_SD_OPTS},timestep={min(t, 999)}"})
               for t in T3_STEPS),
    paper=((98.9, 98.9, 98.2, 98.9, 99.2, 99.2, 99.2, 97.2, 96.9),),
    base={"method": "ckpe", "dataset": "macaquefaces"},
    settings_base={"tiny": {"dataset_options": {"part_markers": "true"}}},
    comparisons=tuple((f"CKPE|{a}", f"CKPE|{b}") for a, b in zip(T3_STEPS, T3_STEPS[1:])),
    note="The paper's GPT-4 keypoints are replaced by the expert reference (Table 2: both 99.2). The "
         "scheduler's last timestep is 999: column 1000 runs t = 999. Tiny: synthetic ground truth of the "
         "reference image, tiny random-init SD.",
    plot={"xlabel": "diffusion timestep t"},
    order=30,
))
