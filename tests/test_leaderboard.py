"""Tables declared once, `harness ablate` (resumable, dry-run, tiny, submitit) and `harness leaderboard`."""
import json
import shutil

import pytest

from harness.tables import declarations as tables
from harness.core.paths import REPO_ROOT


def test_every_table_declares_paper_numbers_and_resolvable_cells():
    assert tables.table_ids() == ["1", "2", "3", "4", "5", "6-7"]
    for t in tables.TABLES:
        real, tiny = tables.cells(t), tables.cells(t, tiny=True)
        assert len(real) == len(tiny) == len(t.rows) * len(t.cols)
        assert all(c.paper is not None for c in real), t.id  # the paper's number for every cell
        for c in real:
            cfg = tables.resolve_cell(c)
            assert cfg.dataset in ("macaquefaces", "giraffes", "ipanda50", "ctai")
        for c in tiny:
            assert (c.overrides is None) == bool(c.reason)
            if c.overrides is not None:
                cfg = tables.resolve_cell(c, seed=2)
                assert cfg.dataset == "synthetic" and cfg.seed == 2 and cfg.epochs <= 12
    assert tables.get_table("7").id == "6-7"
    with pytest.raises(ValueError, match="unknown table '9'"):
        tables.get_table("9")
    # a cell resolves like `harness run`: card defaults < method defaults < cell overrides
    base = tables.resolve_cell(tables.cells(tables.get_table("1"))[0])
    assert (base.method, base.backbone, base.image_size) == ("wildlife-baseline", "megadescriptor", 384)
    t3 = {c.col: tables.resolve_cell(c) for c in tables.cells(tables.get_table("3"))}
    assert t3["1000"].keypoints == "expert@sd:timestep=999" and t3["0"].backbone == "large"


def test_ablate_dry_run_lists_commands_and_runs_nothing(cli, tmp_path):
    out = cli("ablate", "all", "--tiny", "--dry-run", "--results-dir", tmp_path / "r")
    assert out.exit_code == 0, out.output
    lines = [x for x in out.output.splitlines() if x.startswith("[todo]")]
    assert len(lines) > 30 and all("harness run --method" in x for x in lines)
    assert "not run: table 2 [CKPE | GPT-4]: needs the OpenAI API" in out.output
    assert not (tmp_path / "r").exists()
    real = cli("ablate", "1", "--dataset", "giraffes", "--dry-run", "--results-dir", tmp_path / "r")
    assert real.exit_code == 0 and real.output.count("[todo]") == 3 and "--dataset giraffes" in real.output
    bad = cli("ablate", "12", "--dry-run")
    assert bad.exit_code != 0 and "unknown table '12'" in bad.output


