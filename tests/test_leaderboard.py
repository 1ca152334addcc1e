"""Tables declared once, `harness ablate` (settings, folds x seeds, resumable, dry-run, submitit),
`harness leaderboard` (intervals, paired comparisons, caveats) and `harness compare`."""
import json
import shutil

import pytest

from harness.core.paths import REPO_ROOT
from harness.tables import cells as table_cells
from harness.tables import declarations as tables
from harness.tables import settings as table_settings


def test_every_table_declares_published_numbers_and_resolvable_cells():
    assert tables.table_ids() == ["1", "2", "3", "4", "5", "6-7", "cross-day", "open-set", "pose", "noise", "control",
                                   "pretrained"]
    for t in tables.declared_tables():
        grids = {s.name: table_cells.cells(t, s.name) for s in table_settings.SETTINGS}
        assert all(len(g) == len(t.rows) * len(t.cols) for g in grids.values())
        for setting, cells in grids.items():
            for c in cells:
                assert (c.overrides is None) == bool(c.reason), (t.id, setting, c.key)
                if c.overrides is None:
                    continue
                cfg = table_cells.resolve_cell(c, seed=1)
                assert cfg.seed == 1
                if setting == "tiny" or not t.translated:  # the smoke tests, and the control's synthetic data
                    assert cfg.dataset == "synthetic" and (cfg.epochs or 0) <= (12 if setting == "tiny" else 30)
                else:
                    assert cfg.dataset in ("macaquefaces", "giraffes", "ipanda50", "ctai")
                if setting == "small" and t.translated:  # random-init models, but the frozen ImageNet MobileNetV2 and its trunk
                    assert cfg.dataset == "macaquefaces"
                    assert cfg.pretrained is None or (cfg.method, cfg.backbone) == ("wildlife-baseline", "mobilenetv2-dsr") \
                        or (cfg.backbone == "mobilenetv2-dsr-hybrid" and t.id == "pretrained")
        for a, b in t.comparisons:  # every declared comparison names two cells of the table
            keys = {c.key for c in grids["real"]}
            assert a in keys and b in keys, (t.id, a, b)
    assert tables.get_table("7").id == "6-7"
    with pytest.raises(ValueError, match="axis 'x': unknown setting\\(s\\) smal; valid: real, small, small-zero-channel, tiny"):
        table_cells.Axis("x", {}, smal={"backbone": "micro"})  # a setting's overrides are keyed by its name
    with pytest.raises(LookupError, match="unknown table '9'"):
        tables.get_table("9")


def test_ablate_dry_run_prints_resolved_configs_and_runs_nothing(cli, tmp_path):
    out = cli("ablate", "all", "--tiny", "--dry-run", "--results-dir", tmp_path / "r")
    assert out.exit_code == 0, out.output
    heads = [x for x in out.output.splitlines() if x.startswith("table ")]
    configs = [x for x in out.output.splitlines() if x.startswith("    config: ")]
    assert len(heads) == len(configs) > 30 and all("harness run --method" in x for x in heads)
    frozen = [x for x in heads if "--method wildlife-baseline" in x]  # one seed: a frozen model is the same under all
    assert frozen and all("x 1 seed(s))" in x for x in frozen)
    assert all("runs done (5 fold(s) x 2 seed(s))" in x or "(1 fold(s) x 2 seed(s))" in x
               for x in heads if x not in frozen)
    assert "not run (tiny): table 2 [CKPE | GPT-4]: needs the OpenAI API" in out.output
    assert not (tmp_path / "r").exists()
    real = cli("ablate", "1", "--dataset", "giraffes", "--dry-run", "--results-dir", tmp_path / "r")
    assert real.exit_code == 0, real.output
    assert "(real), 0 already done" in real.output and "--dataset giraffes" in real.output
    # baseline, KPE, CKPE, template, random, ViT x 5 folds; the anchor row 1 run; no oracle on Giraffes
    assert "81 run(s) planned (real)" in real.output  # 3 seeds each; the frozen baseline rows 1
    bad = cli("ablate", "12", "--dry-run")
    assert bad.exit_code != 0 and "unknown table '12'" in bad.output
    helped = " ".join(cli("ablate", "--help").output.split())  # the help names where the tables are listed
    assert "TABLE (an id or alias `harness list` shows, or all)" in helped
    listed = cli("list").output
    assert all(f"\n  {tid:<22} {tables.get_table(tid).title}" in listed for tid in tables.table_ids())


