"""A new user's own images (`--dataset folder:DIR`): a test split too small to mean anything is
refused (or run with a caveat), `--dry-run` stops at what the run would stop at, and the command
line answers fast, in one line, with a did-you-mean."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.core.errors import DataError, RegistryError
from harness.core.registry import Registry, did_you_mean
from harness.data.splits import HeldOut, make_split, query_side, small_test_message, what_would_work


def _frame(n_ids: int, per_id: int) -> pd.DataFrame:
    ids = [f"id{i}" for i in range(n_ids) for _ in range(per_id)]
    return pd.DataFrame({"image_id": [str(i) for i in range(len(ids))], "identity": ids, "path": ids})


def _folder(root, identities: int, images: int = 5):
    rng = np.random.default_rng(identities)
    for i in range(identities):
        (root / f"animal{i}").mkdir(parents=True)
        for j in range(images):
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / f"animal{i}" / f"{j}.jpg")
    return f"folder:{root}"


@pytest.fixture
def four(tmp_path):
    """4 identities x 5 images: the issue's new user's folder."""
    return _folder(tmp_path / "four", 4)


FAST = ["--backbone", "nano", "--image-size", "32", "--epochs", "1"]


# --- 1. the chance top-1 and the refusal -----------------------------------------------------------

def test_chance_top1_is_the_share_of_each_querys_gallery_that_matches():
    df = _frame(4, 5)
    one = make_split(df, "disjoint", 666)  # 80/20 of 4 identities: 1 test identity
    side = query_side(df, one)
    assert (side.identities, side.queries, side.chance_top1) == (1, 5, 1.0) and side.small()
    two = make_split(df, "disjoint", 666, held_out=HeldOut(folds=2, fold=0))
    side = query_side(df, two)  # 2 identities x 5 images: 4 of the 9 others match
    assert side.identities == 2 and side.chance_top1 == pytest.approx(4 / 9) and not side.small()
    closed = query_side(df, make_split(df, "closed", 666))  # each query against 16 training images, 4 its own
    assert closed.identities == 4 and closed.chance_top1 == pytest.approx(0.25)


def test_the_refusal_names_what_would_work():
    df = _frame(4, 5)
    assert what_would_work(df, 666) == [
        "--folds 2 (every identity tested once; chance top-1 up to 44%)",
        "--protocol closed (test images of every identity against the training images; chance top-1 25%)",
        "at least 8 identities (the 80/20 split holds out 20%)"]
    line = small_test_message(df, query_side(df, make_split(df, "disjoint", 666)), 666, "folder:x")
    assert "\n" not in line and line.startswith("dataset folder:x: the test split is too small to mean anything "
                                                "(1 test identity, 5 queries, chance top-1 100%")
    assert line.endswith("--allow-small-test to run it anyway (caveat in the record)")
    with pytest.raises(DataError, match=r"at least 2 identities .* the dataset has 1: add images of other individuals"):
        make_split(_frame(1, 5), "disjoint", 666)


def test_a_one_identity_test_split_is_refused_and_the_override_runs_it_with_a_caveat(cli, four, tmp_path):
    refused = cli("run", "--method", "vit", "--dataset", four, *FAST, "--batch-size", "8",
                  "--results-dir", tmp_path / "r")
    assert refused.exit_code != 0 and "too small to mean anything" in refused.output
    assert "--folds 2" in refused.output and not list((tmp_path / "r").glob("*.json"))
    ran = cli("run", "--method", "vit", "--dataset", four, *FAST, "--batch-size", "8", "--allow-small-test",
              "--results-dir", tmp_path / "r")
    assert ran.exit_code == 0, ran.output
    summary = ran.output.strip().splitlines()[-1]
    assert "top-1 " in summary and "(chance 100.0)" in summary
    assert "| caveat: small test split (1 test identity" in summary
    record = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert record["split"]["chance_top1"] == 100.0 and record["split"]["test_identities"] == 1
    assert [c["id"] for c in record["caveats"]] == ["small-test-split"]
    assert record["config"]["allow_small_test"] is True


def test_the_summary_line_shows_chance_beside_top1():
    from harness.cli.run import summary_line

    record = {"metrics": {"top1": 50.0, "top5": 75.0, "mAP": 60.0}, "config": {"method": "vit", "dataset": "d"},
              "protocol": "disjoint", "seed": 0, "wall_time_s": 1.0, "split": {"chance_top1": 45.45}, "caveats": []}
    assert summary_line(record) == ("vit | d | disjoint | seed 0 | top-1 50.0 (chance 45.5) | top-5 75.0 | mAP 60.0 | "
                                    "1.0 s")


# --- 2. the dry run ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--method", "vit", "--batch-size", "8"], "the test split is too small to mean anything"),
    (["--method", "vit", "--allow-small-test"], "--batch-size 64 is larger than the training set (15 images): "
                                                "pass --batch-size 15 or less"),
    (["--method", "ckpe", "--batch-size", "8", "--allow-small-test"], "has no ground-truth keypoints: mark one "
     "reference image with `harness keypoints annotate --dataset folder:"),
    (["--method", "ckpe", "--batch-size", "8", "--allow-small-test", "--keypoints", "expert@sift"],
     "ships no expert reference"),
    (["--method", "ckpe", "--batch-size", "8", "--allow-small-test", "--keypoints", "mine"],
     "unknown keypoint source 'mine'"),
    (["--method", "vit", "--batch-size", "8", "--allow-small-test", "--pretrained", "--weights", "/no/such.pt"],
     "--weights /no/such.pt: no such file"),
])
def test_dry_run_stops_at_the_first_problem_a_run_would_meet(cli, four, tmp_path, args, message):
    res = cli("run", "--dataset", four, *args, "--dry-run", "--results-dir", tmp_path / "r")
    assert res.exit_code == 1 and message in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "r").exists()


def test_dry_run_of_a_one_identity_folder_and_of_a_run_that_would_start(cli, tmp_path, four):
    one = _folder(tmp_path / "one", 1)
    res = cli("run", "--method", "vit", "--dataset", one, "--dry-run", "--results-dir", tmp_path / "r")
    assert res.exit_code == 1 and "a split needs at least 2 identities" in res.output
    fine = cli("run", "--method", "vit", "--dataset", four, "--folds", "2", "--batch-size", "8", "--dry-run",
               "--results-dir", tmp_path / "r")
    assert fine.exit_code == 0, fine.output
    assert fine.output.strip().splitlines()[-1] == ("dry run: 2 run(s) would start training; nothing found that would "
                                                    "stop them")


# --- 7. the command line -----------------------------------------------------------------------------

def test_root_help_imports_no_command_and_lists_each_with_its_own_line():
    code = ("import sys; from harness.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'timm', 'pandas', 'harness.engine.run') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    assert "Commands:" in done.stdout and "  leaderboard " in done.stdout
    import importlib

    from harness.cli.main import COMMANDS

    for name, (module, attribute, line) in COMMANDS.items():
        command = getattr(importlib.import_module(f"harness.cli.{module}"), attribute)
        assert command.name == name and command.get_short_help_str(limit=80) == line


def test_run_help_is_in_sections_without_repeated_boilerplate(cli):
    out = cli("run", "--help").output
    heads = [line for line in out.splitlines() if line.endswith("options:")]
    assert heads == [f"{t} options:" for t in ("Data", "Model", "Training", "Keypoints", "Evaluation", "Runtime")]
    assert "unless the dataset card" not in out and out.count("[default:") >= 20
    section = out[out.index("Evaluation options:"):out.index("Runtime options:")]
    assert "--allow-small-test" in section and "--protocol" in section


@pytest.mark.parametrize("args, message, suggestion", [
    (["rn"], "no such command 'rn'; valid: run, list, ", "run"),
    (["run", "--method", "cpke", "--dry-run"], "unknown method 'cpke'; valid methods: ", "ckpe"),
    (["run", "--dataset", "girafes", "--dry-run"], "unknown dataset 'girafes'", "giraffes"),
    (["run", "--keypoints", "randm", "--dry-run"], "unknown keypoint source 'randm'", "random"),
    (["run", "--keypoints", "expert@sfit", "--dry-run"], "unknown featurizer 'sfit'", "sift"),
    (["ablate", "opne-set", "--dry-run"], "unknown table 'opne-set'", "open-set"),
    (["calibrate", "--metric", "topp1"], "unknown metric 'topp1'", "top1"),
])
def test_every_unknown_name_gets_a_did_you_mean(cli, args, message, suggestion):
    res = cli(*args)
    last = res.output.strip().splitlines()[-1]
    assert res.exit_code != 0 and message in last and f"did you mean '{suggestion}'" in last, res.output


def test_one_spelling_per_metric(cli, tmp_path):
    from harness.cli.tables import METRIC

    assert METRIC.convert("map", None, None) == "mAP" and METRIC.convert("TOP1", None, None) == "top1"
    listed = cli("list").output
    assert "  mAP " in listed and "  map " not in listed
    widgets = Registry("widget")
    widgets.register("mAP", "x", factory=int)
    assert widgets.names() == ["mAP"] and "map" in widgets and widgets.get("MAP").name == "mAP"
    assert did_you_mean("mpa", ["mAP", "top1"]) == "; did you mean 'mAP'?" and did_you_mean("zzz", ["top1"]) == ""


def test_progress_in_a_log_is_plain_lines(monkeypatch):
    from tqdm import tqdm

    from harness.core import progress

    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    log = io.StringIO()
    bar = progress.progress_bar(total=3, desc="decoding", file=log)
    for _ in range(3):
        bar.update(1)
        bar.set_postfix_str("x")
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and isinstance(bar, progress.LogLines)
    lines = text.splitlines()
    assert lines[0].startswith("decoding: 0/3") and lines[-1].startswith("decoding: 3/3") and len(lines) >= 2

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    on_terminal = progress.progress_bar(total=1, file=Terminal())
    assert type(on_terminal) is tqdm
    on_terminal.close()


# --- 8. path-valued settings -------------------------------------------------------------------------

def test_path_settings_that_cannot_be_used_are_refused_in_one_line(cli, monkeypatch, tmp_path):
    from harness.core.paths import cards_dir
    from harness.core.registry import plugin_dirs

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    monkeypatch.setenv("HARNESS_PLUGIN_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(RegistryError, match=r"^HARNESS_PLUGIN_PATH entry .*nowhere: no such folder; "):
        plugin_dirs()
    monkeypatch.delenv("HARNESS_PLUGIN_PATH")
    monkeypatch.setenv("HARNESS_DATASETS", str(a_file))
    with pytest.raises(DataError, match=r"^HARNESS_DATASETS=.*a-file: is a file, not a folder; "):
        cards_dir()
    monkeypatch.delenv("HARNESS_DATASETS")
    for args, message in [
        (["run", "--data-root", a_file, "--dry-run"], "Invalid value for '--data-root'"),
        (["run", "--results-dir", a_file, "--dry-run"], "Invalid value for '--results-dir'"),
        (["leaderboard", "--output", tmp_path / "no" / "board.md"], "the folder"),
        (["keypoints", "annotate", "--dataset", "synthetic", "--source", "expert", "--reference-file",
          tmp_path / "none.json"], "Invalid value for '--reference-file'"),
    ]:
        res = cli(*args)
        assert res.exit_code == 2 and message in res.output, res.output
        assert len([x for x in res.output.splitlines() if x.startswith("Error")]) == 1


# --- 9. one parse per value --------------------------------------------------------------------------

def test_a_keypoints_value_is_parsed_once_into_one_typed_value():
    from harness.keypoints.sources import ORACLE_PREFIX, parse_keypoints, source_problem

    parsed = parse_keypoints("oracle:expert@sift:mirror=1,step=4,k=3+noise=0.5")
    assert (parsed.oracle, parsed.noise, parsed.inner, parsed.base) == (
        True, 0.5, "oracle:expert@sift:mirror=1,step=4,k=3", "expert@sift:mirror=1,step=4,k=3")
    recipe = parsed.recipe
    assert (recipe.source, recipe.featurizer, recipe.reference, recipe.options, recipe.matching) == (
        "expert", "sift", {"num_keypoints": 3}, {"step": 4}, {"mode": None, "pixels": None, "mirror": True})
    assert parse_keypoints("random").recipe is None and ORACLE_PREFIX == "oracle:"
    with pytest.raises(DataError, match="noise sigma must be a number >= 0"):
        parse_keypoints("random+noise=-1")
    assert "mirror must be 0 or 1" in source_problem("oracle:expert@sift:mirror=2")
