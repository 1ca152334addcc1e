"""Keypoint reliance: every run of a method that feeds keypoints also evaluates its trained model
with the keypoints removed and with whole point sets shuffled among the evaluated images, under
each twin record's own gallery rule; methods without keypoints get none of it."""
import json

import numpy as np
import pytest
import torch

from harness.config import LEGACY, RunConfig
from harness.engine import records
from harness.engine.run import execute
from harness.evaluation.scoring import RELIANCE_VARIANTS, removed_points, shuffle_order, shuffle_point_sets
from harness.engine.train import batch_masks
from harness.model.backbones import create_backbone
from harness.model.keypoint_vit import KeypointViT
from harness.tables.leaderboard import reliance_verdict, same_points_everywhere

RELIANCE_METRICS = ("top1", "top5", "mAP")  # a closed-set record's metrics
KEYS = [f"{m}_{v}" for v in RELIANCE_VARIANTS for m in RELIANCE_METRICS]


def _cfg(method: str, epochs: int, sessions: int | None = None, **over) -> RunConfig:
    """12 identities x 8 images at 32 px (2 test identities, 16 queries); settings under which a
    nano CKPE learns something in 4 epochs."""
    options = (("identities", str(over.pop("identities", 12))), ("image_size", "32"), ("images_per_identity", "8"))
    options += (("sessions", str(sessions)),) if sessions else ()
    # the zero-init channel at the backbone's rate (config.LEGACY): an untrained CKPE is then the plain
    # ViT exactly, and the trained numbers below were measured with it
    return RunConfig(method=method, dataset="synthetic", backbone="nano", image_size=32, epochs=epochs, batch_size=8,
                     lr=0.03, warmup_epochs=0.0, arcface_scale=16.0, arcface_margin=0.2, dataset_options=options,
                     **{**LEGACY, **over})


def _both_rules(method: str, epochs: int, results_dir) -> dict:
    """{exclude: record} of one training scored under both gallery rules (4 capture days)."""
    execute(_cfg(method, epochs, sessions=4), results_dir, progress=False)
    return {rule: json.loads(records.result_path(results_dir, _cfg(method, epochs, 4, exclude=rule)).read_text())
            for rule in (None, "same-day")}


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("reliance")
    return {method: _both_rules(method, 0, out) for method in ("ckpe", "vit")}


def test_untrained_ckpe_relies_on_nothing_under_each_rule(untrained):
    ckpe, vit = untrained["ckpe"], untrained["vit"]
    for rule, record in ckpe.items():
        m = record["metrics"]
        # the projection starts at zero: whatever the points, the embedding is the plain ViT's
        for name in RELIANCE_METRICS:
            assert m[f"{name}_keypoints_removed"] == m[name] == m[f"{name}_keypoints_shuffled"]
        # the reliance evaluation leaves the record's own numbers alone: same as the plain ViT's
        assert {k: m[k] for k in RELIANCE_METRICS} == {k: vit[rule]["metrics"][k] for k in RELIANCE_METRICS}
        about = record["keypoint_reliance"]
        assert about["exclude"] == rule == record["config"]["exclude"]
        assert about["metrics"] == KEYS
        assert about["shuffle"] == {"seed": 0, "images": 16, "own_set_kept": 0, "equal_set_received": 0}
    # each twin is scored under its own rule: same-day near-duplicates make the whole gallery easier,
    # so a twin holding the other rule's reliance numbers would fail the equalities above
    assert ckpe[None]["metrics"]["top1"] > ckpe["same-day"]["metrics"]["top1"]
    assert ckpe[None]["metrics"]["mAP_keypoints_removed"] > ckpe["same-day"]["metrics"]["mAP_keypoints_removed"]


def test_a_method_without_keypoints_has_no_reliance(untrained):
    for record in untrained["vit"].values():
        assert "keypoint_reliance" not in record
        assert not [k for k in record["metrics"] if "keypoints" in k]


