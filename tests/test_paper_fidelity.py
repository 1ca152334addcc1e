"""The paper's configuration, pinned: every declared real cell resolves to the paper's experiment
(ViT-huge in Table 1, K = 3, one propagated reference, one reference image per table, the
WildlifeDatasets training recipe, DIFT's propagation), and the pieces that recipe needs work:
RandAugment that moves keypoints, decay-free norms/tokens, gradient accumulation."""
import math

import numpy as np
import pytest
import torch

from harness.config import RunConfig
from harness.data.loaders import get_card
from harness.engine.augment import NAMES, RandAugment
from harness.engine.settings import TrainSettings
from harness.engine.train import parameter_groups
from harness.keypoints.references import REFERENCE_SOURCES, AnnotateOptions
from harness.model.tokens import hflip, token_mask
from harness.tables import cells as table_cells
from harness.tables import declarations as tables
from harness.tables import settings as table_settings

WILDLIFE_RECIPE = dict(optimizer="sgd", lr=1e-3, lr_min=1e-6, momentum=0.9, weight_decay=0.0, warmup_epochs=0.0,
                       batch_size=128, augment="randaugment", randaugment_ops=2, randaugment_magnitude=20,
                       arcface_margin=0.5, arcface_scale=64.0, ce_weight=0.2, epochs=100)


def resolved(table: str, setting: str = "real") -> dict:
    return {c.key: table_cells.resolve_cell(c) for c in table_cells.cells(tables.get_table(table), setting) if c.overrides}


def test_table_1_runs_vit_huge_k3_and_propagates_one_reference():
    t1 = resolved("1")
    for col, recipe, k in (("MacaqueFaces", "expert@dift", 3), ("Giraffe", "gpt4@dift", 3),
                           ("IPandas", "ground-truth@dift", 2), ("CTai", "ground-truth@dift", 3)):
        for row in ("ours (KPE)", "ours (CKPE)"):
            cfg = t1[f"{row}|{col}"]
            assert (cfg.backbone, cfg.keypoints, cfg.num_keypoints, cfg.folds) == ("huge", recipe, k, 5), (row, col)
            assert {f: getattr(cfg, f) for f in WILDLIFE_RECIPE} == WILDLIFE_RECIPE
        assert t1[f"fixed template|{col}"].keypoints == recipe.replace("@dift", "@template")
        assert t1[f"random points|{col}"].num_keypoints == k and t1[f"ViT, no keypoints|{col}"].keypoints is None
    # per-image annotations only as the labelled oracle row, and only where they exist
    assert t1["CKPE, per-image annotations (oracle)|CTai"].keypoints == "ground-truth"
    assert "CKPE, per-image annotations (oracle)|MacaqueFaces" not in t1
    # the baseline: frozen MegaDescriptor, its training fields not applied; the anchor: closed split
    base, anchor = t1["WildLife Dataset|MacaqueFaces"], t1["WildLife Dataset, closed protocol|MacaqueFaces"]
    assert (base.backbone, base.image_size, base.epochs, base.lr, base.keypoints) == ("megadescriptor", 384, None, None, None)
    assert (anchor.protocol, anchor.folds) == ("closed", None)
    anchor_cell = next(c for c in table_cells.cells(tables.get_table("1")) if c.row.startswith("WildLife Dataset, closed"))
    assert anchor_cell.paper == 99.04  # wildlife-tools' published top-1, not the paper's


def test_reference_sources_of_a_table_share_k_and_the_reference_image(tmp_path):
    t2 = resolved("2")
    assert {cfg.keypoints for cfg in t2.values()} == {"gradcam-resnet@dift", "gradcam-vit@dift", "expert@dift", "gpt4@dift"}
    assert {(cfg.num_keypoints, cfg.backbone) for cfg in t2.values()} == {(3, "large")}
    assert resolved("3")["CKPE|1000"].keypoints == "expert@dift:timestep=999"
    assert {cfg.num_keypoints for cfg in resolved("4").values() if cfg.method != "vit"} == {3}
    t5 = resolved("5")
    assert [t5[f"large|{k}"].num_keypoints for k in (1, 3, 6, 10)] == [1, 3, 6, 10]
    assert t5["large|3"] == resolved("6-7")["large|keypoint (3)"]  # one experiment, run once
    # every source annotates the card's reference image (the expert's image 20 on MacaqueFaces)
    card = get_card("macaquefaces")
    assert card.reference_image == "20"
    from harness.data.dataset import ReidData
    import pandas as pd

    df = pd.DataFrame({"image_id": [str(i) for i in range(30)], "identity": ["a"] * 30, "path": ["x.png"] * 30})
    data = ReidData("macaquefaces", tmp_path, df, card.categories, card.flip_pairs)
    for name in ("gpt4", "gradcam-resnet", "gradcam-vit", "ground-truth"):
        assert REFERENCE_SOURCES.create(name).row(data, card, AnnotateOptions(num_keypoints=3)) == 20, name


