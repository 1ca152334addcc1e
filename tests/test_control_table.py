"""The known-answer control is a declared table on the built-in synthetic data: its cells are whole
in every setting (no translation to MacaqueFaces, nothing of the small setting's MacaqueFaces
choice), under the card's AdamW and the paper's SGD, in the standard and the scrambled layout; the
channel's choice (`harness tune --channel`) trains on the same data's validation identities."""
from harness.tables.cells import cells, resolve_cell
from harness.tables.channel_choice import CHANNEL_CANDIDATES, best_channel, channel_scores, channel_trials
from harness.tables.declarations import get_table
from harness.tables.declared.control import CONTROL_TINY

TABLE = get_table("control")


def _cell(setting: str, row: str, col: str):
    (cell,) = [c for c in cells(TABLE, setting) if c.row == row and c.col == col]
    return cell


def test_the_control_runs_the_synthetic_card_as_it_is_under_both_recipes_and_layouts():
    assert all(c.overrides is None and "CPU table" in c.reason for c in cells(TABLE, "real"))
    adamw = resolve_cell(_cell("small", "CKPE", "AdamW (card)"), seed=1, fold=2)
    assert (adamw.dataset, adamw.backbone, adamw.image_size, adamw.epochs) == ("synthetic", "micro", 64, 30)
    assert (adamw.optimizer, adamw.lr, adamw.keypoints, adamw.folds, adamw.fold) == ("adamw", 0.002, "ground-truth", 5, 2)
    assert adamw.dataset_options == ()
    sgd = resolve_cell(_cell("small", "CKPE", "SGD, keypoints necessary"), seed=0, fold=0)
    assert (sgd.optimizer, sgd.lr, sgd.momentum, sgd.weight_decay) == ("sgd", 0.001, 0.9, 0.0)
    assert dict(sgd.dataset_options) == {"parts": "5", "scramble": "1"}
    template = resolve_cell(_cell("small", "fixed template", "SGD (paper)"), seed=0, fold=0)
    assert template.keypoints == "ground-truth@template"
    vit = resolve_cell(_cell("small", "ViT, no keypoints", "AdamW (card)"), seed=0, fold=0)
    assert vit.kpe_init is None and vit.keypoints is None
    tiny = resolve_cell(_cell("tiny", "KPE", "AdamW, keypoints necessary"), seed=0, fold=0)
    assert (tiny.epochs, tiny.image_size) == (CONTROL_TINY["epochs"], 64)  # the card's data, fewer epochs
    assert dict(tiny.dataset_options) == {"parts": "5", "scramble": "1"}
    zero = resolve_cell(_cell("small-zero-channel", "CKPE", "AdamW (card)"), seed=0, fold=0)
    assert (zero.kpe_init, zero.kpe_lr_scale) == ("zero", 1.0) and (adamw.kpe_init, adamw.kpe_lr_scale) == ("token", 30.0)
    labels = {c.key for c in cells(TABLE, "small")}
    assert all(a in labels and b in labels for a, b in TABLE.comparisons)
    assert TABLE.comparisons[0] == ("CKPE|AdamW (card)", "ViT, no keypoints|AdamW (card)")  # the answer first


