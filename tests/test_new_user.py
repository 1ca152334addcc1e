"""What a new user meets: where every setting came from, every choice listed, records that hold only
what applied, an untrained control, one name per reference, and the fixed-template source."""
import json

import numpy as np
import pytest

from harness.config import RunConfig
from harness.data.loaders import get_card, load_dataset
from harness.engine.run import resolve_run
from harness.keypoints.sources import resolve_keypoints
from harness.keypoints.store import store_dir
from harness.method import METHODS
from wildlife_layouts import make_macaquefaces

SYN = ("--dataset-option", "identities=6", "--dataset-option", "images_per_identity=4", "--dataset-option",
       "image_size=32")


def test_a_run_prints_where_every_value_came_from_and_warns_on_pretrained_settings(cli, tmp_path, tiny_args):
    out = cli("run", "--method", "vit", "--results-dir", tmp_path / "r", *tiny_args)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "configuration (by where each value came from):"
    cli_line = next(x for x in lines if x.startswith("  command line: "))
    assert "method=vit" in cli_line and "backbone=nano" in cli_line and "epochs=2" in cli_line
    card_line = next(x for x in lines if x.startswith("  card synthetic: "))
    assert "lr=0.002" in card_line and "arcface_scale=16.0" in card_line
    assert any(x.startswith("  not applied: ") and "keypoints" in x for x in lines)
    assert "warning:" not in out.output  # the synthetic card is meant for random-init backbones
    rec = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert rec["config_origins"]["lr"] == "card synthetic" and rec["config_origins"]["keypoints"] == "not applied"
    # a card tuned for fine-tuning a pretrained ViT, met by a random-init one
    card = get_card("macaquefaces")
    resolved = resolve_run(card, METHODS.create("vit"), given={"backbone": "micro", "image_size": 64})
    assert resolved.origins["lr"] == "card macaquefaces" and resolved.origins["pretrained"] == "not applied"
    assert len(resolved.warnings) == 1 and "fine-tune a pretrained backbone" in resolved.warnings[0]
    assert not resolve_run(card, METHODS.create("vit"), given={"backbone": "micro", "lr": 0.001,
                                                               "optimizer": "adamw", "epochs": 20}).warnings
    make_macaquefaces(tmp_path / "data")
    warned = cli("run", "--method", "vit", "--dataset", "macaquefaces", "--data-root", tmp_path / "data", "--backbone",
                 "nano", "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--results-dir", tmp_path / "m",
                 "--quiet", "--allow-small-test")
    assert warned.exit_code == 0, warned.output
    assert "warning: optimizer sgd, lr 0.001 come from the card macaquefaces" in warned.output
    helped = cli("run", "--help")
    assert "[default: micro]" in helped.output and "dataset card's `defaults`" in helped.output


def test_dry_run_prints_the_resolved_configuration_and_trains_nothing(cli, tmp_path):
    make_macaquefaces(tmp_path / "data")
    out = cli("run", "--method", "vit", "--dataset", "macaquefaces", "--data-root", tmp_path / "data", "--backbone",
              "micro", "--image-size", "64", "--folds", "5", "--fold", "0", "--results-dir", tmp_path / "r", "--dry-run")
    assert out.exit_code == 1 and "the test split is too small" in out.output  # 5 identities: one a fold
    out = cli("run", "--method", "vit", "--dataset", "macaquefaces", "--data-root", tmp_path / "data", "--backbone",
              "micro", "--image-size", "64", "--folds", "5", "--fold", "0", "--results-dir", tmp_path / "r", "--dry-run",
              "--allow-small-test", "--batch-size", "8")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "configuration (by where each value came from):"
    assert any(x.startswith("  card macaquefaces: ") and "lr=0.001" in x and "optimizer=sgd" in x for x in lines)
    assert any(x.startswith("warning: optimizer sgd, lr 0.001, epochs 100 come from the card macaquefaces") for x in lines)
    result = next(x for x in lines if x.startswith("result: "))  # then the run's memory and download estimates
    assert result.startswith(f"result: {tmp_path / 'r'}/vit_macaquefaces_") and result.endswith("_f0_s0.json")
    assert lines[-3].strip().startswith("memory: ") and lines[-2].strip() == "downloads: none"
    assert lines[-1] == "dry run: 1 run(s) would start training; nothing found that would stop them"
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written
    missing = cli("run", "--method", "vit", "--dataset", "macaquefaces", "--data-root", tmp_path / "none", "--dry-run")
    assert missing.exit_code != 0 and "MacaqueFaces" in missing.output  # the data are checked all the same


