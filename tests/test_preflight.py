"""`--dataset all` says before any training what would fail later: here, a gpt4 recipe without
OPENAI_API_KEY (Giraffes' card uses gpt4@dift), unless a GPT-4 reference is already stored."""
from __future__ import annotations

import pytest

from harness.core.errors import DataError
from harness.engine.run import plan_runs
from harness.keypoints.recipes import parse_recipe, recipe_problem
from wildlife_layouts import make_all


@pytest.fixture
def no_key(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_gpt4_recipe_without_key_is_a_problem_unless_a_reference_is_stored(no_key, monkeypatch):
    assert "needs OPENAI_API_KEY" in recipe_problem(parse_recipe("gpt4@dift"))
    assert recipe_problem(parse_recipe("expert@dift")) is None  # no secret needed
    stored = no_key / "keypoints" / "giraffes-abc" / "ref-gpt4-1234abcd.json"
    stored.parent.mkdir(parents=True)
    stored.write_text("{}")
    assert recipe_problem(parse_recipe("gpt4@dift")) is None
    stored.unlink()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert recipe_problem(parse_recipe("gpt4@dift")) is None


def test_dataset_all_reports_the_missing_key_before_anything_trains(no_key, tmp_path):
    root = make_all(tmp_path / "data")
    with pytest.raises(DataError) as info:
        plan_runs({"method": "ckpe", "dataset": "all"}, root)
    message = str(info.value)
    assert message.startswith("1 of 4 datasets cannot run:")
    assert "dataset giraffes: keypoint recipe 'gpt4@dift': the gpt4 reference source needs OPENAI_API_KEY" in message
    assert not (no_key / "keypoints").exists()  # nothing was annotated or propagated
