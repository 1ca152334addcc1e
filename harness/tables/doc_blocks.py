"""Generated blocks of the repository's Markdown pages: no number that comes from a run record is
typed into README.md or docs/ by hand. A block is the text between two comments,

    <!-- generated: NAME -->
    ...
    <!-- end generated: NAME -->

and NAME says what `harness leaderboard` writes there from the records:

- ``answers``: each question's plain verdict and what each setting's numbers can say (README.md);
- ``table ID SETTING``: a declared table's rows with results in one setting, its paired
  comparisons, what its trained models take from their keypoints and its caveats;
- ``channel-choice``: the validation evidence of the keypoint channel's default
  (`harness tune --channel`, results/channel-selection/);
- ``small-choice``: the validation evidence of the small setting's training settings and
  featurizer (`harness tune`, results/small-validation/);
- ``trunk-choice``: the validation evidence of the pretrained table's trunk (`harness tune --trunk`,
  results/trunk-selection/).

`harness leaderboard` rewrites every block of README.md and docs/*.md beside its output;
`--check` fails on a stale block; a block whose NAME means nothing is an error naming its page.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..core.io import replace_atomic
from .channel_choice import CHANNEL_FOLDER, channel_lines
from .collect import TableResult, first_answered
from .declarations import get_table
from .leaderboard import TABLE_HEAD, answers_block, table_details, table_rows
from .settings import SETTINGS, get_setting
from .trunk_choice import TRUNK_FOLDER, trunk_lines
from .tuning import VALIDATION_FOLDER, tuning_lines

BLOCK = re.compile(r"<!-- generated: (?P<name>[^>]+?) -->\n(?P<body>.*?)<!-- end generated: (?P=name) -->", re.S)


def markers(name: str) -> tuple[str, str]:
    """The two comments around block ``name``."""
    return f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"


@dataclass(frozen=True)
class Sources:
    """What blocks are made from: the results folder and its tables' results (collected once)."""
    results_dir: Path
    results: list[TableResult]

    @cached_property
    def firsts(self) -> dict[str, dict]:
        """Per setting, where each distinct comparison is first answered (for every table block)."""
        return first_answered(self.results)


def _table_block(table_id: str, setting_name: str, sources: Sources) -> list[str]:
    table, setting = get_table(table_id), get_setting(setting_name)
    result = next(r for r in sources.results if r.table.id == table.id)
    rows = table_rows(result, [setting])
    if not rows:
        return [f"Table {table.id} has no records in the {setting.name} setting yet."]
    return [*TABLE_HEAD, *rows, *table_details(result, [setting], sources.firsts)]


def block_lines(name: str, sources: Sources) -> list[str]:
    """The lines of block ``name`` (ValueError: a name that means no block)."""
    words = name.split()
    if words == ["answers"]:
        return answers_block(sources.results)
    if words == ["channel-choice"]:
        return ["```", *channel_lines(Path(sources.results_dir) / CHANNEL_FOLDER), "```"]
    if words == ["small-choice"]:
        return ["```", *tuning_lines(Path(sources.results_dir) / VALIDATION_FOLDER), "```"]
    if words == ["trunk-choice"]:
        return ["```", *trunk_lines(Path(sources.results_dir) / TRUNK_FOLDER), "```"]
    if len(words) == 3 and words[0] == "table":
        return _table_block(words[1], words[2], sources)
    raise ValueError(f"no generated block {name!r}: blocks are 'answers', 'channel-choice', "
                     "'small-choice', 'trunk-choice' and 'table ID SETTING'")


def filled(text: str, sources: Sources, page: Path) -> str:
    """``text`` with every block rewritten from ``sources``."""
    def fill(match: re.Match) -> str:
        name = match.group("name")
        try:
            lines = block_lines(name, sources)
        except (ValueError, LookupError) as exc:
            raise ValueError(f"{page}: {exc}") from exc
        begin, end = markers(name)
        return begin + "\n" + "\n".join(lines) + "\n" + end

    return BLOCK.sub(fill, text)


def pages(root: Path) -> list[Path]:
    """The Markdown pages whose blocks are generated: README.md and docs/*.md under ``root``."""
    found = [root / "README.md"] if (root / "README.md").is_file() else []
    return found + sorted((root / "docs").glob("*.md"))


def write_pages(root: Path, sources: Sources) -> list[Path]:
    """Rewrite the blocks of every page under ``root``; the pages that changed."""
    written = []
    for page in pages(root):
        text = page.read_text()
        new = filled(text, sources, page)
        if new != text:
            written.append(replace_atomic(page, lambda tmp, new=new: tmp.write_text(new)))
    return written


def stale_page(root: Path, sources: Sources) -> str | None:
    """Why a page's generated blocks are stale, or None when every one is up to date."""
    for page in pages(root):
        text = page.read_text()
        if filled(text, sources, page) != text:
            return f"{page}'s generated blocks are stale; run `harness leaderboard`"
    return None
