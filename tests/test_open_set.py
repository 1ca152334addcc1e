"""The open-set protocol: the split (new identities without gallery images, known ones split by
day), the threshold chosen on held-out training identities by hand, a test that would see a
threshold leak from test images, and the acceptance run."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from harness.core.errors import DataError
from harness.data.splits import HeldOut, make_split, open_set
from harness.evaluation.scoring import needed_rows, score, table_lookup
from harness.evaluation.open_set import answer, choose_threshold


def _frame(n_ids=20, per_id=6, days_per_id=3):
    identity = np.repeat([f"id{i:02d}" for i in range(n_ids)], per_id)
    day = np.tile([f"2024-01-{1 + j * days_per_id // per_id:02d}" for j in range(per_id)], n_ids)
    df = pd.DataFrame({"image_id": np.arange(len(identity)), "identity": identity, "path": "x"})
    return df, day.astype(object)


def _ids(df, rows):
    return set(df["identity"].to_numpy()[rows])


def test_open_split_holds_new_individuals_and_orders_known_ones_by_day():
    df, days = _frame()
    split = make_split(df, "open", 666, dataset="d", days=days)
    test = split.open
    test_ids = _ids(df, test.queries) | _ids(df, test.gallery)
    assert not test_ids & _ids(df, split.train)  # identity-disjoint from training
    assert set(test.new_identities) and not set(test.new_identities) & _ids(df, test.gallery)
    assert len(test.new_identities) == round(0.5 * len(test_ids))
    for name in test_ids - set(test.new_identities):  # known: its first 2 of 3 days in the gallery
        gallery = [r for r in test.gallery if df["identity"][r] == name]
        queries = [r for r in test.queries if df["identity"][r] == name]
        assert len(gallery) == 4 and len(queries) == 2 and max(days[gallery]) < min(days[queries])
    undated = make_split(df, "open", 666, dataset="d").open  # without dates: half the images each
    known = sorted(_ids(df, undated.gallery))[0]
    assert sum(df["identity"][r] == known for r in undated.gallery) == 3
    cal = split.calibration
    cal_ids = _ids(df, cal.queries) | _ids(df, cal.gallery)
    # the threshold's identities: training identities held out from training, no test identity
    assert cal_ids and not cal_ids & _ids(df, split.train) and not cal_ids & test_ids
    assert np.array_equal(split.test, test.queries)
    other_fold = make_split(df, "open", 666, dataset="d", days=days, held_out=HeldOut(folds=5, fold=1))
    assert not _ids(df, other_fold.open.queries) & test_ids


def test_threshold_by_hand():
    # known A answered right at 0.9 and 0.7; new C's best matches score 0.6 and 0.3
    t = choose_threshold([0.9, 0.7, 0.6, 0.3], ["A", "A", "A", "A"], ["A", "A", "C", "C"], [True, True, False, False])
    assert t.value == 0.7 and t.calibration_gmean == pytest.approx(100.0)
    # A's second query matched B: answering it can never be right, so only BAUS moves with the threshold
    t = choose_threshold([0.9, 0.7, 0.6, 0.3], ["A", "B", "A", "A"], ["A", "A", "C", "C"], [True, True, False, False])
    assert t.value == 0.9 and t.calibration_baks == pytest.approx(50.0) and t.calibration_baus == pytest.approx(100.0)
    assert answer(np.array([0.95, 0.5, np.nan]), ["A", "B", None], 0.7) == ["A", None, None]
    with pytest.raises(ValueError, match="known and of new"):
        choose_threshold([0.5], ["A"], ["A"], [True])


def _open_problem(seed=0):
    df, days = _frame(n_ids=30)
    split = make_split(df, "open", 666, dataset="d", days=days)
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(30, 16, generator=gen)
    identity = df["identity"].to_numpy()
    vectors = centres[[int(x[2:]) for x in identity]] + 0.8 * torch.randn(len(df), 16, generator=gen)
    rows = needed_rows(split, split.train, split.test, np.array([], dtype=np.int64))
    return df, days, split, rows, identity, vectors


def _threshold(split, rows, identity, days, vectors):
    scored = score(table_lookup(rows["all"], vectors[rows["all"]]), identity, split, rows, days, None)
    return scored.open_set["threshold"], scored


def test_the_threshold_sees_no_test_image():
    df, days, split, rows, identity, vectors = _open_problem()
    t0, scored = _threshold(split, rows, identity, days, vectors)
    test_rows = np.concatenate([split.open.gallery, split.open.queries])
    moved = vectors.clone()
    moved[test_rows] = torch.randn(len(test_rows), 16)  # test identities' similarities change entirely
    t1, rescored = _threshold(split, rows, identity, days, moved)
    assert t1 == t0
    assert rescored.metrics["new_auroc"] != scored.metrics["new_auroc"]  # the test side did change
    # ... while moving the calibration images (held-out training identities) does move it
    cal_rows = np.concatenate([split.calibration.gallery, split.calibration.queries])
    moved = vectors.clone()
    moved[cal_rows] = torch.randn(len(cal_rows), 16)
    t2, _ = _threshold(split, rows, identity, days, moved)
    assert t2 != t0
    assert {"baks", "baus", "baks_baus_gmean", "new_auroc"} <= set(scored.metrics)
    assert scored.metrics["new_queries"] == sum(1 for k in scored.per_query["known"] if not k)


def test_a_known_animal_the_same_day_rule_empties_is_new_to_its_queries():
    # every animal filmed on one day: a known one's gallery images share its queries' day
    df, days, split, _, identity, vectors = _open_problem()
    one_day = np.full(len(df), "2024-01-01", dtype=object)
    split = make_split(df, "open", 666, dataset="d", days=one_day)
    rows = needed_rows(split, split.train, split.test, np.array([], dtype=np.int64))
    take = table_lookup(rows["all"], vectors[rows["all"]])
    whole = score(take, identity, split, rows, one_day, None)
    other_day = score(take, identity, split, rows, one_day, "same-day")
    known_before = sum(whole.per_query["known"])
    assert known_before > 0 and whole.metrics["known_without_gallery_after_exclusion"] == 0
    assert not any(other_day.per_query["known"])  # no query keeps a gallery image of its animal
    assert other_day.metrics["known_without_gallery_after_exclusion"] == known_before
    assert other_day.metrics["new_queries"] == len(split.open.queries)
    assert other_day.metrics["baks"] is None  # no known query left: nothing to score, not a 0


def test_acceptance_open_protocol_run_records_baks_and_baus(cli, tmp_path):
    args = ["--backbone", "nano", "--image-size", "32", "--batch-size", "16", "--dataset-option", "identities=10",
            "--dataset-option", "images_per_identity=6", "--dataset-option", "image_size=32", "--quiet"]
    result = cli("run", "--method", "vit", "--dataset", "synthetic", "--protocol", "open", "--epochs", "1",
                 "--results-dir", tmp_path, *args)
    assert result.exit_code == 0, result.output
    assert "BAKS" in result.output and "BAUS" in result.output
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["protocol"] == "open" and record["config"]["protocol"] == "open"
    m = record["metrics"]
    assert 0.0 <= m["baks"] <= 100.0 and 0.0 <= m["baus"] <= 100.0
    assert m["baks_baus_gmean"] == pytest.approx(np.sqrt(m["baks"] * m["baus"]))
    q = record["queries"]
    said_new = [p is None for p in q["predicted"]]
    t = record["open_set"]["threshold"]
    assert said_new == [s is None or s < t for s in q["best_score"]]  # the recorded threshold decided every answer
    assert "no test image" in record["open_set"]["chosen_on"]


def test_too_few_identities_for_an_open_set():
    df, days = _frame(n_ids=4)
    with pytest.raises(DataError, match="at least 2 identities"):
        open_set(df, np.flatnonzero(df["identity"] == "id00"), 0, days)
    small = open_set(df, np.arange(len(df)), 0, days)  # 4 identities: 2 new, 2 known
    assert len(small.new_identities) == 2 and len(_ids(df, small.gallery)) == 2


def test_open_protocol_names_the_identities_it_needs(cli, tmp_path):
    # fold 0 of 5 tests 2 of 8 identities, 1/5 of the other 6 calibrates: 2 each, a known and a new one
    need = "--protocol open needs at least 8 identities (test: identity fold 0 of 5; calibration: 1/5 of the "
    for n_ids in (4, 6, 7):
        df, days = _frame(n_ids=n_ids)
        with pytest.raises(DataError) as err:
            make_split(df, "open", 666, dataset="d", days=days)
        assert str(err.value).startswith(need) and str(err.value).endswith(f"; the dataset has {n_ids}")
    make_split(_frame(n_ids=8)[0], "open", 666, dataset="d")  # the smallest that splits
    with pytest.raises(DataError, match="^--protocol open --validate needs at least 10 identities .* has 9$"):
        make_split(_frame(n_ids=9)[0], "open", 666, dataset="d", held_out=HeldOut(validate=True))
    make_split(_frame(n_ids=10)[0], "open", 666, dataset="d", held_out=HeldOut(validate=True))
    args = ["--backbone", "nano", "--image-size", "32", "--batch-size", "4", "--dataset-option", "identities=6",
            "--dataset-option", "images_per_identity=2", "--dataset-option", "image_size=16", "--quiet"]
    result = cli("run", "--method", "vit", "--dataset", "synthetic", "--protocol", "open", "--epochs", "1",
                 "--results-dir", tmp_path, *args)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.splitlines()[-1].startswith(f"Error: {need}")
    assert result.output.rstrip().endswith("the dataset has 6") and "--folds" not in result.output


def test_a_validation_split_names_its_own_need():
    df, _ = _frame(n_ids=5)  # fold 0 of 5 leaves 4 training identities: 1/5 of 4 is none
    with pytest.raises(DataError, match="^a validation split holds out 1/5 of the training identities: it needs at "
                                        "least 5 of them, this split trains on 4$"):
        make_split(df, "disjoint", 666, dataset="d", held_out=HeldOut(folds=5, validate=True))