def test_small_and_tiny_settings_keep_the_tables_question():
    small = resolved("6-7", "small")
    assert set(small) == {f"{size}|{col}" for size in ("base", "large", "huge") for col in
                          ("random (1)", "keypoint (1)", "random (3)", "keypoint (3)", "template (1)", "template (3)",
                           "no keypoints")}
    assert [small[f"{s}|keypoint (3)"].backbone for s in ("base", "large", "huge")] == ["mini", "micro", "midi"]
    assert small["large|keypoint (1)"].keypoints == table_settings.SMALL_KEYPOINTS
    assert small["large|template (3)"].keypoints == table_settings.SMALL_KEYPOINTS.split("@")[0] + "@template"
    assert {cfg.folds for cfg in small.values()} == {5}
    reasons = {c.key: c.reason for c in table_cells.cells(tables.get_table("5"), "small") if c.reason}
    assert set(reasons) == {f"{s}|{k}" for s in ("base", "large", "huge") for k in (6, 10)}
    assert reasons["large|6"] == "the expert marked 4 points"
    assert all("MacaqueFaces only" in c.reason for c in table_cells.cells(tables.get_table("1"), "small")
               if c.col != "MacaqueFaces" and "oracle" not in c.row)


def test_randaugment_moves_keypoints_with_the_pixels():
    size = 48
    points = torch.tensor([[12.5, 20.5], [30.5, 9.5], [float("nan"), 3.0]])
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    for x, y in points[:2]:  # a white 3x3 block centred on each keypoint's pixel
        image[:, int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
    augment = RandAugment(num_ops=1, magnitude=10)
    moved_any = False
    for name in NAMES:
        for sign in (1.0, -1.0):
            out, pts = augment.apply(image, points, [(name, sign)])
            assert torch.isnan(pts[2, 0])  # a missing point stays missing
            if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
                for x, y in pts[:2]:
                    if 2 <= x < size - 2 and 2 <= y < size - 2:  # still inside: the block moved with it
                        block = out[0, int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2]
                        assert block.float().mean() > 120, (name, sign)
                moved_any |= not torch.allclose(pts[:2], points[:2])
            else:  # photometric: the points stay
                assert torch.equal(pts[:2], points[:2]), name
    assert moved_any
    first = augment(image[None].repeat(4, 1, 1, 1), points[None].repeat(4, 1, 1), torch.Generator().manual_seed(3))
    second = augment(image[None].repeat(4, 1, 1, 1), points[None].repeat(4, 1, 1), torch.Generator().manual_seed(3))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1].nan_to_num(), second[1].nan_to_num())


def test_a_keypoint_at_x0_survives_a_horizontal_flip():
    points = torch.tensor([[[0.0, 5.0], [31.9, 5.0]]])
    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    _, flipped = hflip(images, points, torch.tensor([True]), [0, 1])
    assert flipped[0, 0, 0] == 32.0  # the far edge
    mask = token_mask(flipped, torch.tensor([0, 1]), 2, (4, 4), (8, 8))
    assert mask[0, 3, 0] == 1.0 and mask[0, 0, 1] == 1.0  # both kept: edge point in the last column


