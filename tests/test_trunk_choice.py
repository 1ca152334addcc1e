"""The pretrained table's trunk is chosen by its frozen features on MacaqueFaces' validation
identities (`harness tune --trunk`), never on a test fold: every candidate in both of the table's
columns, the best mean wins, and trials whose data is absent are named, not run."""
from harness.tables.settings import PRETRAINED_TRUNKS
from harness.tables.trunk_choice import best_trunk, trunk_trials


def test_every_trunk_runs_the_frozen_row_on_validation_identities_in_both_columns():
    trials = trunk_trials()
    assert len(trials) == 2 * len(PRETRAINED_TRUNKS)
    configs = [t.config() for t in trials]
    assert {c.backbone for c in configs} == set(PRETRAINED_TRUNKS)
    assert all(c.method == "wildlife-baseline" and c.pretrained and c.image_size == 224 for c in configs)
    assert all(c.validate and c.fold == 0 and c.folds == 5 and c.exclude == "same-day" for c in configs)
    perturbed = [c for t, c in zip(trials, configs) if t.column == "MacaqueFaces, perturbed"]
    assert len(perturbed) == len(PRETRAINED_TRUNKS) and all(dict(c.dataset_options)["perturb"] == "strong"
                                                            for c in perturbed)
    assert len({c.experiment_hash() for c in configs}) == len(configs)


def test_the_best_mean_over_the_columns_wins_and_waits_for_every_record():
    trials = trunk_trials()
    # lite0 best on aligned faces, lite1 on perturbed ones: the mean over the columns decides
    table = {("efficientnet-lite0", "MacaqueFaces, aligned"): 95.0, ("efficientnet-lite1", "MacaqueFaces, perturbed"): 90.0}
    scores = [(t, table.get((t.trunk, t.column), 60.0)) for t in trials]
    assert best_trunk(scores) == "efficientnet-lite0"  # (95 + 60) / 2 = 77.5 against (60 + 90) / 2 = 75
    flat = [(t, 60.0) for t in trials]
    assert best_trunk(flat) == "mobilenetv2-dsr"  # ties: the earlier candidate
    assert best_trunk([(t, None if t.trunk == "efficientnet-lite2" else v) for t, v in scores]) is None


def test_tune_trunk_names_the_trials_it_cannot_run_without_the_data(cli, tmp_path):
    result = cli("tune", "--trunk", "--results-dir", tmp_path / "results", "--data-root", tmp_path / "no-data")
    assert result.exit_code == 0, result.output
    not_run = [line for line in result.output.splitlines() if line.startswith("not run: ")]
    assert len(not_run) == 2 * len(PRETRAINED_TRUNKS) and "MacaqueFaces" in not_run[0]
    assert "best trunk: (incomplete)" in result.output
    both = cli("tune", "--trunk", "--channel", "--results-dir", tmp_path / "results")
    assert both.exit_code != 0 and "one at a time" in both.output
