"""`harness runs` lists the experiments of a results folder with filters; `harness compare` takes an
experiment's id or KEY=VALUE filters as a side and pairs the two on their common folds and seeds."""
from __future__ import annotations

import copy
import json

import pytest

from harness.config import RunConfig


def variant(record: dict, method: str, fold: int, seed: int, top1: float) -> dict:
    """``record`` as the run of ``method`` on identity fold ``fold`` (of 3) and seed ``seed``."""
    rec = copy.deepcopy(record)
    cfg = {**rec["config"], "method": method, "folds": 3, "fold": fold, "seed": seed}
    if method == "vit":
        cfg.update(keypoints=None, num_keypoints=None)
    rec.update(config=cfg, seed=seed, experiment=RunConfig.from_dict(cfg).experiment_hash(),
               created=f"2026-12-0{1 + fold}T10:0{seed}:00+00:00")
    rec["split"] = {**rec["split"], "fingerprint": f"fold{fold}", "folds": 3, "fold": fold}
    rec["metrics"] = {**rec["metrics"], "top1": top1}
    rec["name"] = f"{method}_f{fold}_s{seed}"
    return rec


@pytest.fixture
def results(run_record, tmp_path):
    """ckpe: 3 folds x 2 seeds; vit: folds 0 and 1 x 2 seeds, 5 points lower."""
    for fold in range(3):
        for seed in range(2):
            runs = [("ckpe", 60.0 + fold + seed)] + ([("vit", 55.0 + fold + seed)] if fold < 2 else [])
            for method, top1 in runs:
                rec = variant(run_record, method, fold, seed, top1)
                (tmp_path / f"{rec['name']}.json").write_text(json.dumps(rec))
    return tmp_path


def listed(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()[1:]]


def test_runs_lists_each_experiment_with_its_design_score_and_date(cli, results):
    res = cli("runs", "--results-dir", results)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].split() == ["id", "method", "dataset", "protocol", "backbone", "folds", "x",
                                                  "seeds", "top1", "date"]
    rows = listed(res.output)
    assert [r[1] for r in rows] == ["vit", "ckpe"]  # oldest first: vit's last run is on Dec 2
    vit, ckpe = rows
    assert vit[2:6] == ["synthetic", "disjoint", "nano", "2x2"] and vit[6] == "56.0" and vit[7] == "2026-12-02"
    assert ckpe[5] == "3x2" and ckpe[6] == "61.5" and ckpe[7] == "2026-12-03"


def test_runs_filters(cli, results):
    rows = listed(cli("runs", "--method", "ckpe", "--results-dir", results).output)
    assert [r[1] for r in rows] == ["ckpe"]
    rows = listed(cli("runs", "--where", "keypoints=None", "--results-dir", results).output)
    assert [r[1] for r in rows] == ["vit"]
    res = cli("runs", "--dataset", "giraffes", "--results-dir", results)
    assert res.exit_code != 0 and "no runs matching dataset=giraffes" in res.output
    res = cli("runs", "--where", "backbon=nano", "--results-dir", results)
    assert res.exit_code != 0 and "did you mean backbone?" in res.output


def test_compare_pairs_two_experiments_by_id_or_filters_on_common_folds_and_seeds(cli, results):
    ids = {r[1]: r[0] for r in listed(cli("runs", "--results-dir", results).output)}
    by_id = cli("compare", ids["ckpe"], ids["vit"], "--results-dir", results)
    assert by_id.exit_code == 0, by_id.output
    a, b, diff = by_id.output.strip().splitlines()[-3:]
    assert a.startswith(f"A: experiment {ids['ckpe']} [{ids['ckpe']}]: top1 61.5") and "(6 runs, 2 seed(s)" in a
    assert b.startswith(f"B: experiment {ids['vit']} [{ids['vit']}]: top1 56.0") and "(4 runs" in b
    assert diff.startswith("A - B: +5.0")  # on folds 0 and 1 only: every pair differs by 5
    by_filter = cli("compare", "method=ckpe", ids["vit"][:6], "--results-dir", results)
    assert by_filter.exit_code == 0, by_filter.output
    assert by_filter.output.strip().splitlines()[-1] == diff


def test_compare_says_when_a_side_is_not_one_experiment(cli, results):
    res = cli("compare", "dataset=synthetic", "method=vit", "--results-dir", results)
    assert res.exit_code != 0 and "dataset=synthetic matches 2 experiments" in res.output
    res = cli("compare", "method=kpe", "method=vit", "--results-dir", results)
    assert res.exit_code != 0 and "no runs match method=kpe" in res.output
