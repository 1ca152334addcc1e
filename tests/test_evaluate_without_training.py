"""`harness evaluate`: a backbone scored without training into an ordinary record; a run that keeps
its weights (--save-weights) is scored again from them with the same numbers; embeddings exported
in files numpy and pandas read."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

DATA = ["--dataset", "synthetic", "--dataset-option", "identities=10", "--dataset-option", "images_per_identity=6",
        "--dataset-option", "image_size=32", "--backbone", "nano", "--image-size", "32", "--quiet"]


def only_record(folder):
    (path,) = folder.glob("*.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny vit run that kept its weights and its embeddings."""
    from click.testing import CliRunner

    from harness.cli.main import main

    out = tmp_path_factory.mktemp("trained")
    res = CliRunner().invoke(main, ["run", "--method", "vit", *DATA, "--epochs", "2", "--batch-size", "16",
                                    "--results-dir", str(out / "results"), "--save-weights",
                                    "--save-embeddings", str(out / "emb" / "vit")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out, only_record(out / "results"), res.output


def test_a_run_keeps_its_weights_and_embeddings_on_request(trained):
    out, record, output = trained
    weights = out / "results" / "weights" / f"{record['name']}.safetensors"
    assert record["saved"] == {"weights": str(weights), "embeddings": str(out / "emb" / "vit.npz")}
    assert weights.stat().st_size > 0
    assert f"evaluate again: harness evaluate --method vit --dataset synthetic" in output
    z = np.load(out / "emb" / "vit.npz")  # no pickle needed: allow_pickle stays False
    table = pd.read_csv(out / "emb" / "vit.csv")
    assert z["embeddings"].shape[0] == len(table) == record["split"]["test_images"]
    assert z["embeddings"].dtype == np.float32 and z["embeddings"].shape[1] > 1
    assert list(table.columns) == ["image_id", "identity", "split", "row"]
    assert table["image_id"].astype(str).tolist() == z["image_id"].tolist()
    assert sorted(table["image_id"].astype(str)) == sorted(record["queries"]["image_id"])
    assert set(table["split"]) == {"test"}


def test_kept_weights_score_the_same_when_evaluated_again(cli, trained, tmp_path):
    out, record, _ = trained
    res = cli("evaluate", "--method", "vit", *DATA, "--weights", record["saved"]["weights"],
              "--results-dir", tmp_path, "--save-embeddings", tmp_path / "again.npz")
    assert res.exit_code == 0, res.output
    again = only_record(tmp_path)
    assert again["config"]["epochs"] == 0 and again["history"] == []
    assert again["backbone"]["weights"] == "file"
    assert again["metrics"]["top1"] == pytest.approx(record["metrics"]["top1"])
    assert again["metrics"]["mAP"] == pytest.approx(record["metrics"]["mAP"])
    first, second = np.load(out / "emb" / "vit.npz"), np.load(tmp_path / "again.npz")
    assert np.allclose(first["embeddings"], second["embeddings"], atol=1e-5)


def test_evaluate_scores_a_backbone_untrained_with_every_metric(cli, tmp_path):
    res = cli("evaluate", *DATA, "--protocol", "closed", "--results-dir", tmp_path)
    assert res.exit_code == 0, res.output
    record = only_record(tmp_path)
    assert record["config"]["method"] == "wildlife-baseline" and record["protocol"] == "closed"
    assert record["history"] == [] and record["config"]["epochs"] is None
    assert {"top1", "top5", "mAP", "chance_top1"} <= set(record["metrics"])
    assert res.output.strip().splitlines()[-1].startswith("wildlife-baseline | synthetic | closed")


def test_evaluate_refuses_an_unknown_method_in_one_line(cli, tmp_path):
    res = cli("evaluate", *DATA, "--method", "nope", "--results-dir", tmp_path)
    assert res.exit_code != 0 and "unknown method 'nope'" in res.output and "Traceback" not in res.output


def test_embeddings_that_cannot_be_written_are_refused_before_anything_runs(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = cli("evaluate", *DATA, "--results-dir", tmp_path / "r", "--save-embeddings", blocker / "emb")
    assert res.exit_code != 0 and f"--save-embeddings: cannot write into {blocker}" in res.output
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*.json"))


def test_a_kept_ckpe_network_scores_the_same_with_its_keypoint_embedding(cli, tmp_path):
    """CKPE's kept file holds the keypoint embedding beside the backbone: evaluated again it gives the
    training run's numbers; a run with another number of keypoints is refused in one line."""
    from safetensors.torch import load_file

    kps = ["--keypoints", "ground-truth"]
    res = cli("run", "--method", "ckpe", *DATA, *kps, "--epochs", "2", "--batch-size", "16",
              "--results-dir", tmp_path / "trained", "--save-weights")
    assert res.exit_code == 0, res.output
    record = only_record(tmp_path / "trained")
    kept = load_file(record["saved"]["weights"])
    assert kept["encoding.weight"].abs().sum() > 0 and any(k.startswith("backbone.blocks.") for k in kept)
    again = cli("evaluate", "--method", "ckpe", *DATA, *kps, "--weights", record["saved"]["weights"],
                "--results-dir", tmp_path / "again")
    assert again.exit_code == 0, again.output
    scored = only_record(tmp_path / "again")
    assert scored["metrics"]["top1"] == pytest.approx(record["metrics"]["top1"])
    assert scored["metrics"]["mAP"] == pytest.approx(record["metrics"]["mAP"])
    fewer = cli("evaluate", "--method", "ckpe", *DATA, *kps, "--num-keypoints", "1", "--weights",
                record["saved"]["weights"], "--results-dir", tmp_path / "fewer")
    assert fewer.exit_code != 0 and "its keypoint embedding is (" in fewer.output and "Traceback" not in fewer.output