def test_ablate_tiny_sweeps_folds_and_seeds_resumes_and_renders_intervals(cli, tmp_path, monkeypatch):
    res, md = tmp_path / "results", tmp_path / "out" / "leaderboard.md"
    md.parent.mkdir()  # --output's folder must exist (a missing one is refused)
    cols = ("--column", "Expert", "--column", "Grad-CAM (ViT)")
    first = cli("ablate", "2", "--tiny", "--seeds", "1", *cols, "--results-dir", res)
    assert first.exit_code == 0, first.output
    assert "10 run(s) planned (tiny), 0 already done, 10 to run" in first.output  # 2 cells x 5 folds x 1 seed
    records = [json.loads(p.read_text()) for p in res.glob("*.json")]
    assert len(records) == 10 and sorted({r["split"]["fold"] for r in records}) == [0, 1, 2, 3, 4]

    import harness.tables.ablate

    def no_training(*a, **k):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(harness.tables.ablate, "execute", no_training)
    again = cli("ablate", "2", "--tiny", "--seeds", "1", *cols, "--results-dir", res)
    assert again.exit_code == 0 and "10 already done, 0 to run" in again.output

    assert cli("leaderboard", "--check", "--results-dir", res, "--output", md).exit_code != 0  # not written yet
    wrote = cli("leaderboard", "--results-dir", res, "--output", md)
    assert wrote.exit_code == 0, wrote.output
    text = md.read_text()
    expert = next(x for x in text.splitlines() if x.startswith("| CKPE | Expert |") and "smoke test" in x)
    assert text.index(expert) > text.index("## Smoke tests")  # smoke-test rows come last
    flat = " ".join(text.split())  # prose is wrapped
    table2 = flat.split("## Table 2:")[1].split("## Table 3:")[0]
    # cells without records: no rows, one line per setting with each reason once
    assert "| real |" not in table2 and "| small |" not in table2
    assert "- real, not run (4 cells): a GPU run, not done here" in table2
    assert "the default size, which the small sweep runs first" in table2  # Expert at the default size (micro)
    assert "needs the network or weights: [CKPE / GPT-4]" in table2
    table4 = flat.split("## Table 4:")[1].split("## Table 5:")[0]
    assert "beyond the small sweep's CPU budget" in table4  # Table 4's mini row
    cells = [c.strip() for c in expert.split("|")]
    # one seed: no interval, and the reason instead of a number that would leave training out
    assert cells[5] == "– (one seed: training variance not estimated)" and cells[7] == "5 (5 x 1)"
    assert "smoke test" in cells[9]
    assert float(cells[8]) > 0  # the chance level of those test sets
    assert "- tiny: CKPE / Expert vs CKPE / Grad-CAM (ViT): " in text
    assert (tmp_path / "out" / "leaderboard-table3.png").is_file()
    assert cli("leaderboard", "--check", "--results-dir", res, "--output", md).exit_code == 0
    assert md.read_text() == text  # rendering is deterministic

    # harness compare on the same cells, by table cell and by folder
    one = cli("compare", "2:CKPE|Expert@tiny", "2:CKPE|Grad-CAM (ViT)@tiny", "--results-dir", res)
    assert one.exit_code == 0, one.output
    assert "A - B: " in one.output and "no interval (one seed: training variance not estimated)" in one.output
    assert "no significance claim (one seed: training variance not estimated)" in one.output
    folder = tmp_path / "expert"
    folder.mkdir()
    for rec in records:
        if rec["config"]["keypoints"].startswith("ground-truth@sd"):
            (folder / f"{rec['name']}.json").write_text(json.dumps(rec))
    two = cli("compare", str(folder), "2:CKPE|Expert@tiny", "--results-dir", res)
    assert two.exit_code == 0 and "A - B: +0.0 points, no significance claim (one seed" in two.output
    mixed = cli("compare", str(res), str(folder))
    assert mixed.exit_code != 0 and "holds records of 2 experiments" in mixed.output
    unknown = cli("compare", "2:CKPE|Nope@tiny", str(folder), "--results-dir", res)
    assert unknown.exit_code != 0 and "table 2 has no cell 'CKPE|Nope' in setting tiny" in unknown.output