def test_weight_decay_skips_norms_biases_tokens_and_the_keypoint_embedding():
    from harness.method import Method
    from harness.model.backbones import create_backbone

    model = Method(encoding="categorical", point_source="keypoints").build_model(create_backbone("nano", 32), 3)
    decayed, kept = parameter_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    kept_names = {names[id(p)] for p in kept["params"]}
    assert {"backbone.pos_embed", "backbone.cls_token", "encoding.weight"} <= kept_names
    assert all(names[id(p)].endswith(("weight",)) and p.ndim > 1 for p in decayed["params"])
    assert any("norm" in n for n in kept_names) and any(n.endswith("bias") for n in kept_names)
    assert decayed["weight_decay"] == 0.05 and kept["weight_decay"] == 0.0
    settings = TrainSettings.from_config(RunConfig(optimizer="sgd", momentum=0.9, lr=1e-3, lr_min=1e-6,
                                                   augment="randaugment"))
    assert settings.augment == RandAugment(2, 20) and settings.optimizer == "sgd" and settings.lr_min == 1e-6


def test_gradient_accumulation_matches_the_full_batch(cli, tmp_path, tiny_args):
    import json

    common = ("run", "--method", "ckpe", "--epochs", "2", *tiny_args)
    one = cli(*common, "--results-dir", tmp_path / "a")
    two = cli(*common, "--accumulate", "2", "--results-dir", tmp_path / "b")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    a = json.loads(next((tmp_path / "a").glob("*.json")).read_text())
    b = json.loads(next((tmp_path / "b").glob("*.json")).read_text())
    assert [h["loss"] for h in a["history"]] == pytest.approx([h["loss"] for h in b["history"]], rel=1e-4)
    assert a["metrics"]["top1"] == pytest.approx(b["metrics"]["top1"], abs=2.0)
    bad = cli(*common, "--accumulate", "3", "--results-dir", tmp_path / "c")
    assert bad.exit_code != 0 and "must be a multiple of --accumulate 3" in bad.output


def test_dift_records_its_settings_and_matches_exactly(tmp_path):
    from harness.keypoints.featurizers import create_featurizer

    dift, sd = create_featurizer("dift"), create_featurizer("sd")
    assert dift.config()["latent"] == "sample" and dift.config()["dtype"] == "fp32" and dift.resize == "bicubic"
    assert dift.matching == {"mode": "exact", "pixels": "centres"} and sd.matching["mode"] == "fast"
    assert sd.config()["latent"] == "mean" and sd.resize == "bilinear"
    with pytest.raises(ValueError, match="latent must be one of mean, sample"):
        create_featurizer("dift", latent="median")


def test_baseline_preprocessing_is_imagenet_and_caveats_say_what_differs():
    from harness.method import METHODS

    baseline = METHODS.create("wildlife-baseline")
    assert baseline.normalization(None) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    cfg = table_cells.resolve_cell(next(c for c in table_cells.cells(tables.get_table("1")) if c.row == "WildLife Dataset"))
    ids = [c["id"] for c in baseline.caveats(cfg)]
    assert ids == ["megadescriptor-trained-on-these-datasets", "preprocessing-differs-from-wildlifedatasets"]


def test_bad_devices_and_a_cache_that_is_a_file_are_one_line_errors(cli, tmp_path, tiny_args, monkeypatch):
    for device, said in (("tpu", "unknown --device 'tpu'"), ("cuda:7", "no CUDA GPU is visible")):
        if device.startswith("cuda") and torch.cuda.is_available():
            continue
        out = cli("run", "--device", device, "--results-dir", tmp_path / "r", *tiny_args)
        assert out.exit_code != 0 and said in out.output and "Traceback" not in out.output
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HARNESS_CACHE", str(blocker))
    out = cli("run", "--results-dir", tmp_path / "r", *tiny_args)
    assert out.exit_code != 0 and "is a file, not a folder" in out.output and "Traceback" not in out.output
    assert not list((tmp_path / "r").glob("*.json"))


def test_table_notes_surface_the_papers_own_conflicts():
    notes = {t.id: t.note for t in tables.declared_tables()}
    assert "98.5" in notes["6-7"] and "97.3" in notes["6-7"] and "conflicts" in notes["6-7"]
    assert "92.5" in notes["4"] and "does not fit" in notes["4"]
    assert "huge" in notes["1"] and "same experiment" not in " ".join(notes.values())
    assert math.isclose(tables.get_table("2").paper[0][3], 99.2)