def test_ablate_tiny_table_resumes_and_leaderboard_renders(cli, tmp_path, monkeypatch):
    res, md = tmp_path / "results", tmp_path / "out" / "leaderboard.md"
    cols = ("--column", "Expert", "--column", "Grad-CAM (ViT)")
    first = cli("ablate", "2", "--tiny", "--seeds", "2", *cols, "--results-dir", res)
    assert first.exit_code == 0, first.output
    assert "4 run(s) planned, 0 already done, 4 to run" in first.output
    assert len(list(res.glob("*.json"))) == 4

    import harness.tables.ablate

    def no_training(*a, **k):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(harness.tables.ablate, "execute", no_training)
    again = cli("ablate", "2", "--tiny", "--seeds", "2", *cols, "--results-dir", res)
    assert again.exit_code == 0 and "4 already done, 0 to run" in again.output

    assert cli("leaderboard", "--check", "--results-dir", res, "--output", md).exit_code != 0  # not written yet
    out = cli("leaderboard", "--results-dir", res, "--output", md)
    assert out.exit_code == 0, out.output
    text = md.read_text()
    assert "every number of ours below comes from the synthetic tiny setting" in text
    assert "harness ablate 3 --tiny" in text and "## Table 6-7" in text
    row = next(x for x in text.splitlines() if x.startswith("| CKPE | Expert |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[2] == "99.2" and "±" in cells[3] and cells[4] == "2" and cells[5] == "tiny"
    assert cells[6] == "disjoint" and len(cells[7]) == 8 and cells[8] == "mini"
    assert "| CKPE | GPT-4 | 99.2 | not run (tiny: needs the OpenAI API" in text
    assert "| CKPE | Grad-CAM (ViT) | 97.7 |" in text and "| CKPE | Grad-CAM (ResNet) | 96.9 | not run |" in text
    assert "| ours (CKPE) | CTai | 83.4 | not run |" in text
    assert (md.parent / "leaderboard-table3.png").is_file() and (md.parent / "leaderboard-table5.png").is_file()
    assert cli("leaderboard", "--check", "--results-dir", res, "--output", md).exit_code == 0
    cli("leaderboard", "--results-dir", res, "--output", md)
    assert md.read_text() == text  # deterministic

    # a result whose split disagrees with the table's is refused, not averaged in
    src = next(p for p in sorted(res.glob("*_s0.json")) if "ground-truth@sd" in p.read_text())
    rec = json.loads(src.read_text())
    rec["split"]["fingerprint"] = "f" * 16
    rec["seed"] = rec["config"]["seed"] = 7
    (res / src.name.replace("_s0.json", "_s7.json")).write_text(json.dumps(rec))
    rec["split"]["fingerprint"] = json.loads(src.read_text())["split"]["fingerprint"]
    rec["protocol"] = rec["config"]["protocol"] = "closed"
    (res / "other-protocol.json").write_text(json.dumps(rec))
    stale = cli("leaderboard", "--check", "--results-dir", res, "--output", md)
    assert stale.exit_code != 0 and "is stale" in stale.output
    cli("leaderboard", "--results-dir", res, "--output", md)
    text = md.read_text()
    assert "split fingerprint ffffffff differs from" in text
    assert "`other-protocol.json`: protocol closed, split seed 666; this table uses disjoint" in text
    row = next(x for x in text.splitlines() if x.startswith("| CKPE | Expert |"))
    assert row.split("|")[5].strip() == "2"  # still the two agreeing seeds


def test_submitit_local_executor_runs_one_tiny_cell(cli, tmp_path):
    pytest.importorskip("submitit")
    res = tmp_path / "results"
    out = cli("ablate", "2", "--tiny", "--column", "Expert", "--launcher", "submitit-local", "--results-dir", res)
    assert out.exit_code == 0, out.output
    assert "submitted" in out.output
    (result,) = res.glob("*.json")
    rec = json.loads(result.read_text())
    assert rec["config"]["keypoints"].startswith("ground-truth@sd:model=tiny-random-sd")
    again = cli("ablate", "2", "--tiny", "--column", "Expert", "--launcher", "submitit-local", "--results-dir", res)
    assert again.exit_code == 0 and again.output.count("submitted") == 0


def test_run_all_summary_includes_other_methods(tmp_path):
    from harness.cli.main import all_methods_records
    from harness.config import RunConfig

    src = next((REPO_ROOT / "results").glob("ckpe_synthetic_*.json"), None)
    if src is None:
        pytest.skip("no committed tiny results")
    rec = json.loads(src.read_text())
    shutil.copy(src, tmp_path / src.name)
    other = dict(rec, name="vit_x", config=dict(rec["config"], method="vit"))
    (tmp_path / "vit_x.json").write_text(json.dumps(other))
    plan = RunConfig(dataset="synthetic", protocol=rec["protocol"], split_seed=rec["config"]["split_seed"])
    got = all_methods_records(tmp_path, [plan], [rec])
    assert [r["config"]["method"] for r in got] == ["ckpe", "vit"]


def test_committed_leaderboard_is_generated_from_committed_results(cli):
    out = cli("leaderboard", "--check", "--results-dir", REPO_ROOT / "results", "--output", REPO_ROOT / "leaderboard.md")
    assert out.exit_code == 0, out.output


def test_ablate_reports_a_cell_that_cannot_run_and_goes_on(cli, tmp_path, monkeypatch):
    import harness.tables.ablate
    from harness.core.errors import DataError

    calls = []

    def fake_execute(cfg, results_dir, **kw):
        calls.append(cfg.keypoints)
        raise DataError(f"no data for {cfg.keypoints}")

    monkeypatch.setattr(harness.tables.ablate, "execute", fake_execute)
    out = cli("ablate", "3", "--tiny", "--results-dir", tmp_path / "r")
    assert out.exit_code != 0 and "9 of 9 run(s) failed" in out.output
    assert len(calls) == 9 and out.output.count("failed: table 3 [CKPE |") == 9


def test_records_match_cells_across_config_field_changes():
    from harness.config import RunConfig
    from harness.tables.leaderboard import _key

    cfg = RunConfig().to_dict()
    old = {k: v for k, v in cfg.items() if k != "bad_images"}  # written before the field existed
    assert _key({**old, "retired_option": 1}) == _key(cfg)
    assert _key({**cfg, "seed": 5, "device": "cuda"}) == _key(cfg)
    assert _key({**cfg, "epochs": 3}) != _key(cfg)


def test_slurm_launcher_without_slurm_is_a_one_line_error(cli, tmp_path):
    import shutil as sh

    if sh.which("srun"):
        pytest.skip("a slurm cluster: submitting would really queue a job")
    out = cli("ablate", "2", "--tiny", "--column", "Expert", "--launcher", "slurm", "--results-dir", tmp_path / "r")
    assert out.exit_code != 0 and "--launcher slurm" in out.output and "Traceback" not in out.output
    assert not list((tmp_path / "r").glob("*.json"))


def test_column_filter_keeps_a_cell_shared_with_an_earlier_table(tmp_path):
    """Table 6-7's `keypoint (1)` cells are Table 5's K = 1 cells; asking for that column by its
    6-7 label must plan them (filtering after deduplication dropped them)."""
    from harness.tables.ablate import plan

    jobs, _ = plan("all", tmp_path, tiny=True, columns=("keypoint (1)",))
    assert jobs and {j.cell.col for j in jobs} == {"keypoint (1)"}
    assert {j.cell.table for j in jobs} == {"6-7"}
