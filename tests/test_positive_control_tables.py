"""The positive-control tables (issue 24): pose-perturbed faces across days, the noise curve, and
a pretrained trunk under KPE/CKPE."""
import re
import dataclasses

from harness.engine.run import execute
from harness.tables import cells as table_cells
from harness.tables import declarations as tables


def _configs(table_id: str, setting: str) -> dict:
    return {c.row: table_cells.resolve_cell(c, seed=0, fold=0)
            for c in table_cells.cells(tables.get_table(table_id), setting) if c.overrides is not None}


def test_pose_cells_perturb_every_image_and_score_across_days():
    for setting in ("real", "small", "tiny"):
        cfgs = _configs("pose", setting)
        assert len(cfgs) == 7, setting  # every row runs in every setting: nothing needs the network
        for row, cfg in cfgs.items():
            options = dict(cfg.dataset_options)
            assert (options["perturb"], options["perturb_seed"]) == ("strong", "0"), (setting, row)
            assert cfg.exclude == "same-day" and cfg.folds == 5, (setting, row)
    small = _configs("pose", "small")
    assert {row: cfg.keypoints for row, cfg in small.items() if cfg.method in ("kpe", "ckpe")} == {
        "ours (KPE)": "expert@sift", "ours (CKPE)": "expert@sift", "fixed template": "expert@template",
        "CKPE, oracle points": "oracle:results/keypoints/macaquefaces-expert-sift-k3.json"}
    assert {cfg.backbone for row, cfg in small.items() if row != "WildLife Dataset"} == {"micro"}
    assert small["WildLife Dataset"].backbone == "mobilenetv2-dsr"
    assert dict(_configs("pose", "tiny")["ours (CKPE)"].dataset_options)["sessions"] == "3"  # synthetic days


def test_noise_rows_add_noise_to_the_oracle_and_sigma_zero_is_the_pose_oracle_cell():
    for setting in ("real", "small", "tiny"):
        noise, pose = _configs("noise", setting), _configs("pose", setting)
        assert list(noise) == ["0", "0.25", "0.5", "1", "2"]
        # sigma 0 is the pose table's oracle cell: the same experiment, so the same records
        assert noise["0"].experiment_hash() == pose["CKPE, oracle points"].experiment_hash(), setting
        oracle = pose["CKPE, oracle points"].keypoints
        assert [noise[s].keypoints for s in ("0.5", "2")] == [f"{oracle}+noise=0.5", f"{oracle}+noise=2"]
        assert len({cfg.experiment_hash() for cfg in noise.values()}) == 5


def test_dry_runs_of_the_control_tables_see_through_the_keypoint_wrappers(cli, tmp_path):
    # the real oracle runs DIFT on the aligned images: its download is estimated through oracle: and +noise=
    out = cli("ablate", "noise", "--dry-run", "--results-dir", tmp_path / "r")
    assert out.exit_code == 0, out.output
    assert "75 run(s) planned (real)" in out.output  # 5 sigmas x 5 folds x 3 seeds
    lines = [x for x in out.output.splitlines() if x.startswith("    memory: ")]
    assert len(lines) == 5 and all("featurizer dift ~5.2 GB" in x for x in lines), lines
    tiny = cli("ablate", "pose", "--tiny", "--dry-run", "--results-dir", tmp_path / "r")
    assert tiny.exit_code == 0 and "65 run(s) planned (tiny)" in tiny.output  # frozen: 1 seed


def test_the_noise_curve_is_drawn_even_before_its_runs(cli, tmp_path):
    md = tmp_path / "out" / "leaderboard.md"
    md.parent.mkdir()  # --output's folder must exist (a missing one is refused)
    (tmp_path / "results").mkdir()
    wrote = cli("leaderboard", "--results-dir", tmp_path / "results", "--output", md)
    assert wrote.exit_code == 0, wrote.output
    assert (tmp_path / "out" / "leaderboard-tablenoise.png").stat().st_size > 1000
    text = md.read_text()
    assert "Positive control: pose-perturbed faces, another day" in text and "oracle points + noise" in text
    # a setting with no runnable cell in a table gets its reason once, no command and no per-cell lines
    pretrained = text.split("## Table pretrained:")[1].split("## Smoke tests")[0]
    flat = " ".join(pretrained.split())  # prose is wrapped
    assert "- real: 0 of 0 runnable cells have results (12 cannot run in this setting): the small setting's " \
           "stand-in for a pretrained backbone" in flat
    assert re.search(r"harness ablate pretrained --small +# small:", pretrained) and "# real:" not in pretrained
    # no rows without results: one line for the setting's 12 cells instead
    assert "| real |" not in pretrained and "| small |" not in pretrained and "- small, not run (12 cells): " in flat
    assert re.search(r"harness ablate pose +# real: the paper's setting \(GPU\)", text)


def test_pretrained_trunk_table_runs_the_hybrid_on_aligned_and_perturbed_faces_in_small_only():
    table = tables.get_table("pretrained")
    real = table_cells.cells(table, "real")
    assert all(c.overrides is None for c in real) and sum("Tables 1 and 4" in c.reason for c in real) == 11
    small = {c.key: table_cells.resolve_cell(c, seed=0, fold=0) for c in table_cells.cells(table, "small")
             if c.overrides is not None}
    assert len(small) == 11  # 6 rows x 2 columns; the oracle's aligned cell is the CKPE cell
    for key, cfg in small.items():
        row, col = key.split("|")
        assert cfg.exclude == "same-day" and cfg.pretrained and cfg.image_size == 224, key
        assert ("perturb", "strong") in cfg.dataset_options if col.endswith("perturbed") else not cfg.dataset_options
        assert cfg.backbone == ("mobilenetv2-dsr" if row.startswith("frozen") else "mobilenetv2-dsr-hybrid"), key
    keypoints = {key: cfg.keypoints for key, cfg in small.items() if cfg.method in ("kpe", "ckpe")}
    assert sorted(set(keypoints.values())) == ["expert@sift", "expert@template",
                                               "oracle:results/keypoints/macaquefaces-expert-sift-k3.json"]
    assert len(keypoints) == 7
    # its frozen cells are the cross-day and pose tables' own: the same experiments, so the same records
    cross_day = _configs("cross-day", "small")["WildLife Dataset"]
    assert small["frozen MobileNetV2 features|MacaqueFaces, aligned"].experiment_hash() == cross_day.experiment_hash()
    pose = _configs("pose", "small")["WildLife Dataset"]
    assert small["frozen MobileNetV2 features|MacaqueFaces, perturbed"].experiment_hash() == pose.experiment_hash()
    assert table.comparisons[0] == ("hybrid CKPE|MacaqueFaces, perturbed", "hybrid ViT, no keypoints|MacaqueFaces, perturbed")


def test_a_tiny_hybrid_ckpe_cell_of_the_pretrained_table_trains_on_perturbed_images(tmp_path):
    cell = next(c for c in table_cells.cells(tables.get_table("pretrained"), "tiny")
                if c.key == "hybrid CKPE|MacaqueFaces, perturbed")
    cfg = dataclasses.replace(table_cells.resolve_cell(cell, seed=0, fold=0), epochs=1)
    record, _ = execute(cfg, tmp_path, progress=False)
    assert record["config"]["backbone"] == "mobilenetv2-dsr-hybrid" and record["dataset"]["perturb"]["level"] == "strong"
    assert 0.0 <= record["metrics"]["top1"] <= 100.0 and "top1_keypoints_shuffled" in record["metrics"]