def test_leaderboard_refuses_unpairable_and_renders_old_records_without_intervals(cli, tmp_path):
    res, md = tmp_path / "results", tmp_path / "leaderboard.md"
    out = cli("ablate", "6-7", "--tiny", "--seeds", "1", "--column", "random (1)", "--column", "keypoint (1)",
              "--row", "large", "--results-dir", res)
    assert out.exit_code == 0, out.output
    for path in res.glob("ckpe_*_f4_s0.json"):  # the keypoint cells lose a fold: their runs no longer match
        path.unlink()
    assert cli("leaderboard", "--results-dir", res, "--output", md).exit_code == 0
    text = md.read_text()
    assert "keypoint (1) vs small / random (1)" not in text
    # paired on the 4 folds both have; the run of one side only is left out and said
    assert " ".join(text.split()).count("1 run(s) of one side only or outside the complete folds x seeds grid left out") == 1
    partial = next(x for x in text.splitlines() if x.startswith("| large | keypoint (1) |") and "tiny" in x)
    whole = next(x for x in text.splitlines() if x.startswith("| large | random (1) |") and "tiny" in x)
    assert partial.split("|")[7].strip() == "4 of 5 (5 x 1)" and whole.split("|")[7].strip() == "5 (5 x 1)"

    old = json.loads(next(res.glob("random_*_f0_s0.json")).read_text())
    del old["queries"]  # a record written before per-query outcomes were kept
    only_old = tmp_path / "old"
    only_old.mkdir()
    (only_old / "random_old.json").write_text(json.dumps(dict(old, name="random_old")))
    assert cli("leaderboard", "--results-dir", only_old, "--output", md).exit_code == 0
    line = next(x for x in md.read_text().splitlines() if x.startswith("| ") and "random (1)" in x and "tiny" in x)
    # the interval needs run values only: an old record renders, and one run is one seed (no interval)
    assert [c.strip() for c in line.split("|")][5] == "– (one seed: training variance not estimated)"
    listed = cli("compare", str(only_old / "random_old.json"), str(only_old / "random_old.json"))
    assert listed.exit_code == 0 and "no interval (one seed: training variance not estimated)" in listed.output
    assert "A - B: +0.0 points, no significance claim (one seed" in listed.output


def test_rows_that_differ_only_in_protocol_keep_their_own_records(cli, tmp_path):
    """The baseline row (5 disjoint folds) and the closed-protocol anchor row share every other
    field: each takes its own records, and neither lists the other's as refused."""
    res, md = tmp_path / "results", tmp_path / "leaderboard.md"
    out = cli("ablate", "1", "--tiny", "--seeds", "1", "--column", "MacaqueFaces", "--row", "WildLife Dataset",
              "--row", "WildLife Dataset, closed protocol", "--results-dir", res)
    assert out.exit_code == 0, out.output
    assert len(list(res.glob("*.json"))) == 6
    assert cli("leaderboard", "--results-dir", res, "--output", md).exit_code == 0
    text = md.read_text()
    assert "Refused" not in text.split("## Table 1:")[1].split("## Table 2:")[0]
    section = text.split("### Table 1 (smoke test)")[1].split("### Table")[0]
    rows = [x for x in section.splitlines() if x.startswith("| WildLife Dataset") and "smoke test" in x]
    assert [r.split("|")[7].strip() for r in rows[:2]] == ["5 (5 x 1)", "1 (1 x 1)"]


def test_submitit_local_executor_runs_one_tiny_cell(cli, tmp_path):
    pytest.importorskip("submitit")
    res = tmp_path / "results"
    args = ("ablate", "1", "--tiny", "--seeds", "1", "--row", "WildLife Dataset, closed protocol", "--column",
            "MacaqueFaces", "--launcher", "submitit-local", "--results-dir", res)  # one run: a single closed split
    out = cli(*args)
    assert out.exit_code == 0, out.output
    assert out.output.count("submitted") == 1
    (result,) = res.glob("*.json")
    rec = json.loads(result.read_text())
    assert rec["protocol"] == "closed" and rec["config"]["method"] == "wildlife-baseline" and rec["split"]["folds"] is None
    again = cli(*args)
    assert again.exit_code == 0 and again.output.count("submitted") == 0


def test_run_all_summary_includes_other_methods(tmp_path):
    from harness.cli.run import all_methods_records
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
    # the file is the generator's output, so its reliance headers pin the unit each table speaks in:
    # the open-set table's lines are differences of sqrt(BAKS x BAUS), not of top-1
    sections = (REPO_ROOT / "leaderboard.md").read_text().split("\n## Table ")
    headers = {s.split(":")[0]: [line for line in s.splitlines() if line.startswith("What the trained models take")]
               for s in sections[1:]}
    assert headers["open-set"] and all(h.endswith("sqrt(BAKS x BAUS) points):") for h in headers["open-set"])
    assert headers["1"] and all(h.endswith("top-1 points):") for h in headers["1"])


def test_ablate_reports_a_run_that_cannot_run_and_goes_on(cli, tmp_path, monkeypatch):
    import harness.tables.ablate
    from harness.core.errors import DataError

    calls = []

    def fake_execute(cfg, results_dir, **kw):
        calls.append(cfg.keypoints)
        raise DataError(f"no data for {cfg.keypoints}")

    monkeypatch.setattr(harness.tables.ablate, "execute", fake_execute)
    out = cli("ablate", "3", "--tiny", "--seeds", "1", "--results-dir", tmp_path / "r")
    assert out.exit_code != 0 and "45 of 45 run(s) failed" in out.output  # 9 timesteps x 5 folds
    assert len(calls) == 45 and out.output.count("failed: table 3 [CKPE |") == 45


