"""`harness keypoints annotate | propagate | score | show`, then `harness run --keypoints NAME`."""
import json

import pytest

from PIL import Image

DS = ["--dataset", "synthetic", "--dataset-option", "identities=10", "--dataset-option", "images_per_identity=6",
      "--dataset-option", "image_size=32"]


def ok(cli, *args):
    res = cli(*args)
    assert res.exit_code == 0, res.output
    return res.output


def test_annotate_propagate_score_show_and_run(cli, tiny_args, tmp_path, monkeypatch):
    out = ok(cli, "keypoints", "annotate", *DS, "--source", "ground-truth", "--image", "3", "--name", "gt3")
    assert out.strip().splitlines()[-1].startswith("gt3 | ")
    prop = ["keypoints", "propagate", *DS, "--reference", "gt3", "--featurizer", "spin", "--size", "32",
            "--step", "2", "--quiet"]
    name = ok(cli, *prop).strip().splitlines()[-1].split(" | ")[0]
    assert name.startswith("spin-")
    again = ok(cli, *prop)
    assert "already propagated, not recomputed" in again
    score = ok(cli, "keypoints", "score", *DS, "--keypoints", name)
    assert "PCK@0.1 (max(h, w) of the image)" in score and "left_eye" in score
    from harness.core.paths import cache_dir

    stored = json.loads(next(cache_dir().glob(f"keypoints/synthetic-*/{name}.json")).read_text())
    assert 0.0 <= stored["score"]["0.1"]["pck"] <= 1.0 and len(stored["score"]["0.1"]["per_image"]) == 60
    png = tmp_path / "grid.png"
    show = ok(cli, "keypoints", "show", *DS, "--keypoints", name, "--n", "4", "--out", png)
    assert show.strip().splitlines()[-1] == str(png)  # the PNG's path stays the last line
    # the template share table, exactly as `score` prints it for the same set
    share = score[score.index("points in another patch than the fixed template's"):].split("\nstored with")[0]
    assert share in show and "\nall " in share and "left_eye" in share
    assert Image.open(png).size[0] > 0
    res_dir = tmp_path / "results"
    ok(cli, "run", "--method", "ckpe", "--keypoints", name, "--results-dir", res_dir, *tiny_args)
    rec = json.loads(next(res_dir.glob("*.json")).read_text())
    assert rec["config"]["keypoints"] == name
    prov = rec["keypoints"]["provenance"]
    assert prov["keypoint_set"] == name and prov["source"] == "propagated"
    assert prov["reference"]["image_id"] == "3" and prov["reference"]["source"] == "ground-truth"
    assert prov["featurizer"]["featurizer"] == "spin" and prov["matching"] == "fast"


def test_keypoint_commands_fail_in_one_line(cli, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cases = [
        (["keypoints", "annotate", *DS, "--source", "gpt4"], "OPENAI_API_KEY is not set"),
        (["keypoints", "annotate", *DS, "--source", "oracle"], "unknown reference source 'oracle'"),
        (["keypoints", "propagate", *DS, "--reference", "missing", "--featurizer", "spin"],
         "no reference annotation 'missing' for dataset synthetic"),
        (["keypoints", "propagate", *DS, "--reference", "x", "--featurizer", "spin", "--timestep", "5"],
         "featurizer spin does not take --timestep"),
        (["keypoints", "score", *DS, "--keypoints", "nothing"], "unknown keypoint source 'nothing'"),
    ]
    for args, message in cases:
        res = cli(*args)
        assert res.exit_code != 0 and message in res.output, res.output
        assert "Traceback" not in res.output


def test_recipe_parsing():
    from harness.core.errors import DataError
    from harness.keypoints.recipes import parse_recipe

    parsed = parse_recipe("gpt4@sd:timestep=100,k=3,model=x/y,mirror=1")
    assert (parsed.source, parsed.featurizer, parsed.reference, parsed.options) == (
        "gpt4", "sd", {"num_keypoints": 3}, {"timestep": 100, "model": "x/y"})
    assert parsed.matching == {"mode": None, "pixels": None, "mirror": True}
    plain = parse_recipe("expert@sift")
    assert (plain.source, plain.featurizer, plain.reference, plain.options, plain.matches) == (
        "expert", "sift", {}, {}, True)
    assert not parse_recipe("expert@template").matches
    with pytest.raises(DataError, match="expected SOURCE@FEATURIZER"):
        parse_recipe("@sd")
    with pytest.raises(DataError, match="is not key=value"):
        parse_recipe("expert@sd:timestep")


def test_run_with_a_recipe_annotates_and_propagates_once(cli, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    args = ["--backbone", "nano", "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--quiet",
            "--allow-small-test", "--dataset-option", "identities=6", "--dataset-option", "images_per_identity=4",
            "--dataset-option", "image_size=32", "--keypoints", "ground-truth@sift:size=32,step=4"]
    res = cli("run", "--method", "ckpe", "--results-dir", tmp_path / "r", *args)
    assert res.exit_code == 0, res.output
    rec = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    prov = rec["keypoints"]["provenance"]
    assert rec["config"]["keypoints"] == "ground-truth@sift:size=32,step=4"
    assert "sift" in json.dumps(prov) and "ref-ground-truth-" in json.dumps(prov)
    stored = sorted(p.name for p in (tmp_path / "cache" / "keypoints").rglob("*.json"))
    assert any(n.startswith("ref-ground-truth-") for n in stored) and len(stored) == 2
    # another seed reuses the stored reference and keypoint set: nothing new is stored
    res = cli("run", "--method", "ckpe", "--seed", "1", "--results-dir", tmp_path / "r", *args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "cache" / "keypoints").rglob("*.json")) == stored
    bad = cli("run", "--method", "ckpe", "--results-dir", tmp_path / "r", *args[:-1], "ground-truth@nope")
    assert bad.exit_code != 0 and "unknown featurizer 'nope'" in bad.output and "Traceback" not in bad.output


def test_recipe_matching_keys_mirror_and_mode(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    args = ["--backbone", "nano", "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--quiet",
            "--allow-small-test", "--dataset-option", "identities=6", "--dataset-option", "images_per_identity=4",
            "--dataset-option", "image_size=32", "--keypoints"]
    res = cli("run", "--method", "ckpe", "--results-dir", tmp_path / "r", *args,
              "ground-truth@sift:size=32,step=4,mirror=1,mode=exact")
    assert res.exit_code == 0, res.output
    prov = json.loads(next((tmp_path / "r").glob("*.json")).read_text())["keypoints"]["provenance"]
    assert prov["matching"] == "exact" and prov["featurizer"] == {"featurizer": "sift", "size": 32, "step": 4,
                                                                  "patch": 12.0}
    n_mirrored = prov["mirror"]["images_matched_to_mirrored_reference"]
    assert 0 < n_mirrored < 24  # about half of the synthetic poses are mirrored
    for recipe, message in (("ground-truth@sift:size=32,mirror=2", "mirror must be 0 or 1, got 2"),
                            ("ground-truth@sift:size=32,mode=slow", "unknown matching mode 'slow'")):
        bad = cli("run", "--method", "ckpe", "--results-dir", tmp_path / "r", *args, recipe)
        assert bad.exit_code != 0 and message in bad.output and "Traceback" not in bad.output, bad.output