def test_trained_ckpe_loses_top1_when_its_points_are_shuffled(tmp_path):
    record, _ = execute(_cfg("ckpe", 4), tmp_path, progress=False)
    m = record["metrics"]
    step = 100 / 16  # one query of 16
    for key in KEYS:
        assert 0.0 <= m[key] <= 100.0
    for key in ("top1", "top1_keypoints_removed", "top1_keypoints_shuffled"):
        assert m[key] / step == pytest.approx(round(m[key] / step))
    # seed 0 here: 11 of 16 first matches correct; with no points the same 11, with another
    # image's points 8. The model reads which patch holds which part, and wrong parts mislead it
    # more than none: the shuffled number is the one that shows the reliance.
    assert m["top1"] == pytest.approx(11 * step)
    assert m["top1_keypoints_removed"] == pytest.approx(m["top1"])
    assert m["top1_keypoints_shuffled"] <= m["top1"] - 2 * step
    assert m["mAP_keypoints_removed"] != m["mAP"] and m["mAP_keypoints_shuffled"] != m["mAP"]
    assert record["keypoint_reliance"]["shuffle"]["own_set_kept"] == 0


def test_an_open_set_record_holds_the_reliance_of_its_open_set_metrics(tmp_path):
    record, _ = execute(_cfg("ckpe", 0, protocol="open", identities=24), tmp_path, progress=False)
    m = record["metrics"]
    for name in ("baks", "baus", "baks_baus_gmean", "new_auroc"):
        # untrained: the keypoint projection starts at zero, so altering the points changes nothing
        assert m[f"{name}_keypoints_removed"] == m[name] == m[f"{name}_keypoints_shuffled"], name
    assert "baks_keypoints_shuffled" in record["keypoint_reliance"]["metrics"]


def test_shuffle_moves_whole_point_sets_among_the_evaluated_rows():
    points = torch.arange(6 * 3 * 2, dtype=torch.float32).view(6, 3, 2)
    points[2, 1] = float("nan")  # a missing point travels with its set
    rows = np.array([0, 2, 3, 5])
    shuffled, info = shuffle_point_sets(points, rows, seed=7)
    assert torch.equal(shuffled[[1, 4]], points[[1, 4]])  # rows not evaluated keep theirs
    order = shuffle_order(4, 7)
    for i, row in enumerate(rows):
        assert torch.equal(shuffled[row].nan_to_num(-1), points[rows[order[i]]].nan_to_num(-1))
    assert sorted(order.tolist()) == [0, 1, 2, 3] and not (order == np.arange(4)).any()
    assert info == {"seed": 7, "images": 4, "own_set_kept": 0, "equal_set_received": 0}
    again, _ = shuffle_point_sets(points, rows, seed=7)
    assert torch.equal(again.nan_to_num(-1), shuffled.nan_to_num(-1))  # deterministic given the seed
    assert not np.array_equal(shuffle_order(50, 0), shuffle_order(50, 1))
    # a single image can only keep its own set; a fixed template's sets are all equal, so
    # shuffling changes nothing and the record says so
    assert shuffle_point_sets(points, np.array([3]), 0)[1]["own_set_kept"] == 1
    template = points[:1].expand(6, 3, 2).clone()
    assert shuffle_point_sets(template, rows, 0)[1] == {"seed": 0, "images": 4, "own_set_kept": 0,
                                                        "equal_set_received": 4}


def test_removed_points_turn_a_trained_embedding_off():
    torch.manual_seed(0)
    model = KeypointViT(create_backbone("nano", 32, False, None, require_patch_grid=True), "categorical", 3).eval()
    torch.nn.init.normal_(model.encoding.weight)  # as if trained
    images = torch.randn(2, 3, 32, 32)
    points = torch.tensor([[[3.0, 4.0], [20.0, 9.0], [30.0, 30.0]]]).expand(2, 3, 2)
    with torch.no_grad():
        plain = model.backbone.forward_head(model.backbone.forward_features(images), pre_logits=True)
        off = model(images, batch_masks(model, removed_points(points), "cpu"))
        on = model(images, batch_masks(model, points, "cpu"))
    assert torch.equal(off, plain) and not torch.allclose(on, plain)


def test_the_leaderboard_says_a_fixed_template_has_nothing_to_shuffle():
    template = [{"keypoint_reliance": {"shuffle": {"seed": s, "images": 40, "own_set_kept": 0, "equal_set_received": 40}},
                 "metrics": {"top1": 50.0, "top1_keypoints_shuffled": 50.0}} for s in (0, 1)]
    assert same_points_everywhere(template)
    assert reliance_verdict(template, "top1", "keypoints_shuffled") == "nothing to shuffle (the same points on every image)"
    # one image that received another set is enough for shuffling to mean something; so is a record without the note
    mixed = [template[0], {**template[1], "keypoint_reliance": {"shuffle": {"images": 40, "equal_set_received": 39}}}]
    assert not same_points_everywhere(mixed) and not same_points_everywhere([{"metrics": {}}])