def test_records_match_cells_across_config_field_changes():
    from harness.config import RunConfig
    from harness.tables.collect import cell_key, normalised

    cfg = RunConfig(method="vit").to_dict()
    old = {k: v for k, v in cfg.items() if k not in ("bad_images", "augment")}  # written before those fields
    assert cell_key(normalised({**old, "retired_option": 1})) == cell_key(normalised(cfg))
    assert cell_key(normalised({**cfg, "seed": 5, "device": "cuda", "folds": 5, "fold": 3})) == cell_key(normalised(cfg))
    # what does not apply to a plain ViT does not tell records apart
    assert cell_key(normalised({**cfg, "keypoints": "expert@sd", "num_keypoints": 3})) == cell_key(normalised(cfg))
    assert cell_key(normalised({**cfg, "epochs": 3})) != cell_key(normalised(cfg))


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
    from harness.tables.ablate import Selection, plan

    jobs, _ = plan("all", tmp_path, setting="tiny", select=Selection(columns=("keypoint (1)",)))
    assert jobs and {j.cell.col for j in jobs} == {"keypoint (1)"}
    assert {j.cell.table for j in jobs} == {"6-7"}


def test_fold_selection_plans_only_those_folds_and_refuses_one_the_cells_lack(cli, tmp_path):
    """`ablate --fold 0 --fold 2` plans each cell's folds 0 and 2 under every seed, nothing else;
    a fold beyond the cells' count stops with one line, before anything runs."""
    from harness.tables.ablate import Selection, plan

    every, _ = plan("1", tmp_path, setting="tiny", seeds=2)
    some, _ = plan("1", tmp_path, setting="tiny", seeds=2, select=Selection(folds=(0, 2)))
    folded = [j for j in every if j.cfg.fold is not None]
    assert folded and {j.cfg.fold for j in folded} == set(range(folded[0].cfg.folds))
    assert [(j.path, j.cfg.fold, j.cfg.seed) for j in some] == [
        (j.path, j.cfg.fold, j.cfg.seed) for j in every if j.cfg.fold in (None, 0, 2)]
    assert {j.cfg.seed for j in some if j.cfg.fold == 2} == {0, 1}
    dry = cli("ablate", "1", "--tiny", "--seeds", "2", "--fold", "0", "--fold", "2", "--dry-run", "--row", "ours (CKPE)",
              "--results-dir", str(tmp_path / "r"))
    assert dry.exit_code == 0 and "0 of 4 runs done (2 fold(s) x 2 seed(s))" in dry.output
    single = cli("ablate", "1", "--tiny", "--fold", "0", "--dry-run", "--row", "WildLife Dataset, closed protocol",
                 "--results-dir", str(tmp_path / "r"))
    assert single.exit_code != 0 and "none of the selected cells has identity folds" in single.output
    out = cli("ablate", "1", "--tiny", "--fold", "9", "--dry-run", "--results-dir", str(tmp_path / "r"))
    assert out.exit_code != 0
    assert out.output.strip().splitlines()[-1] == (
        f"Error: --fold 9: these cells have {folded[0].cfg.folds} identity folds, 0 to {folded[0].cfg.folds - 1}")


def test_a_record_another_table_averages_in_is_no_refusal_but_one_no_table_takes_is(cli, tmp_path):
    """The open-set table's records share every field but the protocol with Table 1's row: Table 1
    does not list them as refused. A record of the same cell under a split seed no table uses is."""
    res, md = tmp_path / "results", tmp_path / "leaderboard.md"
    for table in ("1", "open-set"):
        out = cli("ablate", table, "--tiny", "--seeds", "1", "--column", "MacaqueFaces", "--row", "WildLife Dataset",
                  "--results-dir", res)
        assert out.exit_code == 0, out.output
    opened = [p for p in res.glob("*.json") if json.loads(p.read_text())["config"]["protocol"] == "open"]
    assert len(opened) == 5
    stray = json.loads(opened[0].read_text())
    stray["config"]["split_seed"] += 1
    (res / "stray.json").write_text(json.dumps(stray))
    assert cli("leaderboard", "--results-dir", res, "--output", md).exit_code == 0
    text = md.read_text()
    table1 = text.split("## Table 1")[1].split("## Table 2")[0]
    refused = [x for x in text.splitlines() if x.startswith("- tiny: `")]
    assert "Refused" not in table1 and refused and all("`stray.json`" in x for x in refused)
    want = f"split_seed {stray['config']['split_seed']}; this table uses split_seed {stray['config']['split_seed'] - 1}"
    assert all(x.endswith(want) for x in refused)