def test_channel_trials_differ_only_in_the_channel_and_the_choice_waits_for_every_candidate():
    trials = channel_trials()
    assert len(trials) == 5 * (1 + len(CHANNEL_CANDIDATES))  # 2 layouts x 2 recipes, and MacaqueFaces
    real = [t.config() for t in trials if t.group == "macaquefaces, adamw"]
    assert [c.method for c in real] == ["vit"] + ["ckpe"] * len(CHANNEL_CANDIDATES)
    assert all(c.validate and c.fold == 0 and c.dataset == "macaquefaces" and c.optimizer == "adamw" for c in real)
    assert {c.keypoints for c in real[1:]} == {"expert@sift"}  # Table 1's small CKPE cell: propagated points
    same_place = [t.config() for t in trials if t.layout == "scrambled" and t.recipe == "sgd" and t.method == "ckpe"]
    assert {(c.kpe_init, c.kpe_lr_scale) for c in same_place} == set(CHANNEL_CANDIDATES)
    assert len({c.experiment_hash() for c in same_place}) == len(CHANNEL_CANDIDATES)
    assert all(c.validate and c.fold == 0 and c.optimizer == "sgd" for c in same_place)
    def top1(t):
        if t.channel is None:  # the plain ViT's floor
            return 10.0
        return 10.0 + 5 * CHANNEL_CANDIDATES.index(t.channel) + (40 if t.recipe == "sgd" and t.channel == ("zero", 30.0) else 0)

    scores = [(t, {"top1": top1(t)}) for t in trials]
    assert best_channel(scores) == {"synthetic, adamw": ("token", 30.0), "synthetic, sgd": ("zero", 30.0),
                                    "macaquefaces, adamw": ("token", 30.0)}
    no_real = [(t, s if t.layout != "macaquefaces" else None) for t, s in scores]
    assert best_channel(no_real)["macaquefaces, adamw"] is None and best_channel(no_real)["synthetic, adamw"]
    assert set(best_channel([(t, None) for t in trials]).values()) == {None}
    flat = [(t, {"top1": 10.0 if t.channel is None or t.recipe == "sgd" else 30.0}) for t in trials]
    verdict = best_channel(flat)
    assert verdict["synthetic, adamw"] == ("zero", 1.0)  # ties: the earlier candidate
    assert verdict["synthetic, sgd"].startswith("uninformative: no candidate beats the plain ViT by 10 points")


def test_records_made_before_the_channel_options_are_the_zero_channel_settings_cells():
    from pathlib import Path

    from harness.engine.records import load_records
    from harness.tables.collect import collect, index_records

    result = collect(get_table("1"), index_records(load_records(Path(__file__).parents[1] / "results")))
    old = result.cell("small-zero-channel", "ours (CKPE)|MacaqueFaces")
    assert len(old.records) >= 15  # the committed 5 folds x seeds, trained from a zero-init channel
    assert all("kpe_init" not in rec["config"] for rec in old.recs)  # written before the option existed
    assert not any("kpe_init" not in rec["config"] for rec in result.cell("small", "ours (CKPE)|MacaqueFaces").recs)
    vit_old = result.cell("small-zero-channel", "ViT, no keypoints|MacaqueFaces").recs
    assert vit_old and vit_old == result.cell("small", "ViT, no keypoints|MacaqueFaces").recs  # no channel: one cell


def test_tune_channel_reads_the_committed_choice_and_names_the_real_trials_it_cannot_run(cli, tmp_path):
    """Every synthetic trial has a committed record, so nothing trains; without MacaqueFaces under the
    data root, its trials that have no committed record are named as not run."""
    import shutil
    from pathlib import Path

    committed = Path(__file__).parents[1] / "results" / "channel-selection"
    folder = tmp_path / "results" / "channel-selection"
    shutil.copytree(committed, folder)
    result = cli("tune", "--channel", "--results-dir", tmp_path / "results", "--data-root", tmp_path / "no-data")
    assert result.exit_code == 0, result.output
    missing = [t for t, value in channel_scores(committed) if value is None]
    assert all(t.layout == "macaquefaces" for t in missing)
    not_run = [line for line in result.output.splitlines() if line.startswith("not run: macaquefaces, adamw")]
    assert len(not_run) == len(missing) and all("MacaqueFaces" in line for line in not_run)
    assert "best for synthetic, adamw: --kpe-init token --kpe-lr-scale 30" in result.output
    assert "best for synthetic, sgd: uninformative" in result.output
    assert ("best for macaquefaces, adamw: (incomplete)" in result.output) == bool(missing)
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(p.name for p in committed.glob("*.json"))
