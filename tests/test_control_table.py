"""The known-answer control is a declared table on the built-in synthetic data: its cells are whole
in every setting (no translation to MacaqueFaces, nothing of the small setting's MacaqueFaces
choice), under the card's AdamW and the paper's SGD, in the standard and the scrambled layout; the
channel's choice (`harness tune --channel`) trains on the same data's validation identities."""
from harness.tables.cells import cells, resolve_cell
from harness.tables.channel_choice import CHANNEL_CANDIDATES, best_channel, channel_trials
from harness.tables.declarations import CONTROL_TINY, get_table

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
    assert tiny.image_size == CONTROL_TINY["image_size"] and tiny.epochs == CONTROL_TINY["epochs"]
    assert dict(tiny.dataset_options) == {**CONTROL_TINY["dataset_options"], "parts": "5", "scramble": "1"}
    labels = {c.key for c in cells(TABLE, "small")}
    assert all(a in labels and b in labels for a, b in TABLE.comparisons)
    assert TABLE.comparisons[0] == ("CKPE|AdamW (card)", "ViT, no keypoints|AdamW (card)")  # the answer first


def test_channel_trials_differ_only_in_the_channel_and_the_choice_waits_for_every_candidate():
    trials = channel_trials()
    assert len(trials) == 4 * (1 + len(CHANNEL_CANDIDATES))
    same_place = [t.config() for t in trials if t.layout == "scrambled" and t.recipe == "sgd" and t.method == "ckpe"]
    assert {(c.kpe_init, c.kpe_lr_scale) for c in same_place} == set(CHANNEL_CANDIDATES)
    assert len({c.experiment_hash() for c in same_place}) == len(CHANNEL_CANDIDATES)
    assert all(c.validate and c.fold == 0 and c.optimizer == "sgd" for c in same_place)
    scores = [(t, None if t.channel is None else {"top1": 10.0 + 5 * CHANNEL_CANDIDATES.index(t.channel)
                                                  + (40 if t.recipe == "sgd" and t.channel == ("zero", 30.0) else 0)})
              for t in trials]
    assert best_channel(scores) == {"adamw": ("token", 30.0), "sgd": ("zero", 30.0)}
    assert best_channel([(t, None) for t in trials]) == {"adamw": None, "sgd": None}
