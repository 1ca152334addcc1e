"""`--config FILE` (TOML or YAML): its values under their own origin, flags over it, bad keys and
values refused in one line; `harness ablate --retarget`: a declared table's cells on another dataset."""
from __future__ import annotations

import json

import pytest

TOML = """
method = "vit"
backbone = "nano"
image-size = 32
epochs = 1
batch_size = 16
quiet = false
[dataset-options]
identities = 10
images_per_identity = 6
image_size = 32
"""


def config_lines(output: str) -> dict:
    """The printed configuration: origin -> its 'name=value' text."""
    out = {}
    for line in output.splitlines():
        if line.startswith("  ") and ": " in line:
            origin, _, values = line.strip().partition(": ")
            out[origin] = values
    return out


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_values_show_under_their_origin_and_flags_win(cli, tmp_path):
    path = write(tmp_path, "run.toml", TOML.replace('quiet = false\n', ''))
    res = cli("run", "--config", path, "--epochs", "3", "--dry-run", "--results-dir", tmp_path / "r")
    assert res.exit_code == 0, res.output
    lines = config_lines(res.output)
    assert "epochs=3" in lines["command line"] and "method" not in lines["command line"]
    mine = lines[f"config {path}"]
    for shown in ("method=vit", "backbone=nano", "image_size=32", "batch_size=16",
                  "dataset_options=identities=10,image_size=32,images_per_identity=6"):
        assert shown in mine
    assert "epochs" not in mine


def test_yaml_works_and_the_record_keeps_the_origin(cli, tmp_path):
    path = write(tmp_path, "run.yaml", "method: vit\nbackbone: nano\nimage_size: 32\nepochs: 1\nbatch-size: 16\n"
                                       "dataset_options: [identities=10, images_per_identity=6, image_size=32]\n")
    res = cli("run", "--config", path, "--quiet", "--results-dir", tmp_path / "r")
    assert res.exit_code == 0, res.output
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("*.json")]
    assert record["config"]["method"] == "vit" and record["config"]["batch_size"] == 16
    assert record["config_origins"]["batch_size"] == f"config {path}"
    assert record["config_origins"]["dataset_options"] == f"config {path}"


@pytest.mark.parametrize("name, text, message", [
    ("bad.toml", "batch_sise = 8\n", "unknown option 'batch_sise'; did you mean batch-size?"),
    ("bad.toml", "quiet = true\n", "unknown option 'quiet'"),
    ("bad.yaml", "epochs: many\n", "epochs: 'many' is not a valid integer"),
    ("bad.yaml", "protocol: sideways\n", "protocol: 'sideways' is not one of"),
    ("bad.yaml", "- a\n- b\n", "expected option = value pairs at the top level"),
    ("bad.toml", "epochs = [1, 2]\n", "epochs takes one value"),
    ("bad.toml", "dataset_options = 3\n", "dataset-options must be a table"),
    ("bad.toml", "epochs = \n", "not valid TOML"),
    ("bad.json", "{}", "expected a .toml, .yaml or .yml file"),
])
def test_a_bad_config_file_is_one_line(cli, tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    res = cli("run", "--config", path, "--dry-run")
    assert res.exit_code != 0 and message in res.output, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_a_missing_config_file_is_refused(cli, tmp_path):
    res = cli("run", "--config", tmp_path / "nowhere.toml", "--dry-run")
    assert res.exit_code != 0 and "cannot be read" in res.output


def test_evaluate_reads_the_method_from_the_config_and_scores_untrained(cli, tmp_path):
    path = write(tmp_path, "run.toml", TOML)
    path.write_text(TOML.replace('quiet = false\n', ''))
    res = cli("evaluate", "--config", path, "--dry-run")
    assert res.exit_code == 0, res.output
    lines = config_lines(res.output)
    assert "epochs=0" in lines["command line"] and "method=vit" in lines[f"config {path}"]


def test_ablate_retargets_a_declared_table_onto_another_dataset(cli, tmp_path):
    folder = tmp_path / "animals"
    for i in range(3):
        (folder / f"id{i}").mkdir(parents=True)
    res = cli("ablate", "4", "--tiny", "--dry-run", "--retarget", f"folder:{folder}", "--retarget-keypoints",
              "my-points", "--results-dir", tmp_path / "r")
    assert res.exit_code == 0, res.output
    firsts = [line for line in res.output.splitlines() if "first: harness run" in line]
    assert firsts and all(f"--dataset folder:{folder} " in line for line in firsts)
    assert all("--keypoints my-points" in line for line in firsts if "--method ckpe" in line or "--method kpe" in line)
    assert not any("--keypoints" in line for line in firsts if "--method vit" in line)
    assert "dataset_options={}" in res.output and "identities=" not in res.output
    res = cli("ablate", "4", "--tiny", "--dry-run", "--retarget-keypoints", "my-points")
    assert res.exit_code != 0 and "need --retarget DATASET" in res.output
