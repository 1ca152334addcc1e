"""README.md is a guide: at most 300 lines, the two commands CI runs, and the answers as a block
`harness leaderboard` generates from the records and `--check` verifies (no hand-copied numbers)."""
from harness.core.paths import REPO_ROOT
from harness.tables import doc_blocks


def test_readme_is_a_short_guide_with_the_generated_answers():
    text = (REPO_ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert "pip install -e . && harness run --method ckpe --dataset synthetic" in text and "\npytest -q" in text
    begin, end = doc_blocks.markers("answers")
    assert text.count(begin) == 1 and text.index(begin) < text.index(end)
    assert max(len(line) for line in text.splitlines()) <= 200


def test_the_leaderboard_writes_and_checks_the_readme_block(cli, tmp_path):
    results, out = tmp_path / "results", tmp_path / "site" / "leaderboard.md"
    results.mkdir()
    out.parent.mkdir()
    begin, end = doc_blocks.markers("answers")
    readme = out.parent / "README.md"
    readme.write_text(f"# Guide\n\n{begin}\n- a number copied by hand: 99.9\n{end}\n\nMore.\n")
    assert cli("leaderboard", "--results-dir", results, "--output", out).exit_code == 0
    text = readme.read_text()
    assert "99.9" not in text and "- No comparison has results yet." in text and text.endswith("\nMore.\n")
    assert "real (the paper's own setting: pretrained ViTs on a GPU): no runs yet" in text
    assert cli("leaderboard", "--check", "--results-dir", results, "--output", out).exit_code == 0
    readme.write_text(text.replace("- No comparison has results yet.", "- CKPE wins by 3 points."))
    stale = cli("leaderboard", "--check", "--results-dir", results, "--output", out)
    assert stale.exit_code != 0 and "README.md's generated blocks are stale" in stale.output
    lines = out.read_text().splitlines()
    assert max(map(len, lines)) <= 200 and "## Answers" in lines[:60]


def test_docs_pages_get_their_table_and_channel_blocks_from_the_records(cli, tmp_path):
    """A docs page's blocks are written from the records (a table in one setting; the channel's
    evidence), --check catches a number edited by hand, and a block that means nothing is refused."""
    import json
    import shutil

    committed = REPO_ROOT / "results"
    results, site = tmp_path / "results", tmp_path / "site"
    (site / "docs").mkdir(parents=True)
    shutil.copytree(committed / "channel-selection", results / "channel-selection")
    def card_sized(path):  # the control's cells: the synthetic card at its size, 5 identity folds
        config = json.loads(path.read_text())["config"]
        return config.get("folds") == 5 and config.get("epochs") == 30 and config.get("image_size") == 64

    control = [p for p in committed.glob("*_synthetic_*.json") if card_sized(p)]
    for path in control:
        shutil.copy(path, results / path.name)
    page = site / "docs" / "control.md"
    blocks = [doc_blocks.markers("table control small"), doc_blocks.markers("channel-choice")]
    page.write_text("# Control\n\n" + "\n\nText.\n\n".join(f"{b}\ntyped by hand: 61.2\n{e}" for b, e in blocks) + "\n")
    out = site / "leaderboard.md"
    assert cli("leaderboard", "--results-dir", results, "--output", out).exit_code == 0
    text = page.read_text()
    assert "typed by hand" not in text and "\n\nText.\n\n" in text
    assert "| CKPE | AdamW (card) |" in text and "CKPE / AdamW (card) vs ViT, no keypoints / AdamW (card)" in text
    assert "best for synthetic, adamw: --kpe-init token --kpe-lr-scale 30" in text
    assert cli("leaderboard", "--check", "--results-dir", results, "--output", out).exit_code == 0
    page.write_text(text.replace("best for synthetic, adamw", "best for synthetic, adamw (edited)"))
    stale = cli("leaderboard", "--check", "--results-dir", results, "--output", out)
    assert stale.exit_code != 0 and "control.md's generated blocks are stale" in stale.output
    begin, end = doc_blocks.markers("table 99 small")
    page.write_text(f"{begin}\n{end}\n")
    bad = cli("leaderboard", "--results-dir", results, "--output", out)
    assert bad.exit_code != 0 and "control.md: unknown table '99'" in bad.output