def test_list_shows_reference_sources_featurizers_and_backbone_sizes(cli):
    out = cli("list")
    assert out.exit_code == 0, out.output
    for name in ("expert", "gpt4", "gradcam-resnet", "gradcam-vit", "sd", "dift", "dinov2", "sift", "spin",
                 "template", "mini", "midi", "megadescriptor"):
        assert f"  {name} " in out.output, name
    backbones = out.output.split("backbones")[1].splitlines()[1:]
    sizes = [float(x.split(" blocks, ")[1].split("M")[0]) for x in backbones if "random-init" in x]
    assert sizes == sorted(sizes) and len(sizes) == 4  # smallest first: mini is smaller than micro
    helped = cli("run", "--help")
    assert "mini" in helped.output and "megadescriptor" in helped.output


def test_keypoints_list_with_nothing_stored_names_the_reference_and_the_command(cli, tmp_path):
    root = tmp_path / "data"
    make_macaquefaces(root)
    out = cli("keypoints", "list", "--dataset", "macaquefaces", "--data-root", root)
    assert out.exit_code == 0, out.output
    assert "macaquefaces-expert.json" in out.output
    assert "harness run --method ckpe --dataset macaquefaces --keypoints expert@dift" in out.output


def test_records_hold_only_what_applied_and_share_one_hash(cli, tmp_path, tiny_args):
    one = cli("run", "--method", "vit", "--keypoints", "ground-truth", "--num-keypoints", "2", "--results-dir",
              tmp_path / "r", *tiny_args)
    assert one.exit_code == 0, one.output
    (path,) = (tmp_path / "r").glob("*.json")
    rec = json.loads(path.read_text())
    for field in ("keypoints", "num_keypoints", "pretrained", "momentum", "randaugment_ops"):
        assert rec["config"][field] is None, field
    # the same plain ViT asked with other keypoint options is the same experiment: not trained again
    again = cli("run", "--method", "vit", "--keypoints", "random", "--results-dir", tmp_path / "r", *tiny_args)
    assert again.exit_code == 0 and "already done, not recomputed" in again.output
    assert len(list((tmp_path / "r").glob("*.json"))) == 1
    frozen = METHODS.create("wildlife-baseline").applied(RunConfig(method="wildlife-baseline", epochs=5, lr=0.1))
    assert frozen.epochs is None and frozen.lr is None and frozen.optimizer is None


def test_epochs_0_evaluates_the_untrained_model(cli, tmp_path, tiny_args):
    args = [a for a in tiny_args]
    args[args.index("--epochs") + 1] = "0"
    out = cli("run", "--method", "ckpe", "--results-dir", tmp_path / "r", *args)
    assert out.exit_code == 0, out.output
    rec = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert rec["history"] == [] and rec["config"]["epochs"] == 0
    assert 0.0 <= rec["metrics"]["top1"] <= 100.0 and rec["metrics"]["queries"] > 0
    args[args.index("--epochs") + 1] = "-1"
    bad = cli("run", "--results-dir", tmp_path / "r", *args)
    assert bad.exit_code != 0 and "--epochs must be >= 0" in bad.output


