"""Cross-day evaluation: the same-day gallery rule on a hand-checkable case, capture days from the
data, the one-line error without dates, and one training scored under both rules (twin records)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from harness.config import RunConfig
from harness.core.errors import DataError
from harness.data.dataset import capture_days
from harness.data.splits import OpenSet, Split
from harness.data.synthetic import SyntheticSpec, load
from harness.engine import records
from harness.engine.run import execute, prepare
from harness.evaluation.scoring import exclusion_keys, needed_rows, same_day_matters, score, table_lookup

# identity, day, embedding: q0 and q1 are same-day near-duplicates of A; C is seen on one day only
CASE = [("A", "d0", (1.0, 0.0)), ("A", "d0", (0.98, 0.2)), ("A", "d1", (0.6, 0.8)), ("B", "d0", (0.8, 0.6)),
        ("B", "d1", (0.0, 1.0)), ("C", "d0", (0.0, -1.0)), ("C", "d0", (0.1, -0.99))]


def _score(days, rule):
    identities = np.array([c[0] for c in CASE])
    vectors = torch.tensor([c[2] for c in CASE])
    rows = np.arange(len(CASE))
    split = Split("disjoint", np.array([], dtype=np.int64), rows, "fp")
    need = needed_rows(split, np.array([], dtype=np.int64), rows, np.array([], dtype=np.int64))
    return score(table_lookup(need["all"], vectors), identities, split, need, days, rule)


def test_same_day_rule_by_hand():
    days = np.array([c[1] for c in CASE], dtype=object)
    whole = _score(days, None)
    assert whole.per_query["first_rank"] == [1, 1, 3, 4, 2, 1, 1]
    assert whole.metrics["top1"] == pytest.approx(400 / 7)
    cross = _score(days, "same-day")
    # q0 loses q1 (same identity, same day): B's q3 (0.8) now ranks above A's q2 (0.6)
    assert cross.per_query["first_rank"] == [2, 2, 3, 4, 2, None, None]
    assert cross.per_query["ap"][:2] == [0.5, 0.5]
    assert cross.metrics["top1"] == 0.0 and cross.metrics["unanswerable_queries"] == 2
    # the best match skips excluded images too: q0's is B's q3 now
    assert cross.per_query["best_identity"][0] == "B" and whole.per_query["best_identity"][0] == "A"
    # chance per query's own gallery: q0, q1 have 5 images left (1 positive), q2 6 (2), q3 and q4 6 (1)
    assert cross.metrics["chance_top1"] == pytest.approx(100 * (0.2 + 0.2 + 1 / 3 + 1 / 6 + 1 / 6) / 5)
    assert whole.metrics["chance_top1"] == pytest.approx(100 * (2 + 2 + 2 + 1 + 1 + 1 + 1) / 6 / 7)


def test_the_rule_matters_only_where_a_query_shares_its_day_with_a_gallery_image():
    identities = np.array([c[0] for c in CASE])
    days = np.array([c[1] for c in CASE], dtype=object)
    none = np.array([], dtype=np.int64)
    rows = np.arange(len(CASE))
    disjoint = Split("disjoint", none, rows, "fp")
    assert same_day_matters(identities, days, disjoint, needed_rows(disjoint, none, rows, none))
    other_days = np.array([f"d{i}" for i in range(len(CASE))], dtype=object)
    assert not same_day_matters(identities, other_days, disjoint, needed_rows(disjoint, none, rows, none))
    assert not same_day_matters(identities, None, disjoint, needed_rows(disjoint, none, rows, none))
    # open: A's gallery is its day d0, its query d1; B, C new. Calibration: C's two d0 images split
    test_side = OpenSet(np.array([0, 1]), np.array([2, 3, 4]), ("B",))
    calibration = OpenSet(np.array([5]), np.array([6]), ())
    opened = Split("open", none, test_side.queries, "fp", test_side, calibration)
    assert same_day_matters(identities, days, opened, needed_rows(opened, none, test_side.queries, none))
    apart = Split("open", none, test_side.queries, "fp", test_side, OpenSet(np.array([2]), np.array([6]), ()))
    assert not same_day_matters(identities, days, apart, needed_rows(apart, none, test_side.queries, none))


def test_undated_images_exclude_only_themselves():
    days = np.array([c[1] for c in CASE], dtype=object)
    days[5] = days[6] = None
    assert list(exclusion_keys(days, "same-day")[5:]) == [-6, -7]
    cross = _score(days, "same-day")
    assert cross.per_query["first_rank"][5:] == [1, 1]


def test_capture_days_from_the_date_column():
    df = pd.DataFrame({"date": ["2020-01-03", None, "2019-05-06 10:00:00", float("nan")]})
    assert capture_days(df).tolist() == ["2020-01-03", None, "2019-05-06", None]
    assert capture_days(pd.DataFrame({"date": [None, None]})) is None
    assert capture_days(pd.DataFrame({"identity": ["a"]})) is None


def test_synthetic_sessions_give_dates_and_keep_old_fingerprints(tmp_path):
    assert SyntheticSpec().fingerprint() == "abd613bbb9cf"  # as before the option existed
    spec = SyntheticSpec(identities=2, images_per_identity=6, image_size=16, sessions=3)
    _, df, _ = load(spec, tmp_path)
    assert capture_days(df).tolist() == ["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-02",
                                         "2024-01-03", "2024-01-03"] * 2
    with pytest.raises(ValueError, match="sessions"):
        SyntheticSpec(images_per_identity=4, sessions=5)


def test_no_dates_is_a_one_line_error(tmp_path, cli, tiny_args):
    with pytest.raises(DataError, match="needs capture dates"):
        prepare(RunConfig(method="vit", dataset="synthetic", exclude="same-day",
                          dataset_options=(("identities", "10"), ("images_per_identity", "6"))), tmp_path)
    result = cli("run", "--method", "vit", "--exclude", "same-day", "--results-dir", tmp_path, *tiny_args)
    assert result.exit_code != 0
    assert "needs capture dates" in result.output and "Traceback" not in result.output
    assert RunConfig(exclude=None).experiment() == RunConfig().experiment()  # old result names stay
    with pytest.raises(ValueError, match="unknown --exclude"):
        RunConfig(exclude="same-camera")


def _tiny(**over) -> RunConfig:
    options = (("identities", "10"), ("image_size", "32"), ("images_per_identity", "6"), ("sessions", "3"))
    return RunConfig(method="vit", dataset="synthetic", backbone="nano", image_size=32, epochs=1, batch_size=16,
                     dataset_options=options, **over)


def test_one_training_writes_both_gallery_rules_and_never_replaces_a_twin(tmp_path):
    cfg = _tiny()
    record, path = execute(cfg, tmp_path, progress=False)
    twin_path = records.result_path(tmp_path, _tiny(exclude="same-day"))
    assert path.exists() and twin_path.exists() and path != twin_path
    twin = json.loads(twin_path.read_text())
    assert record["config"]["exclude"] is None and twin["config"]["exclude"] == "same-day"
    assert twin["training_shared_with"] == record["name"] and twin["history"] == record["history"]
    assert twin["split"]["fingerprint"] == record["split"]["fingerprint"]
    # 2 test identities x 6 images, 2 per day: 5 positives of 11 others; 4 of 10 without the same day
    assert record["metrics"]["chance_top1"] == pytest.approx(100 * 5 / 11)
    assert twin["metrics"]["chance_top1"] == pytest.approx(100 * 4 / 10)
    before = twin_path.read_bytes()
    path.unlink()
    execute(cfg, tmp_path, progress=False)  # trains again: the twin's record exists and stays
    assert twin_path.read_bytes() == before and path.exists()


def test_an_open_run_whose_galleries_are_other_days_writes_no_twin(tmp_path):
    options = (("identities", "10"), ("image_size", "32"), ("images_per_identity", "6"), ("sessions", "3"))
    cfg = RunConfig(method="vit", dataset="synthetic", backbone="nano", image_size=32, epochs=1, batch_size=16,
                    dataset_options=options, protocol="open")
    record, path = execute(cfg, tmp_path, progress=False)
    assert [p.name for p in tmp_path.glob("*.json")] == [path.name]  # the same-day twin would repeat it
    assert record["metrics"]["new_queries"] > 0 and "training_shared_with" not in record


def test_force_replaces_the_twin_of_its_own_training_only(tmp_path):
    cfg = _tiny()
    execute(cfg, tmp_path, progress=False)
    twin_path = records.result_path(tmp_path, _tiny(exclude="same-day"))
    old = json.loads(twin_path.read_text())
    twin_path.write_text(json.dumps({**old, "wall_time_s": -1.0}))  # a mark only a rewrite removes
    execute(cfg, tmp_path, progress=False, force=True)  # recomputed: its twin is rescored from the new training
    new = json.loads(twin_path.read_text())
    assert new["created"] >= old["created"] and new["training_shared_with"] == old["training_shared_with"]
    assert new["wall_time_s"] >= 0.0
    # a twin that is a run of its own (no training_shared_with) is never replaced by another run's --force
    own = {k: v for k, v in new.items() if k != "training_shared_with"}
    twin_path.write_text(json.dumps(own))
    before = twin_path.read_bytes()
    execute(cfg, tmp_path, progress=False, force=True)
    assert twin_path.read_bytes() == before
