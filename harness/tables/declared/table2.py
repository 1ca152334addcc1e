"""Table 2: which source marks the reference image's keypoints (Grad-CAM, the expert, GPT-4)."""
from __future__ import annotations

from ..cells import Axis, Table
from ..declarations import declare
from ..settings import NOT_OFFLINE_GPT4, TINY_SD_OPTS

TABLE = declare(Table(
    id="2", title="Keypoint source of the reference image (CKPE, ViT-large, MacaqueFaces)",
    rows=(Axis("CKPE"),),
    cols=(Axis("Grad-CAM (ResNet)", {"keypoints": "gradcam-resnet@dift"},
               tiny={"keypoints": f"gradcam-resnet@sd:{TINY_SD_OPTS},ref_model=tiny-random-resnet"}),
          Axis("Grad-CAM (ViT)", {"keypoints": "gradcam-vit@dift"},
               tiny={"keypoints": f"gradcam-vit@sd:{TINY_SD_OPTS},ref_model=tiny-random-vit"}),
          Axis("Expert", {"keypoints": "expert@dift"}, tiny={"keypoints": f"ground-truth@sd:{TINY_SD_OPTS}"}),
          Axis("GPT-4", {"keypoints": "gpt4@dift"}, tiny=NOT_OFFLINE_GPT4)),
    paper=((96.9, 97.7, 99.2, 99.2),),
    base={"method": "ckpe", "dataset": "macaquefaces"},
    settings_base={"tiny": {"dataset_options": {"part_markers": "true"}}},
    comparisons=(("CKPE|Expert", "CKPE|GPT-4"), ("CKPE|Expert", "CKPE|Grad-CAM (ResNet)"),
                 ("CKPE|Expert", "CKPE|Grad-CAM (ViT)")),
    note="Every source annotates the same reference image (the card's reference_image, 20: the expert's) with "
         "K = 3, and DIFT propagates it. The paper's GPT-4 99.20 equals Table 3's best (99.2) and Table 5's "
         "large K = 3. Small: only the Expert column runs (it is Table 1's CKPE cell); Grad-CAM and GPT-4 need "
         "weights or the network. Tiny: the "
         "synthetic ground truth stands in for the expert; Grad-CAM runs on tiny random-init classifiers; a "
         "tiny random-init SD propagates (real pipelines, random weights).",
    order=20,
))
