"""README.md is a guide: at most 300 lines, the two commands CI runs, and the answers as a block
`harness leaderboard` generates from the records and `--check` verifies (no hand-copied numbers)."""
from harness.core.paths import REPO_ROOT
from harness.tables import leaderboard as lb


def test_readme_is_a_short_guide_with_the_generated_answers():
    text = (REPO_ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert "pip install -e . && harness run --method ckpe --dataset synthetic" in text and "\npytest -q" in text
    begin, end = lb.README_MARKERS
    assert text.count(begin) == 1 and text.index(begin) < text.index(end)
    assert max(len(line) for line in text.splitlines()) <= 200


def test_the_leaderboard_writes_and_checks_the_readme_block(cli, tmp_path):
    results, out = tmp_path / "results", tmp_path / "site" / "leaderboard.md"
    results.mkdir()
    out.parent.mkdir()
    begin, end = lb.README_MARKERS
    readme = out.parent / "README.md"
    readme.write_text(f"# Guide\n\n{begin}\n- a number copied by hand: 99.9\n{end}\n\nMore.\n")
    assert cli("leaderboard", "--results-dir", results, "--output", out).exit_code == 0
    text = readme.read_text()
    assert "99.9" not in text and "- No comparison has results yet." in text and text.endswith("\nMore.\n")
    assert "real (the paper's own setting: pretrained ViTs on a GPU): no runs yet" in text
    assert cli("leaderboard", "--check", "--results-dir", results, "--output", out).exit_code == 0
    readme.write_text(text.replace("- No comparison has results yet.", "- CKPE wins by 3 points."))
    stale = cli("leaderboard", "--check", "--results-dir", results, "--output", out)
    assert stale.exit_code != 0 and "README.md's generated answers are stale" in stale.output
    lines = out.read_text().splitlines()
    assert max(map(len, lines)) <= 200 and "## Answers" in lines[:60]
