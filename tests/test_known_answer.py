"""The known-answer test: on synthetic faces whose identity is which colour sits at which part, CKPE
(told where each part is) must beat the plain ViT by a wide margin, and taking its keypoints away at
test time must take most of that margin away. If the keypoint pathway breaks anywhere (token masks,
the encoding, its hook, the points' geometry, the channel's start or learning rate) this fails: the
harness's keypoint nulls stand beside this proof that it can see a keypoint effect where one exists.

The runs are the control table's tiny cells (the card's data, 12 epochs; fold 0, seed 0), so the
test and the table cannot drift apart; on a CPU the numbers are the same on every run."""
from harness.engine.run import execute
from harness.tables.cells import cells, resolve_cell
from harness.tables.declarations import get_table

MARGIN = 40.0  # CKPE - ViT top-1 points, at least (measured: 86.9 - 10.0)
KEPT = 1 / 3  # with its keypoints removed, CKPE keeps at most this share of its margin (measured: 0.19)


def _metrics(row: str, tmp_path) -> dict:
    (cell,) = [c for c in cells(get_table("control"), "tiny") if c.row == row and c.col == "AdamW (card)"]
    record, _ = execute(resolve_cell(cell, seed=0, fold=0), tmp_path, progress=False)
    return record["metrics"]


def test_ckpe_sees_what_the_plain_vit_cannot_and_loses_it_without_its_keypoints(tmp_path):
    ckpe = _metrics("CKPE", tmp_path)
    vit = _metrics("ViT, no keypoints", tmp_path)
    margin = ckpe["top1"] - vit["top1"]
    print(f"known answer: CKPE {ckpe['top1']:.1f}, ViT {vit['top1']:.1f}, CKPE without its keypoints "
          f"{ckpe['top1_keypoints_removed']:.1f}, shuffled {ckpe['top1_keypoints_shuffled']:.1f}, "
          f"chance {ckpe['chance_top1']:.1f}")
    assert margin >= MARGIN, (ckpe["top1"], vit["top1"])
    assert ckpe["top1_keypoints_removed"] - vit["top1"] <= KEPT * margin, (ckpe["top1_keypoints_removed"], vit["top1"])
    assert ckpe["top1_keypoints_shuffled"] <= vit["top1"] + KEPT * margin  # another image's points mislead it
    assert abs(vit["top1"] - ckpe["chance_top1"]) < 10  # the plain ViT barely beats chance here