def test_annotate_and_a_recipe_find_one_reference_under_one_name(cli):
    opts = list(SYN)
    out = cli("keypoints", "annotate", "--dataset", "synthetic", "--source", "ground-truth", "--num-keypoints", "3",
              *opts)
    assert out.exit_code == 0, out.output
    name = out.output.strip().splitlines()[-1].split(" | ")[0]
    assert name.startswith("ref-ground-truth-")
    again = cli("keypoints", "annotate", "--dataset", "synthetic", "--source", "ground-truth", "--num-keypoints", "3",
                *opts)
    assert "already annotated, not asked again" in again.output and name in again.output
    card = get_card("synthetic")
    options = {"identities": "6", "images_per_identity": "4", "image_size": "32"}
    data = load_dataset(card, options)
    cfg = RunConfig(dataset="synthetic", num_keypoints=3, dataset_options=tuple(sorted(options.items())))
    resolve_keypoints("ground-truth@spin:size=32", data, cfg, progress=False, card=card)
    references = [p.stem for p in store_dir(data).glob("ref-*.json")]
    assert references == [name]  # the recipe used the stored reference, no second name


def test_the_fixed_template_source_copies_the_reference_points():
    card = get_card("synthetic")
    options = {"identities": "6", "images_per_identity": "4", "image_size": "32"}
    data = load_dataset(card, options)
    cfg = RunConfig(dataset="synthetic", num_keypoints=3, dataset_options=tuple(sorted(options.items())))
    kps = resolve_keypoints("ground-truth@template", data, cfg, progress=False, card=card)
    assert kps.categories == data.categories[:3] and kps.provenance["source"] == "template"
    reference = data.keypoints[0, :3]  # the first image with every keypoint: image 0
    assert np.allclose(kps.points, reference[None], atol=1e-6)  # same size images: same pixels everywhere
    assert not np.allclose(kps.points[5], data.keypoints[5, :3])  # not the image's own points
    with pytest.raises(Exception, match="unknown featurizer 'templat'"):
        resolve_keypoints("ground-truth@templat", data, cfg, progress=False, card=card)


def test_annotate_asks_for_the_cards_k_like_a_recipe_does(cli, tmp_path):
    from wildlife_layouts import make_ctai

    root = tmp_path / "data"
    make_ctai(root)
    out = cli("keypoints", "annotate", "--dataset", "ctai", "--source", "ground-truth", "--data-root", root)
    assert out.exit_code == 0, out.output
    name = out.output.strip().splitlines()[-1].split(" | ")[0]
    card = get_card("ctai")
    data = load_dataset(card, {}, root)
    stored = json.loads((store_dir(data) / f"{name}.json").read_text())
    assert stored["categories"] == ["right_eye", "left_eye", "mouth_centre"]  # the card's K = 3
    cfg = RunConfig(dataset="ctai", num_keypoints=3)
    resolve_keypoints("ground-truth@template", data, cfg, progress=False, card=card)
    assert sorted(p.stem for p in store_dir(data).glob("ref-*.json")) == [name]


def test_reference_work_does_not_move_the_heads_initialisation(tmp_path, monkeypatch):
    """A reference source that draws from the global torch RNG (Grad-CAM and DINOv2 build a model)
    must not change the training that follows: a cached and a fresh reference train alike."""
    import torch

    import harness.engine.run as run
    from harness.engine.run import execute

    cfg = RunConfig(method="ckpe", backbone="nano", image_size=32, epochs=2, batch_size=16,
                    dataset_options=(("identities", "6"), ("image_size", "32"), ("images_per_identity", "4")),
                    allow_small_test=True)
    first, _ = execute(cfg, tmp_path / "a", progress=False)
    real = run.prepare

    def noisy(*args, **kwargs):
        torch.rand(1000)  # what building a classifier for Grad-CAM does to the global RNG
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "prepare", noisy)
    second, _ = execute(cfg, tmp_path / "b", progress=False)
    assert [h["loss"] for h in first["history"]] == [h["loss"] for h in second["history"]]
